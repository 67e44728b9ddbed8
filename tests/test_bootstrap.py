"""Bootstrap intervals of the RSNA score: they hold the score, narrow with more images, and a paired change sees what every image agrees on."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_yolo.eval.bootstrap import change_interval, score_interval
from pneumo_yolo.eval.metric import evaluate


def image_scores(n: int, seed: int = 0) -> np.ndarray:
    """Scores like a detector's: a third of the images left out (negatives without a box), the rest between 0 and 1."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n) * (rng.random(n) < 0.6)
    scores[rng.random(n) < 1 / 3] = np.nan
    return scores


def test_the_estimate_is_the_metric_of_the_scored_images() -> None:
    truth = {
        "a": np.array([[0, 0, 100, 100.0]]),
        "b": np.zeros((0, 4)),
        "c": np.zeros((0, 4)),
        "d": np.array([[10, 10, 50, 50.0]]),
    }
    predictions = {"a": np.array([[0.9, 0, 0, 100, 100.0]]), "c": np.array([[0.5, 0, 0, 10, 10.0]])}
    result = evaluate(truth, predictions)
    assert np.isnan(result.image_scores[1]) and result.image_scores.tolist()[2:] == [0.0, 0.0]
    assert score_interval(result.image_scores).estimate == pytest.approx(result.score) == pytest.approx(1 / 3)


def test_the_interval_holds_the_score_and_narrows_as_sqrt_n() -> None:
    small, large = score_interval(image_scores(150)), score_interval(image_scores(2400))
    assert small.low < small.estimate < small.high and large.low < large.estimate < large.high
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 3.0 < ratio < 5.3  # sqrt(2400 / 150) = 4


def test_same_seed_same_interval_and_another_seed_nearly_the_same() -> None:
    scores = image_scores(300)
    assert score_interval(scores, seed=1) == score_interval(scores, seed=1)
    other = score_interval(scores, seed=2)
    assert abs(other.low - score_interval(scores, seed=1).low) < 0.01


def test_a_change_every_image_agrees_on_is_certain_paired_but_not_unpaired() -> None:
    before = image_scores(150)
    after = np.where(np.isnan(before), np.nan, np.clip(before + 0.02, 0, 1))
    change = change_interval(before, after)
    assert 0 < change.low <= change.estimate <= change.high < 0.03
    alone_before, alone_after = score_interval(before), score_interval(after)
    assert alone_after.low < alone_before.high  # the two intervals overlap: unpaired, the change would look like noise


def test_a_change_on_other_images_is_refused() -> None:
    with pytest.raises(ValueError, match="same images"):
        change_interval(image_scores(10), image_scores(11))


def test_no_interval_without_two_images() -> None:
    alone = score_interval(np.array([0.5]))
    assert alone.estimate == 0.5 and np.isnan(alone.low) and np.isnan(alone.high)
