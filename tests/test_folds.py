"""k-fold cross-validation: convert --folds K, then train --folds K (one fold per device) and --fold I."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from converters.rsna import ConvertSettings, convert_rsna

from .conftest import FoldClassifiers, make_rsna_folder

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
TINY = ["--model", "yolo11n.yaml", "--imgsz", "64", "--epochs", "1", "--batch", "4", "--set", "plots=False"]
"""One epoch of a tiny model, without Ultralytics' plots (a third of a tiny run's CPU time; tests/test_train.py checks them)."""


@pytest.fixture(scope="module")
def fold_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folds")
    folder = make_rsna_folder(root / "rsna", n=11)
    convert_rsna(
        folder.images,
        folder.labels,
        root / "dataset",
        settings=ConvertSettings(imgsz=64, folds=2),
        workers=1,
        progress=False,
    )
    return root


def train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), "train", "--data", "dataset/data.yaml", *TINY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_fold_trains_on_its_own_device_and_records_what_it_trained_on(
    fold_classifiers: FoldClassifiers,
) -> None:
    """``train --folds 2 --device cpu,cpu``: the session's image classifiers (tests/conftest.py), a process per fold.

    The detector's own fold run is the next test's; tests/test_classifier.py checks the classifiers' figures.
    """
    result, root = fold_classifiers.result, fold_classifiers.root
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training folds 0, 1 on devices cpu, cpu" in result.stdout
    manifest = pd.read_csv(root / "dataset" / "manifest.csv")
    for fold in (0, 1):
        run_dir = root / "runs" / f"gate-fold{fold}"
        assert f"Best weights: {run_dir / 'weights' / 'best.pt'}" in result.stdout
        trained_on = set((run_dir / "trained_on.txt").read_text().split())
        assert trained_on == set(manifest.patientId[manifest.split != f"fold{fold}"])
        scored = json.loads((run_dir / "classifier_val.json").read_text())
        assert scored["n_images"] == (manifest.split == f"fold{fold}").sum()  # scored on its own val fold only


def test_one_fold_and_a_wrong_fold_count(fold_dataset: Path) -> None:
    wrong = train(fold_dataset, "--folds", "3", "--device", "cpu", "--name", "x")
    assert wrong.returncode == 2 and "was converted with --folds 2" in wrong.stderr
    one = train(fold_dataset, "--fold", "1", "--device", "cpu", "--name", "one")
    assert one.returncode == 0, one.stderr[-3000:]
    assert (fold_dataset / "runs" / "one-fold1" / "weights" / "best.pt").is_file()
    assert not (fold_dataset / "runs" / "one-fold0").exists()
