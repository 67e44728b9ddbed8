"""How sure a score is: bootstrap intervals of the RSNA score over test images, alone and paired.

The RSNA score is the mean over the scored images (an image with neither truth nor prediction
is left out: ``nan`` in :attr:`~.metric.MetricResult.image_scores`). A resample draws the test
images with replacement and takes that mean again; the interval is the percentiles of the
resampled scores (SciPy's ``stats.bootstrap``, percentile method). The change between two
results on the same images is resampled *paired*: both are scored on the same drawn images,
so what the images share (how hard they are) cancels out, and a small change that every image
agrees on is told apart from noise.

Several runs on the same test images (the ablation's seeds) are given as rows of a ``(runs,
images)`` array: the estimate is the mean of the runs' scores, and a resample draws the same
images for every run, so the interval says how sure the mean over the runs is, given the test images.

>>> before = np.array([0.0, 0.5, np.nan, 1.0, 0.25, 0.0, 0.75, 0.5])
>>> after = before + np.array([0.1, 0.1, np.nan, 0.0, 0.1, 0.1, 0.1, 0.1])
>>> alone = score_interval(before)
>>> round(alone.estimate, 4), alone.low < alone.estimate < alone.high
(0.4286, True)
>>> change = change_interval(before, after)
>>> round(change.estimate, 4), 0 < change.low <= change.high
(0.0857, True)
>>> runs = np.vstack([before, after])
>>> round(score_interval(runs).estimate, 4)
0.4714
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A score, or a change of score, with its bootstrap interval (``nan`` where undefined)."""

    estimate: float
    low: float
    high: float


def _score(image_scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """The RSNA score of each row of image scores: the mean over the scored (not ``nan``) ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of left-out images alone has no mean
        return np.nanmean(image_scores, axis=axis)


def _interval(
    data: tuple[np.ndarray, ...], statistic, *, paired: bool, level: float, resamples: int, seed: int
) -> Interval:
    from scipy.stats import bootstrap

    estimate = float(statistic(*data, axis=-1))
    if len(data[0]) < 2 or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # SciPy warns when resamples of few images have no score; the interval is then nan
        found = bootstrap(
            data,
            statistic,
            paired=paired,
            vectorized=True,
            n_resamples=resamples,
            confidence_level=level,
            method="percentile",
            random_state=seed,
        )
    return Interval(estimate, float(found.confidence_interval.low), float(found.confidence_interval.high))


def _rows(image_scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(images,)`` or ``(runs, images)`` scores as a tuple of runs."""
    scores = np.asarray(image_scores, np.float64)
    if scores.ndim not in (1, 2):
        raise ValueError(f"image scores must be one run (images,) or several (runs, images), not shape {scores.shape}")
    return (scores,) if scores.ndim == 1 else tuple(scores)


def _mean_score(*runs: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean over runs of each run's RSNA score."""
    return np.mean([_score(run, axis) for run in runs], axis=0)


def score_interval(
    image_scores: np.ndarray, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The RSNA score of ``image_scores`` (one per test image, ``nan``: left out) and its ``level`` bootstrap interval.

    With ``(runs, images)`` scores of several runs on the same images: the mean of their scores.
    """
    runs = _rows(image_scores)
    return _interval(runs, _mean_score, paired=len(runs) > 1, level=level, resamples=resamples, seed=seed)


def change_interval(
    before: np.ndarray, after: np.ndarray, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """``score(after) − score(before)`` on the same images (in the same order) and its paired bootstrap interval.

    With ``(runs, images)`` scores: the mean over the runs of each run's change.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != after.shape:
        raise ValueError(f"paired scores need the same images: {before.shape} and {after.shape}")
    firsts, seconds = _rows(before), _rows(after)

    def change(*runs: np.ndarray, axis: int = -1) -> np.ndarray:
        return _mean_score(*runs[len(firsts) :], axis=axis) - _mean_score(*runs[: len(firsts)], axis=axis)

    return _interval((*firsts, *seconds), change, paired=True, level=level, resamples=resamples, seed=seed)
