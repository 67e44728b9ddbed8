"""The ablation's six stages, its oracle and its diagnostics, from raw detection tables: pure, no model runs here.

========================  ===========================================================
stage                     what changes
========================  ===========================================================
raw detector              fold 0's detector, default threshold and merge, no shrink
+ tuned threshold/merge   conf, merge and its IoU tuned on fold 0's out-of-fold images
+ gate                    fold 0's classifier: score × p^α, images under a threshold
+ flip TTA                the flipped pass fused with the plain one (fusion IoU tuned)
+ fold ensemble           every fold's models, voted (:mod:`pneumo_yolo.eval.vote`)
+ tuned shrink            the box shrink factor searched too
========================  ===========================================================

The fold ensemble fuses in two levels (``model_fusion: vote``). Each model's passes are fused
and post-processed with the settings tuned on every fold's out-of-fold detections: each training
image predicted by the one model that never saw it, plain and flipped, which is exactly one
model's part of the ensemble. Then the models' boxes are voted: a box that more than half of the
models found is kept, scoring the mean of their scores, which stays on one model's scale
however many models there are. Nothing is tuned on the ensemble's own output, so nothing needs
images that every model predicts, and every threshold carries over from the out-of-fold images.

The oracle, kept apart, is the ensemble's threshold and vote (how many models, at what IoU)
tuned by ``tune`` on the test images themselves: leakage, an upper bound only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..boxes import xyxy_to_ltwh
from ..eval.combine import combine_models, stack_images
from ..eval.detections import RawDetections
from ..eval.metric import MetricResult, evaluate, score_images
from ..eval.postprocess import PostprocessConfig, postprocess_image
from ..eval.tune import TuneGrid, tune
from .ablation_report import Stage

STAGES = ("raw detector", "+ tuned threshold and merge", "+ gate", "+ flip TTA", "+ fold ensemble", "+ tuned shrink")
NO_SHRINK = (1.0,)
RECALL_IOU = 0.4


@dataclass(frozen=True)
class Tables:
    """Raw detections of one seed: ``oof[i]`` fold ``i``'s images by its own models, ``test[i]`` the test images by fold ``i``'s models.

    Every table holds two passes (plain and flipped) of one model and its classifier's
    probability; ``truth`` holds every patient's boxes.
    """

    oof: Sequence[RawDetections]
    test: Sequence[RawDetections]
    truth: Mapping[str, np.ndarray]


def scored(
    raw: RawDetections, truth: Mapping[str, np.ndarray], config: PostprocessConfig
) -> tuple[MetricResult, float]:
    """The metric of ``config`` on ``raw``'s images and the share of their true boxes that a kept box finds at IoU ≥ 0.4."""
    predictions = {}
    for image in raw.images():
        boxes, scores = postprocess_image(image, config)
        predictions[image.patient_id] = np.c_[scores, xyxy_to_ltwh(boxes)]
    wanted = {pid: truth[pid] for pid in raw.patient_ids}
    return evaluate(wanted, predictions), box_recall(wanted, predictions)


def box_recall(truth: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray]) -> float:
    """Matched true boxes over all true boxes at IoU ≥ 0.4, matched as the metric matches them (NaN without true boxes).

    From an image's score ``s = TP / (G + P − TP)`` at that one threshold, ``TP = s (G + P) / (1 + s)``.
    """
    ids = list(truth)
    n_true = np.array([len(truth[pid]) for pid in ids])
    n_pred = np.array([len(predictions.get(pid, ())) for pid in ids])
    if not n_true.sum():
        return float("nan")
    gt_image = np.repeat(np.arange(len(ids)), n_true)
    gt_boxes = np.concatenate([np.asarray(truth[pid], np.float64).reshape(-1, 4) for pid in ids])
    pred = [np.asarray(predictions.get(pid, np.zeros((0, 5))), np.float64).reshape(-1, 5) for pid in ids]
    rows = np.concatenate(pred)
    per_image = score_images(
        len(ids),
        gt_image,
        gt_boxes,
        np.repeat(np.arange(len(ids)), n_pred),
        rows[:, 0],
        rows[:, 1:],
        np.array([RECALL_IOU]),
    )[:, 0]
    matched = np.where(np.isnan(per_image), 0.0, per_image * (n_true + n_pred) / (1 + np.nan_to_num(per_image)))
    return float(np.round(matched).sum() / n_true.sum())


def stage_rows(tables: Tables, grid: TuneGrid = TuneGrid()) -> tuple[list[Stage], Stage]:
    """The six stages and the oracle (the ensemble tuned on the test images), each scored on the test images."""
    truth = tables.truth
    plain_grid = replace(grid, shrink=NO_SHRINK)
    base = PostprocessConfig(shrink=1.0)
    fold0_oof, fold0_test = tables.oof[0], tables.test[0]
    all_oof = stack_images(tables.oof)
    ensemble = combine_models(tables.test)
    fold0 = f"out-of-fold images of fold 0 ({len(fold0_oof)})"
    every = f"out-of-fold images of every fold ({len(all_oof)})"
    configs = [(base, "nothing: the defaults", fold0_test.only_passes([0]).without_probability())]
    for tune_on, score_on in (
        (fold0_oof.only_passes([0]).without_probability(), fold0_test.only_passes([0]).without_probability()),
        (fold0_oof.only_passes([0]), fold0_test.only_passes([0])),
        (fold0_oof, fold0_test),
    ):
        configs.append((tune(tune_on, truth, base, plain_grid).best, fold0, score_on))
    voted = replace(tune(all_oof, truth, base, plain_grid).best, model_fusion="vote")
    configs.append((voted, every + "; the models voted by majority", ensemble))
    only_shrink = TuneGrid(
        conf=(voted.conf,),
        merges=((voted.merge, voted.merge_iou),),
        shrink=grid.shrink,
        fusion_iou=(voted.fusion_iou,),
        gate_alpha=(voted.gate_alpha,),
        gate_threshold=(voted.gate_threshold,),
    )
    configs.append(
        (
            replace(voted, shrink=tune(all_oof, truth, voted, only_shrink).best.shrink),
            every + "; the models voted by majority",
            ensemble,
        )
    )
    stages = []
    for name, (config, tuned_on, raw) in zip(STAGES, configs):
        result, recall = scored(raw, truth, config)
        stages.append(Stage(name, tuned_on, config, result, recall))
    oracle_config = tune(ensemble, truth, voted, plain_grid).best
    result, recall = scored(ensemble, truth, oracle_config)
    return stages, Stage("oracle", "the test images themselves", oracle_config, result, recall)


def roc_auc(p_opacity: np.ndarray, positive: np.ndarray) -> float | None:
    """The ROC AUC of the probabilities against the truth (Mann–Whitney U over both counts); ``None`` without both classes or probabilities.

    >>> roc_auc(np.array([0.9, 0.2, 0.6, 0.1]), np.array([True, False, True, False]))
    1.0
    """
    from scipy.stats import mannwhitneyu

    p, positive = np.asarray(p_opacity, np.float64), np.asarray(positive, bool)
    if np.isnan(p).any() or positive.all() or not positive.any():
        return None
    return float(mannwhitneyu(p[positive], p[~positive]).statistic / (positive.sum() * (~positive).sum()))


def top_scores(raw: RawDetections, patient_ids: Sequence[str]) -> np.ndarray:
    """Each image's highest raw box score, any pass (0 without a box), in the order of ``patient_ids``."""
    best = {image.patient_id: float(image.scores.max()) if len(image.scores) else 0.0 for image in raw.images()}
    return np.array([best[pid] for pid in patient_ids])


def diagnostics(tables: Tables) -> dict:
    """ROC AUCs on the test images of each fold's classifier, of their mean probability (the ensemble's gate), and of each fold detector's highest box score.

    The detector's own AUC says how much an image-level signal there is to learn: a classifier
    far below it gates with less than the detector already knows.
    """
    ids = tables.test[0].patient_ids
    positive = np.array([len(tables.truth[pid]) > 0 for pid in ids])
    aucs = [roc_auc(table.p_opacity, positive) for table in tables.test]
    mean = roc_auc(combine_models(tables.test).p_opacity, positive)
    detector = [roc_auc(top_scores(table, ids), positive) for table in tables.test]
    return {
        "classifier_roc_auc": [_rounded(a) for a in aucs],
        "ensemble_classifier_roc_auc": _rounded(mean),
        "detector_roc_auc": [_rounded(a) for a in detector],
        "test_positive_images": int(positive.sum()),
    }


def _rounded(auc: float | None) -> float | None:
    return None if auc is None else round(auc, 4)
