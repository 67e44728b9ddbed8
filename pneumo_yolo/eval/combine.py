"""Combining raw detection tables: several predictions of the same images, or tables of different images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detections import RawDetections, RawFileError


def combine_models(tables: Sequence[RawDetections]) -> RawDetections:
    """One table of the same images from several predictions of them (an ensemble's models, run apart).

    Each table's models follow the previous table's; an image's probability is the mean of the
    tables' probabilities (NaN where none has one). Every table must hold the same patients
    with the same sizes, and the same passes per model (all with ``--tta``, or none).
    """
    first = tables[0]
    for table in tables[1:]:
        if table.patient_ids != first.patient_ids or not np.array_equal(table.sizes, first.sizes):
            raise RawFileError("the tables to combine hold other patients or image sizes")
        if not np.array_equal(table.passes, first.passes):
            raise RawFileError(
                "the tables to combine were predicted with other passes per model (all with --tta, or none)"
            )
    offsets = np.cumsum([0] + [int(table.models.max(initial=1)) for table in tables[:-1]])
    probabilities = np.vstack([table.p_opacity for table in tables])
    counts = (~np.isnan(probabilities)).sum(axis=0)
    p_opacity = np.where(counts > 0, np.nansum(probabilities, axis=0) / np.maximum(counts, 1), np.nan)
    return RawDetections(
        patient_ids=first.patient_ids,
        sizes=first.sizes,
        image=np.concatenate([table.image for table in tables]),
        scores=np.concatenate([table.scores for table in tables]),
        boxes=np.concatenate([table.boxes for table in tables]),
        model=np.concatenate([table.model + offset for table, offset in zip(tables, offsets)]),
        pass_index=np.concatenate([table.pass_index for table in tables]),
        models=np.sum([table.models for table in tables], axis=0),
        passes=first.passes,
        p_opacity=p_opacity,
    )


def stack_images(tables: Sequence[RawDetections]) -> RawDetections:
    """Tables of different images (the folds' out-of-fold images, say) as one; a patient in two tables is refused."""
    ids = [pid for table in tables for pid in table.patient_ids]
    if len(set(ids)) != len(ids):
        twice = next(pid for pid in ids if ids.count(pid) > 1)
        raise RawFileError(f"patient {twice} is in more than one raw table: tune on tables of different images")
    offsets = np.cumsum([0] + [len(table) for table in tables[:-1]])
    return RawDetections(
        patient_ids=tuple(ids),
        sizes=np.concatenate([table.sizes for table in tables]),
        image=np.concatenate([table.image + offset for table, offset in zip(tables, offsets)]),
        scores=np.concatenate([table.scores for table in tables]),
        boxes=np.concatenate([table.boxes for table in tables]),
        model=np.concatenate([table.model for table in tables]),
        pass_index=np.concatenate([table.pass_index for table in tables]),
        models=np.concatenate([table.models for table in tables]),
        passes=np.concatenate([table.passes for table in tables]),
        p_opacity=np.concatenate([table.p_opacity for table in tables]),
    )
