"""Post-processing: grid mapping, threshold, merges, limits, shrink, PredictionString, config files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ensemble_boxes
import numpy as np
import pytest

from pneumo_yolo.eval import merging as merging_module
from pneumo_yolo.eval.merging import clean, fuse, nms, nms_keep
from pneumo_yolo.eval.postprocess import (
    ConfigError,
    PostprocessConfig,
    limit,
    merge,
    postprocess,
    threshold,
    to_original_grid,
)
from pneumo_yolo.eval.submission import parse_prediction_string, prediction_string

SIZE = (1024.0, 1024.0)


def xyxy(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


class TestToOriginalGrid:
    def test_resize_is_undone_exactly(self) -> None:
        original = xyxy([264, 152, 477, 531], [0, 0, 1024, 1024], [512.5, 3.25, 700.75, 999])
        model_input = original * 0.5  # the model saw a 512 × 512 copy
        np.testing.assert_array_equal(to_original_grid(model_input, (512, 512), (1024, 1024)), original)

    def test_non_square_resize_round_trips(self) -> None:
        original = xyxy([10, 20, 990, 780], [333.3, 111.1, 444.4, 222.2])
        model_input = original * np.array([640 / 1000, 512 / 800, 640 / 1000, 512 / 800])
        np.testing.assert_allclose(to_original_grid(model_input, (640, 512), (1000, 800)), original, rtol=0, atol=1e-9)

    def test_postprocess_maps_then_clips(self) -> None:
        config = PostprocessConfig(conf=0, merge="none", max_boxes=None, shrink=1)
        boxes, scores = postprocess(
            xyxy([-10, 5, 100, 600], [50, 50, 60, 60]),
            np.array([0.4, 0.9]),
            config,
            input_size=(512, 512),
            original_size=SIZE,
        )
        np.testing.assert_array_equal(boxes, xyxy([100, 100, 120, 120], [0, 10, 200, 1024]))
        np.testing.assert_array_equal(scores, [0.9, 0.4])


class TestSteps:
    def test_clean_drops_boxes_left_without_area_and_sorts(self) -> None:
        boxes, scores = clean(
            xyxy([0, 0, 10, 10], [1100, 0, 1200, 10], [5, 5, 5, 50], [0, 0, 20, 20]),
            np.array([0.2, 0.9, 0.8, 0.5]),
            SIZE,
        )
        np.testing.assert_array_equal(boxes, xyxy([0, 0, 20, 20], [0, 0, 10, 10]))
        np.testing.assert_array_equal(scores, [0.5, 0.2])

    def test_threshold_keeps_scores_at_or_above(self) -> None:
        _, scores = threshold(xyxy([0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]), np.array([0.3, 0.29, 0.31]), 0.3)
        np.testing.assert_array_equal(scores, [0.3, 0.31])

    def test_limit_keeps_the_best_and_those_near_the_top(self) -> None:
        boxes = xyxy(*[[i, 0, i + 1, 1] for i in range(4)])
        scores = np.array([0.2, 0.9, 0.5, 0.4])
        np.testing.assert_array_equal(limit(boxes, scores, 2, 0.0)[1], [0.9, 0.5])
        np.testing.assert_array_equal(limit(boxes, scores, None, 0.5)[1], [0.9, 0.5])
        np.testing.assert_array_equal(limit(boxes, scores, None, 0.0)[1], [0.9, 0.5, 0.4, 0.2])

    def test_nms_drops_boxes_overlapping_a_better_one(self) -> None:
        boxes = xyxy([0, 0, 100, 100], [10, 0, 110, 100], [500, 500, 600, 600])  # IoU of the first two: 90/110
        kept, scores = nms(boxes, np.array([0.8, 0.9, 0.7]), SIZE, iou=0.5)
        np.testing.assert_array_equal(kept, xyxy([10, 0, 110, 100], [500, 500, 600, 600]))
        np.testing.assert_array_equal(scores, [0.9, 0.7])
        assert len(nms(boxes, np.array([0.8, 0.9, 0.7]), SIZE, iou=0.9)[1]) == 3

    def test_nms_keeps_a_box_whose_iou_equals_the_threshold(self) -> None:
        # IoU exactly 0.5: only IoU above the threshold suppresses.
        assert nms_keep(xyxy([0, 0, 100, 100], [0, 0, 50, 100]), 0.5).tolist() == [True, True]

    def test_nms_of_the_best_k_is_the_full_result_cut_to_k(self) -> None:
        rng = np.random.default_rng(0)
        corners = rng.uniform(0, 500, (40, 2))
        boxes = np.c_[corners, corners + rng.uniform(20, 300, (40, 2))]
        full = nms_keep(boxes, 0.4)
        for k in range(1, 41):
            assert nms_keep(boxes[:k], 0.4).tolist() == full[:k].tolist()

    def test_merge_none_only_sorts(self) -> None:
        boxes, scores = merge(xyxy([0, 0, 10, 10], [0, 0, 10, 10]), np.array([0.1, 0.2]), SIZE, "none", 0.5)
        np.testing.assert_array_equal(scores, [0.2, 0.1])
        assert len(boxes) == 2


class TestWeightedBoxesFusion:
    def test_wbf_goes_through_ensemble_boxes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls = []
        real = merging_module.load_weighted_boxes_fusion()

        def spy(boxes_list, scores_list, labels_list, **kwargs):
            calls.append((boxes_list, kwargs))
            return real(boxes_list, scores_list, labels_list, **kwargs)

        monkeypatch.setattr(merging_module, "load_weighted_boxes_fusion", lambda: spy)
        boxes, scores = merge(xyxy([0, 0, 100, 100], [10, 0, 110, 100]), np.array([0.9, 0.3]), SIZE, "wbf", 0.5)
        assert len(calls) == 1
        sent, kwargs = calls[0]
        assert kwargs["iou_thr"] == 0.5
        np.testing.assert_allclose(sent[0], xyxy([0, 0, 100, 100], [10, 0, 110, 100]) / 1024)
        # One fused box: corners weighted by score, score the average.
        np.testing.assert_allclose(boxes, xyxy([2.5, 0, 102.5, 100]), atol=1e-3)
        np.testing.assert_allclose(scores, [0.6], atol=1e-6)

    def test_wbf_is_the_packages_own(self) -> None:
        rng = np.random.default_rng(0)
        corners = np.sort(rng.random((3, 30, 2, 2)), axis=2).transpose(0, 1, 3, 2).reshape(3, 30, 4)[..., [0, 2, 1, 3]]
        lists = ([*corners], [*rng.random((3, 30))], [np.zeros(30)] * 3)
        ours = merging_module.load_weighted_boxes_fusion()(*lists, iou_thr=0.4, skip_box_thr=0.1)
        theirs = ensemble_boxes.weighted_boxes_fusion(*lists, iou_thr=0.4, skip_box_thr=0.1)
        assert len(ours[1]) > 10
        for mine, package in zip(ours, theirs):
            np.testing.assert_array_equal(mine, package)

    def test_wbf_does_not_import_numba(self) -> None:
        code = (
            "import sys, numpy as np\n"
            "from pneumo_yolo.eval.merging import fuse\n"
            "fuse([np.array([[0, 0, 10, 10.0]])], [np.array([0.9])], (100, 100), 0.5)\n"
            "print('numba' in sys.modules)"
        )
        assert (
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            == "False"
        )

    def test_tta_fusion_of_two_passes(self) -> None:
        plain = (xyxy([100, 100, 300, 300], [600, 600, 700, 700]), np.array([0.8, 0.6]))
        flipped = (xyxy([110, 100, 310, 300]), np.array([0.4]))
        boxes, scores = fuse([plain[0], flipped[0]], [plain[1], flipped[1]], SIZE, iou=0.5)
        # Found by both passes: averaged; found by one pass of two: its score halved.
        np.testing.assert_allclose(scores, [0.6, 0.3], atol=1e-6)
        np.testing.assert_allclose(boxes[0], [100 + 10 * 0.4 / 1.2, 100, 300 + 10 * 0.4 / 1.2, 300], atol=1e-3)
        np.testing.assert_allclose(boxes[1], [600, 600, 700, 700], atol=1e-9)

    def test_fusion_of_nothing_is_empty(self) -> None:
        boxes, scores = fuse([xyxy(), xyxy([0, 0, 10, 10])], [np.zeros(0), np.array([0.0])], SIZE, iou=0.5)
        assert boxes.shape == (0, 4) and scores.shape == (0,)


class TestShrinkAndPipeline:
    def test_shrink_keeps_the_centre(self) -> None:
        config = PostprocessConfig(conf=0, merge="none", max_boxes=None, shrink=0.875)
        original = xyxy([100, 200, 300, 600], [0, 0, 1024, 1024])
        boxes, _ = postprocess(original, np.array([0.9, 0.8]), config, original_size=SIZE)
        np.testing.assert_allclose((boxes[:, :2] + boxes[:, 2:]) / 2, (original[:, :2] + original[:, 2:]) / 2)
        np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 0.875 * (original[:, 2:] - original[:, :2]))

    def test_the_steps_run_in_order(self) -> None:
        config = PostprocessConfig(conf=0.3, merge="nms", merge_iou=0.5, max_boxes=2, shrink=0.5)
        boxes = xyxy([0, 0, 100, 100], [5, 0, 105, 100], [500, 500, 600, 600], [800, 800, 900, 900], [0, 900, 50, 950])
        scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6])
        out, out_scores = postprocess(boxes * 0.5, scores, config, input_size=(512, 512), original_size=SIZE)
        # 0.2 is under the threshold, 0.8 overlaps 0.9, only two are kept, both shrunk by half.
        np.testing.assert_array_equal(out_scores, [0.9, 0.7])
        np.testing.assert_array_equal(out, xyxy([25, 25, 75, 75], [525, 525, 575, 575]))

    def test_empty_input_gives_empty_output(self) -> None:
        for method in ("none", "nms", "wbf"):
            boxes, scores = postprocess(xyxy(), np.zeros(0), PostprocessConfig(merge=method), original_size=SIZE)
            assert boxes.shape == (0, 4) and scores.shape == (0,)


class TestPredictionString:
    def test_format_is_conf_then_pixels_in_descending_confidence(self) -> None:
        text = prediction_string(xyxy([10, 20, 110, 70], [0, 0, 1024, 1024]), np.array([0.5, 0.87654]))
        assert text == "0.8765 0.0 0.0 1024.0 1024.0 0.5000 10.0 20.0 100.0 50.0"

    def test_no_box_gives_an_empty_string(self) -> None:
        assert prediction_string(xyxy(), np.zeros(0)) == ""

    def test_box_ending_on_the_border_still_ends_there(self) -> None:
        text = prediction_string(xyxy([100.05, 3.96, 1024, 1024]), np.array([0.5]))
        conf, x, y, w, h = parse_prediction_string(text)[0]
        assert x + w == pytest.approx(1024, abs=1e-9) and y + h == pytest.approx(1024, abs=1e-9)


class TestConfig:
    def test_yaml_round_trip(self, tmp_path: Path) -> None:
        config = PostprocessConfig(
            conf=0.45,
            merge="nms",
            merge_iou=0.3,
            max_boxes=None,
            min_relative_score=0.2,
            shrink=0.83,
            model_fusion="vote",
            model_votes=2,
        )
        config.to_yaml(tmp_path / "pp.yaml", comment="tuned")
        assert (tmp_path / "pp.yaml").read_text().startswith("# tuned\n")
        assert PostprocessConfig.from_yaml(tmp_path / "pp.yaml") == config

    def test_the_vote_reads_majority_or_a_number(self, tmp_path: Path) -> None:
        (tmp_path / "pp.yaml").write_text("model_fusion: vote\nmodel_votes: majority\n")
        assert PostprocessConfig.from_yaml(tmp_path / "pp.yaml").model_votes == "majority"
        (tmp_path / "pp.yaml").write_text("model_fusion: vote\nmodel_votes: 2\n")
        assert PostprocessConfig.from_yaml(tmp_path / "pp.yaml").model_votes == 2

    def test_missing_keys_take_the_defaults(self, tmp_path: Path) -> None:
        (tmp_path / "pp.yaml").write_text("conf: 0.6\n")
        assert PostprocessConfig.from_yaml(tmp_path / "pp.yaml") == PostprocessConfig(conf=0.6)

    def test_unknown_key_is_named_with_a_suggestion(self, tmp_path: Path) -> None:
        (tmp_path / "pp.yaml").write_text("conf: 0.6\nshrnk: 0.8\n")
        with pytest.raises(ConfigError, match=r"pp.yaml: unknown key 'shrnk' \(did you mean 'shrink'\?\)"):
            PostprocessConfig.from_yaml(tmp_path / "pp.yaml")

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"conf": 1.5}, "conf: 1.5 is invalid"),
            ({"merge": "soft"}, "merge: 'soft' is invalid; use one of none, nms, wbf"),
            ({"merge_iou": 0}, "merge_iou: 0 is invalid"),
            ({"max_boxes": 0}, "max_boxes: 0 is invalid"),
            ({"min_relative_score": -1}, "min_relative_score: -1 is invalid"),
            ({"shrink": 0}, "shrink: 0 is invalid"),
            ({"shrink": 1.5}, "shrink: 1.5 is invalid"),
            ({"conf": "high"}, "conf: 'high' is invalid"),
            ({"model_fusion": "wbf"}, "model_fusion: 'wbf' is invalid; use one of passes, vote"),
            ({"model_votes": 0}, "model_votes: 0 is invalid; use majority"),
            ({"model_votes": 1.5}, "model_votes: 1.5 is invalid"),
            ({"model_votes": "most"}, "model_votes: 'most' is invalid"),
            ({"model_iou": 0}, "model_iou: 0 is invalid"),
        ],
    )
    def test_bad_values_are_named(self, values: dict, message: str) -> None:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            PostprocessConfig.from_dict(values)

    def test_not_a_mapping(self, tmp_path: Path) -> None:
        (tmp_path / "pp.yaml").write_text("- 1\n- 2\n")
        with pytest.raises(ConfigError, match="expected a mapping"):
            PostprocessConfig.from_yaml(tmp_path / "pp.yaml")
