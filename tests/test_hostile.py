"""Hostile input, second round (issue 27): a sweep of its own, through the installed console script.

Each case runs under an address-space limit (``RLIMIT_AS``, set in the child before it starts)
and is checked by the same rules: no traceback and no raw Python warning on the terminal, an exit
code of 0, 1, 2, 130 or 143, a word of its one-line message, every input byte-identical
afterwards, no process of it left, none of its shared memory or semaphores left in ``/dev/shm``,
no temporary file left, and a peak resident memory under :data:`PEAK_BYTES`. The kinds: sizes without bound, special and
overlapping outputs, refusals of the file system (a full tmpfs where root may mount one), files
that are not what they claim, interrupts, pipes as inputs, and the smaller ones.

The world is tiny (10 synthetic DICOMs at 64 px and an untrained yolo11n saved as Ultralytics
saves it); most cases fail before any model loads, and the cases run side by side.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pneumo_yolo.runtime.lifetime import SHM_DIR, SHM_PREFIX
from pneumo_yolo.synth import make_rsna_like

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
ADDRESS_SPACE = 8 * 2**30
"""The ``RLIMIT_AS`` of every case: torch maps a few GB of address space that it never touches."""
PEAK_BYTES = 2 * 2**30
"""The most resident memory a case may reach (its largest process, as ``wait4`` tells it: an upper bound,
since Linux starts a forked child's peak at its parent's, this test process with torch loaded, about 0.5 GB)."""
CODES = {0, 1, 2, 130, 143}
PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)
"""A 'billion laughs' YAML: nine levels of nine aliases, 387 million strings once expanded."""


@dataclass(frozen=True)
class Case:
    """A command line (``{S}`` and the like name paths of the world), its exit code and a word of its message."""

    args: str
    code: int
    word: str
    files: dict[str, str] = field(default_factory=dict)
    """Input files to write into the case's folder first (their bytes are checked afterwards)."""
    env: dict[str, str] = field(default_factory=dict)
    signal_when: str = ""
    """A glob below the case's folder: once it matches, a signal is sent to the command, SIGTERM unless it
    starts ``INT:`` (Ctrl-C: SIGINT to the whole process group) or ``HUP:``."""


CASES = {
    # sizes without bound
    "synth-count": Case("synth --out out --n-train 100000000", 2, "100000"),
    "convert-workers": Case("convert --images {I} --labels {L} --out out --workers 1000", 2, "more than"),
    "predict-workers-unicode": Case("predict --weights {W} --source {S} --out o.csv --workers ²", 2, "not valid"),
    "labels-sparse-10GB": Case("convert --images {I} --labels sparse.csv --out out", 1, "more than 128 MB"),
    "labels-dev-zero": Case("evaluate --predictions {SAMPLE} --labels /dev/zero", 1, "more than 128 MB"),
    "postprocess-laughs": Case(
        "predict --weights {W} --source {S} --out o.csv --postprocess l.yaml", 1, "aliases", {"l.yaml": LAUGHS}
    ),
    "tune-config-laughs": Case(
        "tune --predictions raw.csv --labels {L} --postprocess l.yaml --out t.yaml",
        1,
        "aliases",
        {"l.yaml": LAUGHS, "raw.csv": "x\n"},
    ),
    "predict-batch-imgsz": Case("predict --weights {W} --source {S} --out o.csv --batch 100000 --imgsz 1024", 0, ""),
    "train-memory": Case("train --data {D} --model yolo11n.yaml --imgsz 2048 --batch 16 --device cpu", 2, "--batch"),
    # special and overlapping outputs
    "out-inside-source": Case("predict --weights {W} --source {S} --out {S}/{FIRST}", 2, "lies inside --source"),
    "out-fifo": Case("predict --weights {W} --source {S} --out fifo", 2, "FIFO"),
    "out-dev-null": Case("predict --weights {W} --source {S} --out /dev/null", 2, "character device"),
    "out-stdout": Case("predict --weights {W} --source {S} --out -", 2, "standard output"),
    "out-name-too-long": Case(f"predict --weights {{W}} --source {{S}} --out {'n' * 250}.csv", 2, "shorter name"),
    # the file system says no
    "home-is-a-file": Case(
        "predict --weights {W} --source {S} --out o.csv", 1, "cache folder", {"home": ""}, {"PNEUMO_YOLO_HOME": "home"}
    ),
    # files that are not what they claim
    "train-truncated-pt": Case("train --data {D} --model cut.pt --device cpu --project runs", 2, "cannot be loaded"),
    "predict-foreign-dicoms": Case(
        "predict --weights {W} --source odd --out o.csv --device cpu,cpu", 1, "NumberOfFrames '1A'"
    ),
    "convert-5GB-dicom": Case(
        "convert --images big --labels big.csv --out out --imgsz 32", 1, "larger than the 600 MB", {"big.csv": ""}
    ),
    "convert-foreign-dicoms": Case("convert --images odd --labels odd.csv --out out --imgsz 32", 1, "Rescale Slope 0"),
    # interrupts
    "convert-ctrl-c": Case(
        "convert --images {MANY} --labels {MANYL} --out out --imgsz 64 --workers 2",
        130,
        "images converted",
        signal_when="INT:out/images/*/*.png",
    ),
    "synth-sigterm": Case(
        "synth --out out --n-train 400 --dicom-size 256", 143, "images written", signal_when="out/*/*.dcm"
    ),
    "synth-sighup": Case(
        "synth --out out --n-train 400 --dicom-size 256", 130, "images written", signal_when="HUP:out/*/*.dcm"
    ),
    "predict-sigterm": Case(
        "predict --weights {W} --source {MANY} --out o.csv --dicom-out dcm --imgsz 64 --workers 1",
        143,
        "nothing was written",
        signal_when=".dcm.*.part/sr/*.dcm",
    ),
    # pipes as inputs, and the smaller ones
    "labels-from-a-pipe": Case("evaluate --predictions {SAMPLE} --labels /dev/fd/{PIPE}", 0, "score"),
    "val-fraction-empty-train": Case(
        "convert --images {I} --labels {L} --out out --val-fraction 0.999 --imgsz 32", 0, "train split empty"
    ),
    "report-empty-images": Case(
        "report --predictions {SAMPLE} --images empty --out rep", 2, "holds no .dcm", {"empty/.keep": ""}
    ),
    "labels-both-targets": Case(
        "evaluate --predictions {SAMPLE} --labels both.csv", 0, "both Target 0 and Target 1", {"both.csv": ""}
    ),
    "submission-third-column": Case(
        "validate-submission --predictions three.csv --sample {SAMPLE}", 1, "unexpected column", {"three.csv": ""}
    ),
}


@dataclass(frozen=True)
class World:
    root: Path
    paths: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """10 synthetic DICOMs at 64 px (8 to train, 2 to test), a converted dataset, an untrained yolo11n, and odd files."""
    import numpy as np
    import torch

    from converters.rsna import ConvertSettings, convert_rsna
    from pneumo_yolo.dicom.write import DicomFormat, write_dicom
    from pneumo_yolo.runtime.offline import import_ultralytics

    root = tmp_path_factory.mktemp("hostile")
    rsna = root / "rsna"
    make_rsna_like(rsna, 8, n_test=2, size=64, progress=False)
    convert_rsna(
        rsna / "stage_2_train_images",
        rsna / "stage_2_train_labels.csv",
        root / "dataset",
        settings=ConvertSettings(imgsz=64, val_fraction=0.25),
        workers=1,
        progress=False,
    )
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    detector = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
    detector.names = {0: "opacity"}
    torch.save({"model": detector, "train_args": {"imgsz": 64, "task": "detect"}}, root / "detector.pt")
    odd = root / "odd"  # a test DICOM, pydicom's badVR.dcm, an RGB Secondary Capture, and a Rescale Slope of 0
    odd.mkdir()
    test_dicoms = sorted((rsna / "stage_2_test_images").glob("*.dcm"))
    shutil.copy(test_dicoms[0], odd / "good.dcm")
    shutil.copy(PYDICOM_FILES / "badVR.dcm", odd / "badVR.dcm")
    shutil.copy(PYDICOM_FILES / "SC_rgb_jpeg.dcm", odd / "rgb.dcm")
    write_dicom(
        odd / "slope0.dcm",
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
        stored=DicomFormat(transfer_syntax="explicit", bits_stored=12, rescale=(0.0, 5.0)),
    )
    (root / "odd.csv").write_text(
        "patientId,x,y,width,height,Target\n" + "".join(f"{p.stem},,,,,0\n" for p in sorted(odd.glob("*.dcm")))
    )
    many = root / "many"  # 120 patients to convert: links to the training DICOMs, so that a run lasts a moment
    train_dicoms = sorted((rsna / "stage_2_train_images").glob("*.dcm"))
    many.mkdir()
    for index in range(120):
        os.link(train_dicoms[index % len(train_dicoms)], many / f"m{index:03d}.dcm")
    (root / "many.csv").write_text(
        "patientId,x,y,width,height,Target\n" + "".join(f"m{index:03d},,,,,0\n" for index in range(120))
    )
    paths = {
        "W": root / "detector.pt",
        "S": rsna / "stage_2_test_images",
        "FIRST": test_dicoms[0].name,
        "I": rsna / "stage_2_train_images",
        "L": rsna / "stage_2_train_labels.csv",
        "SAMPLE": rsna / "stage_2_sample_submission.csv",
        "TEST_LABELS": rsna / "stage_2_test_labels.csv",
        "D": root / "dataset" / "data.yaml",
        "MANY": many,
        "MANYL": root / "many.csv",
    }
    return World(root, {name: str(path) for name, path in paths.items()})


def prepare(name: str, case: Case, world: World, folder: Path) -> None:
    """The case's own inputs in ``folder``: its files, and those its command line needs."""
    for relative, text in case.files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    if name == "labels-sparse-10GB":
        with open(folder / "sparse.csv", "wb") as handle:
            handle.truncate(10 * 2**30)
    if name == "out-fifo":
        os.mkfifo(folder / "fifo")
    if name == "train-truncated-pt":
        (folder / "cut.pt").write_bytes(Path(world.paths["W"]).read_bytes()[:50_000])
    if name == "labels-both-targets":
        labels = Path(world.paths["TEST_LABELS"]).read_text()
        first = labels.splitlines()[1].split(",")[0]
        (folder / "both.csv").write_text(labels + f"{first},1,1,10,10,1\n{first},,,,,0\n")
    if name == "submission-third-column":
        rows = Path(world.paths["SAMPLE"]).read_text().splitlines()
        (folder / "three.csv").write_text("\n".join([rows[0] + ",extra"] + [row + ",x" for row in rows[1:]]) + "\n")
    if name == "convert-5GB-dicom":  # a real header, then 5 GB of nothing (sparse)
        (folder / "big").mkdir()
        shutil.copy(Path(world.paths["S"]) / world.paths["FIRST"], folder / "big" / "huge.dcm")
        os.truncate(folder / "big" / "huge.dcm", 5 * 2**30)
        (folder / "big.csv").write_text("patientId,x,y,width,height,Target\nhuge,,,,,0\n")
    if name in ("predict-foreign-dicoms", "convert-foreign-dicoms"):
        (folder / "odd").symlink_to(world.root / "odd")
        (folder / "odd.csv").symlink_to(world.root / "odd.csv")


def fingerprint(folder: Path, world: World) -> dict[str, bytes]:
    """The bytes of every input: the world's files and the case's own (a FIFO and a 10 GB sparse file by their size)."""
    found = {}
    for path in sorted([*world.root.rglob("*"), *folder.rglob("*")]):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            found[str(path)] = path.read_bytes() if size < 2**26 else str(size).encode()
    return found


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    peak: int
    left: list[str]
    changed: list[str]
    seconds: float = 0.0


def run_case(name: str, world: World, folder: Path) -> Outcome:
    """Run one case in ``folder`` under the address-space limit; what it did and what it left."""
    case = CASES[name]
    args = case.args.format_map({**world.paths, "PIPE": "{PIPE}"})
    pipe_writer = None
    pass_fds: tuple[int, ...] = ()
    if "{PIPE}" in args:  # a pipe such as bash's <(cat labels.csv)
        read_end, write_end = os.pipe()
        args, pass_fds = args.replace("{PIPE}", str(read_end)), (read_end,)
        text = Path(world.paths["TEST_LABELS"]).read_bytes()
        pipe_writer = threading.Thread(target=lambda: (os.write(write_end, text), os.close(write_end)))
    inputs = {key: value for key, value in fingerprint(folder, world).items() if "/out" not in key}
    marker = f"hostile-{name}-{os.getpid()}"
    env = {**os.environ, "PNEUMO_HOSTILE_CASE": marker, **case.env}
    env.update({key: str(folder / value) for key, value in case.env.items()})

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a shell: a test runner's worker may ignore it

    started = time.monotonic()
    with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
        process = subprocess.Popen(
            [str(SCRIPT), *args.split()],
            cwd=folder,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            pass_fds=pass_fds,
            preexec_fn=limits,
            start_new_session=True,
        )
    if pipe_writer is not None:
        os.close(pass_fds[0])
        pipe_writer.start()
    if case.signal_when:
        kind, _, pattern = case.signal_when.rpartition(":")
        deadline = time.monotonic() + 120
        while process.poll() is None and not any(folder.glob(pattern)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            if kind == "INT":
                os.killpg(process.pid, signal.SIGINT)
            else:
                os.kill(process.pid, signal.SIGHUP if kind == "HUP" else signal.SIGTERM)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if pipe_writer is not None:
        pipe_writer.join()
    left = wait_gone(marker, 10) + [str(path) for path in folder.rglob("*.part")]
    changed = [key for key, value in fingerprint(folder, world).items() if key in inputs and inputs[key] != value]
    changed += [key for key in inputs if not Path(key).exists()]
    return Outcome(
        process.returncode,
        (folder / "stdout").read_text(),
        (folder / "stderr").read_text(),
        usage.ru_maxrss * 1024,
        left,
        changed,
        time.monotonic() - started,
    )


def processes_of(marker: str) -> list[str]:
    """The processes that carry ``marker`` in their environment (every helper inherits it), and their shared memory."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PNEUMO_HOSTILE_CASE={marker}".encode() in environ.read_bytes().split(b"\0"):
                found.append(environ.parent.name)
        except OSError:
            continue
    shared = [path.name for path in SHM_DIR.glob(f"*{SHM_PREFIX}-*") if path.name.split("-")[2] in found]
    return [f"process {pid}" for pid in found] + shared


def wait_gone(marker: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := processes_of(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def stale_shared_memory() -> set[str]:
    """Our shared memory and semaphores in ``/dev/shm`` whose process is gone."""
    from pneumo_yolo.files import process_alive

    return {
        path.name
        for path in SHM_DIR.glob(f"*{SHM_PREFIX}-*")
        if (pid := path.name.removeprefix("sem.").split("-")[2]).isdecimal() and not process_alive(int(pid))
    }


@pytest.fixture(scope="module")
def outcomes(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case in a folder of its own, side by side on the cores this process may use."""
    folders = {name: tmp_path_factory.mktemp(name) for name in CASES}
    for name, folder in folders.items():
        prepare(name, CASES[name], world, folder)
    with ThreadPoolExecutor(max(2, len(os.sched_getaffinity(0)))) as pool:
        return dict(zip(CASES, pool.map(lambda name: run_case(name, world, folders[name]), CASES)))


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux: /proc and /dev/shm")
@pytest.mark.parametrize("name", CASES)
def test_hostile_input_is_refused_clearly_and_leaves_nothing(name: str, outcomes: dict[str, Outcome]) -> None:
    case, outcome = CASES[name], outcomes[name]
    shown = f"exit {outcome.code}\n{outcome.err[-2000:]}\n{outcome.out[-500:]}"
    assert outcome.code in CODES, shown
    assert outcome.code == case.code, shown
    assert case.word in outcome.err + outcome.out, shown
    assert "Traceback" not in outcome.err, shown
    assert not [line for line in outcome.err.splitlines() if "Warning:" in line or "warnings.warn" in line], shown
    assert "resource_tracker" not in outcome.err, shown
    assert outcome.changed == [], shown
    assert outcome.left == [], shown
    assert outcome.peak < PEAK_BYTES, f"peak {outcome.peak / 2**30:.2f} GB\n{shown}"


def test_an_interrupted_convert_says_how_far_it_got_and_leaves_no_shared_memory(outcomes: dict[str, Outcome]) -> None:
    """Convert's Ctrl-C line counts what it converted; no process that is gone left shared memory or semaphores."""
    line = next(line for line in outcomes["convert-ctrl-c"].err.splitlines() if line.startswith("interrupted:"))
    assert " of 120 images converted" in line and "rerun the same command to resume" in line
    deadline = time.monotonic() + 5  # a janitor of a run killed elsewhere just now cleans within a second
    while (stale := stale_shared_memory()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stale == set()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_finishes(world: World, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "ballast").write_bytes(b"\0" * (2 * 2**20 - 64 * 2**10))
        args = ["convert", "--images", world.paths["MANY"], "--labels", world.paths["MANYL"], "--out", str(disk / "ds")]
        args += ["--imgsz", "64", "--workers", "1"]
        full = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)
        assert full.returncode == 1, full.stderr[-2000:]
        assert "no space left on the device; free some space and rerun the same command" in full.stderr
        assert "Traceback" not in full.stderr and len([x for x in full.stderr.splitlines() if "error:" in x]) == 1
        assert not list(disk.rglob("*.part"))
        (disk / "ballast").unlink()
        again = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0, again.stderr[-2000:]
        assert len(list((disk / "ds" / "images").rglob("*.png"))) == 120
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_the_cli_bound_on_synthetic_images_is_synths_own() -> None:
    from pneumo_yolo.cli.options import MAX_SYNTH_IMAGES
    from pneumo_yolo.synth.sample import MAX_IMAGES

    assert MAX_SYNTH_IMAGES == MAX_IMAGES
