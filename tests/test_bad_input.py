"""Bad input, as a clumsy or hostile user types it (issue 20): never a traceback, never a lost file, nothing left behind.

One table of bad and odd command lines: its exit code (2 for a usage error, 1 for inputs that
failed), a word of its message, no ``Traceback``, and every output that existed before it
byte-identical afterwards. Two predict cases run through the installed console script: weights
that are a text file (refused before torch loads) and a run whose every input fails. The others
run the same application in this process, as Typer's ``CliRunner`` does: this process has torch
and Ultralytics loaded already (for the world below), so a case that needs them costs it a
moment, where a process of its own pays 3-4 CPU-seconds to import them; the kills below, other
files' help screens and tests/test_hostile.py run those commands as processes. Then
``predict`` is killed while it writes (``kill -9`` of its main process, of its whole process
group, and Ctrl-C): no process of it survives, nothing of it stays in ``/dev/shm``, the earlier
outputs are untouched, and a rerun leaves no ``.part`` file.

All cases share one tiny world: 24 synthetic training and 6 test DICOMs, converted at 64 px, a
detector and an image classifier. Most cases fail before any model loads; the cases run side by
side, on the cores this process may use.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from converters.rsna import ConvertSettings, convert_rsna
from pneumo_yolo.data.dataset import ConvertedDataset
from pneumo_yolo.runtime.lifetime import SHM_DIR, SHM_PREFIX
from pneumo_yolo.synth import make_rsna_like

SCRIPT = Path(sys.executable).with_name("pneumo-yolo")
IMGSZ = 64
KEEP = "keep\n"
"""The bytes of every output that exists before a case runs."""


@dataclass(frozen=True)
class World:
    root: Path
    detector: Path
    classifier: Path

    def __getitem__(self, name: str) -> str:
        """A path of the world by short name, as a command-line argument."""
        places = {
            "W": self.detector,
            "C": self.classifier,
            "S": self.root / "rsna" / "stage_2_test_images",
            "I": self.root / "rsna" / "stage_2_train_images",
            "L": self.root / "rsna" / "stage_2_train_labels.csv",
            "SAMPLE": self.root / "rsna" / "stage_2_sample_submission.csv",
            "D": self.root / "dataset" / "data.yaml",
            "DS": self.root / "dataset",
        }
        return str(places[name])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The tiny world of issue 20: synthetic RSNA data, its converted dataset, a detector and an image classifier.

    The two models are yolo11n and yolo11n-cls as Ultralytics builds them, saved untrained in the
    form its trainer saves (a fraction of a second instead of a minute of training): every case
    here is refused before the weights' quality could matter, and predict runs on them as on any.
    """
    import torch

    from pneumo_yolo.runtime.offline import import_ultralytics

    root = tmp_path_factory.mktemp("world")
    rsna = root / "rsna"
    make_rsna_like(rsna, 24, n_test=6, size=256, progress=False)
    convert_rsna(
        rsna / "stage_2_train_images",
        rsna / "stage_2_train_labels.csv",
        root / "dataset",
        settings=ConvertSettings(imgsz=IMGSZ),
        workers=1,
        progress=False,
    )
    import_ultralytics()
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel

    detector = DetectionModel("yolo11n.yaml", ch=1, nc=1, verbose=False)
    detector.names = {0: "opacity"}
    classifier = ClassificationModel("yolo11n-cls.yaml", ch=3, nc=2, verbose=False)
    classifier.names = {0: "no_opacity", 1: "opacity"}
    (root / "weights").mkdir()
    torch.save({"model": detector, "train_args": {"imgsz": IMGSZ, "task": "detect"}}, root / "weights" / "detector.pt")
    torch.save(
        {"model": classifier, "train_args": {"imgsz": IMGSZ // 2, "task": "classify"}},
        root / "weights" / "classifier.pt",
    )
    return World(root, root / "weights" / "detector.pt", root / "weights" / "classifier.pt")


def pneumo_yolo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def in_this_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The application run in this process from ``cwd``, its outcome as a process's; an exception shows as its traceback."""
    from typer.testing import CliRunner

    from pneumo_yolo.cli import app

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(app, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


@dataclass(frozen=True)
class Case:
    """A command line (``{W}`` and the like name paths of the world), its exit code and a word of its message."""

    args: str
    code: int
    word: str
    outputs: tuple[str, ...] = ()
    """Files, relative to the case's folder, that exist before it runs and must be byte-identical after."""
    files: dict[str, str] = field(default_factory=dict)
    """Input files to write into the case's folder first."""
    folders: tuple[str, ...] = ()
    """Empty folders to make first."""
    console: bool = False
    """Run through the installed console script: predict, refused before any model loads or failing on every input."""


RO = "/sys/pneumo-yolo" if os.geteuid() == 0 else "ro/sub"
"""A place where nothing can be written: a folder without write permission, or sysfs, which even root cannot write."""
CASES = {
    # bad: tracebacks or wrong results
    "1-text-as-weights": Case(
        "predict --weights x.pt --source {S} --out keep.csv --overwrite",
        1,
        "cannot be loaded as YOLO weights",
        ("keep.csv",),
        {"x.pt": "hello\n"},
        console=True,
    ),
    "2-classifier-as-weights": Case(
        "predict --weights {C} --source {S} --out keep.csv --overwrite", 1, "not a detector", ("keep.csv",)
    ),
    "2-detector-as-classifier": Case(
        "predict --weights {W} --classifier {W} --source {S} --out keep.csv --overwrite",
        1,
        "not an image classifier",
        ("keep.csv",),
    ),
    "3-predict-imgsz": Case(
        "predict --weights {W} --source {S} --imgsz 100000 --out keep.csv", 2, "4096", ("keep.csv",)
    ),
    "3-convert-imgsz": Case("convert --images {I} --labels {L} --out out --imgsz 100000", 2, "4096"),
    "3-train-imgsz": Case("train --data {D} --model yolo11n.yaml --imgsz 8192", 2, "4096"),
    "3-synth-size": Case("synth --out out --dicom-size 100000", 2, "4096"),
    "3-batch-memory": Case(
        "predict --weights {W} --source many --imgsz 4096 --batch 400 --out keep.csv --overwrite",
        2,
        "memory",
        ("keep.csv",),
    ),
    "4-device-7": Case(
        "predict --weights {W} --source {S} --device 7 --out keep.csv",
        2,
        "GPU 7 is not available",
        ("keep.csv",),
    ),
    "4-device-banana": Case(
        "predict --weights {W} --source {S} --device banana --out keep.csv", 2, "is not a device", ("keep.csv",)
    ),
    "4-train-device-banana": Case("train --data {D} --model yolo11n.yaml --device banana", 2, "is not a device"),
    "4-train-device-mixed": Case("train --data {D} --model yolo11n.yaml --device 0,cpu", 2, "mixes cpu and gpu"),
    "4-demo-device-7": Case("demo --out out --device 7", 2, "GPU 7 is not available"),
    "5-read-only-out": Case(
        f"predict --weights {{W}} --source {{S}} --out {RO}/sub.csv", 2, "cannot write in", folders=("ro",)
    ),
    "5-read-only-raw": Case(
        f"predict --weights {{W}} --source {{S}} --out keep.csv --save-raw {RO}/raw.parquet",
        2,
        "cannot write in",
        ("keep.csv",),
        folders=("ro",),
    ),
    "6-every-file-fails": Case(
        "predict --weights {W} --source bad --out keep.csv --save-raw keep.parquet --overwrite",
        1,
        "nothing was written",
        ("keep.csv", "keep.parquet"),
        {"bad/a.dcm": "junk", "bad/b.dcm": "junk"},
        console=True,
    ),
    "7-sample-without-header": Case(
        "predict --weights {W} --source {S} --sample sample.csv --out keep.csv --overwrite",
        1,
        "no patientId column",
        ("keep.csv",),
        {"sample.csv": "abc,\n"},
    ),
    "7-sample-wrong-header": Case(
        "predict --weights {W} --source {S} --sample sample.csv --out keep.csv --overwrite",
        1,
        "no patientId column",
        ("keep.csv",),
        {"sample.csv": "id,foo\nabc,1\n"},
    ),
    "7-sample-unsafe-id": Case(
        "predict --weights {W} --source {S} --sample sample.csv --out keep.csv --overwrite",
        1,
        "not a safe file name",
        ("keep.csv",),
        {"sample.csv": "patientId,PredictionString\n../../etc/passwd,\n"},
    ),
    "8-save-raw-format": Case(
        "predict --weights {W} --source {S} --out keep.csv --save-raw raw.txt", 2, "use .csv or .parquet", ("keep.csv",)
    ),
    "8-out-is-save-raw": Case(
        "predict --weights {W} --source {S} --out keep.csv --save-raw keep.csv", 2, "same file", ("keep.csv",)
    ),
    "8-out-is-sample": Case(
        "predict --weights {W} --source {S} --sample keep.csv --out keep.csv",
        2,
        "is also --sample",
        ("keep.csv",),
        {"keep.csv": "patientId,PredictionString\n"},
    ),
    "8-convert-out-is-images": Case("convert --images {I} --labels {L} --out {I}", 2, "is also --images"),
    "8-tune-out-is-raw": Case(
        "tune --predictions keep.csv --labels {L} --out keep.csv", 2, "is also --predictions", ("keep.csv",)
    ),
    "9-header-only-labels": Case(
        "convert --images {I} --labels labels.csv --out out",
        1,
        "no label rows",
        files={"labels.csv": "patientId,x,y,width,height,Target\n"},
    ),
    "10-more-folds-than-patients": Case("convert --images {I} --labels {L} --out out --folds 50", 2, "--folds 50"),
    "10-train-a-fold-it-lacks": Case("train --data {D} --model yolo11n.yaml --fold 30", 2, "not a k-fold dataset"),
    "11-unknown-model-config": Case("train --data {D} --model nonsense.yaml --project runs", 2, "nonsense.yaml"),
    "12-moved-dataset": Case(
        "train --data moved/data.yaml --model yolo11n.yaml --project runs", 1, "was the dataset folder moved"
    ),
    "13-predict-out-exists": Case(
        "predict --weights {W} --source {S} --out keep.csv",
        2,
        "keep.csv exists already; add --overwrite",
        ("keep.csv",),
    ),
    "13-tune-out-exists": Case(
        "tune --predictions raw.csv --labels {L} --out keep.yaml",
        2,
        "add --overwrite",
        ("keep.yaml",),
        {"raw.csv": "x\n"},
    ),
    "13-report-out-holds-the-users-plots": Case(
        "report --predictions {SAMPLE} --images {S} --out mine --overwrite",
        2,
        "report did not write",
        ("mine/plots/own.png", "mine/overlays/own.png"),
        {"mine/plots/own.png": KEEP, "mine/overlays/own.png": KEEP},
    ),
    "13-demo-out-holds-the-users-dicoms": Case(
        "demo --out . --overwrite --n-train 20 --n-test 1",
        2,
        "demo did not write",
        ("rsna/stage_2_train_images/mine.dcm", "rsna/stage_2_train_labels.csv"),
        {"rsna/stage_2_train_images/mine.dcm": KEEP, "rsna/stage_2_train_labels.csv": KEEP},
    ),
    "13-compare-out-holds-the-users-data": Case(
        "compare --out mine --overwrite", 2, "compare did not write", ("mine/rsna/a.dcm",), {"mine/rsna/a.dcm": KEEP}
    ),
    "13-synth-overwrite-the-users-dicoms": Case(
        "synth --out mine --overwrite --n-train 2 --dicom-size 64",
        2,
        "synth did not write",
        ("mine/stage_2_train_images/a.dcm", "mine/stage_2_train_labels.csv"),
        {"mine/stage_2_train_images/a.dcm": KEEP, "mine/stage_2_train_labels.csv": KEEP},
    ),
    "13-train-no-gpu-and-no-weights": Case(
        "train --data {D} --model yolo11s.pt --device 7 --project runs", 2, "GPU 7 is not available"
    ),
    # weak: the wrong exit code, or a message that could say more
    "w-empty-source": Case(
        "predict --weights {W} --source empty --out keep.csv --overwrite",
        2,
        "holds no .dcm",
        ("keep.csv",),
        folders=("empty",),
    ),
    "w-dicom-out-with-pngs": Case(
        "predict --weights {W} --source pngs --dicom-out dicom --out keep.csv --overwrite",
        2,
        "needs DICOM inputs",
        ("keep.csv",),
        {"pngs/a.png": ""},
    ),
    "w-convert-imgsz-0": Case(
        "convert --images {I} --labels {L} --out {DS} --imgsz 0", 2, "from 8 to 4096", ("{DS}/data.yaml",)
    ),
    "w-convert-imgsz-negative": Case("convert --images {I} --labels {L} --out out --imgsz -5", 2, "from 8 to 4096"),
    "w-train-epochs-0": Case("train --data {D} --model yolo11n.yaml --epochs 0", 2, "--epochs"),
    "w-set-unknown-key": Case(
        "train --data {D} --model yolo11n.yaml --set lr00=0.1 --device cpu --project runs",
        2,
        "did you mean 'lr0'",
    ),
    "w-set-without-value": Case("train --data {D} --model yolo11n.yaml --set lr0", 2, "expected key=value"),
    "w-set-wrong-type": Case(
        "train --data {D} --model yolo11n.yaml --set lr0=abc --device cpu --project runs", 2, "lr0"
    ),
    "w-tune-split-without-manifest": Case(
        "tune --predictions raw.csv --labels {L} --split val --out keep.yaml",
        2,
        "--split needs --manifest",
        ("keep.yaml",),
        {"raw.csv": "x\n"},
    ),
    "w-tune-conf-not-a-number": Case(
        "tune --predictions raw.csv --labels {L} --conf-grid 0.1,abc --out keep.yaml",
        2,
        "--conf",
        ("keep.yaml",),
        {"raw.csv": "x\n"},
    ),
    "w-tune-merge-unknown": Case(
        "tune --predictions raw.csv --labels {L} --merge-grid soft:0.5 --out keep.yaml",
        2,
        "'soft:0.5' is not a merge",
        ("keep.yaml",),
        {"raw.csv": "x\n"},
    ),
    "w-convert-empty-images": Case(
        "convert --images empty --labels {L} --out {DS} --imgsz 64",
        2,
        "holds no usable .dcm",
        ("{DS}/data.yaml",),
        folders=("empty",),
    ),
    "w-validate-sample-without-header": Case(
        "validate-submission --predictions {SAMPLE} --sample sample.csv",
        1,
        "no patientId column",
        files={"sample.csv": "abc,\n"},
    ),
    "w-report-header-only": Case(
        "report --predictions sub.csv --images {S} --out report",
        1,
        "holds no patient",
        files={"sub.csv": "patientId,PredictionString\n"},
    ),
}


def prepare(case: Case, world: World, folder: Path) -> dict[Path, bytes]:
    """Write the case's inputs and outputs into ``folder``; return the outputs with their bytes."""
    if "--source many" in case.args:  # 400 DICOMs that cost nothing: links to one file
        (folder / "many").mkdir()
        first = next(Path(world["S"]).glob("*.dcm"))
        for index in range(400):
            os.link(first, folder / "many" / f"p{index:03d}.dcm")
    if "moved/" in case.args:  # a dataset of an older convert (an absolute path), moved away after converting
        shutil.copytree(world["DS"], folder / "moved")
        yaml = folder / "moved" / "data.yaml"
        yaml.write_text(f"path: {folder / 'gone'}\n" + yaml.read_text())
    for name in case.folders:
        (folder / name).mkdir(parents=True, exist_ok=True)
    if "ro" in case.folders:
        (folder / "ro").chmod(0o555)
    for name, text in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    outputs = {}
    for name in case.outputs:
        path = folder / name.format_map(world)
        if not path.exists():
            path.write_text(KEEP)
        outputs[path] = path.read_bytes()
    return outputs


@dataclass
class Outcome:
    result: subprocess.CompletedProcess
    before: dict[Path, bytes]
    folder: Path


@pytest.fixture(scope="module")
def outcomes(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, each in a folder of its own: the console ones by the console script, side by side on the cores
    this process may use, while the others run here."""
    folders = {name: tmp_path_factory.mktemp(name) for name in CASES}
    before = {name: prepare(CASES[name], world, folders[name]) for name in CASES}
    console = [name for name in CASES if CASES[name].console]

    def run(name: str) -> subprocess.CompletedProcess:
        return pneumo_yolo(*CASES[name].args.format_map(world).split(), cwd=folders[name])

    with ThreadPoolExecutor(max(2, len(os.sched_getaffinity(0)))) as pool:
        running = pool.map(run, console)
        results = {
            name: in_this_process(*CASES[name].args.format_map(world).split(), cwd=folders[name])
            for name in CASES
            if not CASES[name].console
        }
        results.update(zip(console, running))
    return {name: Outcome(results[name], before[name], folders[name]) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_refused_clearly_and_loses_nothing(name: str, outcomes: dict[str, Outcome]) -> None:
    case, result, folder = CASES[name], outcomes[name].result, outcomes[name].folder
    message = " ".join((result.stdout + result.stderr).replace("│", " ").split())
    assert result.returncode == case.code, message[-2000:]
    assert case.word in message
    assert "Traceback" not in result.stdout + result.stderr
    for path, content in outcomes[name].before.items():
        assert path.read_bytes() == content, f"{path} was changed"
    assert not (folder / "runs").exists() and not (folder / "out").exists(), "a refused command left an output behind"
    assert not list(folder.rglob("*.part")), "a temporary file was left behind"


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        ("4-device-7", ["GPU 7 is not available", "keep.csv exists already; add --overwrite"]),
        ("13-train-no-gpu-and-no-weights", ["GPU 7 is not available", "'yolo11s.pt' are not on this machine"]),
    ],
)
def test_a_command_line_with_several_problems_names_them_all_at_once(
    name: str, problems: list[str], outcomes: dict[str, Outcome]
) -> None:
    stderr = outcomes[name].result.stderr
    assert all(problem in stderr for problem in problems), stderr
    assert stderr.count("error: ") == len(problems), stderr


def test_a_moved_dataset_is_read_from_where_it_is_now(world: World, tmp_path: Path) -> None:
    """convert's YAMLs and fold lists name no absolute path, so the folder can move (or be copied)."""
    dataset = tmp_path / "folds"
    rsna = Path(world["I"]).parent
    convert_rsna(
        rsna / "stage_2_train_images",
        rsna / "stage_2_train_labels.csv",
        dataset,
        settings=ConvertSettings(imgsz=IMGSZ, folds=2),
        workers=1,
        progress=False,
    )
    dataset.rename(tmp_path / "moved")
    moved = ConvertedDataset.from_yaml(tmp_path / "moved" / "data_fold1.yaml")
    assert moved.root == tmp_path / "moved"
    listed = moved.listed("train") + moved.listed("val")
    assert len(listed) == 24 and all(
        path.is_file() and (tmp_path / "moved") in path.resolve().parents for path in listed
    )


# Interrupts: predict killed while it writes, with --save-raw and --dicom-out.

PREVIOUS = {"sub.csv": "previous submission\n", "raw.parquet": "previous raw table\n"}
RUN = "predict --weights {W} --source source --out sub.csv --save-raw raw.parquet --dicom-out dicom --batch 1 --device cpu --overwrite"


@pytest.fixture(scope="module")
def killing_ground(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where predict runs for a while: 60 links to the test DICOMs, and the outputs of an earlier run."""
    folder = tmp_path_factory.mktemp("kill")
    dicoms = sorted(Path(world["S"]).glob("*.dcm"))
    (folder / "source").mkdir()
    for index in range(60):
        os.link(dicoms[index % len(dicoms)], folder / "source" / f"p{index:02d}.dcm")
    for name, text in PREVIOUS.items():
        (folder / name).write_text(text)
    for kind in ("sr", "gsps"):  # earlier results of an image this run also predicts
        (folder / "dicom" / kind).mkdir(parents=True)
        (folder / "dicom" / kind / "p00.dcm").write_text(f"previous {kind}\n")
    return folder


def previous_outputs(folder: Path) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for path in [*(folder / name for name in PREVIOUS), *(folder / "dicom").rglob("*")]
        if path.is_file()
    }


def family(pid: int) -> set[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        found.add(todo[-1])
        todo += children.get(todo.pop(), [])
    return found


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting for a parent that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def leftovers(pids: set[int], folder: Path) -> list[str]:
    """What the processes ``pids`` left: themselves, their shared memory and semaphores, temporary files below ``folder``."""
    alive = [f"process {pid}" for pid in pids if running(pid)]
    shared = [
        path.name
        for path in SHM_DIR.glob(f"*{SHM_PREFIX}-*")
        if any(f"{SHM_PREFIX}-{pid}-" in path.name for pid in pids)
    ]
    try:
        parts = [str(path) for path in folder.rglob("*.part")]
    except FileNotFoundError:  # the janitor removed a folder while it was being listed: look again
        parts = [f"{folder} (changing)"]
    return alive + shared + parts


def wait_for(check, seconds: float) -> list[str]:
    """``check()`` until it returns nothing, for at most ``seconds``; its last answer."""
    deadline = time.monotonic() + seconds
    while (found := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.skipif(
    not SHM_DIR.is_dir() or not Path("/proc/self/stat").is_file(), reason="needs Linux: /proc and /dev/shm"
)
@pytest.mark.parametrize(
    "kill", ["SIGKILL to the main process", "SIGKILL to the process group", "SIGINT to the process group (Ctrl-C)"]
)
def test_an_interrupted_predict_leaves_nothing_behind(kill: str, world: World, killing_ground: Path) -> None:
    folder = killing_ground
    before = previous_outputs(folder)
    with (
        open(folder / "log.txt", "w") as log
    ):  # Ctrl-C as in a shell: a test runner's worker (pytest-xdist) may ignore SIGINT, and children inherit that
        process = subprocess.Popen(
            [str(SCRIPT), *RUN.format_map(world).split()],
            cwd=folder,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    staged = wait_for(
        lambda: not list(folder.glob(".dicom.*.part/sr/*.dcm")) and process.poll() is None and ["waiting"], 120
    )
    assert not staged and process.poll() is None, "predict ended before it wrote its first result"
    pids = family(process.pid)
    assert len(pids) >= 3, f"expected predict, its decoding process and its janitor: {pids}"
    if kill.startswith("SIGKILL to the main"):
        os.kill(process.pid, signal.SIGKILL)
    else:
        os.killpg(process.pid, signal.SIGINT if kill.startswith("SIGINT") else signal.SIGKILL)
    process.wait(timeout=60)
    assert wait_for(lambda: leftovers(pids, folder), 10) == []
    assert previous_outputs(folder) == before
    if kill.startswith("SIGINT"):
        assert process.returncode == 130
        assert (
            "Traceback" not in (log := (folder / "log.txt").read_text()) and "interrupted: nothing was written" in log
        )


def test_a_rerun_removes_what_dead_runs_left_and_writes_everything(world: World, killing_ground: Path) -> None:
    """Without --overwrite the rerun is refused and changes nothing; with it, it replaces the outputs."""
    folder = killing_ground
    before = previous_outputs(folder)
    refused = pneumo_yolo(*RUN.format_map(world).removesuffix(" --overwrite").split(), cwd=folder)
    assert refused.returncode == 2 and "sub.csv exists already; add --overwrite" in refused.stderr, refused.stderr
    assert previous_outputs(folder) == before
    gone = subprocess.Popen(["true"])  # a finished process: a pid that is gone
    gone.wait()
    stale = [folder / f".sub.csv.{gone.pid}.0badc0de.part", folder / f".raw.parquet.{gone.pid}.0badc0de.part"]
    for path in stale:
        path.write_text("left by a run that was killed\n")
    segment = SHM_DIR / f"{SHM_PREFIX}-{gone.pid}-0badc0de"
    segment.write_bytes(b"\0" * 16)
    sample = folder / "sample.csv"
    sample.write_text("patientId,PredictionString\np00,\np01,\np00,\n")
    before = previous_outputs(folder)
    result = pneumo_yolo(*RUN.format_map(world).split(), "--sample", "sample.csv", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lists 1 patientId(s) more than once" in result.stderr
    assert not segment.exists() and not any(path.exists() for path in stale)
    assert not list(folder.rglob("*.part"))
    assert [line.split(",")[0] for line in (folder / "sub.csv").read_text().splitlines()] == ["patientId", "p00", "p01"]
    for name in ("p00.dcm", "p01.dcm"):
        assert (folder / "dicom" / "sr" / name).read_bytes()[128:132] == b"DICM"
    written = {folder / name for name in PREVIOUS} | {
        folder / "dicom" / kind / name for kind in ("sr", "gsps") for name in ("p00.dcm", "p01.dcm")
    }
    assert {path: content for path, content in previous_outputs(folder).items() if path not in written} == {
        path: content for path, content in before.items() if path not in written
    }  # the results of images outside this run stay as they were
