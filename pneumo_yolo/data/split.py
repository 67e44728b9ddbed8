"""Seeded, stratified, patient-level train/val splits and k-fold assignment.

Every patient is ranked inside its stratum by a keyed hash of ``(seed, patientId)``, so the
assignment needs no global RNG state, is the same on every run and every machine, and a
patient's place depends only on the patients of its own stratum.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping


def _rank_key(seed: int, patient_id: str) -> bytes:
    return hashlib.blake2b(patient_id.encode(), digest_size=8, key=str(seed).encode()).digest()


def _by_stratum(strata: Mapping[str, str], seed: int) -> list[list[str]]:
    """Patients grouped by stratum (strata in sorted order), each group in seeded hash order."""
    groups: dict[str, list[str]] = defaultdict(list)
    for patient_id, stratum in strata.items():
        groups[stratum].append(patient_id)
    return [sorted(groups[s], key=lambda pid: _rank_key(seed, pid)) for s in sorted(groups)]


def assign_folds(strata: Mapping[str, str], k: int, seed: int = 0) -> dict[str, int]:
    """Assign each patient a fold in ``0..k-1``, stratified by ``strata`` (patientId → label).

    Within a stratum, patients are dealt round-robin in hash order, so every fold gets an
    equal share (±1) of every stratum.

    >>> folds = assign_folds({"a": "x", "b": "x", "c": "y", "d": "y"}, k=2)
    >>> sorted(folds.values())
    [0, 0, 1, 1]
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    folds: dict[str, int] = {}
    offset = 0
    for group in _by_stratum(strata, seed):
        for index, patient_id in enumerate(group):
            folds[patient_id] = (index + offset) % k
        offset += len(group)
    return folds


def assign_split(strata: Mapping[str, str], val_fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """Split patients into ``"train"``/``"val"``, stratified by ``strata`` (patientId → label).

    Each stratum contributes ``round(len(stratum) * val_fraction)`` patients to val.

    >>> split = assign_split({f"p{i}": "x" for i in range(10)}, val_fraction=0.2)
    >>> sorted(split.values()).count("val")
    2
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    split: dict[str, str] = {}
    for group in _by_stratum(strata, seed):
        n_val = round(len(group) * val_fraction)
        for index, patient_id in enumerate(group):
            split[patient_id] = "val" if index < n_val else "train"
    return split


def pick_stratified(strata: Mapping[str, str], count: int, seed: int = 0) -> set[str]:
    """Exactly ``count`` patients, stratified by ``strata``: each stratum gives its share, rounded by largest remainder.

    Within a stratum the patients come in the seeded hash order of :func:`assign_split`.

    >>> picked = pick_stratified({"a": "x", "b": "x", "c": "x", "d": "y"}, count=2)
    >>> len(picked), sum(p in picked for p in "abc")
    (2, 2)
    """
    if not 0 <= count <= len(strata):
        raise ValueError(f"count must be in [0, {len(strata)}], got {count}")
    groups = _by_stratum(strata, seed)
    exact = [len(group) * count / max(len(strata), 1) for group in groups]
    shares = [int(share) for share in exact]
    by_remainder = sorted(range(len(groups)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: count - sum(shares)]:
        shares[i] += 1
    return {patient_id for group, share in zip(groups, shares) for patient_id in group[:share]}


def smallest_stratum(strata: Mapping[str, str]) -> tuple[str, int]:
    """The stratum with the fewest patients, and how many (ties: the first in sorted order); k folds need k at most that.

    >>> smallest_stratum({"a": "x", "b": "x", "c": "y"})
    ('y', 1)
    """
    return min(Counter(strata.values()).items(), key=lambda item: (item[1], item[0]))
