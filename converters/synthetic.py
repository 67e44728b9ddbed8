"""A synthetic RSNA folder and its converted dataset in one call: the start of the ablation and of the comparison."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pneumo_yolo.synth import make_rsna_like

from .rsna import ConvertSettings, convert_rsna


def synthetic_dataset(
    out: Path,
    *,
    n_train: int,
    n_test: int,
    dicom_size: int,
    preset: str,
    settings: ConvertSettings,
    steps: int,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Synthesise training and test radiographs into ``out/rsna`` and convert the training ones into ``out/dataset``.

    Both are replaced on a rerun; ``settings.seed`` seeds the synthesis too. Logs its two steps
    as ``[1/steps]`` and ``[2/steps]``. Returns ``(rsna, dataset)``.
    """
    rsna, dataset = out / "rsna", out / "dataset"
    log(f"[1/{steps}] synthesising {n_train} training and {n_test} test radiographs ({preset} preset)")
    make_rsna_like(rsna, n_train, seed=settings.seed, n_test=n_test, size=dicom_size, preset=preset, overwrite=True)
    split = f"into {settings.folds} folds" if settings.folds else f"{settings.val_fraction:.0%} for validation"
    log(f"[2/{steps}] converting at {settings.imgsz} px, {split}")
    convert_rsna(
        rsna / "stage_2_train_images",
        rsna / "stage_2_train_labels.csv",
        dataset,
        class_info=rsna / "stage_2_detailed_class_info.csv",
        settings=settings,
        overwrite=True,
    )
    return rsna, dataset
