"""The image gate, the fusion of a model's passes, the vote of an ensemble's models, and tuning them on raw detections."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from pneumo_yolo.eval.combine import combine_models, stack_images
from pneumo_yolo.eval.detections import RawDetections, RawFileError, RawImage
from pneumo_yolo.eval.gate import apply_gate, gate
from pneumo_yolo.eval.merging import fuse, fuse_passes
from pneumo_yolo.eval.postprocess import PostprocessConfig, postprocess_image
from pneumo_yolo.eval.tune import TuneGrid, score_config, tune
from pneumo_yolo.eval.vote import cluster_models, vote_models

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
        image = RawImage("a", np.array([[10, 10, 50, 50.0]]), np.array([0.99]), 100, 100, p_opacity=0.05)
        boxes, _ = postprocess_image(image, PostprocessConfig(conf=0.0, gate_threshold=0.1))
        assert len(boxes) == 0
        kept, scores = postprocess_image(
            image._replace(p_opacity=0.5), PostprocessConfig(conf=0.0, gate_threshold=0.1, shrink=1.0)
        )
        assert len(kept) == 1 and scores[0] == pytest.approx(0.495)


class TestPasses:
    def test_a_box_one_of_two_passes_found_scores_half(self) -> None:
        boxes = np.array([[10, 10, 50, 50], [11, 10, 51, 50], [70, 70, 90, 90.0]])
        fused, scores = fuse_passes(boxes, np.array([0.8, 0.6, 0.5]), np.array([0, 1, 1]), 2, (100, 100), 0.4)
        assert scores.tolist() == pytest.approx([0.7, 0.25])
        np.testing.assert_allclose(fused[1], [70, 70, 90, 90])

    def test_fusion_is_wbf_over_the_pass_lists(self) -> None:
        rng = np.random.default_rng(3)
        xy = rng.uniform(0, 500, (6, 2))
        boxes = np.c_[xy, xy + rng.uniform(20, 300, (6, 2))]
        scores, pass_index = rng.uniform(0.1, 1, 6), np.array([0, 0, 1, 1, 2, 2])
        expected = fuse(
            [boxes[pass_index == k] for k in range(3)], [scores[pass_index == k] for k in range(3)], (1024, 1024), 0.5
        )
        for got, want in zip(fuse_passes(boxes, scores, pass_index, 3, (1024, 1024), 0.5), expected):
            np.testing.assert_array_equal(got, want)

    def test_one_pass_is_left_as_it_is(self) -> None:
        image = RawImage("a", np.array([[10, 10, 50, 50], [11, 10, 51, 50.0]]), np.array([0.6, 0.8]), 100, 100)
        boxes, scores = postprocess_image(image, NO_CHANGE)
        assert scores.tolist() == [0.8, 0.6] and len(boxes) == 2


def ensemble(n: int, seed: int) -> tuple[dict[str, np.ndarray], RawDetections]:
    """Two passes per image (the second a jittered copy of the first, some boxes missing) and a probability that knows the truth, noisily."""
    truth, images = generated(n, seed)
    rng = np.random.default_rng(seed + 100)
    passes = []
    for image in images:
        keep = rng.random(len(image.scores)) < 0.8
        second = image.boxes[keep] + rng.normal(0, 5, (int(keep.sum()), 4))
        boxes = np.r_[
            image.boxes, np.c_[np.minimum(second[:, :2], second[:, 2:]), np.maximum(second[:, :2], second[:, 2:])]
        ]
        scores = np.r_[image.scores, np.clip(image.scores[keep] + rng.normal(0, 0.05, int(keep.sum())), 0.01, 1)]
        pass_index = np.r_[np.zeros(len(image.scores)), np.ones(int(keep.sum()))]
        p = float(np.clip((0.8 if len(truth[image.patient_id]) else 0.2) + rng.normal(0, 0.15), 0, 1))
        passes.append(image._replace(boxes=boxes, scores=scores, pass_index=pass_index, passes=2, p_opacity=p))
    return truth, RawDetections.from_images(passes)


def test_tuning_passes_and_gate_scores_what_postprocess_then_evaluate_gives() -> None:
    truth, raw = ensemble(80, seed=4)
    grid = TuneGrid(
        conf=(0.1, 0.4),
        merges=(("none", 0.0), ("wbf", 0.5)),
        shrink=(1.0, 0.875),
        fusion_iou=(0.4, 0.6),
        gate_alpha=(0.0, 1.0),
        gate_threshold=(0.0, 0.5),
    )
    report = tune(raw, truth, PostprocessConfig(max_boxes=3), grid)
    assert len(report.table) == 8 * 2 * 2 * 2
    assert set(report.table.fusion_iou) == {0.4, 0.6} and set(report.table.gate_threshold) == {0.0, 0.5}
    for row in report.table.sample(12, random_state=0).itertuples():
        config = PostprocessConfig(
            conf=row.conf,
            merge=row.merge,
            merge_iou=0.4 if row.merge == "none" else row.merge_iou,
            shrink=row.shrink,
            fusion_iou=row.fusion_iou,
            gate_alpha=row.gate_alpha,
            gate_threshold=row.gate_threshold,
        )
        assert score_config(raw, truth, config).score == pytest.approx(row.score, abs=1e-12), config


def test_a_gate_that_knows_the_truth_beats_no_gate() -> None:
    truth, raw = ensemble(150, seed=5)
    grid = TuneGrid(
        conf=(0.05, 0.3),
        merges=(("wbf", 0.5),),
        shrink=(1.0,),
        fusion_iou=(0.5,),
        gate_alpha=(0.0, 1.0),
        gate_threshold=(0.0, 0.5),
    )
    table = tune(raw, truth, grid=grid).table
    gated = table[table.gate_threshold == 0.5].score.max()
    ungated = table[(table.gate_threshold == 0.0) & (table.gate_alpha == 0.0)].score.max()
    assert gated > ungated


def test_without_passes_or_probability_the_extra_axes_are_not_searched() -> None:
    truth, images = generated(40, seed=6)
    report = tune(
        RawDetections.from_images(images), truth, grid=TuneGrid(conf=(0.3,), merges=(("none", 0.0),), shrink=(1.0,))
    )
    assert len(report.table) == 1 and report.best.fusion_iou == PostprocessConfig().fusion_iou


def test_passes_can_be_picked_and_models_combined() -> None:
    truth, raw = ensemble(20, seed=7)
    plain, flipped = raw.only_passes([0]), raw.only_passes([1])
    assert set(plain.passes) == {1} and set(plain.pass_index) == {0} and set(flipped.pass_index) == {0}
    assert len(plain.scores) + len(flipped.scores) == len(raw.scores)
    combined = combine_models([plain, flipped.without_probability()])
    assert set(combined.models) == {2} and set(combined.passes) == {1} and set(combined.model) == {0, 1}
    assert combined.only_model(1).scores.tolist() == flipped.scores.tolist()
    np.testing.assert_array_equal(combined.p_opacity, raw.p_opacity)  # the mean of one probability and none
    for fusion in (0.4, 0.6):
        config = PostprocessConfig(fusion_iou=fusion)
        assert score_config(combined, truth, config).score == pytest.approx(score_config(raw, truth, config).score)


def test_tables_of_different_images_stack_and_the_same_image_twice_is_refused() -> None:
    truth, raw = ensemble(10, seed=8)
    halves = [raw.select(np.arange(len(raw)) < 4), raw.select(np.arange(len(raw)) >= 4)]
    stacked = stack_images(halves)
    assert stacked.patient_ids == raw.patient_ids
    assert (
        score_config(stacked, truth, PostprocessConfig()).score == score_config(raw, truth, PostprocessConfig()).score
    )
    with pytest.raises(RawFileError, match="is in more than one raw table"):
        stack_images([raw, halves[0]])


def jittered(raw: RawDetections, seed: int) -> RawDetections:
    """Another model's detections of the same images: ``raw``'s boxes and scores jittered, some boxes missing."""
    rng = np.random.default_rng(seed)
    boxes = raw.boxes + rng.normal(0, 4, raw.boxes.shape)
    boxes = np.c_[np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])]
    scores = np.clip(raw.scores * rng.uniform(0.8, 1.2, len(raw.scores)), 0, 1)
    kept = rng.random(len(raw.scores)) < 0.85
    return replace(
        raw,
        image=raw.image[kept],
        scores=scores[kept],
        boxes=boxes[kept],
        model=raw.model[kept],
        pass_index=raw.pass_index[kept],
    )


def models_of(raw: RawDetections, k: int, seed: int) -> RawDetections:
    """``k`` models of the same images: ``raw`` and ``k - 1`` jittered copies."""
    return combine_models([raw] + [jittered(raw, seed + i) for i in range(k - 1)])


class TestVote:
    def test_models_that_agree_score_as_one_model_however_many(self) -> None:
        truth, raw = ensemble(40, seed=11)
        one = PostprocessConfig(model_fusion="vote", conf=0.2, shrink=0.9)
        alone = [postprocess_image(image, one) for image in raw.images()]
        for k, votes in ((2, "majority"), (3, 3), (5, "majority")):
            same = combine_models([raw] * k)
            for image, (boxes, scores) in zip(same.images(), alone):
                got_boxes, got_scores = postprocess_image(image, replace(one, model_votes=votes))
                np.testing.assert_allclose(got_scores, scores)
                np.testing.assert_allclose(got_boxes, boxes)

    def test_fusing_every_pass_at_once_scales_a_lone_box_down_with_the_models_but_the_vote_does_not(self) -> None:
        image = RawImage("a", np.array([[10, 10, 50, 50.0]]), np.array([0.9]), 100, 100, np.array([0]), None, 3)
        flat = postprocess_image(image, PostprocessConfig(conf=0.0, shrink=1.0))[1]
        voted = postprocess_image(image, PostprocessConfig(conf=0.0, shrink=1.0, model_fusion="vote", model_votes=1))[1]
        assert flat.tolist() == pytest.approx([0.3]) and voted.tolist() == pytest.approx([0.9])
        assert (
            len(postprocess_image(image, PostprocessConfig(conf=0.0, model_fusion="vote"))[1]) == 0
        )  # one model of three is no majority

    def test_a_box_fewer_models_found_than_the_votes_is_dropped(self) -> None:
        a = (np.array([[0, 0, 10, 10.0], [50, 50, 60, 60.0]]), np.array([0.8, 0.7]))
        b = (np.array([[1, 0, 11, 10.0]]), np.array([0.6]))
        c = (np.zeros((0, 4)), np.zeros(0))
        findings = cluster_models([a, b, c], 0.4)
        assert sorted(findings.votes.tolist()) == [1, 2]
        assert vote_models([a, b, c], 0.4, votes=1)[1].tolist() == pytest.approx(
            [0.7, 0.7]
        )  # the mean of 0.8 and 0.6, and 0.7 alone
        assert vote_models([a, b, c], 0.4, votes="majority")[1].tolist() == pytest.approx([0.7])  # 2 of 3
        assert len(vote_models([a, b, c], 0.4, votes=3)[1]) == 0
        assert len(vote_models([a, b], 0.4, votes=3)[1]) == 1  # more votes than models: all of them

    def test_tuning_the_vote_scores_what_postprocess_then_evaluate_gives(self) -> None:
        truth, raw = ensemble(60, seed=12)
        three = models_of(raw, 3, seed=13)
        grid = TuneGrid(conf=(0.1, 0.4), shrink=(1.0, 0.875), model_iou=(0.3, 0.5))
        base = PostprocessConfig(model_fusion="vote", fusion_iou=0.5, gate_threshold=0.2)
        report = tune(three, truth, base, grid)
        assert (
            len(report.table) == 2 * 2 * 2 * 3
            and set(report.table.model_fusion) == {"vote"}
            and set(report.table.model_votes) == {1, 2, 3}
        )
        for row in report.table.sample(10, random_state=1).itertuples():
            config = PostprocessConfig(
                conf=row.conf,
                shrink=row.shrink,
                fusion_iou=0.5,
                gate_threshold=0.2,
                model_fusion="vote",
                model_iou=row.model_iou,
                model_votes=row.model_votes,
            )
            assert score_config(three, truth, config).score == pytest.approx(row.score, abs=1e-12), config
        assert report.best_result.score == pytest.approx(report.table.score.iloc[0], abs=1e-12)
        assert "models voted" in report.summary()

    def test_out_of_fold_tuning_with_a_vote_base_gives_one_models_settings_that_the_vote_applies_to_each_model(
        self,
    ) -> None:
        truth, raw = ensemble(40, seed=14)
        grid = TuneGrid(
            conf=(0.1, 0.3, 0.5),
            merges=(("none", 0.0), ("wbf", 0.5)),
            shrink=(1.0,),
            fusion_iou=(0.5,),
            gate_alpha=(0.0, 1.0),
            gate_threshold=(0.0, 0.2),
        )
        flat = tune(raw, truth, PostprocessConfig(), grid).best
        voted = tune(
            raw, truth, PostprocessConfig(model_fusion="vote"), grid
        ).best  # one model per image: the same search
        assert voted == replace(flat, model_fusion="vote") and voted.model_votes == "majority"
        three = combine_models([raw] * 3)  # three models that agree: the vote submits what one model would
        for image, alone in zip(three.images(), raw.images()):
            np.testing.assert_allclose(postprocess_image(image, voted)[1], postprocess_image(alone, flat)[1])
