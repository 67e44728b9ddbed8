import numpy as np
import pytest

from pneumo_yolo import boxes as B


def test_xywh_xyxy_round_trip():
    ltwh = np.array([[264.0, 152.0, 213.0, 379.0], [0.0, 0.0, 1024.0, 1024.0]])
    np.testing.assert_allclose(B.xyxy_to_ltwh(B.ltwh_to_xyxy(ltwh)), ltwh)


def test_yolo_normalises_by_each_images_own_size():
    box = np.array([[100.0, 50.0, 200.0, 100.0]])
    np.testing.assert_allclose(B.ltwh_to_yolo(box, 1000, 500), [[0.2, 0.2, 0.2, 0.2]])
    np.testing.assert_allclose(B.yolo_to_ltwh(B.ltwh_to_yolo(box, 1000, 500), 1000, 500), box)


def test_clip_keeps_inside_and_zeroes_outside():
    boxes = np.array([[-10.0, 900.0, 100.0, 200.0], [2000.0, 0.0, 50.0, 50.0]])
    clipped = B.clip_ltwh(boxes, 1024, 1024)
    np.testing.assert_allclose(clipped[0], [0.0, 900.0, 90.0, 124.0])
    assert clipped[1, 2] == 0.0


def test_shrink_keeps_centre_and_scales_size():
    box = np.array([[10.0, 20.0, 110.0, 220.0]])
    shrunk = B.shrink_xyxy(box, 0.875)
    np.testing.assert_allclose((shrunk[:, :2] + shrunk[:, 2:]) / 2, [[60.0, 120.0]])
    np.testing.assert_allclose(shrunk[:, 2:] - shrunk[:, :2], [[87.5, 175.0]])


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ],
)
def test_iou(a, b, expected):
    assert B.iou_xyxy(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


def test_iou_of_empty_sets_has_the_right_shape():
    assert B.iou_xyxy(np.zeros((0, 4)), np.array([[0, 0, 1, 1]])).shape == (0, 1)
