"""Benchmark of ``listen``: radiographs go from a real Orthanc to the node, and their results come back into Orthanc.

Run: ``.venv/bin/python bench/pacs.py [--n 200] [--imgsz 512] [--lone 3]`` (needs Debian's ``orthanc``).

N real-format 1,024² synthetic DICOMs (JPEG Baseline, as RSNA's) are uploaded into a private
Orthanc on the loopback. ``pneumo-yolo listen`` (yolo11n, 1 channel, random weights saved as a
checkpoint, as in ``bench/predict.py``: its speed does not depend on training) serves it and
returns its results there by C-STORE. First ``--lone`` images, one at a time on the idle node;
then the rest as a burst, each image sent by its own ``POST /modalities/pneumo/store`` (one
association per image, as an Orthanc routing rule on each stored instance does) from one
thread, as fast as Orthanc sends; with ``--together``, in one store call (one association, as a
rule on whole studies sends a study), every image's latency then counting from that call's start. An image's latency runs from the start of its send to the
moment its SR is seen in Orthanc (its ``/changes`` are polled every 50 ms). Throughput is the
burst's images over the time from its first send to its last SR. Peak memory is the node's
process tree (RSS every 50 ms; PSS, which counts shared pages once, every second). The cores
that the node, Orthanc and the bench itself used during the burst, and the machine's idle
share (/proc/stat), tell where the time went. Then, in
the same run, before the node starts and after it stops, ``predict`` on all N files with the
same weights: its images/s once the model is loaded (the mean of the two runs, as this
machine's speed drifts), and the ratio of the node's throughput to it.

Goals: throughput ≥ 0.8 × predict's; node peak memory < 1.5 GB; a lone image's result in
Orthanc in < 2 s on 2 CPU cores (yolo11n at 512 px).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PeakMemory, synthetic_dicoms  # noqa: E402
from predict import random_weights  # noqa: E402

from pneumo_yolo.pacs.orthanc import HOST, Modality, Orthanc, free_port, wait_until_listening  # noqa: E402

NODE_AE = "PNEUMOYOLO"
POLL_S = 0.05
"""How often Orthanc's changes are read: every 20 ms cost the bench 0.14 of a core, taken from the node it measures."""
LISTEN_WAIT_S = 180.0
"""How long the node may take to load its models and open its port."""


class ResultWatch:
    """Polls Orthanc's changes in a thread; ``seen[study]`` is when the first SR of that study (Orthanc ID) appeared."""

    def __init__(self, pacs: Orthanc) -> None:
        self.pacs = pacs
        _, self.since = pacs.new_instances()
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            arrived, self.since = self.pacs.new_instances(self.since)
            now = time.perf_counter()
            for instance in arrived:
                series = self.pacs.get(f"/instances/{instance}/series")
                if series["MainDicomTags"].get("Modality") == "SR":
                    self.seen.setdefault(series["ParentStudy"], now)
            self._stop.wait(POLL_S)

    def wait(self, studies: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(study in self.seen for study in studies):
            if time.monotonic() > deadline:
                missing = sum(study not in self.seen for study in studies)
                raise SystemExit(f"error: {missing} of {len(studies)} result(s) missing after {timeout_s:.0f} s")
            time.sleep(POLL_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu_s(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and of its children now alive."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def own_cpu_s() -> float:
    """User and system CPU seconds of this process (its threads, not its children)."""
    times = os.times()
    return times.user + times.system


def machine_cpu() -> tuple[float, float]:
    """Seconds of CPU this machine has spent busy, and idle (all cores, from /proc/stat)."""
    fields = [float(value) / os.sysconf("SC_CLK_TCK") for value in Path("/proc/stat").read_text().split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, idle


def start_node(weights: Path, pacs: Orthanc, spool: Path, log: Path) -> subprocess.Popen:
    """``pneumo-yolo listen`` serving ``pacs``; returns once its port accepts connections."""
    port = pacs.modalities["pneumo"].port
    command = [str(Path(sys.executable).with_name("pneumo-yolo")), "listen", "--weights", str(weights)]
    command += ["--device", "cpu", "--ae-title", NODE_AE, "--port", str(port), "--allow", f"{pacs.aet}@{HOST}"]
    command += ["--return-to", pacs.address, "--spool", str(spool)]
    node = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    problem = wait_until_listening(node, port, LISTEN_WAIT_S)
    if problem:
        node.kill()
        raise SystemExit(f"error: listen: {problem}:\n{log.read_text()[-2000:]}")
    return node


def node_run(n: int, imgsz: int, lone: int, scratch: Path, together: bool) -> dict:
    """The node's figures: lone latencies, burst throughput and latencies, peak memory."""
    source = synthetic_dicoms(n) / "stage_2_train_images"
    paths = sorted(source.glob("*.dcm"))
    weights = random_weights(imgsz)
    pacs = Orthanc(scratch / "orthanc", {"pneumo": Modality(NODE_AE, free_port())})
    with pacs:
        instances = [pacs.upload(path) for path in paths]
        studies = [pacs.get(f"/instances/{instance}/study")["ID"] for instance in instances]
        log = scratch / "listen.log"
        node = start_node(weights, pacs, scratch / "spool", log)
        watch = ResultWatch(pacs)
        sent: dict[str, float] = {}
        try:
            with PeakMemory(pid=node.pid) as memory:
                for study, instance in zip(studies[:lone], instances[:lone]):
                    time.sleep(1.0)
                    sent[study] = time.perf_counter()
                    pacs.store("pneumo", [instance])
                    watch.wait([study], 60)
                burst_started, cpu_started = time.perf_counter(), tree_cpu_s(node.pid)
                machine_started = machine_cpu()
                others_started = {"orthanc": tree_cpu_s(pacs.process.pid), "bench": own_cpu_s()}
                if together:
                    sent.update(dict.fromkeys(studies[lone:], burst_started))
                    pacs.store("pneumo", instances[lone:])
                for study, instance in zip(studies[lone:], instances[lone:]) if not together else ():
                    sent[study] = time.perf_counter()
                    pacs.store("pneumo", [instance])
                sent_all = time.perf_counter()
                watch.wait(studies[lone:], 60 + 10 * n)
                cpu_s = tree_cpu_s(node.pid) - cpu_started
                machine = [end - start for start, end in zip(machine_started, machine_cpu())]
                others = {"orthanc": tree_cpu_s(pacs.process.pid), "bench": own_cpu_s()}
                others = {name: others[name] - others_started[name] for name in others}
        finally:
            watch.close()
            node.terminate()
            node.wait(60)
    lanes = re.search(r"(\d+) lane\(s\) of models", log.read_text())
    batches = [
        (int(size), float(seconds))
        for size, seconds in re.findall(r"batch of (\d+) image\(s\) predicted in ([\d.]+) s", log.read_text())
    ][lone:]
    lone_s = [watch.seen[study] - sent[study] for study in studies[:lone]]
    burst_s = np.array([watch.seen[study] - sent[study] for study in studies[lone:]])
    burst_end = max(watch.seen[study] for study in studies[lone:])
    return {
        "burst": n - lone,
        "images_per_s": (n - lone) / (burst_end - burst_started),
        "sending_s": sent_all - burst_started,
        "burst_s": burst_end - burst_started,
        "p50_s": float(np.percentile(burst_s, 50)),
        "p95_s": float(np.percentile(burst_s, 95)),
        "lone_s": lone_s,
        "cpu_ms_per_image": 1000 * cpu_s / (n - lone),
        "burst_cores": {
            "node": cpu_s / (burst_end - burst_started),
            **{name: seconds / (burst_end - burst_started) for name, seconds in others.items()},
            "idle": machine[1] / (burst_end - burst_started),
            "all_busy": machine[0] / (burst_end - burst_started),
        },
        "lanes": int(lanes.group(1)) if lanes else 1,
        "mean_batch": float(np.mean([size for size, _ in batches])),
        "predict_step_ms_per_image": 1000 * sum(t for _, t in batches) / sum(size for size, _ in batches),
        "peak_mb": memory.peak_mb,
        "peak_pss_mb": memory.peak_pss_mb,
    }


def predict_run(n: int, imgsz: int, dicom_out: bool = False) -> dict:
    """``predict`` on the same files and weights, in its own process: images/s once the model is loaded, CPU ms per image.

    With ``dicom_out`` it also writes each image's SR and GSPS (``--dicom-out``), the work the node does besides predicting.
    """
    code = (
        "import json, sys; from pathlib import Path; from pneumo_yolo.predict.run import predict_folder; "
        "from pneumo_yolo.predict.device import PredictSettings; from pneumo_yolo.runtime.devices import CPU; "
        "s = PredictSettings(weights=(Path(sys.argv[1]),), imgsz=int(sys.argv[4]), progress=False, "
        "dicom_out=Path(sys.argv[5]) if len(sys.argv) > 5 else None); "
        "r = predict_folder(Path(sys.argv[2]), Path(sys.argv[3]), s, devices=CPU); "
        "print(json.dumps({'steady': r.steady_images_per_s, 'batch': r.batch, 'startup_s': r.startup_s, 'n': r.n_images}))"
    )
    source = synthetic_dicoms(n) / "stage_2_train_images"
    with tempfile.TemporaryDirectory() as scratch:
        args = [str(random_weights(imgsz)), str(source), str(Path(scratch) / "submission.csv"), str(imgsz)]
        args += [str(Path(scratch) / "results")] if dicom_out else []
        before = os.times()
        result = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
        after = os.times()
    found = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    cpu_s = after.children_user + after.children_system - before.children_user - before.children_system
    found["cpu_ms_per_image"] = 1000 * cpu_s / found["n"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images in all (the lone ones included)")
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--lone", type=int, default=3, help="images sent one at a time to the idle node first")
    parser.add_argument(
        "--together",
        action="store_true",
        help="send the burst in one store call (one association, as a study-level route does), not one per image",
    )
    args = parser.parse_args()
    synthetic_dicoms(args.n)
    before = predict_run(args.n, args.imgsz)  # predict before and after the node: this machine's speed drifts
    with tempfile.TemporaryDirectory() as scratch:
        node = node_run(args.n, args.imgsz, args.lone, Path(scratch), args.together)
    print(json.dumps(node), flush=True)
    predicted = predict_run(args.n, args.imgsz)
    predicted["steady_before"] = before["steady"]
    predicted["steady"] = (before["steady"] + predicted["steady"]) / 2
    ratio = node["images_per_s"] / predicted["steady"]
    with_results = predict_run(args.n, args.imgsz, dicom_out=True)
    ratio_results = node["images_per_s"] / with_results["steady"]
    lone = ", ".join(f"{seconds:.2f}" for seconds in node["lone_s"])
    cores = ", ".join(f"{name} {share:.2f}" for name, share in node["burst_cores"].items())
    print(
        f"N={args.n} imgsz={args.imgsz} CPU: node {node['images_per_s']:.2f} img/s over a burst of {node['burst']} "
        f"(predict {predicted['steady']:.2f} img/s once loaded, the mean of a run before the node's "
        f"({predicted['steady_before']:.2f}) and one after, batch {predicted['batch']}; ratio {ratio:.2f}, goal ≥ 0.8; "
        f"predict --dicom-out, the same SR and GSPS as the node, {with_results['steady']:.2f} img/s: ratio {ratio_results:.2f}; "
        f"Orthanc sent the burst in {node['sending_s']:.1f} s, its last SR came at {node['burst_s']:.1f} s) | "
        f"send → SR in Orthanc: p50 {node['p50_s']:.2f} s, p95 {node['p95_s']:.2f} s in the burst; "
        f"a lone image on the idle node {lone} s (goal < 2) | "
        f"node peak memory {node['peak_mb']:.0f} MB RSS, {node['peak_pss_mb']:.0f} MB PSS (goal < 1536) | "
        f"CPU per image: node {node['cpu_ms_per_image']:.0f} ms in the burst, predict {predicted['cpu_ms_per_image']:.0f} ms "
        f"(start-up included) | cores used in the burst: {cores} | the node's prediction steps: "
        f"{node['mean_batch']:.1f} images each on average, {node['predict_step_ms_per_image']:.0f} ms per image "
        f"in each of its {node['lanes']} lane(s)",
        flush=True,
    )
    print(
        json.dumps(
            {
                **node,
                "predict": predicted,
                "ratio": ratio,
                "predict_dicom_out": with_results,
                "ratio_dicom_out": ratio_results,
            }
        )
    )


if __name__ == "__main__":
    main()
