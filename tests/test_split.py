from collections import Counter

import pytest

from pneumo_yolo.data.labels import read_class_info
from pneumo_yolo.data.split import assign_folds, assign_split

from .conftest import EXCERPT_DIR, real_csv


@pytest.fixture(scope="module")
def classes() -> dict[str, str]:
    return read_class_info(real_csv("stage_2_detailed_class_info.csv"))


def shares(split: dict[str, str], classes: dict[str, str], part: str) -> dict[str, float]:
    members = [classes[p] for p, s in split.items() if s == part]
    return {c: n / len(members) for c, n in Counter(members).items()}


def test_split_is_stratified_within_two_points(classes):
    split = assign_split(classes, val_fraction=0.1, seed=0)
    assert Counter(split.values())["val"] == pytest.approx(2_668, abs=3)
    overall = {c: n / len(classes) for c, n in Counter(classes.values()).items()}
    for part in ("train", "val"):
        for name, share in shares(split, classes, part).items():
            assert abs(share - overall[name]) < 0.02


def test_split_is_deterministic_and_seeded(classes):
    assert assign_split(classes, 0.1, seed=0) == assign_split(dict(reversed(classes.items())), 0.1, seed=0)
    assert assign_split(classes, 0.1, seed=0) != assign_split(classes, 0.1, seed=1)


def test_folds_partition_patients_and_are_stable(classes):
    folds = assign_folds(classes, k=5, seed=3)
    assert set(folds) == set(classes)
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert folds == assign_folds(dict(sorted(classes.items())), k=5, seed=3)
    assert set(folds.values()) == set(range(5))


def test_split_of_real_ids_is_deterministic_and_order_independent():
    classes = read_class_info(EXCERPT_DIR / "stage_2_detailed_class_info.csv")
    split = assign_split(classes, val_fraction=0.25, seed=0)
    assert split == assign_split(dict(reversed(classes.items())), val_fraction=0.25, seed=0)
    assert Counter(split.values()) == {"train": 31, "val": 11}  # per class 17, 14, 11 patients: 4 + 4 + 3 in val
    for name in set(classes.values()):
        assert any(split[p] == "val" for p, c in classes.items() if c == name), f"no {name} patient in val"


def test_fold_arguments_are_checked():
    with pytest.raises(ValueError, match="k >= 2"):
        assign_folds({"a": "x"}, 1)
