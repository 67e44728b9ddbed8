from pathlib import Path

import numpy as np
import pytest

from pneumo_yolo.data.labels import LabelFileError, read_class_info, read_labels

from .conftest import EXCERPT_DIR, real_csv

HEADER = "patientId,x,y,width,height,Target\n"


def write(tmp_path: Path, text: str, name: str = "labels.csv", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_real_train_labels_match_the_published_statistics():
    labels = read_labels(real_csv("stage_2_train_labels.csv"))
    counts = [len(b) for b in labels.boxes.values()]
    assert len(labels.boxes) == 26_684
    assert sum(counts) == 9_555
    assert sum(c > 0 for c in counts) == 6_012
    assert {n: counts.count(n) for n in (1, 2, 3, 4)} == {1: 2_614, 2: 3_266, 3: 119, 4: 13}
    every_box = np.concatenate([b for b in labels.boxes.values() if len(b)])
    assert every_box[:, 2].min() == 40 and every_box[:, 2].max() == 528
    assert every_box[:, 3].min() == 45 and every_box[:, 3].max() == 942
    assert (every_box[:, 0] + every_box[:, 2]).max() == 1024
    assert labels.problems == [] and labels.dropped == []


def test_real_label_excerpt_parses_to_its_known_boxes():
    labels = read_labels(EXCERPT_DIR / "stage_2_train_labels.csv")
    counts = [len(b) for b in labels.boxes.values()]
    assert len(labels.boxes) == 42
    assert {n: counts.count(n) for n in range(5)} == {0: 25, 1: 2, 2: 13, 3: 1, 4: 1}
    assert len(labels.boxes["0004cfab-14fd-4e49-80ba-63a80b6bddd6"]) == 0
    np.testing.assert_array_equal(
        labels.boxes["00436515-870c-4b36-a041-de91049b9ab4"],
        [[264.0, 152.0, 213.0, 379.0], [562.0, 152.0, 256.0, 453.0]],
    )
    assert labels.problems == [] and labels.dropped == []
    classes = read_class_info(EXCERPT_DIR / "stage_2_detailed_class_info.csv")
    assert sorted(classes) == sorted(labels.boxes)
    assert {pid for pid, name in classes.items() if name == "Lung Opacity"} == {
        pid for pid, n in zip(labels.boxes, counts) if n
    }
    assert list(classes.values()).count("Normal") == 11


def test_real_class_info_is_deduplicated_per_patient():
    classes = read_class_info(real_csv("stage_2_detailed_class_info.csv"))
    values = list(classes.values())
    assert len(classes) == 26_684
    assert values.count("Lung Opacity") == 6_012
    assert values.count("No Lung Opacity / Not Normal") == 11_821
    assert values.count("Normal") == 8_851


def test_semicolon_crlf_copy_with_decimal_commas_reads_the_same(tmp_path):
    comma = write(tmp_path, HEADER + "a,264.0,152.0,213.0,379.0,1\na,562.5,152,256,453,1\nb,,,,,0\n", "comma.csv")
    semi = write(
        tmp_path,
        HEADER.replace(",", ";") + "a;264,0;152,0;213,0;379,0;1\na;562,5;152;256;453;1\nb;;;;;0\n",
        "semi.csv",
        newline="\r\n",
    )
    first, second = read_labels(comma), read_labels(semi)
    assert first.boxes.keys() == second.boxes.keys() == {"a", "b"}
    np.testing.assert_array_equal(first.boxes["a"], second.boxes["a"])
    np.testing.assert_array_equal(first.boxes["a"][1], [562.5, 152, 256, 453])
    assert second.boxes["b"].shape == (0, 4)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("bad,abc,1,2,3,1", "non-numeric"),
        ("bad,1,1,nan,3,1", "non-numeric or NaN"),
        ("bad,1,1,,3,1", "missing"),
        ("bad,1,1,-5,3,1", "negative width or height"),
        ("bad,1,1,5,3,2", "Target must be 0 or 1"),
        ("../escape,1,1,5,3,1", "not a safe file name"),
        ("/etc/passwd,1,1,5,3,1", "not a safe file name"),
    ],
)
def test_bad_rows_are_reported_with_their_line_and_the_rest_still_parses(tmp_path, row, problem):
    labels = read_labels(write(tmp_path, HEADER + "good,1,2,3,4,1\n" + row + "\n"))
    assert list(labels.boxes) == ["good"]
    [reported] = labels.problems
    assert reported.line == 3 and problem in reported.problem


def test_degenerate_boxes_are_dropped_with_a_warning(tmp_path):
    labels = read_labels(write(tmp_path, HEADER + "p,1,2,0,4,1\np,10,20,30,40,1\n"))
    np.testing.assert_array_equal(labels.boxes["p"], [[10, 20, 30, 40]])
    assert [d.line for d in labels.dropped] == [2]


def test_mixed_targets_for_one_patient_are_a_problem(tmp_path):
    labels = read_labels(write(tmp_path, HEADER + "p,1,2,3,4,1\np,,,,,0\n"))
    assert labels.boxes == {} and "both Target 0 and Target 1" in labels.problems[0].problem


def test_missing_columns_name_the_file(tmp_path):
    path = write(tmp_path, "id,x\n1,2\n")
    with pytest.raises(LabelFileError, match=r"labels\.csv: missing column\(s\) patientId"):
        read_labels(path)


def test_conflicting_classes_are_refused(tmp_path):
    path = write(tmp_path, "patientId,class\na,Normal\na,Lung Opacity\n", "classes.csv")
    with pytest.raises(LabelFileError, match="two different classes"):
        read_class_info(path)
