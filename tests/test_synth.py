"""Synthetic RSNA-like data: DICOM format, label CSVs, opacity placement, determinism, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from typer.testing import CliRunner

from pneumo_yolo.cli import app
from pneumo_yolo.data.labels import read_class_info, read_labels
from pneumo_yolo.dicom.write import DicomFormat, write_dicom
from pneumo_yolo.synth import (
    CLASSES,
    NORMAL,
    NOT_NORMAL,
    OPACITY,
    PRESETS,
    SynthError,
    label_rows,
    make_rsna_like,
    render_chest,
    sample_chest,
)

SMOOTH = np.add.outer(np.arange(96), np.arange(128)).astype(np.uint8)  # 96 rows x 128 columns


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "rsna"
    make_rsna_like(out, n=24, seed=5, n_test=6, size=256, progress=False)
    return out


class TestRsnaDicom:
    def test_real_format_attributes(self, synth_set: Path):
        paths = sorted((synth_set / "stage_2_train_images").glob("*.dcm"))
        assert len(paths) == 24
        views = set()
        for path in paths:
            ds = pydicom.dcmread(path)
            assert ds.preamble == b"\0" * 128
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
            assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.file_meta.ImplementationClassUID
            assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
            assert (ds.Modality, ds.BodyPartExamined, ds.ConversionType) == ("CR", "CHEST", "WSD")
            for tag in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTSequence"):
                assert tag not in ds
            assert ds.PatientID == str(ds.PatientName) == path.stem
            assert ds.ViewPosition in ("PA", "AP") and ds.SeriesDescription == f"view: {ds.ViewPosition}"
            assert ds.PatientAge.isdigit() and 1 <= int(ds.PatientAge) <= 155
            assert ds.PatientSex in ("M", "F")
            assert all(0.115 <= float(s) <= 0.199 for s in ds.PixelSpacing)
            assert len({ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}) == 3
            frames = list(generate_frames(ds.PixelData, number_of_frames=1))
            assert len(frames) == 1 and b"\xff\xc0" in frames[0] and b"\xff\xc2" not in frames[0]  # baseline SOF0
            pixels = ds.pixel_array
            assert pixels.shape == (256, 256) and pixels.dtype == np.uint8
            views.add(ds.ViewPosition)
        assert views == {"PA", "AP"}

    def test_default_size_is_1024(self, tmp_path: Path):
        make_rsna_like(tmp_path, n=1, progress=False)
        (path,) = (tmp_path / "stage_2_train_images").glob("*.dcm")
        assert pydicom.dcmread(path).pixel_array.shape == (1024, 1024)


class TestLabels:
    def test_csvs_parse_and_agree(self, synth_set: Path):
        labels = read_labels(synth_set / "stage_2_train_labels.csv")
        classes = read_class_info(synth_set / "stage_2_detailed_class_info.csv")
        assert not labels.problems and not labels.dropped
        images = {p.stem for p in (synth_set / "stage_2_train_images").glob("*.dcm")}
        assert set(labels.boxes) == set(classes) == images
        for pid, boxes in labels.boxes.items():
            assert (len(boxes) > 0) == (classes[pid] == OPACITY)
        label_lines = (synth_set / "stage_2_train_labels.csv").read_text().splitlines()
        class_lines = (synth_set / "stage_2_detailed_class_info.csv").read_text().splitlines()
        assert label_lines[0] == "patientId,x,y,width,height,Target" and class_lines[0] == "patientId,class"
        assert [line.split(",")[0] for line in label_lines[1:]] == [line.split(",")[0] for line in class_lines[1:]]

    def test_test_split_files(self, synth_set: Path):
        test_ids = {p.stem for p in (synth_set / "stage_2_test_images").glob("*.dcm")}
        train_ids = {p.stem for p in (synth_set / "stage_2_train_images").glob("*.dcm")}
        assert len(test_ids) == 6 and not test_ids & train_ids
        submission = (synth_set / "stage_2_sample_submission.csv").read_text().splitlines()
        assert submission[0] == "patientId,PredictionString"
        assert {line.split(",")[0] for line in submission[1:]} == test_ids
        assert all(line.split(",")[1] == "0.5 0 0 100 100" for line in submission[1:])
        assert set(read_labels(synth_set / "stage_2_test_labels.csv").boxes) == test_ids

    def test_row_format_is_real(self):
        assert label_rows("a", np.array([[264, 152, 213, 379], [562, 152, 256, 453]])) == [
            "a,264.0,152.0,213.0,379.0,1",
            "a,562.0,152.0,256.0,453.0,1",
        ]
        assert label_rows("b", np.zeros((0, 4))) == ["b,,,,,0"]

    @pytest.mark.parametrize("preset", PRESETS)
    def test_statistics_on_400(self, tmp_path: Path, preset: str):
        make_rsna_like(tmp_path, n=400, seed=1, size=64, preset=preset, progress=False)
        labels = read_labels(tmp_path / "stage_2_train_labels.csv")
        classes = Counter(read_class_info(tmp_path / "stage_2_detailed_class_info.csv").values())
        positive = [b for b in labels.boxes.values() if len(b)]
        assert abs(len(positive) / 400 - 0.225) < 0.05
        negatives = classes[NORMAL] + classes[NOT_NORMAL]
        assert 0.45 < classes[NOT_NORMAL] / negatives < 0.69
        per_image = Counter(len(b) for b in positive)
        assert (
            set(per_image) <= {1, 2, 3, 4}
            and per_image[1] > 0.25 * len(positive)
            and per_image[2] > 0.4 * len(positive)
        )
        boxes = np.concatenate(positive)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= 64).all() and (boxes[:, 1] + boxes[:, 3] <= 64).all()
        assert (boxes == boxes.round()).all()

    @pytest.mark.parametrize("preset", PRESETS)
    def test_class_shares_follow_rsna(self, preset: str):
        rng = np.random.default_rng(8)
        specs = [sample_chest(rng, 64, preset=preset) for _ in range(800)]
        counts = Counter(s.class_name for s in specs)
        assert set(counts) == set(CLASSES) == {"Lung Opacity", "No Lung Opacity / Not Normal", "Normal"}
        assert abs(counts[OPACITY] / 800 - 0.225) < 0.045
        assert abs(counts[NOT_NORMAL] / 800 - 0.775 * 0.57) < 0.05
        assert abs(counts[NORMAL] / 800 - 0.775 * 0.43) < 0.05
        assert all(bool(s.opacities) == (s.class_name == OPACITY) for s in specs)

    def test_box_sizes_like_real(self):
        rng = np.random.default_rng(2)
        specs = [sample_chest(rng, 1024, OPACITY) for _ in range(600)]
        boxes = np.concatenate([s.boxes for s in specs])
        assert 190 < np.median(boxes[:, 2]) < 245 and 250 < np.median(boxes[:, 3]) < 340
        assert boxes[:, 2].min() >= 40 and boxes[:, 2].max() <= 528
        assert boxes[:, 3].min() >= 45 and boxes[:, 3].max() <= 942
        pairs = [s.boxes for s in specs if len(s.boxes) == 2]
        one_per_lung = [((b[:, 0] + b[:, 2] / 2) < 512).sum() == 1 for b in pairs]
        assert np.mean(one_per_lung) > 0.9

    def test_boxes_scale_with_size(self):
        small = sample_chest(np.random.default_rng(3), 512, OPACITY).boxes
        large = sample_chest(np.random.default_rng(3), 1024, OPACITY).boxes
        assert np.allclose(small * 2, large, atol=2)


class TestRender:
    @pytest.mark.parametrize("size", [1024, 320, 256, 64])
    def test_opacity_is_inside_its_box_and_brighter(self, size: int):
        for seed in range(4):
            spec = sample_chest(np.random.default_rng(seed), size, OPACITY)
            with_opacity = render_chest(spec).astype(int)
            without = render_chest(dataclasses.replace(spec, opacities=())).astype(int)
            inside = np.zeros((size, size), dtype=bool)
            for x, y, w, h in spec.boxes.astype(int):
                inside[y : y + h, x : x + w] = True
                gain = with_opacity[y : y + h, x : x + w].mean() - without[y : y + h, x : x + w].mean()
                assert gain > 5, f"opacity in box {(x, y, w, h)} is only {gain:.1f} grey levels brighter"
            assert (with_opacity[~inside] == without[~inside]).all()

    @pytest.mark.parametrize("class_name", [NORMAL, NOT_NORMAL])
    def test_negatives_have_no_opacity(self, class_name: str):
        rng = np.random.default_rng(4)
        specs = [sample_chest(rng, 256, class_name) for _ in range(30)]
        assert all(s.opacities == () and s.boxes.shape == (0, 4) and s.class_name == class_name for s in specs)
        assert all(bool(s.findings) == (class_name == NOT_NORMAL) for s in specs)

    def test_render_is_pure_and_varies(self):
        spec = sample_chest(np.random.default_rng(0), 256)
        image = render_chest(spec)
        assert image.shape == (256, 256) and image.dtype == np.uint8
        assert (render_chest(spec) == image).all()
        other = render_chest(sample_chest(np.random.default_rng(1), 256))
        assert np.abs(other.astype(int) - image).mean() > 3
        assert 20 < image.mean() < 230 and image.std() > 20

    def test_lungs_darker_than_mediastinum(self):
        image = render_chest(sample_chest(np.random.default_rng(6), 256, NORMAL)).astype(float)
        lungs = (image[100:140, 50:80].mean() + image[100:140, 176:206].mean()) / 2
        assert lungs + 40 < image[100:140, 120:136].mean()

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="class_name"):
            sample_chest(np.random.default_rng(0), 256, "Pneumonia")
        with pytest.raises(ValueError, match="at least 64"):
            sample_chest(np.random.default_rng(0), 32)


def box_contrast(image: np.ndarray, box: np.ndarray) -> float:
    """Mean grey level inside ``box`` minus the mean of a ring around it, half the box wide."""
    x, y, w, h = box.astype(int)
    x0, y0 = max(x - w // 2, 0), max(y - h // 2, 0)
    around = image[y0 : y + h + h // 2, x0 : x + w + w // 2].astype(float)
    inside = image[y : y + h, x : x + w].astype(float)
    return inside.mean() - (around.sum() - inside.sum()) / (around.size - inside.size)


class TestPresets:
    def test_same_patients_and_boxes_other_pictures(self):
        changed = 0
        for seed in range(40):
            easy, hard = (sample_chest(np.random.default_rng(seed), 128, preset=name) for name in ("easy", "hard"))
            assert (easy.class_name, easy.view_position, easy.texture_seed) == (
                hard.class_name,
                hard.view_position,
                hard.texture_seed,
            )
            assert (easy.boxes == hard.boxes).all() and easy.findings == hard.findings
            differs = bool((render_chest(easy) != render_chest(hard)).any())
            assert differs == bool(hard.opacities or hard.mimics)
            changed += differs
        assert changed >= 10

    def test_hard_opacities_are_fainter_but_visible(self):
        easy_contrast, hard_contrast, hard_gain = [], [], []
        for seed in range(12):
            easy, hard = (
                sample_chest(np.random.default_rng(seed), 512, OPACITY, preset=name) for name in ("easy", "hard")
            )
            easy_image, hard_image = render_chest(easy), render_chest(hard)
            without = render_chest(dataclasses.replace(hard, opacities=())).astype(float)
            for box in hard.boxes:
                easy_contrast.append(box_contrast(easy_image, box))
                hard_contrast.append(box_contrast(hard_image, box))
                x, y, w, h = box.astype(int)
                hard_gain.append(hard_image[y : y + h, x : x + w].mean() - without[y : y + h, x : x + w].mean())
        assert np.mean(easy_contrast) - np.mean(hard_contrast) > 5
        assert np.mean(np.less(hard_contrast, easy_contrast)) > 0.9
        assert 5 < np.median(hard_gain) < 25

    def test_hard_not_normal_images_carry_mimics_without_boxes(self):
        specs = [sample_chest(np.random.default_rng(seed), 256, NOT_NORMAL, preset="hard") for seed in range(200)]
        assert 0.4 < np.mean([bool(s.mimics) for s in specs]) < 0.6
        assert {m.kind for s in specs for m in s.mimics} == {"patch", "band", "crowding"}
        for spec in [s for s in specs if s.mimics][:12]:
            assert spec.boxes.shape == (0, 4)
            image = render_chest(spec).astype(float)
            without = render_chest(dataclasses.replace(spec, mimics=())).astype(float)
            inside = np.zeros(image.shape, dtype=bool)
            for mimic in spec.mimics:
                x, y, w, h = mimic.box
                inside[y : y + h, x : x + w] = True
                assert np.percentile(np.abs(image - without)[y : y + h, x : x + w], 90) >= 2, mimic
            assert (image[~inside] == without[~inside]).all()
        easy = [sample_chest(np.random.default_rng(seed), 64, preset="easy") for seed in range(200)]
        hard = [sample_chest(np.random.default_rng(seed), 64, preset="hard") for seed in range(200)]
        assert not any(s.mimics for s in easy)
        assert all(s.class_name == NOT_NORMAL for s in hard if s.mimics)

    def test_patches_look_like_hard_opacities(self):
        patches, opacities = [], []
        for seed in range(60):
            for class_name, found in ((NOT_NORMAL, patches), (OPACITY, opacities)):
                spec = sample_chest(np.random.default_rng(seed), 256, class_name, preset="hard")
                image = render_chest(spec).astype(float)
                bare = render_chest(dataclasses.replace(spec, opacities=(), mimics=())).astype(float)
                boxes = [m.box for m in spec.mimics if m.kind == "patch"] + [o.box for o in spec.opacities]
                found += [(image - bare)[y : y + h, x : x + w].mean() for x, y, w, h in boxes]
        assert len(patches) > 10
        assert 0.4 * np.median(opacities) < np.median(patches) < np.median(opacities)

    def test_easy_specs_are_pinned(self):
        """The easy preset draws exactly what it drew before presets existed: same labels, anatomy and seeds."""
        fields = (
            "size",
            "view_position",
            "sex",
            "age",
            "class_name",
            "anatomy",
            "opacities",
            "findings",
            "marker",
            "texture_seed",
        )
        specs = [sample_chest(np.random.default_rng(seed), 1024) for seed in range(40)]
        assert not any(s.mimics for s in specs)
        digest = hashlib.sha256(repr([[getattr(s, f) for f in fields] for s in specs]).encode()).hexdigest()
        assert digest[:16] == "c84db18a26e182c8"

    def test_unknown_preset(self, tmp_path: Path):
        with pytest.raises(SynthError, match="easy, hard"):
            sample_chest(np.random.default_rng(0), 64, preset="medium")
        with pytest.raises(SynthError, match="easy, hard"):
            make_rsna_like(tmp_path / "out", n=2, size=64, preset="medium", progress=False)
        assert not (tmp_path / "out").exists()


class TestDeterminism:
    def test_same_seed_same_bytes_other_seed_differs(self, tmp_path: Path):
        for name, seed in (("a", 7), ("b", 7), ("c", 8)):
            make_rsna_like(tmp_path / name, n=5, seed=seed, n_test=2, size=128, progress=False)
        a, b, c = (files(tmp_path / name) for name in "abc")
        assert a == b
        assert set(a).isdisjoint({k for k in c if k.endswith(".dcm")})
        assert a["stage_2_train_labels.csv"] != c["stage_2_train_labels.csv"]

    def test_refuses_existing_set_and_overwrite_removes_stale(self, tmp_path: Path):
        make_rsna_like(tmp_path, n=4, seed=0, n_test=2, size=64, progress=False)
        with pytest.raises(SynthError, match="overwrite=True"):
            make_rsna_like(tmp_path, n=3, seed=1, size=64, progress=False)
        make_rsna_like(tmp_path, n=3, seed=1, size=64, overwrite=True, progress=False)
        assert len(list((tmp_path / "stage_2_train_images").glob("*.dcm"))) == 3
        assert not list((tmp_path / "stage_2_test_images").glob("*.dcm"))
        assert not (tmp_path / "stage_2_sample_submission.csv").exists()
        assert set(read_labels(tmp_path / "stage_2_train_labels.csv").boxes) == {
            p.stem for p in (tmp_path / "stage_2_train_images").glob("*.dcm")
        }


class TestWriteDicom:
    @pytest.mark.parametrize(
        "pixels, options, syntax",
        [
            (SMOOTH, {"transfer_syntax": "explicit"}, "1.2.840.10008.1.2.1"),
            (SMOOTH, {"transfer_syntax": "implicit", "photometric": "MONOCHROME1"}, "1.2.840.10008.1.2"),
            (
                SMOOTH.astype(np.uint16) * 16,
                {"transfer_syntax": "explicit", "bits_stored": 12, "rescale": (2.0, -1024.0)},
                "1.2.840.10008.1.2.1",
            ),
            (
                SMOOTH.astype(np.uint16) * 257,
                {"transfer_syntax": "implicit", "window": (30000.0, 40000.0)},
                "1.2.840.10008.1.2",
            ),
            (
                SMOOTH[:95, :127],
                {"transfer_syntax": "explicit", "view_position": "AP", "sex": "F", "age": "155"},
                "1.2.840.10008.1.2.1",
            ),
        ],
        ids=["EXPLICIT_8", "IMPLICIT_8_MONO1", "EXPLICIT_12_RESCALE", "IMPLICIT_16_WINDOW", "ODD_LENGTH_AP"],
    )
    def test_uncompressed_round_trip(self, tmp_path: Path, pixels: np.ndarray, options: dict, syntax: str):
        path = tmp_path / "case-1.dcm"
        write_dicom(path, pixels, stored=DicomFormat(**options))
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert ds.pixel_array.dtype == pixels.dtype and (ds.pixel_array == pixels).all()
        bits = options.get("bits_stored", pixels.dtype.itemsize * 8)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (pixels.dtype.itemsize * 8, bits, bits - 1)
        assert ds.PhotometricInterpretation == options.get("photometric", "MONOCHROME2")
        assert ("RescaleSlope" in ds) == ("rescale" in options) and ("WindowCenter" in ds) == ("window" in options)
        if "rescale" in options:
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == options["rescale"]
        if "window" in options:
            assert (float(ds.WindowCenter), float(ds.WindowWidth)) == options["window"]
        assert (
            ds.ViewPosition == options.get("view_position", "PA") and ds.SeriesDescription == f"view: {ds.ViewPosition}"
        )
        assert (ds.PatientSex, ds.PatientAge) == (options.get("sex", "M"), options.get("age", "51"))
        assert ds.PatientID == str(ds.PatientName) == "case-1"

    def test_jpeg_non_square_and_patient_id(self, tmp_path: Path):
        path = tmp_path / "file.dcm"
        write_dicom(path, SMOOTH, patient_id="other-id", stored=DicomFormat(photometric="MONOCHROME1"))
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert ds.pixel_array.shape == (96, 128) and np.abs(ds.pixel_array.astype(int) - SMOOTH).max() <= 3
        assert ds.PatientID == str(ds.PatientName) == "other-id" and ds.PhotometricInterpretation == "MONOCHROME1"

    def test_same_input_same_bytes(self, tmp_path: Path):
        write_dicom(tmp_path / "a" / "p.dcm", SMOOTH)
        write_dicom(tmp_path / "b" / "p.dcm", SMOOTH)
        assert (tmp_path / "a" / "p.dcm").read_bytes() == (tmp_path / "b" / "p.dcm").read_bytes()

    @pytest.mark.parametrize(
        "pixels, options, message",
        [
            (SMOOTH.astype(np.uint16), {}, "JPEG Baseline holds 8-bit"),
            (
                SMOOTH.astype(np.uint16) * 64,
                {"transfer_syntax": "explicit", "bits_stored": 12},
                "does not fit in 12 bits",
            ),
            (np.zeros((2, 2, 3), np.uint8), {}, "2-D uint8 or uint16"),
            (SMOOTH.astype(np.int16), {"transfer_syntax": "explicit"}, "2-D uint8 or uint16"),
            (SMOOTH, {"transfer_syntax": "jpeg2000"}, "transfer_syntax must be one of"),
            (SMOOTH, {"photometric": "RGB"}, "MONOCHROME1 or MONOCHROME2"),
        ],
    )
    def test_bad_arguments(self, tmp_path: Path, pixels: np.ndarray, options: dict, message: str):
        with pytest.raises(ValueError, match=message):
            write_dicom(tmp_path / "x.dcm", pixels, stored=DicomFormat(**options))
        assert not list(tmp_path.iterdir())


class TestCommand:
    def test_synth_writes_folder(self, tmp_path: Path):
        out = tmp_path / "data"
        args = ["synth", "--out", str(out), "--n-train", "6", "--n-test", "2", "--dicom-size", "128", "--seed", "3"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert str(out) in result.output.strip().splitlines()[-1]
        assert len(list((out / "stage_2_train_images").glob("*.dcm"))) == 6
        assert len(list((out / "stage_2_test_images").glob("*.dcm"))) == 2
        for name in (
            "stage_2_train_labels.csv",
            "stage_2_detailed_class_info.csv",
            "stage_2_sample_submission.csv",
            "stage_2_test_labels.csv",
        ):
            assert (out / name).is_file()

    def test_synth_refuses_existing_set_and_overwrite_replaces_its_own(self, tmp_path: Path):
        args = ["synth", "--out", str(tmp_path), "--n-train", "2", "--dicom-size", "64"]
        assert CliRunner().invoke(app, args).exit_code == 0
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "exists and is not empty; add --overwrite to replace it" in result.output
        assert "overwrite=True" not in result.output
        assert CliRunner().invoke(app, [*args, "--n-train", "3", "--overwrite"]).exit_code == 0
        assert len(list((tmp_path / "stage_2_train_images").glob("*.dcm"))) == 3

    def test_synth_overwrite_refuses_a_folder_it_did_not_write_and_deletes_nothing(self, tmp_path: Path):
        """A user's own DICOMs and label CSV, even in the RSNA layout, are never deleted (through the console script)."""
        out = tmp_path / "rsna"
        (out / "stage_2_train_images").mkdir(parents=True)
        own = {out / "stage_2_train_images" / "mine.dcm": b"DICM", out / "stage_2_train_labels.csv": b"patientId\n"}
        for path, data in own.items():
            path.write_bytes(data)
        script = Path(sys.executable).with_name("pneumo-yolo")
        args = [str(script), "synth", "--out", str(out), "--n-train", "2", "--dicom-size", "64", "--overwrite"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "synth did not write" in result.stderr and "nothing was deleted" in result.stderr
        assert {path: path.read_bytes() for path in own} == own
        assert sorted(p.name for p in out.rglob("*")) == [
            "mine.dcm",
            "stage_2_train_images",
            "stage_2_train_labels.csv",
        ]

    def test_synth_preset(self, tmp_path: Path):
        for name in PRESETS:
            args = [
                "synth",
                "--out",
                str(tmp_path / name),
                "--n-train",
                "8",
                "--dicom-size",
                "64",
                "--seed",
                "2",
                "--preset",
                name,
            ]
            assert CliRunner().invoke(app, args).exit_code == 0
        easy, hard = files(tmp_path / "easy"), files(tmp_path / "hard")
        assert easy.keys() == hard.keys() and easy["stage_2_train_labels.csv"] == hard["stage_2_train_labels.csv"]
        assert any(easy[name] != hard[name] for name in easy if name.endswith(".dcm"))

    @pytest.mark.parametrize("command", ["synth", "demo"])
    def test_bad_preset_exits_2(self, tmp_path: Path, command: str):
        result = CliRunner().invoke(app, [command, "--out", str(tmp_path / "out"), "--preset", "medium"])
        assert result.exit_code == 2 and "easy, hard" in result.output
        assert not (tmp_path / "out").exists()

    def test_synth_rejects_bad_numbers(self, tmp_path: Path):
        result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--n-train", "0"])
        assert result.exit_code != 0 and not list(tmp_path.iterdir())
