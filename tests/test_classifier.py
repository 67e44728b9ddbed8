"""The image-level opacity classifier: its symlinked view of the dataset, training through the console script, P(opacity), ROC AUC."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from converters.rsna import ConvertSettings, convert_rsna
from pneumo_yolo.data.classify_view import CLASS_NAMES, ClassifyViewError, build_classify_view, classify_view_dir
from pneumo_yolo.data.dataset import ConvertedDataset, label_path_of
from pneumo_yolo.nets.classifier import ClassifierError, ImageClassifier
from pneumo_yolo.predict.decoding import load_image
from pneumo_yolo.runtime import offline
from pneumo_yolo.runtime.devices import CPU
from pneumo_yolo.train.classifier import CLASSIFIER_DEFAULTS, roc_auc
from pneumo_yolo.train.common import TrainSettings
from pneumo_yolo.train.yolo import training_arguments

from .conftest import FoldClassifiers, make_rsna_folder


def convert(root: Path) -> Path:
    """A tiny converted dataset (12 patients, half with boxes, at 64 px); returns its folder."""
    folder = make_rsna_folder(root / "rsna", n=11)
    settings = ConvertSettings(imgsz=64, val_fraction=0.3)
    convert_rsna(folder.images, folder.labels, root / "dataset", settings=settings, workers=1, progress=False)
    return root / "dataset"


def expected_view(data_yaml: Path, split: str) -> dict[Path, Path]:
    """``<class>/<name>`` → PNG, each PNG's class read from its label file here, not by the code under test."""
    return {
        Path("opacity" if label_path_of(image).read_text().strip() else "no_opacity", image.name): image
        for image in ConvertedDataset.from_yaml(data_yaml).listed(split)
    }


def view_entries(folder: Path) -> dict[Path, Path]:
    return {path.relative_to(folder): path for path in folder.rglob("*") if not path.is_dir()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def folds(fold_classifiers: FoldClassifiers) -> Path:
    """The 2-fold dataset the classifiers of :func:`trained` trained on (tests/conftest.py)."""
    return fold_classifiers.root / "dataset"


class TestClassifyView:
    @pytest.mark.parametrize("which", ["plain/data.yaml", "folds/data_fold1.yaml"])
    def test_links_every_listed_image_into_the_class_of_its_label(self, request, which):
        dataset, yaml_name = which.split("/")
        data_yaml = request.getfixturevalue(dataset) / yaml_name
        view = build_classify_view(ConvertedDataset.from_yaml(data_yaml))
        assert (
            view
            == data_yaml.parent / "classify" / data_yaml.stem
            == classify_view_dir(ConvertedDataset.from_yaml(data_yaml))
        )
        for split in ("train", "val"):
            wanted = expected_view(data_yaml, split)
            assert {name.parent.name for name in wanted} == set(CLASS_NAMES)  # both classes, so the labels are tested
            found = view_entries(view / split)
            assert set(found) == set(wanted)
            for name, link in found.items():
                assert link.is_symlink() and link.samefile(wanted[name])  # a link to the PNG, never a copy
            assert sorted(p.name for p in (view / split).iterdir()) == list(CLASS_NAMES)

    def test_rebuild_is_idempotent_and_follows_the_labels(self, tmp_path):
        data_yaml = convert(tmp_path) / "data.yaml"
        view = build_classify_view(ConvertedDataset.from_yaml(data_yaml))
        before = {path: (path.lstat().st_ino, path.readlink()) for path in view.rglob("*.png")}
        assert build_classify_view(ConvertedDataset.from_yaml(data_yaml)) == view
        assert {path: (path.lstat().st_ino, path.readlink()) for path in view.rglob("*.png")} == before

        negative = next(
            image for name, image in expected_view(data_yaml, "train").items() if name.parent.name == "no_opacity"
        )
        label_path_of(negative).write_text("0 0.5 0.5 0.2 0.2\n")
        ghost = view / "val" / "opacity" / "ghost.png"
        ghost.symlink_to(negative)
        ghost.with_suffix(".npy").write_bytes(b"stale cache")
        build_classify_view(ConvertedDataset.from_yaml(data_yaml))
        assert not ghost.is_symlink() and not ghost.with_suffix(".npy").exists()
        assert not (view / "train" / "no_opacity" / negative.name).is_symlink()
        assert (view / "train" / "opacity" / negative.name).samefile(negative)
        for split in ("train", "val"):
            assert set(view_entries(view / split)) == set(expected_view(data_yaml, split))

    def test_refuses_and_keeps_files_that_are_not_its_own(self, tmp_path):
        data_yaml = convert(tmp_path) / "data.yaml"
        view = build_classify_view(ConvertedDataset.from_yaml(data_yaml))
        foreign = view / "train" / "opacity" / "mine.png"
        foreign.write_bytes(b"not a link")
        with pytest.raises(ClassifyViewError, match="mine.png"):
            build_classify_view(ConvertedDataset.from_yaml(data_yaml))
        assert foreign.read_bytes() == b"not a link"


def test_classifier_defaults_sit_under_the_command_line(tmp_path):
    offline.import_ultralytics()
    settings = TrainSettings(epochs=1, batch=4, devices=CPU, project=tmp_path, name="gate")
    erasing = TrainSettings(epochs=1, batch=4, devices=CPU, project=tmp_path, name="gate", overrides={"erasing": 0.2})
    args = training_arguments(erasing, data=tmp_path, imgsz=64, task_defaults=CLASSIFIER_DEFAULTS)
    assert args["auto_augment"] is None and args["erasing"] == 0.2 and args["flipud"] == 0.0
    assert not {"auto_augment", "erasing"} & set(
        training_arguments(settings, data=tmp_path, imgsz=64)
    )  # detectors: untouched


@pytest.fixture(scope="module")
def trained(fold_classifiers: FoldClassifiers) -> tuple[Path, subprocess.CompletedProcess]:
    """A classifier per fold, trained through the console script as a user would (1 epoch, 64 px, one fold per
    process on the CPU): the session's run that tests/test_folds.py checks too (tests/conftest.py)."""
    return fold_classifiers.root, fold_classifiers.result


class TestTraining:
    def test_a_classifier_per_fold_with_its_figures_on_its_own_val_fold(self, trained):
        root, result = trained
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = pd.read_csv(root / "dataset" / "manifest.csv")
        last_lines = result.stdout.strip().splitlines()[-2:]
        for fold, line in enumerate(last_lines):
            run_dir = root / "runs" / f"gate-fold{fold}"
            assert line.startswith(f"Best weights: {run_dir / 'weights' / 'best.pt'} | val top-1 accuracy 0.")
            assert "ROC AUC of P(opacity) " in line and line.endswith(str(run_dir / "classifier_val.json"))
            figures = json.loads((run_dir / "classifier_val.json").read_text())
            val = manifest[manifest.split == f"fold{fold}"]
            assert figures["n_images"] == len(val) and figures["n_opacity"] == (val.n_boxes > 0).sum()
            assert figures["classes"] == ["no_opacity", "opacity"]
            assert 0.0 <= figures["top1_accuracy"] <= 1.0 and (
                figures["roc_auc"] is None or 0.0 <= figures["roc_auc"] <= 1.0
            )
            assert f"{figures['top1_accuracy']:.3f}" in line
            assert set((run_dir / "trained_on.txt").read_text().split()) == set(
                manifest.patientId[manifest.split != f"fold{fold}"]
            )
            assert not (run_dir / "rsna_val.json").exists()  # the detector's scoring is not run for a classifier
            args = yaml.safe_load((run_dir / "args.yaml").read_text())
            assert args["task"] == "classify" and args["data"] == str(
                root / "dataset" / "classify" / f"data_fold{fold}"
            )
            assert args["auto_augment"] is None and args["erasing"] == 0.0

    def test_trains_on_links_not_copies(self, trained):
        root, result = trained
        assert result.returncode == 0, result.stderr[-3000:]
        pngs = [path for path in (root / "dataset").rglob("*.png") if not path.is_symlink()]
        assert pngs and all(path.parent.parent.name == "images" for path in pngs)
        assert any((root / "dataset" / "classify" / "data_fold1").rglob("*.png"))


@pytest.fixture(scope="module")
def best(trained: tuple[Path, subprocess.CompletedProcess]) -> Path:
    root, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "runs" / "gate-fold0" / "weights" / "best.pt"


class TestImageClassifier:
    def test_p_opacity_per_image_in_batches(self, best, folds):
        images = [
            load_image(path, 64).pixels for path in ConvertedDataset.from_yaml(folds / "data_fold0.yaml").listed("val")
        ]
        assert len(images) >= 3
        gate = ImageClassifier(best, device=CPU, batch=2)
        assert gate.opacity == 1 and gate.imgsz == 64
        p = gate.probabilities(images)
        assert p.shape == (len(images),) and p.dtype == np.float64
        assert ((p >= 0.0) & (p <= 1.0)).all()
        np.testing.assert_allclose(ImageClassifier(best, device=CPU, batch=64).probabilities(images), p, atol=1e-6)
        np.testing.assert_allclose(gate.probabilities(images[::-1]), p[::-1], atol=1e-6)  # in order
        assert gate.probabilities([]).shape == (0,)

    def test_is_the_softmax_of_the_opacity_class(self, best, folds):
        """Computed here without Ultralytics' predictor: 64 px images at 64 px need no resizing, only gray → 3 channels."""
        import torch

        images = [
            load_image(path, None).pixels
            for path in ConvertedDataset.from_yaml(folds / "data_fold0.yaml").listed("val")
        ]
        gate = ImageClassifier(best, device=CPU)
        network = gate.model.model.float().eval()
        batch = torch.from_numpy(np.stack(images)).float().div(255)[:, None].expand(-1, 3, -1, -1)
        with torch.inference_mode():
            output = network(batch)
        probabilities = (output[0] if isinstance(output, tuple) else output).numpy()
        assert list(network.names.values()) == ["no_opacity", "opacity"]
        np.testing.assert_allclose(gate.probabilities(images), probabilities[:, 1], atol=1e-5)

    def test_agrees_with_ultralytics_top1(self, best, folds):
        """P(opacity) > 0.5 is the class Ultralytics' validation counts, so both accuracies must match."""
        images = ConvertedDataset.from_yaml(folds / "data_fold0.yaml").listed("val")
        p = ImageClassifier(best, device=CPU).probabilities([load_image(path, None).pixels for path in images])
        truth = np.array([bool(label_path_of(path).read_text().strip()) for path in images])
        figures = json.loads((best.parents[1] / "classifier_val.json").read_text())
        assert np.mean((p > 0.5) == truth) == pytest.approx(figures["top1_accuracy"])
        assert roc_auc(truth, p) == pytest.approx(figures["roc_auc"])

    def test_never_reads_our_command_line(self, best, monkeypatch):
        offline.import_ultralytics()
        for name, module in list(sys.modules.items()):
            if name.startswith("ultralytics") and hasattr(module, "ARGV"):
                monkeypatch.setattr(
                    module, "ARGV", ["/venv/bin/yolo", "predict"]
                )  # Ultralytics' own CLI, as it would see it
        p = ImageClassifier(best, device=CPU).probabilities([np.zeros((64, 64), np.uint8)])
        assert isinstance(p, np.ndarray) and p.shape == (1,)

    def test_refuses_what_is_not_a_classifier(self, tmp_path):
        with pytest.raises(ClassifierError, match="no such weights file"):
            ImageClassifier(tmp_path / "missing.pt")
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        with pytest.raises(ClassifierError, match="cannot be loaded"):
            ImageClassifier(tmp_path / "junk.pt")


class TestRocAuc:
    def test_matches_counting_every_pair(self):
        rng = np.random.default_rng(1)
        labels = rng.random(60) < 0.3
        scores = rng.integers(0, 8, 60) / 8  # many ties
        pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in product(scores[labels], scores[~labels])]
        assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))

    def test_perfect_reversed_and_undefined(self):
        assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
        assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
        assert roc_auc([0, 0, 0], [0.1, 0.2, 0.3]) is None
        with pytest.raises(ValueError, match="same length"):
            roc_auc([0, 1], [0.5])
