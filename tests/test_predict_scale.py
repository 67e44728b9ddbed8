"""predict at scale, without a model: the ``--workers auto`` rule, its parsing, decoding processes and their shared
buffers, the split over devices, joining raw tables."""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import typer

from pneumo_yolo.cli import options
from pneumo_yolo.eval.detections import RawImage, concatenate_raw, read_raw, write_raw
from pneumo_yolo.predict import decoding
from pneumo_yolo.predict.decoding import iterate_batches, list_inputs, load_batch_shared
from pneumo_yolo.predict.device import DeviceOutput
from pneumo_yolo.predict.shards import join_predictions, shard_paths
from pneumo_yolo.runtime.devices import MAX_WORKERS_PER_DEVICE, DeviceError, Devices, auto_workers

from .conftest import RsnaFolder

SHM = Path("/dev/shm")


@pytest.mark.parametrize(
    ("cores", "devices", "expected"),
    [
        (2, ["cpu"], 1),
        (64, ["cpu"], 1),
        (1, ["cpu"], 0),
        (2, ["cpu", "cpu"], 0),
        (4, ["cpu", "cpu"], 1),
        (2, ["0"], 1),
        (1, ["0"], 1),
        (5, ["0"], 4),
        (16, ["0"], MAX_WORKERS_PER_DEVICE),
        (16, ["0", "1", "2", "3"], 3),
        (8, ["0", "1", "2", "3"], 1),
        (128, ["0", "1"], MAX_WORKERS_PER_DEVICE),
    ],
)
def test_auto_workers_feeds_gpus_from_the_spare_cores_and_leaves_the_cpu_to_the_model(
    cores: int, devices: list[str], expected: int
) -> None:
    assert auto_workers(cores, devices) == expected


def test_auto_workers_never_asks_for_more_processes_than_the_cores_spare_beside_the_devices() -> None:
    for cores in range(1, 33):
        for n in range(1, 9):
            workers = auto_workers(cores, [str(i) for i in range(n)])
            assert 1 <= workers <= MAX_WORKERS_PER_DEVICE
            assert n * (workers + 1) <= max(cores, 2 * n)


@pytest.mark.parametrize(("text", "value"), [("auto", None), ("AUTO", None), ("0", 0), ("4", 4), (" 3 ", 3)])
def test_workers_option_accepts_auto_and_whole_numbers(text: str, value: int | None) -> None:
    assert options.workers(text) == value


@pytest.mark.parametrize("text", ["-1", "1.5", "many", ""])
def test_workers_option_refuses_anything_else(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="use auto or a whole number ≥ 0"):
        options.workers(text)


def decoded(paths: list[Path], workers: int) -> list[tuple[str, str, int, int, str, np.ndarray | None]]:
    """What :func:`iterate_batches` yields for ``paths`` (batches of 4, longest side 128), one tuple per image."""
    batches = list(iterate_batches(paths, 128, 4, workers))
    assert all(len(batch) == 4 for batch in batches[:-1])
    return [(i.patient_id, i.path, i.width, i.height, i.problem, i.pixels) for batch in batches for i in batch]


def test_decoding_processes_hand_over_the_same_images_in_the_same_order(rsna_folder: RsnaFolder) -> None:
    (rsna_folder.images / "zz-broken.dcm").write_bytes(b"not a dicom")
    cv2.imwrite(str(rsna_folder.images / "zz-picture.png"), np.full((90, 300), 77, np.uint8))
    paths = list_inputs(rsna_folder.images)
    in_process = decoded(paths, workers=0)
    assert len(in_process) == 15 and in_process[-2][4] and in_process[-2][5] is None
    assert in_process[-1][5].shape == (38, 128)
    for workers in (1, 2):
        handed_over = decoded(paths, workers)
        assert [row[:5] for row in handed_over] == [row[:5] for row in in_process]
        for (*_, pixels), (*_, expected) in zip(handed_over, in_process):
            assert (pixels is None and expected is None) or np.array_equal(pixels, expected)


def test_an_image_too_big_for_what_is_left_of_the_shared_buffer_comes_back_in_its_record(
    rsna_folder: RsnaFolder,
) -> None:
    paths = list_inputs(rsna_folder.images)[:3]
    buffer = SharedMemory(create=True, size=2 * 64 * 64 + 10)
    try:
        placed = load_batch_shared(paths, 64, buffer.name)
        assert [place is None for _, place in placed] == [False, False, True]
        assert placed[0][0].pixels is None and placed[2][0].pixels.shape == (64, 64)
        second = np.ndarray((64, 64), np.uint8, buffer.buf, placed[1][1].offset).copy()
        assert placed[1][1].offset == 64 * 64 and np.array_equal(placed[1][1].read(buffer), second)
    finally:
        buffer.close()
        buffer.unlink()


@pytest.mark.skipif(not SHM.is_dir(), reason="shared memory is listed in /dev/shm on Linux only")
def test_shared_buffers_are_removed_when_the_reading_stops_early(
    rsna_folder: RsnaFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []

    class Recorded(SharedMemory):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            created.append(self.name)

    monkeypatch.setattr(decoding, "SharedMemory", Recorded)
    batches = iterate_batches(list_inputs(rsna_folder.images), 128, 2, workers=1)
    next(batches)
    assert len(created) == 3 and all((SHM / name).exists() for name in created)
    batches.close()
    assert not any((SHM / name).exists() for name in created)


def test_the_device_option_is_read_once_into_named_devices() -> None:
    assert Devices.parse("0,1, 2").names == ("0", "1", "2") and Devices.parse("cpu,cpu").names == ("cpu", "cpu")
    assert Devices.parse(None).names == () and Devices.parse("cuda:1").names == ("1",)
    assert Devices.parse("0,1").lightning()["devices"] == [0, 1] and Devices.parse("cpu").ultralytics == "cpu"


@pytest.mark.parametrize("text", ["banana", "0,,1", "gpu0", "-1"])
def test_a_device_that_is_not_one_is_refused_by_name(text: str) -> None:
    with pytest.raises(DeviceError, match="is not a device"):
        Devices.parse(text)


def test_a_gpu_this_machine_lacks_is_refused_before_anything_runs() -> None:
    with pytest.raises(DeviceError, match="GPU 99 is not available"):
        Devices.parse("99").resolve()


def test_shards_are_contiguous_nearly_equal_and_keep_every_file() -> None:
    paths = [Path(f"p{i:03d}.dcm") for i in range(10)]
    shards = shard_paths(paths, 3)
    assert [len(shard) for shard in shards] == [3, 4, 3]
    assert [path for shard in shards for path in shard] == paths
    assert shard_paths(paths[:1], 3) == [[], [paths[0]], []]


def test_the_files_of_one_patient_share_a_shard_so_a_duplicate_is_found_as_with_one_device() -> None:
    paths = [Path("a/x.dcm"), Path("a/y.dcm"), Path("b/w.dcm"), Path("b/x.dcm")]
    shards = shard_paths(paths, 2)
    holding = [index for index, shard in enumerate(shards) for path in shard if path.stem == "x"]
    assert len(set(holding)) == 1 and sum(map(len, shards)) == 4


def test_joined_predictions_keep_shard_order_and_wait_for_the_slowest_device() -> None:
    first = DeviceOutput({"a": "0.9 1 2 3 4"}, {"a": (10, 10)}, [("x.dcm", "bad")], workers=2, loaded_at=5.0)
    second = DeviceOutput({"b": ""}, {"b": (20, 20)}, [("y.dcm", "worse")], workers=2, loaded_at=7.0)
    joined = join_predictions([first, second])
    assert list(joined.strings) == ["a", "b"] and joined.sizes == {"a": (10, 10), "b": (20, 20)}
    assert joined.errors == [("x.dcm", "bad"), ("y.dcm", "worse")] and joined.loaded_at == 7.0 and joined.workers == 2


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_raw_parts_join_into_the_table_one_writer_would_have_written(tmp_path: Path, suffix: str) -> None:
    images = [
        RawImage(
            f"p{i}",
            np.array([[1.0, 2.0, 30.0, 40.0 + i]] * (i % 3)),
            np.linspace(0.9, 0.5, i % 3),
            100.0,
            80.0,
            np.zeros(i % 3, np.int64),
        )
        for i in range(7)
    ]
    write_raw(tmp_path / f"whole{suffix}", images)
    parts = [tmp_path / f"part{k}{suffix}" for k in range(3)]
    for part, chunk in zip(parts, (images[:3], [], images[3:])):
        write_raw(part, chunk)
    concatenate_raw(parts, tmp_path / f"joined{suffix}")
    whole, joined = read_raw(tmp_path / f"whole{suffix}"), read_raw(tmp_path / f"joined{suffix}")
    assert joined.patient_ids == whole.patient_ids
    for name in ("sizes", "image", "scores", "boxes", "model", "pass_index", "models", "passes"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))
    if suffix == ".csv":
        assert (tmp_path / "joined.csv").read_text() == (tmp_path / "whole.csv").read_text()
    else:
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "joined.parquet"), pd.read_parquet(tmp_path / "whole.parquet")
        )
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0,cpu", "mixes cpu and gpu"),
        ("cpu,1", "mixes cpu and gpu"),
        ("cpu,mps", "mixes cpu and mps"),
        ("0,1,0", "names a GPU twice"),
    ],
)
def test_a_device_list_of_mixed_kinds_or_repeated_gpus_is_refused(text: str, problem: str) -> None:
    with pytest.raises(DeviceError, match=problem):
        Devices.parse(text)


def test_resolved_devices_resolve_to_themselves_without_asking_torch_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """One run resolves ``--device`` once: the models of an ensemble and its classifiers get the resolved devices."""
    import torch

    resolved = Devices.parse("cpu,cpu").resolve()

    def asked_again() -> int:
        raise AssertionError("the devices were resolved a second time")

    monkeypatch.setattr(torch.cuda, "device_count", asked_again)
    monkeypatch.setattr(torch.cuda, "is_available", asked_again)
    assert resolved.resolve() is resolved and resolved.resolved
    assert [device.resolve().names for device in resolved.each()] == [("cpu",), ("cpu",)]
    assert Devices.parse("mps").names == ("mps",) and not Devices.parse("mps").on_cpu
