"""The ``listen`` command."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options
from .app import app, fail

_MODEL = "Model (as in predict)"
_WHO = "Who may send"
_RESULTS = "Where results go"
_TLS = "DICOM TLS (mutual certificates)"


@app.command("listen")
def listen_command(
    weights: Annotated[
        list[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Trained detector weights (.pt); repeat for an ensemble, as in predict. Only load weights you trust: .pt files are pickles.",
            rich_help_panel=_MODEL,
        ),
    ],
    spool: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="Folder for received images, results waiting for delivery, and the record of what was done (spool.sqlite); a restart on it resumes.",
        ),
    ],
    postprocess: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="Post-processing YAML, as in predict.", rich_help_panel=_MODEL),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            help="'cpu' or one GPU ('0'). Default: GPU 0 if there is one, else CPU.",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    batch: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            show_default="32 on a GPU, 4 on the CPU",
            help="Most images per prediction step.",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    ae_title: Annotated[str, typer.Option(help="The node's AE title, which callers must address.")] = "PNEUMOYOLO",
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="DICOM port to listen on.")] = 11112,
    allow: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="AE@HOST",
            help="A caller that may send (repeatable); any other is rejected at association. None given: everyone is refused.",
            rich_help_panel=_WHO,
        ),
    ] = None,
    allow_any: Annotated[
        bool,
        typer.Option("--allow-any", help="Accept any caller (tests and closed networks only).", rich_help_panel=_WHO),
    ] = False,
    return_to: Annotated[
        Optional[str],
        typer.Option(
            metavar="AE@HOST:PORT", help="Send results by C-STORE to this node (the PACS).", rich_help_panel=_RESULTS
        ),
    ] = None,
    stow: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Send results by STOW-RS to this DICOMweb root; credentials from $PNEUMO_YOLO_STOW_AUTH or the file named by $PNEUMO_YOLO_STOW_AUTH_FILE.",
            rich_help_panel=_RESULTS,
        ),
    ] = None,
    max_mb: Annotated[float, typer.Option(min=0.1, help="Refuse a file bigger than this (0xA700).")] = 64.0,
    min_free_mb: Annotated[
        float,
        typer.Option(
            min=0.0, help="Refuse associations and files while the spool's disk has less free space than this."
        ),
    ] = 1024.0,
    tls_cert: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="The node's certificate (PEM).", rich_help_panel=_TLS),
    ] = None,
    tls_key: Annotated[
        Optional[Path],
        typer.Option(exists=True, dir_okay=False, help="The node's private key (PEM).", rich_help_panel=_TLS),
    ] = None,
    tls_ca: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The CA that signs callers' certificates and the PACS's: callers without one are refused; results go out over TLS too.",
            rich_help_panel=_TLS,
        ),
    ] = None,
) -> None:
    """Run a DICOM node: a PACS sends chest radiographs here, and gets one SR (and a GSPS where there are boxes) back into each study.

    CR, DX and Secondary Capture images are spooled and answered at once; a worker predicts
    them in batches with predict's code and settings, and sends the results to --return-to or
    --stow, retrying with backoff while the destination is down. Other images (CT...) are
    refused; SR and presentation states, our own among them, are ignored; an image sent again
    makes no new result. On the CPU, one lane of models per core (at most 4) predicts side by
    side. SIGTERM (or Ctrl-C) finishes the batches under way, delivers their results and exits
    0; a restart on the same --spool resumes. Log lines carry no patient data.

    Exit codes: 0 once stopped by SIGTERM or Ctrl-C; 1 the weights or --postprocess cannot be
    used; 2 a usage error (an address, a port in use, a --spool held by another node, TLS files).

    Example:

    pneumo-yolo listen --weights runs/exp/weights/best.pt --postprocess tuned.yaml --port 11112
    --allow ORTHANC@127.0.0.1 --return-to ORTHANC@127.0.0.1:4242 --spool /var/spool/pneumo-yolo
    """
    import logging
    import sys

    from ..eval.postprocess import ConfigError, PostprocessConfig
    from ..nets.detector import DetectorError
    from ..pacs.addresses import AddressError, check_ae_title, parse_caller, parse_peer
    from ..pacs.node import NodeSettings
    from ..pacs.send import Destination
    from ..pacs.service import ListenError, ListenSettings, listen
    from ..pacs.stow import StowError, check_url
    from ..pacs.tls import TlsError, TlsFiles
    from ..predict.device import PredictSettings
    from ..runtime.devices import Devices
    from ..runtime.memory import ResourceError
    from ..settings import SettingError
    from .flags import flag_message

    if (return_to is None) == (stow is None):
        raise fail("error: give exactly one of --return-to AE@HOST:PORT and --stow URL", code=2)
    devices = Devices.parse(device)
    if len(devices.names) > 1:
        raise fail(f"error: --device {device}: listen runs its models on one device; give one, e.g. 0 or cpu", code=2)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pneumo_yolo.pacs").setLevel(logging.INFO)  # our lines; libraries only from warnings up
    if not allow and not allow_any:
        logging.getLogger("pneumo_yolo.pacs").warning(
            "no --allow: every caller will be refused (--allow-any opens the node)"
        )
    try:
        tls = TlsFiles.from_options(tls_cert, tls_key, tls_ca)
        title = check_ae_title(ae_title, "--ae-title")
        settings = ListenSettings(
            node=NodeSettings(
                ae_title=title,
                host=host,
                port=port,
                allow=tuple(parse_caller(text) for text in allow or []),
                allow_any=allow_any,
                max_bytes=int(max_mb * 2**20),
                min_free_bytes=int(min_free_mb * 2**20),
                tls=tls,
            ),
            predict=PredictSettings(
                weights=tuple(weights),
                config=PostprocessConfig.from_yaml(postprocess) if postprocess else PostprocessConfig(),
            ),
            destination=Destination(
                peer=parse_peer(return_to) if return_to else None,
                stow=check_url(stow) if stow else None,
                calling_ae=title,
                tls=tls,
            ),
            spool=spool,
            device=devices,
            batch=batch,
        )
        if tls:
            tls.server_context()
        counts = listen(settings)
    except SettingError as error:
        raise fail(f"error: {flag_message(error)}", code=2) from None
    except (AddressError, ListenError, ResourceError, StowError, TlsError, ValueError) as error:
        raise fail(f"error: {error}", code=2) from None
    except (ConfigError, DetectorError) as error:
        raise fail(f"error: {error}") from None
    typer.echo("stopped; spool: " + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"))
