"""Benchmark of the gate and of ensembles: what an image classifier and extra detectors add to ``predict``.

Run: ``.venv/bin/python bench/ensemble.py [--n 200] [--imgsz 512] [--classifier-imgsz 512] [--members 1 2 3]``.

Models are yolo11n detectors (1 channel, 1 class, as ``train`` builds them) and a yolo11n-cls
opacity classifier, with random weights: their speed does not depend on training. For each
configuration, :func:`pneumo_yolo.predict.run.predict_folder` runs from the DICOM files
(decoding, inference, post-processing and the CSV) and its steady images/s (model loaded) is
printed, with:

- the gate's cost: (detector + classifier) time / detector time − 1. Goal: at most 30 %.
- an ensemble of N detectors against N × one detector's model-only time plus one decode per
  image (both measured here, in this process: ``Detector.detect`` on decoded images, and
  ``load_image`` per file on one OpenCV thread, as in the decoding processes). Goal: at most that bound.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import CACHE, model_only_ms, synthetic_dicoms  # noqa: E402
from predict import decode_rate, random_weights  # noqa: E402


def random_classifier(imgsz: int) -> Path:
    """A yolo11n-cls opacity classifier (classes ``no_opacity``, ``opacity``), saved like a trained checkpoint."""
    path = CACHE / f"yolo11n-cls-{imgsz}.pt"
    if not path.is_file():
        import torch

        from pneumo_yolo.data.classify_view import CLASS_NAMES
        from pneumo_yolo.runtime.offline import import_ultralytics

        import_ultralytics()
        from ultralytics.nn.tasks import ClassificationModel

        model = ClassificationModel("yolo11n-cls.yaml", nc=len(CLASS_NAMES), verbose=False)
        model.names = dict(enumerate(CLASS_NAMES))
        model.args = {"imgsz": imgsz}
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "classify"}}, path)
    return path


def steady_ms(
    source: Path, weights: list[Path], classifiers: list[Path], imgsz: int, batch: int, workers: int
) -> float:
    """Milliseconds per image of ``predict_folder`` once its models are loaded."""
    from pneumo_yolo.predict.device import PredictSettings
    from pneumo_yolo.predict.run import predict_folder
    from pneumo_yolo.runtime.devices import CPU

    settings = PredictSettings(
        weights=tuple(weights),
        classifiers=tuple(classifiers),
        imgsz=imgsz,
        batch=batch,
        workers=workers,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as scratch:
        report = predict_folder(source, Path(scratch) / "submission.csv", settings, devices=CPU)
    return 1000 / report.steady_images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="synthetic 1024² DICOMs to predict")
    parser.add_argument("--imgsz", type=int, default=512, help="the detectors' size")
    parser.add_argument(
        "--classifier-imgsz",
        type=int,
        default=512,
        help="the classifier's size (train's default: the dataset's, as the detector's)",
    )
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 3], help="ensemble sizes to time")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes beside inference")
    args = parser.parse_args()

    from pneumo_yolo.nets.yolo import YoloDetector
    from pneumo_yolo.predict.decoding import list_inputs, load_image
    from pneumo_yolo.runtime.devices import CPU

    source = synthetic_dicoms(args.n) / "stage_2_train_images"
    detector_weights, classifier_weights = random_weights(args.imgsz), random_classifier(args.classifier_imgsz)
    decode_ms = 1000 / decode_rate(source, args.imgsz, n=64)
    images = [load_image(path, args.imgsz).pixels for path in list_inputs(source)[:64]]
    detector = YoloDetector(detector_weights, imgsz=args.imgsz, device=CPU)
    model_ms = model_only_ms(detector, images, args.batch)
    print(
        f"{args.n} DICOMs (1024²), CPU, batch {args.batch}, {args.workers} decoding worker(s): "
        f"decode {decode_ms:.1f} ms/image, one detector at {args.imgsz} px {model_ms:.1f} ms/image (model only)"
    )

    one = steady_ms(source, [detector_weights], [], args.imgsz, args.batch, args.workers)
    gated = steady_ms(source, [detector_weights], [classifier_weights], args.imgsz, args.batch, args.workers)
    print(
        f"gate: detector {one:.1f} ms/image, + classifier at {args.classifier_imgsz} px {gated:.1f} ms/image: "
        f"{100 * (gated / one - 1):+.0f} % (goal: at most +30 %)"
    )
    for members in args.members:
        ensemble = steady_ms(source, [detector_weights] * members, [], args.imgsz, args.batch, args.workers)
        bound = members * model_ms + decode_ms
        print(
            f"ensemble of {members}: {ensemble:.1f} ms/image end to end; bound {members} x {model_ms:.1f} + {decode_ms:.1f} = "
            f"{bound:.1f} ms/image: {ensemble / bound:.2f} of the bound (goal: at most 1.00)"
        )


if __name__ == "__main__":
    main()
