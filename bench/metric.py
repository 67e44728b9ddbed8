"""Benchmark of the RSNA metric: 26,684 images (the stage-2 train set) with up to 10 predictions each.

Run: ``.venv/bin/python bench/metric.py [--images N] [--max-predictions K] [--repeats R]``.
Ground truth follows the real label statistics (22.5 % positive, 1–4 boxes); predictions
are jittered copies of the truth plus random false positives. Prints the best of R timings
of :func:`pneumo_yolo.eval.metric.evaluate` from ``{patientId: array}`` dicts, as ``evaluate``
calls it, and of the flat-array kernel :func:`pneumo_yolo.eval.metric.score_images` alone.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pneumo_yolo.eval.metric import evaluate, flatten_ground_truth, score_images


def synthetic(n_images: int, max_predictions: int, seed: int = 0) -> tuple[dict, dict]:
    """Ground truth and predictions shaped like the RSNA training set."""
    rng = np.random.default_rng(seed)
    gt, predictions = {}, {}
    boxes_per_positive = rng.choice([1, 2, 3, 4], size=n_images, p=[0.435, 0.543, 0.02, 0.002])
    for i in range(n_images):
        pid = f"patient-{i:05d}"
        n_gt = boxes_per_positive[i] if rng.random() < 0.225 else 0
        wh = rng.uniform(40, 500, (n_gt, 2))
        gt[pid] = np.c_[rng.uniform(0, 1024 - wh), wh]
        n_pred = rng.integers(0, max_predictions + 1)
        jittered = gt[pid][: min(n_gt, n_pred)] + rng.normal(0, 15, (min(n_gt, n_pred), 4))
        wh = rng.uniform(40, 500, (n_pred - len(jittered), 2))
        boxes = np.r_[jittered, np.c_[rng.uniform(0, 1024 - wh), wh]]
        boxes[:, 2:] = boxes[:, 2:].clip(1, None)
        predictions[pid] = np.c_[rng.uniform(0, 1, n_pred), boxes]
    return gt, predictions


def best_of(repeats: int, function) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=26_684)
    parser.add_argument("--max-predictions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    gt, predictions = synthetic(args.images, args.max_predictions)
    n_gt = sum(len(b) for b in gt.values())
    n_pred = sum(len(p) for p in predictions.values())
    result = evaluate(gt, predictions)
    full = best_of(args.repeats, lambda: evaluate(gt, predictions))

    index = {pid: i for i, pid in enumerate(gt)}
    gt_image, gt_boxes, _ = flatten_ground_truth(list(gt.values()))
    pred_image = np.repeat([index[p] for p in predictions], [len(p) for p in predictions.values()])
    flat = np.concatenate(list(predictions.values()))
    kernel = best_of(
        args.repeats, lambda: score_images(len(gt), gt_image, gt_boxes, pred_image, flat[:, 0], flat[:, 1:])
    )

    print(
        f"images {args.images:,}, ground-truth boxes {n_gt:,}, predictions {n_pred:,} (up to {args.max_predictions} per image)"
    )
    print(f"score {result.score:.4f} over {result.n_images:,} scored images")
    print(f"evaluate(dicts):          {full:.3f} s (best of {args.repeats})")
    print(f"score_images(flat arrays): {kernel:.3f} s (best of {args.repeats})")


if __name__ == "__main__":
    main()
