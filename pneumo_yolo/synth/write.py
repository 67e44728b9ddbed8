"""Writing of a synthetic data set in the real RSNA layout: DICOMs and label CSVs.

:func:`make_rsna_like` samples and renders every case and writes::

    out/
    ├── stage_2_train_images/<patientId>.dcm
    ├── stage_2_train_labels.csv
    ├── stage_2_detailed_class_info.csv
    ├── stage_2_test_images/<patientId>.dcm      (only with n_test > 0)
    ├── stage_2_sample_submission.csv            (only with n_test > 0)
    └── stage_2_test_labels.csv                  (only with n_test > 0; RSNA has none)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.labels import CLASS_COLUMNS, LABEL_COLUMNS, label_rows
from ..dicom.write import DicomFormat, write_dicom
from ..files import Interrupted, atomic_write_text
from .render import render_chest
from .sample import MAX_IMAGES, MIN_SIZE, REAL_SIDE, ChestSpec, SynthError, patient_ids, preset_params, sample_chest

if TYPE_CHECKING:
    from tqdm import tqdm

TRAIN_IMAGES = "stage_2_train_images"
TEST_IMAGES = "stage_2_test_images"
TRAIN_LABELS = "stage_2_train_labels.csv"
CLASS_INFO = "stage_2_detailed_class_info.csv"
SAMPLE_SUBMISSION = "stage_2_sample_submission.csv"
TEST_LABELS = "stage_2_test_labels.csv"
_LABEL_HEADER = ",".join(LABEL_COLUMNS)
_CLASS_HEADER = ",".join(CLASS_COLUMNS)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`make_rsna_like` wrote."""

    out: Path
    train_images: int
    train_positive: int
    train_boxes: int
    test_images: int = 0
    test_positive: int = 0


def _csv(header: str, rows: list[str]) -> str:
    r"""CSV text with ``\n`` line ends, as the RSNA files have."""
    return "\n".join([header, *rows]) + "\n"


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse to mix a new set with an earlier one unless ``overwrite``."""
    earlier = [
        out / name for name in (TRAIN_LABELS, CLASS_INFO, SAMPLE_SUBMISSION, TEST_LABELS) if (out / name).exists()
    ]
    earlier += [folder for folder in (out / TRAIN_IMAGES, out / TEST_IMAGES) if any(folder.glob("*.dcm"))]
    if earlier and not overwrite:
        raise SynthError(
            f"{out} already holds a data set ({earlier[0].name}); "
            "choose an empty folder, or replace it with overwrite=True"
        )


def _remove_stale(out: Path, keep: set[str], n_test: int) -> None:
    """After an overwrite, delete the earlier set's images and test CSVs that the new set lacks."""
    for folder in (out / TRAIN_IMAGES, out / TEST_IMAGES):
        for path in folder.glob("*.dcm"):
            if path.stem not in keep:
                path.unlink()
    if n_test == 0:
        for name in (SAMPLE_SUBMISSION, TEST_LABELS):
            (out / name).unlink(missing_ok=True)


def _write_split(
    out: Path, folder: str, split: int, ids: list[str], seed: int, size: int, preset: str, bar: tqdm
) -> list[ChestSpec]:
    """Sample, render and write the DICOMs of one split; image ``i`` has its own RNG stream."""
    specs = []
    for index, patient_id in enumerate(ids):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split, index)))
        spec = sample_chest(rng, size, preset=preset)
        write_dicom(
            out / folder / f"{patient_id}.dcm",
            render_chest(spec),
            patient_id=patient_id,
            stored=DicomFormat(view_position=spec.view_position, sex=spec.sex, age=str(spec.age)),
        )
        specs.append(spec)
        bar.update()
    return specs


def make_rsna_like(
    out: Path,
    n: int,
    seed: int = 0,
    n_test: int = 0,
    size: int = REAL_SIDE,
    *,
    preset: str = "easy",
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic data set in the real RSNA layout and formats (see the module docstring).

    Every file depends only on ``seed``, ``n``, ``n_test``, ``size`` and ``preset``: the same
    arguments give the same bytes. Train and test patientIds never collide. Boxes are in
    pixels of the ``size × size`` images. Both presets give the same patients, classes and
    boxes for one seed; only the pictures differ.

    Args:
        out: output folder (created).
        n: training images.
        seed: seed of everything (≥ 0).
        n_test: test images; with ``n_test > 0`` the test folder, a sample submission and
            ``stage_2_test_labels.csv`` (the synthetic ground truth) are written too.
        size: image side in pixels (≥ 64).
        preset: ``easy`` (clear opacities) or ``hard`` (faint opacities, and opacity
            look-alikes without a box on half of the "Not Normal" images); see :data:`.sample.PRESETS`.
        overwrite: replace an earlier data set in ``out`` (its other images are deleted).
        progress: show a progress bar.

    Raises:
        SynthError: ``n < 1``, ``n_test < 0``, more than :data:`.sample.MAX_IMAGES` images, ``seed < 0``, ``size < 64`` or an unknown
            ``preset``, or ``out`` already holds a data set and ``overwrite`` is false.

    Example:
        >>> make_rsna_like(Path("demo_data"), n=300, n_test=60).train_positive  # doctest: +SKIP
        67
    """
    from tqdm import tqdm

    if n < 1 or n_test < 0 or seed < 0:
        raise SynthError(f"need n >= 1, n_test >= 0 and seed >= 0 (got n={n}, n_test={n_test}, seed={seed})")
    if n + n_test > MAX_IMAGES:
        raise SynthError(f"{n + n_test} images asked for; at most {MAX_IMAGES:,} in one data set")
    if size < MIN_SIZE:
        raise SynthError(f"image size must be at least {MIN_SIZE} pixels, not {size}")
    preset_params(preset)  # an unknown preset fails before anything is written
    out = Path(out)
    _check_output(out, overwrite)
    ids = patient_ids(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))), n + n_test)
    train_ids, test_ids = ids[:n], ids[n:]
    with tqdm(total=n + n_test, desc=f"synth {out}", unit="img", disable=not progress) as bar:
        try:
            train = _write_split(out, TRAIN_IMAGES, 1, train_ids, seed, size, preset, bar)
            test = _write_split(out, TEST_IMAGES, 2, test_ids, seed, size, preset, bar)
        except KeyboardInterrupt as stopped:
            raise Interrupted(
                f"{bar.n} of {n + n_test} images written to {out}, and no label CSV; "
                "rerun the same command with --overwrite to write them all",
                resumes=False,
            ) from stopped
    if overwrite:
        _remove_stale(out, set(ids), n_test)

    train_rows = [label_rows(pid, spec.boxes, decimals=1) for pid, spec in zip(train_ids, train)]
    texts = {
        TRAIN_LABELS: _csv(_LABEL_HEADER, [row for rows in train_rows for row in rows]),
        CLASS_INFO: _csv(
            _CLASS_HEADER,
            [f"{pid},{spec.class_name}" for pid, spec, rows in zip(train_ids, train, train_rows) for _ in rows],
        ),
    }
    if n_test:
        test_rows = [row for pid, spec in zip(test_ids, test) for row in label_rows(pid, spec.boxes, decimals=1)]
        texts[TEST_LABELS] = _csv(_LABEL_HEADER, test_rows)
        texts[SAMPLE_SUBMISSION] = _csv("patientId,PredictionString", [f"{pid},0.5 0 0 100 100" for pid in test_ids])
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return SynthSummary(
        out=out,
        train_images=n,
        train_positive=sum(bool(spec.opacities) for spec in train),
        train_boxes=sum(len(spec.opacities) for spec in train),
        test_images=n_test,
        test_positive=sum(bool(spec.opacities) for spec in test),
    )
