"""``make pacs-demo``: a real Orthanc and ``pneumo-yolo listen`` on the loopback, a few radiographs, their results.

Run: ``.venv/bin/python scripts/pacs_demo.py [--out pacs-demo] [--n 4] [--weights best.pt --postprocess tuned.yaml] [--keep]``

1. A model: ``--weights``; else the one ``make demo`` trained (``demo/runs/demo``), with its tuned
   post-processing; else a tiny one trained here on synthetic data (kept in ``OUT/model`` for the
   next run), which plumbs the route but is too small to find opacities: no GSPS then.
2. A private Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) in ``OUT/orthanc``, and
   ``listen`` (spool ``OUT/spool``, log ``OUT/listen.log``), both on free loopback ports, both new each run.
3. N synthetic radiographs in the real RSNA format are stored into Orthanc; its routing rule
   (``scripts/orthanc_route.lua``, the one docs/pacs.md shows) sends each to the node.
4. Each study is printed with its series (the image, our SR, our GSPS where there are boxes)
   and its Orthanc Explorer address; then both servers stop (``--keep``: after Ctrl-C).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pneumo_yolo.pacs.orthanc import BINARY, HOST, Modality, Orthanc, free_port, wait_until_listening

NODE_AE = "PNEUMOYOLO"
MAKE_DEMO = Path("demo/runs/demo")
ROUTE = Path(__file__).resolve().with_name("orthanc_route.lua")
WAIT_S = 180.0


def model(out: Path, weights: Path | None, postprocess: Path | None) -> tuple[Path, Path | None]:
    """The weights and post-processing YAML the node will use (see the module docstring)."""
    from pneumo_yolo.train.common import TUNED_YAML

    if weights is not None:
        return weights, postprocess
    for run in (MAKE_DEMO, out / "model" / "runs" / "demo"):
        if (run / "weights" / "best.pt").is_file():
            print(f"model: {run / 'weights' / 'best.pt'}")
            return run / "weights" / "best.pt", postprocess or _existing(run / TUNED_YAML)
    from pneumo_yolo.pipelines.demo import DemoSettings, run_demo
    from pneumo_yolo.runtime.devices import Devices

    print(
        "model: none found (no --weights, no `make demo` run): training a tiny one on synthetic data.\n"
        "  It is too small to find opacities: expect an SR per image (finding absent) and no GSPS;\n"
        "  run `make demo` first (a few minutes) for a model whose boxes come back as GSPS too."
    )
    settings = DemoSettings(n_train=64, n_test=4, imgsz=128, epochs=3, batch=16, devices=Devices.parse("cpu"))
    result = run_demo(out / "model", settings, log=lambda line: print(f"  {line}"))
    return result.best, postprocess or _existing(result.best.parents[1] / TUNED_YAML)


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def start_listen(weights: Path, postprocess: Path | None, pacs: Orthanc, out: Path) -> subprocess.Popen:
    """``pneumo-yolo listen`` serving ``pacs``, once its port accepts connections."""
    port = pacs.modalities["pneumo"].port
    command = [str(Path(sys.executable).with_name("pneumo-yolo")), "listen", "--weights", str(weights)]
    command += ["--postprocess", str(postprocess)] if postprocess else []
    command += ["--device", "cpu", "--ae-title", NODE_AE, "--port", str(port), "--allow", f"{pacs.aet}@{HOST}"]
    command += ["--return-to", pacs.address, "--spool", str(out / "spool")]
    print(f"listen: {' '.join(command[1:])}")
    log = (out / "listen.log").open("w")
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    problem = wait_until_listening(node, port, WAIT_S)
    if problem:
        node.kill()
        raise SystemExit(f"error: listen: {problem}; see {out / 'listen.log'}")
    return node


def series_of(pacs: Orthanc, study: str) -> list[tuple[str, str, int]]:
    """(Modality, SeriesDescription, instances) of each series of a study."""
    found = []
    for series in pacs.get(f"/studies/{study}/series"):
        tags = series["MainDicomTags"]
        found.append((tags.get("Modality", "?"), tags.get("SeriesDescription", ""), len(series["Instances"])))
    return sorted(found)


def served(pacs: Orthanc, study: str) -> bool:
    return any(modality == "SR" for modality, _, _ in series_of(pacs, study))


def run(out: Path, n: int, weights: Path, postprocess: Path | None, keep: bool) -> None:
    from pneumo_yolo.synth import make_rsna_like

    images = out / "images"
    make_rsna_like(images, n, seed=11, overwrite=True, progress=False)
    paths = sorted((images / "stage_2_train_images").glob("*.dcm"))
    for stale in ("orthanc", "spool"):
        shutil.rmtree(out / stale, ignore_errors=True)
    with Orthanc(out / "orthanc", {"pneumo": Modality(NODE_AE, free_port())}, lua_scripts=(ROUTE,)) as pacs:
        print(f"Orthanc: {pacs.url} (DICOM {pacs.address}), storage {out / 'orthanc'}")
        node = start_listen(weights, postprocess, pacs, out)
        try:
            started = time.perf_counter()
            instances = [pacs.upload(path) for path in paths]
            studies = [pacs.get(f"/instances/{instance}/study")["ID"] for instance in instances]
            print(f"stored {len(instances)} radiograph(s) into Orthanc; its routing rule sends them to {NODE_AE}")
            deadline = time.monotonic() + WAIT_S
            while not all(served(pacs, study) for study in studies):
                if time.monotonic() > deadline:
                    raise SystemExit(f"error: results missing after {WAIT_S:.0f} s; see {out / 'listen.log'}")
                time.sleep(0.2)
            print(f"every study has its results after {time.perf_counter() - started:.1f} s:\n")
            for study in studies:
                uid = pacs.get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
                print(f"study {uid}")
                for modality, description, count in series_of(pacs, study):
                    print(f"  {modality:3} {description or '(no description)'}: {count} instance(s)")
                print(f"  {pacs.url}/app/explorer.html#study?uuid={study}")
            if keep:
                print("\nOrthanc and listen keep running; Ctrl-C stops both.")
                try:
                    while node.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
        finally:
            node.terminate()
            node.wait(60)
    print("\nstopped Orthanc and listen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("pacs-demo"))
    parser.add_argument("--n", type=int, default=4, help="radiographs to send")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--postprocess", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep both servers running until Ctrl-C")
    args = parser.parse_args()
    if not BINARY.is_file():
        raise SystemExit(f"error: {BINARY} not found: apt-get install orthanc orthanc-dicomweb")
    args.out.mkdir(parents=True, exist_ok=True)
    weights, postprocess = model(args.out.absolute(), args.weights, args.postprocess)
    run(args.out.absolute(), args.n, weights.absolute(), postprocess.absolute() if postprocess else None, args.keep)


if __name__ == "__main__":
    main()
