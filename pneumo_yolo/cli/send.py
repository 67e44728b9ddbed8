"""The ``send`` command."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app, fail

_TLS = "DICOM TLS (mutual certificates)"


@app.command("send")
def send_command(
    source: Annotated[
        Path,
        typer.Argument(
            exists=True,
            metavar="DIR",
            help="A folder of DICOM files (searched recursively), e.g. a --dicom-out folder, or one file.",
        ),
    ],
    to: Annotated[
        Optional[str],
        typer.Option(metavar="AE@HOST:PORT", help="Send by C-STORE to this DICOM node."),
    ] = None,
    stow: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Send by STOW-RS to this DICOMweb root. Credentials, if needed, come from $PNEUMO_YOLO_STOW_AUTH or the file named by $PNEUMO_YOLO_STOW_AUTH_FILE ('Bearer TOKEN' or 'USER:PASSWORD'), never from the command line.",
        ),
    ] = None,
    ae_title: Annotated[str, typer.Option(help="Our (calling) AE title, which the receiver must know.")] = "PNEUMOYOLO",
    tls_cert: Annotated[
        Optional[Path], typer.Option(exists=True, dir_okay=False, help="Our certificate (PEM).", rich_help_panel=_TLS)
    ] = None,
    tls_key: Annotated[
        Optional[Path], typer.Option(exists=True, dir_okay=False, help="Our private key (PEM).", rich_help_panel=_TLS)
    ] = None,
    tls_ca: Annotated[
        Optional[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The CA that signed the receiver's certificate (PEM).",
            rich_help_panel=_TLS,
        ),
    ] = None,
) -> None:
    """Send DICOM files (e.g. the SR and GSPS of predict --dicom-out) to a PACS, and report each file.

    Prints one line per file, `sent` or `FAILED` with the DICOM status or the problem. Exit 1
    when any file failed, naming them: run the same command again to send them again (a
    receiver keeps one copy per SOP Instance UID).

    Examples:

    pneumo-yolo send results --to ORTHANC@127.0.0.1:4242

    PNEUMO_YOLO_STOW_AUTH_FILE=~/.stow-token pneumo-yolo send results --stow http://127.0.0.1:8042/dicom-web
    """
    import logging

    from ..pacs.addresses import AddressError, check_ae_title, parse_peer
    from ..pacs.send import Destination, SendError, send_folder
    from ..pacs.stow import StowError, check_url
    from ..pacs.tls import TlsError, TlsFiles

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # each file's status below says what went wrong
    if (to is None) == (stow is None):
        raise fail("error: give exactly one of --to AE@HOST:PORT and --stow URL", code=2)
    try:
        destination = Destination(
            peer=parse_peer(to) if to else None,
            stow=check_url(stow) if stow else None,
            calling_ae=check_ae_title(ae_title, "--ae-title"),
            tls=TlsFiles.from_options(tls_cert, tls_key, tls_ca),
        )
        if destination.tls:
            destination.tls.client_context()
        statuses = send_folder(source, destination)
    except (AddressError, SendError, StowError, TlsError) as error:
        raise fail(f"error: {error}", code=2) from None
    for status in statuses:
        if status.ok:
            typer.echo(f"sent    {status.path}  {status.detail}")
        else:
            typer.secho(f"FAILED  {status.path}  {status.detail}", err=True, fg=typer.colors.RED)
    failed = [status.path for status in statuses if not status.ok]
    typer.echo(f"{len(statuses) - len(failed)} of {len(statuses)} file(s) sent to {destination}")
    if failed:
        raise fail(
            f"error: {len(failed)} file(s) not sent: "
            + ", ".join(str(path) for path in failed)
            + "; run the same command again to resend them"
        )
