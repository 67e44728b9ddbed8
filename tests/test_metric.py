"""The RSNA metric: hand-computed cases (one rule each), properties, and a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pneumo_yolo.eval.metric import IOU_THRESHOLDS, evaluate, score_images

EMPTY = np.zeros((0, 4))
NO_PREDICTION = np.zeros((0, 5))


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def preds(*rows: list[float]) -> np.ndarray:
    """Rows ``conf x y w h``."""
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def one_image(gt: np.ndarray, prediction: np.ndarray) -> float:
    return evaluate({"a": gt}, {"a": prediction}).score


def reference(gt: np.ndarray, prediction: np.ndarray) -> float | None:
    """The metric written as plain loops, straight from the rules in DATA.md."""
    if len(gt) == 0 and len(prediction) == 0:
        return None

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        left, top = max(a[0], b[0]), max(a[1], b[1])
        right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
        if right <= left or bottom <= top:
            return 0.0
        inter = (right - left) * (bottom - top)
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    ordered = sorted(prediction.tolist(), key=lambda row: -row[0])
    total = 0.0
    for t in [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]:
        used: set[int] = set()
        for g in gt:
            for j, row in enumerate(ordered):
                if j not in used and iou(g, row[1:]) >= t:
                    used.add(j)
                    break
        tp = len(used)
        total += tp / (len(gt) + len(ordered) - tp)
    return total / 8


class TestRules:
    def test_iou_exactly_at_a_threshold_matches(self) -> None:
        gt = boxes([0, 0, 100, 100])
        # IoU 0.5 exactly: a match at 0.40, 0.45 and 0.50, not above.
        assert one_image(gt, preds([0.9, 0, 0, 50, 100])) == 3 / 8
        # IoU 0.55 exactly: a match at 0.40 … 0.55.
        assert one_image(gt, preds([0.9, 0, 0, 55, 100])) == 4 / 8
        # IoU 0.75 exactly: a match at every threshold.
        assert one_image(gt, preds([0.9, 0, 0, 75, 100])) == 1.0

    def test_iou_just_below_a_threshold_does_not_match(self) -> None:
        assert one_image(boxes([0, 0, 100, 100]), preds([0.9, 0, 0, 49.999, 100])) == 2 / 8

    def test_touching_boxes_have_iou_zero(self) -> None:
        gt = boxes([0, 0, 100, 100])
        assert one_image(gt, preds([0.9, 100, 0, 100, 100])) == 0.0
        assert one_image(gt, preds([0.9, 0, 100, 100, 100])) == 0.0
        # The exact box plus a touching one: TP 1, FP 1.
        assert one_image(gt, preds([0.9, 0, 0, 100, 100], [0.8, 100, 0, 100, 100])) == 0.5

    def test_more_predictions_than_ground_truth(self) -> None:
        prediction = preds([0.5, 0, 0, 100, 100], [0.9, 300, 300, 50, 50], [0.7, 600, 600, 50, 50])
        assert one_image(boxes([0, 0, 100, 100]), prediction) == pytest.approx(1 / 3)

    def test_confidence_order_changes_the_matching(self) -> None:
        # A = [0,0,100,100] and B = [20,0,100,100]. P overlaps both (IoU 0.818 each);
        # Q overlaps A (IoU 0.6) but not B (IoU 0.333).
        gt = boxes([0, 0, 100, 100], [20, 0, 100, 100])
        p, q = [10, 0, 100, 100], [0, 0, 60, 100]
        # P first: A takes P, B is left with Q (too far): TP 1, FP 1, FN 1 at every threshold.
        assert one_image(gt, preds([0.9, *p], [0.8, *q])) == pytest.approx(1 / 3)
        # Q first: A takes Q where IoU 0.6 ≥ t (5 thresholds) and B takes P; above 0.6, A takes P.
        assert one_image(gt, preds([0.8, *p], [0.9, *q])) == pytest.approx((5 * 1 + 3 * (1 / 3)) / 8)

    def test_ground_truth_boxes_take_predictions_in_turn(self) -> None:
        gt = boxes([20, 0, 100, 100], [0, 0, 100, 100])
        # B is first now: it takes P, A takes Q where IoU 0.6 ≥ t.
        assert one_image(gt, preds([0.9, 10, 0, 100, 100], [0.8, 0, 0, 60, 100])) == pytest.approx((5 + 1) / 8)

    def test_equal_confidences_keep_the_submitted_order(self) -> None:
        gt = boxes([0, 0, 100, 100], [20, 0, 100, 100])
        p, q = [10, 0, 100, 100], [0, 0, 60, 100]
        assert one_image(gt, preds([0.5, *p], [0.5, *q])) == pytest.approx(1 / 3)
        assert one_image(gt, preds([0.5, *q], [0.5, *p])) == pytest.approx(0.75)

    def test_image_without_truth_or_prediction_is_left_out(self) -> None:
        result = evaluate(
            {"a": boxes([0, 0, 100, 100]), "b": EMPTY}, {"a": preds([0.9, 0, 0, 100, 100]), "b": NO_PREDICTION}
        )
        assert result.score == 1.0
        assert result.n_images == 1
        assert result.n_negative == 0
        assert result.negative_fp_share == 0.0

    def test_false_positive_on_a_negative_image_scores_zero(self) -> None:
        gt = {"a": boxes([0, 0, 100, 100]), "b": EMPTY, "c": EMPTY}
        result = evaluate(gt, {"a": preds([0.9, 0, 0, 100, 100]), "b": preds([0.1, 5, 5, 10, 10])})
        assert result.score == 0.5
        assert result.n_images == 2
        assert (result.n_positive, result.n_negative) == (1, 1)
        assert (result.score_positive, result.score_negative) == (1.0, 0.0)
        assert result.negative_fp_share == 0.5

    def test_missing_prediction_on_a_positive_image_scores_zero(self) -> None:
        result = evaluate(
            {"a": boxes([0, 0, 100, 100]), "b": boxes([0, 0, 100, 100])}, {"a": preds([0.9, 0, 0, 100, 100])}
        )
        assert result.score == 0.5
        assert result.n_images == 2

    def test_mean_over_thresholds_then_over_images(self) -> None:
        gt = {"a": boxes([0, 0, 100, 100]), "b": boxes([0, 0, 100, 100])}
        result = evaluate(gt, {"a": preds([0.9, 0, 0, 50, 100]), "b": preds([0.9, 0, 0, 100, 100])})
        assert result.score == pytest.approx((3 / 8 + 1) / 2)
        np.testing.assert_allclose(result.per_threshold, [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5])
        np.testing.assert_array_equal(result.thresholds, IOU_THRESHOLDS)

    def test_prediction_for_an_unknown_patient_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="not in the ground truth"):
            evaluate({"a": EMPTY}, {"z": preds([0.9, 0, 0, 1, 1])})

    def test_nothing_to_score_gives_nan(self) -> None:
        result = evaluate({"a": EMPTY}, {})
        assert np.isnan(result.score)
        assert result.n_images == 0
        assert result.to_dict()["score"] is None

    def test_to_dict_has_the_scripting_keys(self) -> None:
        data = evaluate({"a": boxes([0, 0, 10, 10])}, {"a": preds([1, 0, 0, 10, 10])}).to_dict()
        assert {"score", "per_threshold", "n_images", "score_positive", "score_negative"} <= data.keys()
        assert list(data["per_threshold"]) == ["0.40", "0.45", "0.50", "0.55", "0.60", "0.65", "0.70", "0.75"]


# Boxes live in separate 200-px cells, so boxes of different cells never overlap.
CELLS = [(i * 200.0, j * 200.0) for i in range(5) for j in range(5)]


@st.composite
def cell_box(draw: st.DrawFn, cell: tuple[float, float]) -> list[float]:
    x, y = cell
    left, top = draw(st.floats(0, 100)), draw(st.floats(0, 100))
    return [x + left, y + top, draw(st.floats(1, 100)), draw(st.floats(1, 100))]


@st.composite
def image_truth(draw: st.DrawFn) -> np.ndarray:
    cells = draw(st.lists(st.sampled_from(CELLS), max_size=4, unique=True))
    return boxes(*[draw(cell_box(c)) for c in cells])


@st.composite
def image_predictions(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(0, 6))
    rows = [
        [draw(st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1)), *draw(cell_box(draw(st.sampled_from(CELLS))))]
        for _ in range(n)
    ]
    return preds(*rows)


dataset = st.lists(st.tuples(image_truth(), image_predictions()), min_size=1, max_size=8)


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(dataset)
    def test_equals_the_plain_loop_reference(self, images: list[tuple[np.ndarray, np.ndarray]]) -> None:
        gt = {str(i): g for i, (g, _) in enumerate(images)}
        prediction = {str(i): p for i, (_, p) in enumerate(images)}
        expected = [s for s in (reference(g, p) for g, p in images) if s is not None]
        result = evaluate(gt, prediction)
        if expected:
            assert result.score == pytest.approx(np.mean(expected), abs=1e-12)
        else:
            assert np.isnan(result.score)

    @settings(max_examples=200, deadline=None)
    @given(dataset)
    def test_score_is_between_zero_and_one(self, images: list[tuple[np.ndarray, np.ndarray]]) -> None:
        result = evaluate(
            {str(i): g for i, (g, _) in enumerate(images)}, {str(i): p for i, (_, p) in enumerate(images)}
        )
        assume(result.n_images > 0)
        assert 0.0 <= result.score <= 1.0
        assert ((result.per_threshold >= 0) & (result.per_threshold <= 1)).all()

    @settings(max_examples=200, deadline=None)
    @given(st.lists(image_truth(), min_size=1, max_size=8), st.randoms())
    def test_perfect_predictions_score_one(self, truths: list[np.ndarray], random) -> None:
        assume(any(len(g) for g in truths))
        gt = {str(i): g for i, g in enumerate(truths)}
        prediction = {pid: np.c_[[random.random() for _ in g], g] for pid, g in gt.items()}
        assert evaluate(gt, prediction).score == 1.0

    @settings(max_examples=200, deadline=None)
    @given(dataset, st.data())
    def test_a_low_confidence_false_positive_never_raises_the_score(self, images, data) -> None:
        gt = {str(i): g for i, (g, _) in enumerate(images)}
        prediction = {str(i): p for i, (_, p) in enumerate(images)}
        before = evaluate(gt, prediction)
        target = data.draw(st.sampled_from(sorted(gt)))
        free = [
            c for c in CELLS if not any(g[0] // 200 * 200 == c[0] and g[1] // 200 * 200 == c[1] for g in gt[target])
        ]
        assume(free)
        box = data.draw(cell_box(data.draw(st.sampled_from(free))))
        lowest = prediction[target][:, 0].min() if len(prediction[target]) else 1.0
        conf = data.draw(st.floats(0, lowest))
        prediction[target] = np.r_[prediction[target], preds([conf, *box])]
        after = evaluate(gt, prediction)
        assert after.score <= before.score or (np.isnan(before.score) and after.score == 0.0)


def test_flat_kernel_handles_many_boxes_in_one_image() -> None:
    """A crowded image lands in its own padding group; the score still follows the rules."""
    rng = np.random.default_rng(1)
    gt = boxes(*[[x, 0, 10, 10] for x in range(0, 1000, 20)])
    prediction = np.c_[rng.uniform(0, 1, 300), rng.uniform(0, 900, (300, 2)), rng.uniform(5, 50, (300, 2))]
    prediction[:50, 1:] = gt
    per_image = score_images(1, np.zeros(len(gt), int), gt, np.zeros(300, int), prediction[:, 0], prediction[:, 1:])
    assert per_image.mean() == pytest.approx(reference(gt, prediction), abs=1e-12)
