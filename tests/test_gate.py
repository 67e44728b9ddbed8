"""The image gate, the fusion of ensemble members, and tuning both on raw detections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pneumo_yolo.eval.combine import combine_members, stack_images
from pneumo_yolo.eval.detections import RawDetections, RawFileError, RawImage
from pneumo_yolo.eval.gate import apply_gate, gate
from pneumo_yolo.eval.postprocess import PostprocessConfig, fuse, fuse_members, postprocess_image
from pneumo_yolo.eval.tune import TuneGrid, score_config, tune

from .test_tune import generated

NO_CHANGE = PostprocessConfig(conf=0.0, merge="none", max_boxes=None, shrink=1.0)


class TestGate:
    @pytest.mark.parametrize(
        ("p", "alpha", "threshold", "expected"),
        [
            (0.5, 1.0, 0.0, [0.4, 0.1]),  # box × p
            (0.25, 0.5, 0.0, [0.4, 0.1]),  # box × sqrt(p)
            (0.9, 0.0, 0.0, [0.8, 0.2]),  # alpha 0: p only gates
            (0.29, 1.0, 0.3, [0.0, 0.0]),  # under the threshold: no box
            (0.3, 0.0, 0.3, [0.8, 0.2]),  # at the threshold: kept
        ],
    )
    def test_combination_rule(self, p: float, alpha: float, threshold: float, expected: list[float]) -> None:
        np.testing.assert_allclose(gate(np.array([0.8, 0.2]), p, alpha, threshold), expected)

    def test_without_a_probability_nothing_changes_even_a_zero_score(self) -> None:
        boxes, scores = apply_gate(np.array([[0, 0, 5, 5], [1, 1, 4, 4]]), np.array([0.7, 0.0]), math.nan, 1.0, 0.5)
        assert scores.tolist() == [0.7, 0.0] and len(boxes) == 2

    def test_a_gated_out_image_keeps_no_box_after_postprocessing(self) -> None:
        image = RawImage("a", np.array([[10, 10, 50, 50.0]]), np.array([0.99]), 100, 100, None, 1, 0.05)
        boxes, _ = postprocess_image(image, PostprocessConfig(conf=0.0, gate_threshold=0.1))
        assert len(boxes) == 0
        kept, scores = postprocess_image(image._replace(p_opacity=0.5), PostprocessConfig(conf=0.0, gate_threshold=0.1, shrink=1.0))
        assert len(kept) == 1 and scores[0] == pytest.approx(0.495)


class TestMembers:
    def test_a_box_one_of_two_members_found_scores_half(self) -> None:
        boxes = np.array([[10, 10, 50, 50], [11, 10, 51, 50], [70, 70, 90, 90.0]])
        fused, scores = fuse_members(boxes, np.array([0.8, 0.6, 0.5]), np.array([0, 1, 1]), 2, (100, 100), 0.4)
        assert scores.tolist() == pytest.approx([0.7, 0.25])
        np.testing.assert_allclose(fused[1], [70, 70, 90, 90])

    def test_fusion_is_wbf_over_the_member_lists(self) -> None:
        rng = np.random.default_rng(3)
        xy = rng.uniform(0, 500, (6, 2))
        boxes = np.c_[xy, xy + rng.uniform(20, 300, (6, 2))]
        scores, member = rng.uniform(0.1, 1, 6), np.array([0, 0, 1, 1, 2, 2])
        expected = fuse([boxes[member == k] for k in range(3)], [scores[member == k] for k in range(3)], (1024, 1024), 0.5)
        for got, want in zip(fuse_members(boxes, scores, member, 3, (1024, 1024), 0.5), expected):
            np.testing.assert_array_equal(got, want)

    def test_one_member_is_left_as_it_is(self) -> None:
        image = RawImage("a", np.array([[10, 10, 50, 50], [11, 10, 51, 50.0]]), np.array([0.6, 0.8]), 100, 100)
        boxes, scores = postprocess_image(image, NO_CHANGE)
        assert scores.tolist() == [0.8, 0.6] and len(boxes) == 2


def ensemble(n: int, seed: int) -> tuple[dict[str, np.ndarray], RawDetections]:
    """Two members per image (the second a jittered copy of the first, some boxes missing) and a probability that knows the truth, noisily."""
    truth, images = generated(n, seed)
    rng = np.random.default_rng(seed + 100)
    members = []
    for image in images:
        keep = rng.random(len(image.scores)) < 0.8
        second = image.boxes[keep] + rng.normal(0, 5, (int(keep.sum()), 4))
        boxes = np.r_[image.boxes, np.c_[np.minimum(second[:, :2], second[:, 2:]), np.maximum(second[:, :2], second[:, 2:])]]
        scores = np.r_[image.scores, np.clip(image.scores[keep] + rng.normal(0, 0.05, int(keep.sum())), 0.01, 1)]
        member = np.r_[np.zeros(len(image.scores)), np.ones(int(keep.sum()))]
        p = float(np.clip((0.8 if len(truth[image.patient_id]) else 0.2) + rng.normal(0, 0.15), 0, 1))
        members.append(image._replace(boxes=boxes, scores=scores, member=member, members=2, p_opacity=p))
    return truth, RawDetections.from_images(members)


def test_tuning_members_and_gate_scores_what_postprocess_then_evaluate_gives() -> None:
    truth, raw = ensemble(80, seed=4)
    grid = TuneGrid(conf=(0.1, 0.4), merges=(("none", 0.0), ("wbf", 0.5)), shrink=(1.0, 0.875), fusion_iou=(0.4, 0.6), gate_alpha=(0.0, 1.0), gate_threshold=(0.0, 0.5))
    report = tune(raw, truth, PostprocessConfig(max_boxes=3), grid)
    assert len(report.table) == 8 * 2 * 2 * 2
    assert set(report.table.fusion_iou) == {0.4, 0.6} and set(report.table.gate_threshold) == {0.0, 0.5}
    for row in report.table.sample(12, random_state=0).itertuples():
        config = PostprocessConfig(
            conf=row.conf, merge=row.merge, merge_iou=0.4 if row.merge == "none" else row.merge_iou, shrink=row.shrink,
            fusion_iou=row.fusion_iou, gate_alpha=row.gate_alpha, gate_threshold=row.gate_threshold,
        )  # fmt: skip
        assert score_config(raw, truth, config).score == pytest.approx(row.score, abs=1e-12), config


def test_a_gate_that_knows_the_truth_beats_no_gate() -> None:
    truth, raw = ensemble(150, seed=5)
    grid = TuneGrid(conf=(0.05, 0.3), merges=(("wbf", 0.5),), shrink=(1.0,), fusion_iou=(0.5,), gate_alpha=(0.0, 1.0), gate_threshold=(0.0, 0.5))
    table = tune(raw, truth, grid=grid).table
    gated = table[table.gate_threshold == 0.5].score.max()
    ungated = table[(table.gate_threshold == 0.0) & (table.gate_alpha == 0.0)].score.max()
    assert gated > ungated


def test_without_members_or_probability_the_extra_axes_are_not_searched() -> None:
    truth, images = generated(40, seed=6)
    report = tune(RawDetections.from_images(images), truth, grid=TuneGrid(conf=(0.3,), merges=(("none", 0.0),), shrink=(1.0,)))
    assert len(report.table) == 1 and report.best.fusion_iou == PostprocessConfig().fusion_iou


def test_members_can_be_picked_and_combined_back() -> None:
    truth, raw = ensemble(20, seed=7)
    plain, flipped = raw.only_members([0]), raw.only_members([1])
    assert set(plain.members) == {1} and set(plain.member) == {0} and set(flipped.member) == {0}
    assert len(plain.scores) + len(flipped.scores) == len(raw.scores)
    combined = combine_members([plain, flipped.without_probability()])
    assert set(combined.members) == {2}
    np.testing.assert_array_equal(combined.p_opacity, raw.p_opacity)  # the mean of one probability and none
    for fusion in (0.4, 0.6):
        config = PostprocessConfig(fusion_iou=fusion)
        assert score_config(combined, truth, config).score == pytest.approx(score_config(raw, truth, config).score)


def test_tables_of_different_images_stack_and_the_same_image_twice_is_refused() -> None:
    truth, raw = ensemble(10, seed=8)
    halves = [raw.select(np.arange(len(raw)) < 4), raw.select(np.arange(len(raw)) >= 4)]
    stacked = stack_images(halves)
    assert stacked.patient_ids == raw.patient_ids
    assert score_config(stacked, truth, PostprocessConfig()).score == score_config(raw, truth, PostprocessConfig()).score
    with pytest.raises(RawFileError, match="is in more than one raw table"):
        stack_images([raw, halves[0]])
