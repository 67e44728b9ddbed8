"""The ``demo`` command: the whole pipeline on synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..pipelines.demo import DemoSettings
from . import options
from .app import app, fail, refuse_bad_outputs

_DEFAULTS = DemoSettings()


@app.command("demo")
def demo(
    out: Annotated[
        Path,
        typer.Option(file_okay=False, help="Folder for everything the demo writes; a rerun needs --overwrite."),
    ] = Path("demo"),
    n_train: Annotated[
        int, typer.Option(min=20, max=options.MAX_SYNTH_IMAGES, help="Synthetic training radiographs.")
    ] = _DEFAULTS.n_train,
    n_test: Annotated[
        int, typer.Option(min=1, max=options.MAX_SYNTH_IMAGES, help="Synthetic test radiographs.")
    ] = _DEFAULTS.n_test,
    imgsz: Annotated[
        int,
        typer.Option(
            callback=options.model_imgsz, help="Image size for conversion, training and prediction (multiple of 32)."
        ),
    ] = _DEFAULTS.imgsz,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = _DEFAULTS.epochs,
    device: Annotated[
        Optional[str],
        typer.Option(
            callback=options.device,
            metavar=options.DEVICE_METAVAR,
            help="'cpu' or a GPU index. Default: GPU 0 if there is one, else CPU.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and of training.")] = _DEFAULTS.seed,
    preset: Annotated[
        str,
        typer.Option(
            callback=options.synth_preset,
            metavar=options.choices(options.PRESETS),
            help="Synthetic data: easy (clear opacities) or hard (faint opacities, look-alikes on negatives).",
        ),
    ] = _DEFAULTS.preset,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an earlier demo's --out (only a folder that demo wrote itself)."),
    ] = False,
) -> None:
    """Run synth → convert → train → predict → submission.csv → evaluate, and print the RSNA score.

    Trains yolo11n from scratch (no download), so it runs offline; a few minutes on a laptop CPU.
    """
    from converters.rsna import ConvertError

    from ..files import OutputError
    from ..owned import owned_folder
    from ..pipelines.demo import run_demo
    from ..runtime.devices import Devices
    from ..settings import SettingError
    from ..synth import SynthError
    from ..train.common import TrainConfigError
    from .flags import flag_message

    devices = Devices.parse(device)  # checked by the option's callback
    refuse_bad_outputs(
        {},
        folders={"--out": out},
        overwrite=overwrite,
        owner="demo",
        checks=[lambda: devices.names and devices.resolve()],
    )
    try:
        settings = DemoSettings(
            n_train=n_train,
            n_test=n_test,
            imgsz=imgsz,
            epochs=epochs,
            seed=seed,
            preset=preset,
            devices=devices,
        )
        with owned_folder(out, "demo"):
            run_demo(out, settings, log=typer.echo)
    except SettingError as error:
        raise fail(f"error: {flag_message(error)}", code=2) from None
    except (ConvertError, OutputError, SynthError, TrainConfigError) as error:
        raise fail(f"error: {error}", code=2) from None
