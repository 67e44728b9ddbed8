"""The archs of ``train --arch``: one training step each on tiny data, then predict → tune → evaluate, alone and ensembled."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from converters.rsna import ConvertSettings, convert_rsna
from pneumo_yolo.cli.flags import flag_message
from pneumo_yolo.data.dataset import ConvertedDataset
from pneumo_yolo.nets.archs import build_model
from pneumo_yolo.nets.checkpoints import load_initial_weights, read_checkpoint, save_checkpoint
from pneumo_yolo.nets.detector import DetectorError
from pneumo_yolo.nets.load import load_detector
from pneumo_yolo.nets.torch_net import TorchDetector
from pneumo_yolo.nets.unet import boxes_from_probability, build_unet
from pneumo_yolo.runtime.devices import CPU, Devices
from pneumo_yolo.settings import SettingError
from pneumo_yolo.train.common import TrainingDiverged, TrainSettings, arch_options
from pneumo_yolo.train.data import BoxDataset, box_masks, read_label_boxes

from .conftest import make_rsna_folder
from .test_train import make_tiny_dataset

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
IMGSZ = 64
RUNS = {
    "faster-rcnn": ["--arch", "faster-rcnn", "--model", "resnet18"],
    "mask-rcnn": ["--arch", "mask-rcnn", "--model", "resnet18"],
    "unet": ["--arch", "unet"],
    "yolov3": ["--model", "yolov3-tiny.yaml", "--set", "plots=False"],
}
"""Each arch as ``train`` is told it: the R-CNNs with the compact backbone (mask-rcnn's default, ResNet-50, is
resolved by TestWeights), the U-Net with its default; YOLOv3 is Ultralytics' own config, without its plots
(tests/test_train.py checks them)."""
BACKBONES = {"faster-rcnn": "resnet18", "mask-rcnn": "resnet18", "unet": "resnet18"}
CONSOLE = ("unet",)
"""The runs trained through the console script; the others train in this process, which has Lightning and torch
loaded already (one Lightning console run is enough to prove the command, and each would import them again; the
README's walkthrough in tests/test_commands.py trains YOLO through the console script)."""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def in_process(cwd: Path, *args: str) -> None:
    from pneumo_yolo.cli import app

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output[-3000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny converted dataset (4 training, 3 validation images) and one run per arch, each one step."""
    root = tmp_path_factory.mktemp("archs")
    folder = make_rsna_folder(root / "rsna", n=6, size=128)
    convert_rsna(
        folder.images,
        folder.labels,
        root / "dataset",
        settings=ConvertSettings(imgsz=IMGSZ, val_fraction=0.4),
        workers=1,
        progress=False,
    )
    for name, how in RUNS.items():
        args = ["train", "--data", "dataset/data.yaml", *how, "--imgsz", str(IMGSZ), "--epochs", "1", "--batch", "4"]
        (cli if name in CONSOLE else in_process)(root, *args, "--device", "cpu", "--name", name)
    return root


def weights_of(name: str) -> str:
    """The weights a run predicts with: YOLO's best epoch, the last epoch of the archs without per-epoch validation."""
    return f"runs/{name}/weights/{'best.pt' if name.startswith('yolo') else 'last.pt'}"


@pytest.mark.parametrize("name", list(RUNS))
def test_one_step_of_training_leaves_a_run_like_yolos(trained: Path, name: str) -> None:
    run = trained / "runs" / name
    assert (trained / weights_of(name)).is_file() and (run / "rsna_val.json").is_file()
    assert sorted((run / "trained_on.txt").read_text().split()) == sorted(
        p.stem for p in (trained / "dataset" / "images" / "train").glob("*.png")
    )
    summary = json.loads((run / "rsna_val.json").read_text())
    val_images = sorted((trained / "dataset" / "images" / "val").glob("*.png"))
    assert summary["split"] == "val" and summary["n_images"] == len(val_images) == 3
    # One validation image is positive, so both scores are defined; the default post-processing is a point of the tuning grid.
    assert 0.0 <= summary["default"]["score"] <= summary["tuned"]["score"] <= 1.0
    if name != "yolov3":
        checkpoint = read_checkpoint(run / "weights" / "last.pt")
        assert (checkpoint["arch"], checkpoint["backbone"]) == (name, BACKBONES[name])
        built = build_model(name, IMGSZ, BACKBONES[name]).state_dict()
        assert {key: value.shape for key, value in checkpoint["state_dict"].items()} == {
            key: value.shape for key, value in built.items()
        }
        assert (
            load_detector(run / "weights" / "last.pt", device=CPU).backbone == BACKBONES[name]
        )  # its weights load strictly into that network
        assert (run / "weights" / "last.ckpt").is_file() and not (run / "weights" / "best.pt").exists()
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        assert (
            [row["epoch"] for row in rows] == ["0"]
            and float(rows[0]["train/loss"]) > 0
            and float(rows[0]["train_minutes"]) > 0
        )


@pytest.mark.parametrize("name", list(RUNS))
def test_predictions_of_every_arch_pass_through_tune_and_evaluate(
    trained: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process (the console script is exercised by training and by the ensemble below)."""
    from pneumo_yolo.cli import app

    monkeypatch.chdir(trained)
    scoring = ["--labels", "rsna/stage_2_train_labels.csv", "--manifest", "dataset/manifest.csv", "--split", "val"]
    for args in (
        [
            "predict",
            "--weights",
            weights_of(name),
            "--source",
            "dataset/images/val",
            "--manifest",
            "dataset/manifest.csv",
            "--out",
            f"{name}.csv",
            "--save-raw",
            f"{name}.parquet",
            "--device",
            "cpu",
        ],
        ["tune", "--predictions", f"{name}.parquet", *scoring, "--out", f"{name}.yaml"],
        ["evaluate", "--predictions", f"{name}.csv", *scoring, "--json"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output[-3000:]
    assert 0.0 <= json.loads(result.stdout)["score"] <= 1.0


def test_models_of_different_archs_ensemble(trained: Path) -> None:
    from pneumo_yolo.eval.detections import read_raw

    weights = [arg for name in RUNS for arg in ("--weights", weights_of(name))]
    cli(
        trained,
        "predict",
        *weights,
        "--source",
        "dataset/images/val",
        "--manifest",
        "dataset/manifest.csv",
        "--out",
        "mixed.csv",
        "--save-raw",
        "mixed.parquet",
        "--device",
        "cpu",
        "--tta",
    )
    raw = read_raw(trained / "mixed.parquet")
    assert set(raw.models) == {len(RUNS)} and set(raw.passes) == {2}  # each arch's plain and flipped pass
    assert set(np.unique(raw.model)) <= set(range(len(RUNS))) and set(np.unique(raw.pass_index)) <= {0, 1}


class TestData:
    def test_labels_become_square_pixel_boxes_and_empty_images_have_none(self, tmp_path: Path) -> None:
        data = make_tiny_dataset(tmp_path, n_train=2, n_val=1, size=64)
        dataset = BoxDataset.of(ConvertedDataset.from_yaml(data), "train", 128, masks="ellipse")
        image, target = dataset[0]
        assert image.shape == (1, 128, 128) and 0 <= float(image.min()) and float(image.max()) <= 1
        assert target["boxes"].shape == (1, 4) and target["masks"].shape == (1, 128, 128)
        assert np.allclose(target["boxes"][0, 2] - target["boxes"][0, 0], 0.25 * 128, atol=0.1)
        _, empty = dataset[1]
        assert (
            empty["boxes"].shape == (0, 4) and empty["mask"].shape == (1, 128, 128) and float(empty["mask"].sum()) == 0
        )

    def test_a_fold_list_file_is_read_like_a_folder(self, tmp_path: Path) -> None:
        data = make_tiny_dataset(tmp_path, n_train=3, n_val=1, size=64)
        listing = tmp_path / "train.txt"
        listing.write_text("".join(f"{p}\n" for p in sorted((tmp_path / "images" / "train").glob("*.png"))[:2]))
        data.write_text(data.read_text().replace("train: images/train", f"train: {listing.name}"))
        assert len(BoxDataset.of(ConvertedDataset.from_yaml(data), "train", 64)) == 2

    def test_flipped_boxes_follow_the_flipped_image(self, tmp_path: Path) -> None:
        data = make_tiny_dataset(tmp_path, n_train=1, n_val=1, size=64)
        plain = read_label_boxes(BoxDataset.of(ConvertedDataset.from_yaml(data), "train", 64).images[0], 64)[0]
        dataset = BoxDataset.of(ConvertedDataset.from_yaml(data), "train", 64, flip=True, seed=1)
        seen = {tuple(round(float(v), 2) for v in dataset[0][1]["boxes"][0]) for _ in range(12)}
        flipped = [64 - plain[2], plain[1], 64 - plain[0], plain[3]]
        assert seen == {tuple(round(float(v), 2) for v in plain), tuple(round(float(v), 2) for v in flipped)}

    def test_masks_are_the_filled_box_or_its_inscribed_ellipse(self) -> None:
        box = np.array([[8.0, 16.0, 40.0, 48.0]])
        filled, ellipse = box_masks(box, 64, "box")[0], box_masks(box, 64, "ellipse")[0]
        assert filled.sum() == 32 * 32 and filled[16:48, 8:40].all()
        assert 0.7 < ellipse.sum() / filled.sum() < 0.85 and not ellipse[filled == 0].any()  # π/4 of the box, inside it


class TestBoxesFromProbability:
    def test_one_box_per_component_scored_by_its_mean_probability(self) -> None:
        probability = np.zeros((64, 64))
        probability[5:15, 5:25] = 0.6
        probability[30:50, 40:60] = 0.9
        probability[60:62, 0:2] = 1.0  # a speck
        boxes, scores = boxes_from_probability(probability)
        assert boxes.tolist() == [[40, 30, 60, 50], [5, 5, 25, 15]] and np.allclose(scores, [0.9, 0.6])

    def test_conf_and_count_limits(self) -> None:
        probability = np.zeros((64, 64))
        probability[5:15, 5:25] = 0.6
        probability[30:50, 40:60] = 0.9
        assert len(boxes_from_probability(probability, conf=0.7)[1]) == 1
        assert len(boxes_from_probability(probability, max_detections=1)[1]) == 1
        assert boxes_from_probability(np.zeros((64, 64)))[0].shape == (0, 4)


class TestWeights:
    def test_a_checkpoint_is_plain_tensors_and_predicts_in_image_pixels_with_flip_tta(self, tmp_path: Path) -> None:
        import torch

        best = save_checkpoint(tmp_path / "best.pt", "unet", 64, build_unet())
        torch.load(best, weights_only=True)  # no pickled code
        detector = load_detector(best, device=CPU, tta=True, conf=0.0)
        assert isinstance(detector, TorchDetector) and detector.imgsz == 64 and detector.passes == 2
        [(boxes, scores, pass_index)] = detector.detect([np.full((90, 120), 128, np.uint8)])
        assert boxes.shape == (len(scores), 4) and set(pass_index) <= {0, 1}
        assert (boxes[:, [0, 2]] <= 120 + 1e-6).all() and (boxes[:, [1, 3]] <= 90 + 1e-6).all()

    def test_boxes_come_back_in_the_image_pixels_with_and_without_flip(self, tmp_path: Path) -> None:
        """A stand-in U-Net whose map is the bright pixels: the box of a bright patch of a non-square image, both passes."""
        best = save_checkpoint(tmp_path / "best.pt", "unet", 64, build_unet())
        detector = load_detector(best, device=CPU, tta=True, conf=0.0)
        detector.model = lambda batch: (batch - 0.5) * 100
        image = np.zeros((90, 120), np.uint8)
        image[30:60, 12:42] = 255
        [(boxes, scores, pass_index)] = detector.detect([image])
        assert sorted(pass_index.tolist()) == [0, 1] and np.allclose(scores, 1.0)
        assert np.allclose(boxes, [[12, 30, 42, 60]] * 2, atol=2.5)

    def test_other_files_are_not_read_as_checkpoints(self, tmp_path: Path) -> None:
        import torch

        (tmp_path / "notes.pt").write_text("not a checkpoint")
        torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
        assert read_checkpoint(tmp_path / "notes.pt") is None and read_checkpoint(tmp_path / "plain.pt") is None

    def test_a_cut_checkpoint_gets_its_own_message(self, tmp_path: Path) -> None:
        from pneumo_yolo.train.lightning import resolve_model

        whole = save_checkpoint(tmp_path / "last.pt", "unet", 64, build_unet()).read_bytes()
        (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
        with pytest.raises(DetectorError, match="cut.pt: a pneumo-yolo-torch/1 checkpoint that cannot be read"):
            load_detector(tmp_path / "cut.pt", device=CPU)
        with pytest.raises(SettingError, match="cut.pt: a pneumo-yolo-torch/1 checkpoint that cannot be read"):
            resolve_model("unet", str(tmp_path / "cut.pt"), tmp_path, resume=False)

    def test_a_loss_that_is_not_a_number_stops_training_naming_the_epoch(self) -> None:
        import torch

        from pneumo_yolo.train.lightning import ArchModule

        module = ArchModule("unet", 64, 1e-3, 1e-4, "resnet18")

        class Trainer:
            default_root_dir = "runs/x"
            current_epoch = 0

        module._trainer = Trainer()  # what training_step reads of its trainer
        images = [torch.full((1, 64, 64), float("nan"))]
        targets = [
            {
                "boxes": torch.zeros((0, 4)),
                "labels": torch.zeros(0, dtype=torch.int64),
                "mask": torch.zeros((1, 64, 64)),
            }
        ]
        with pytest.raises(TrainingDiverged, match="epoch 1, step 3: the training loss is nan"):
            module.training_step((images, targets), 2)

    def test_rgb_weights_are_summed_into_the_single_channel(self, tmp_path: Path) -> None:
        import torch

        model = build_unet()
        key = "encoder.conv1.weight"
        rgb = torch.ones(model.state_dict()[key].shape[0], 3, 7, 7)
        torch.save({key: rgb, "unrelated": torch.zeros(1)}, tmp_path / "rgb.pth")
        assert load_initial_weights(model, "unet", tmp_path / "rgb.pth").startswith("1 of")
        assert torch.equal(model.state_dict()[key], torch.full_like(model.state_dict()[key], 3.0))

    def test_a_checkpoint_from_before_backbones_were_recorded_loads_with_the_default(self, tmp_path: Path) -> None:
        import torch

        best = save_checkpoint(tmp_path / "best.pt", "unet", 64, build_unet())
        payload = torch.load(best, weights_only=True)
        del payload["backbone"]
        torch.save(payload, best)
        assert (
            read_checkpoint(best)["backbone"] == "resnet18" and load_detector(best, device=CPU).backbone == "resnet18"
        )

    def test_model_names_a_backbone_or_a_weights_file(self, tmp_path: Path) -> None:
        import torch

        from pneumo_yolo.train.lightning import resolve_model

        assert resolve_model("faster-rcnn", "resnet34", tmp_path, resume=False) == ("resnet34", None)
        assert resolve_model("mask-rcnn", None, tmp_path, resume=False) == ("resnet50", None)
        assert resolve_model("unet", "efficientnet-b0", tmp_path, resume=False) == ("efficientnet-b0", None)
        best = save_checkpoint(
            tmp_path / "best.pt", "faster-rcnn", 64, build_model("faster-rcnn", 64, "resnet18"), "resnet18"
        )
        assert resolve_model("faster-rcnn", str(best), tmp_path, resume=False) == (
            "resnet18",
            best,
        )  # a checkpoint starts its own backbone
        torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "coco.pth")
        assert resolve_model("faster-rcnn", str(tmp_path / "coco.pth"), tmp_path, resume=False) == (
            "resnet50",
            tmp_path / "coco.pth",
        )
        with pytest.raises(SettingError) as error:
            resolve_model("faster-rcnn", "resnet101", tmp_path, resume=False)
        assert flag_message(error.value).startswith(
            "--model resnet101: neither a backbone of faster-rcnn (resnet18, resnet34, resnet50) nor a weights file"
        )

    def test_missing_or_unfitting_weights_are_named(self, tmp_path: Path) -> None:
        import torch

        with pytest.raises(FileNotFoundError, match="missing.pth: weights file not found"):
            load_initial_weights(build_unet(), "unet", tmp_path / "missing.pth")
        torch.save({"other": torch.zeros(3)}, tmp_path / "other.pth")
        with pytest.raises(ValueError, match="none of its tensors fits unet-resnet18"):
            load_initial_weights(build_unet(), "unet", tmp_path / "other.pth")


class TestOptions:
    def test_devices(self) -> None:
        assert Devices.parse("cpu").lightning() == {
            "accelerator": "cpu",
            "devices": 1,
            "strategy": "auto",
            "precision": "32-true",
        }
        assert Devices.parse("1").lightning() == {
            "accelerator": "gpu",
            "devices": [1],
            "strategy": "auto",
            "precision": "16-mixed",
        }

    def test_set_keys_are_checked(self) -> None:
        assert arch_options({"lr0": "0.01", "seed": 3}) == {"lr0": 0.01, "seed": 3}
        with pytest.raises(SettingError, match="mosaic: not an option of this arch"):
            arch_options({"mosaic": 1.0})
        assert TrainSettings(arch="unet", overrides={"seed": "3"}).overrides == {"seed": 3}
        with pytest.raises(SettingError, match="unet needs a multiple of 32"):
            TrainSettings(arch="unet", imgsz=48)
        with pytest.raises(SettingError, match="needs a fixed batch size"):
            TrainSettings(arch="mask-rcnn", batch=-1)
