"""The DICOM reader: one table of (variant, expected pixels), then each error on its own."""


import cv2
import numpy as np
import pydicom
import pytest

from pneumo_yolo.dicom.read import DicomReadError, read_radiograph, resize_longest
from pneumo_yolo.dicom.write import write_dicom

GRADIENT_8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # 4x16, values 0..240
STORED_16 = np.array([[0, 500, 1000, 2000]], dtype=np.uint16)  # rescaled 2x-1000: -1000, 0, 1000, 3000
STORED_12 = np.array([[0, 1024, 4095, 2048]], dtype=np.uint16)


def linear_window(values, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR window to 0..255, written out independently of the reader."""
    unit = np.clip((np.asarray(values, float) - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    return np.rint(unit * 255).astype(np.uint8)


VARIANTS = {
    "MONO2_8_EXPLICIT": (GRADIENT_8, {"transfer_syntax": "explicit"}, GRADIENT_8),
    "MONO2_8_IMPLICIT": (GRADIENT_8, {"transfer_syntax": "implicit"}, GRADIENT_8),
    "MONO1_8_INVERTED": (GRADIENT_8, {"transfer_syntax": "explicit", "photometric": "MONOCHROME1"}, 255 - GRADIENT_8),
    "MOD_16_WIN": (
        STORED_16,
        {"transfer_syntax": "explicit", "rescale": (2.0, -1000.0), "window": (1000.0, 2001.0)},
        np.array([[0, 0, 128, 255]], dtype=np.uint8),
    ),
    "MOD_16_WIN_MONO1": (
        STORED_16,
        {"transfer_syntax": "explicit", "rescale": (2.0, -1000.0), "window": (1000.0, 2001.0), "photometric": "MONOCHROME1"},
        np.array([[255, 255, 127, 0]], dtype=np.uint8),
    ),
    "STORED_12_STRETCH": (
        STORED_12,
        {"transfer_syntax": "explicit", "bits_stored": 12},
        np.rint(STORED_12 / 4095 * 255).astype(np.uint8),
    ),
    "MOD_12_NO_WINDOW": (
        STORED_12,
        {"transfer_syntax": "explicit", "bits_stored": 12, "rescale": (1.0, -1024.0)},
        np.rint(STORED_12 / 4095 * 255).astype(np.uint8),
    ),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_give_exact_pixels(tmp_path, name):
    stored, options, expected = VARIANTS[name]
    path = tmp_path / f"{name}.dcm"
    write_dicom(path, stored, **options)
    image = read_radiograph(path)
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, expected)
    assert (image.width, image.height) == (stored.shape[1], stored.shape[0])


def test_window_expectation_matches_the_formula():
    rescaled = STORED_16 * 2.0 - 1000.0
    np.testing.assert_array_equal(linear_window(rescaled, 1000.0, 2001.0), VARIANTS["MOD_16_WIN"][2])


def test_jpeg_baseline_is_read_as_pydicom_decodes_it(tmp_path):
    rng = np.random.default_rng(0)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (256, 256), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / "rsna.dcm"
    write_dicom(path, pixels, view_position="AP", sex="F", age="155")
    image = read_radiograph(path)
    np.testing.assert_array_equal(image.pixels, pydicom.dcmread(path).pixel_array)
    assert (image.view_position, image.sex, image.age) == ("AP", "F", 155)


def test_reduced_jpeg_decode_matches_a_full_decode_and_resize(tmp_path):
    rng = np.random.default_rng(1)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (512, 512), dtype=np.uint8), (0, 0), 4)
    path = tmp_path / "rsna.dcm"
    write_dicom(path, pixels)
    reduced = read_radiograph(path, max_side=256)
    full = resize_longest(read_radiograph(path).pixels, 256)
    assert reduced.pixels.shape == full.shape == (256, 256)
    assert (reduced.width, reduced.height) == (512, 512)
    assert np.abs(reduced.pixels.astype(int) - full).mean() < 1.0


def test_non_square_image_keeps_its_aspect_and_original_size(tmp_path):
    path = tmp_path / "wide.dcm"
    write_dicom(path, np.full((200, 300), 7, np.uint8), transfer_syntax="explicit")
    image = read_radiograph(path, max_side=100)
    assert image.pixels.shape == (67, 100)
    assert (image.width, image.height) == (300, 200)


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not an image")
    with pytest.raises(DicomReadError, match=r"notes\.dcm: not a DICOM file"):
        read_radiograph(path)


def test_truncated(tmp_path):
    path = tmp_path / "cut.dcm"
    write_dicom(path, np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomReadError, match=r"cut\.dcm: (corrupt or truncated|pixel data cannot be decoded)"):
        read_radiograph(path)


def test_no_pixel_data(tmp_path):
    path = tmp_path / "header.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint8), transfer_syntax="explicit")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=r"header\.dcm: DICOM has no pixel data"):
        read_radiograph(path)


def test_missing_decoder_names_the_package(tmp_path):
    path = tmp_path / "jpegls.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint8))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=r"jpegls\.dcm: no decoder installed for transfer syntax JPEG-LS .*Install one of: .*pylibjpeg"):
        read_radiograph(path)


def test_colour_is_refused(tmp_path):
    path = tmp_path / "rgb.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint8), transfer_syntax="explicit")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "RGB"
    ds.save_as(path)
    with pytest.raises(DicomReadError, match="PhotometricInterpretation RGB is not supported"):
        read_radiograph(path)
