"""The DICOM reader: one table of (variant, expected pixels), then each error on its own.

Expected pixels come from the DICOM standard's formulas written out here (PS3.3 C.11.1,
C.11.2), independently of the reader, with the output range mapped to 0..255.
"""

import cv2
import numpy as np
import pydicom
import pytest

from pneumo_yolo.dicom.read import DicomReadError, read_radiograph, resize_longest
from pneumo_yolo.dicom.write import DicomFormat, write_dicom

GRADIENT_8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # 4x16, values 0..240
STORED_16 = np.array([[0, 500, 1000, 2000]], dtype=np.uint16)  # rescaled 2x-1000: -1000, 0, 1000, 3000
STORED_12 = np.array([[1000, 1500, 1999, 2001, 2048, 3000]], dtype=np.uint16)  # 12 bits, spans 1000..3000 only
SIGNED_12 = np.array([[-2048, -1000, 0, 1000, 2047]], dtype=np.int16)
VOI_LUT_16 = (1200, 16, [1000 + 30 * i for i in range(1601)])  # maps 1200..2800; below and above clamp
VOI_LUT_12 = (1200, 12, [i * 4095 // 1600 for i in range(1601)])
VOI_LUT_8 = (1990, 8, list(range(255, -1, -1)))  # 256 entries, descending
MODALITY_LUT_16 = (0, 16, [i * i // 256 for i in range(4096)])  # not linear: a plain 12-bit scale differs


def to_gray(unit):
    """An output in [0, 1] as 0..255."""
    return np.rint(np.asarray(unit, float) * 255).astype(np.uint8)


def scale(values, low, high):
    """Values of the range [low, high] mapped linearly to 0..255."""
    return to_gray((np.asarray(values, float) - low) / (high - low))


def linear_window(values, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR: below c - 0.5 - (w-1)/2 black, above c - 0.5 + (w-1)/2 white."""
    x = np.asarray(values, float)
    inside = (x - (center - 0.5)) / (width - 1) + 0.5
    return to_gray(
        np.where(x <= center - 0.5 - (width - 1) / 2, 0, np.where(x > center - 0.5 + (width - 1) / 2, 1, inside))
    )


def linear_exact_window(values, center, width):
    """PS3.3 C.11.2.1.3.2 LINEAR_EXACT: below c - w/2 black, above c + w/2 white."""
    x = np.asarray(values, float)
    inside = (x - center) / width + 0.5
    return to_gray(np.where(x <= center - width / 2, 0, np.where(x > center + width / 2, 1, inside)))


def sigmoid_window(values, center, width):
    """PS3.3 C.11.2.1.3.1 SIGMOID."""
    return to_gray(1 / (1 + np.exp(-4 * (np.asarray(values, float) - center) / width)))


def lut(values, first, bits, entries):
    """A LUT (PS3.3 C.11.1.1, C.11.2.1.1): values below the first mapped take the first entry, above the last the last."""
    index = np.clip(np.asarray(values, np.int64) - first, 0, len(entries) - 1)
    return scale(np.asarray(entries)[index], 0, 2**bits - 1)


def explicit(**options):
    return {"transfer_syntax": "explicit", **options}


VARIANTS = {
    "MONO2_8_EXPLICIT": (GRADIENT_8, explicit(), GRADIENT_8),
    "MONO2_8_IMPLICIT": (GRADIENT_8, {"transfer_syntax": "implicit"}, GRADIENT_8),
    "MONO1_8_INVERTED": (GRADIENT_8, explicit(photometric="MONOCHROME1"), 255 - GRADIENT_8),
    "MOD_8_IDENTITY_AS_UNTAGGED": (GRADIENT_8, explicit(rescale=(1.0, 0.0)), GRADIENT_8),
    "MOD_16_WIN": (
        STORED_16,
        explicit(rescale=(2.0, -1000.0), window=(1000.0, 2001.0)),
        linear_window(STORED_16 * 2.0 - 1000.0, 1000.0, 2001.0),
    ),
    "MOD_16_WIN_MONO1": (
        STORED_16,
        explicit(rescale=(2.0, -1000.0), window=(1000.0, 2001.0), photometric="MONOCHROME1"),
        255 - linear_window(STORED_16 * 2.0 - 1000.0, 1000.0, 2001.0),
    ),
    # scaled by 2**12 - 1, not stretched (a stretch gives 0, 64, 127, 128, 134, 255)
    "STORED_12_BY_BIT_DEPTH": (STORED_12, explicit(bits_stored=12), np.array([[62, 93, 124, 125, 128, 187]], np.uint8)),
    "MOD_12_BY_BIT_DEPTH": (
        STORED_12,
        explicit(bits_stored=12, rescale=(1.0, -1024.0)),
        scale(STORED_12 - 1024.0, -1024, 3071),
    ),
    "MOD_12_NEGATIVE_SLOPE": (
        STORED_12,
        explicit(bits_stored=12, rescale=(-1.0, 4095.0)),
        scale(4095 - STORED_12, 0, 4095),
    ),
    "MOD_12_NEGATIVE_SLOPE_WIN": (
        STORED_12,
        explicit(bits_stored=12, rescale=(-1.0, 4095.0), window=(2000.0, 1001.0)),
        linear_window(4095 - STORED_12, 2000.0, 1001.0),
    ),
    "MOD_LUT_12": (STORED_12, explicit(bits_stored=12, modality_lut=MODALITY_LUT_16), lut(STORED_12, *MODALITY_LUT_16)),
    "MOD_LUT_12_WIN": (
        STORED_12,
        explicit(bits_stored=12, modality_lut=MODALITY_LUT_16, window=(16000.0, 20001.0)),
        linear_window(np.asarray(MODALITY_LUT_16[2])[STORED_12], 16000.0, 20001.0),
    ),
    "SIGNED_12_BY_BIT_DEPTH": (SIGNED_12, explicit(bits_stored=12, signed=True), scale(SIGNED_12, -2048, 2047)),
    "SIGNED_12_WIN": (
        SIGNED_12,
        explicit(bits_stored=12, signed=True, window=(0.0, 1001.0)),
        linear_window(SIGNED_12, 0.0, 1001.0),
    ),
    "WIN_12_MULTI_VALUED_FIRST": (
        STORED_12,
        explicit(bits_stored=12, window=([1500.0, 3000.0], [1001.0, 10.0])),
        linear_window(STORED_12, 1500.0, 1001.0),
    ),
    "WIN_12_LINEAR_EXACT": (
        STORED_12,
        explicit(bits_stored=12, window=(2000.0, 4.0), voi_function="LINEAR_EXACT"),
        linear_exact_window(STORED_12, 2000.0, 4.0),
    ),
    "WIN_12_SIGMOID": (
        STORED_12,
        explicit(bits_stored=12, window=(2000.0, 1000.0), voi_function="SIGMOID"),
        sigmoid_window(STORED_12, 2000.0, 1000.0),
    ),
    "VOI_LUT_12_16_BIT_ENTRIES": (STORED_12, explicit(bits_stored=12, voi_lut=VOI_LUT_16), lut(STORED_12, *VOI_LUT_16)),
    "VOI_LUT_12_12_BIT_ENTRIES": (STORED_12, explicit(bits_stored=12, voi_lut=VOI_LUT_12), lut(STORED_12, *VOI_LUT_12)),
    "VOI_LUT_12_8_BIT_ENTRIES": (STORED_12, explicit(bits_stored=12, voi_lut=VOI_LUT_8), lut(STORED_12, *VOI_LUT_8)),
    "VOI_LUT_OVER_WIN": (
        STORED_12,
        explicit(bits_stored=12, voi_lut=VOI_LUT_16, window=(2000.0, 4.0)),
        lut(STORED_12, *VOI_LUT_16),
    ),
    "MOD_12_VOI_LUT": (
        STORED_12,
        explicit(bits_stored=12, rescale=(2.0, -1000.0), voi_lut=VOI_LUT_16),
        lut(STORED_12 * 2 - 1000, *VOI_LUT_16),
    ),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_give_exact_pixels(tmp_path, name):
    stored, options, expected = VARIANTS[name]
    path = tmp_path / f"{name}.dcm"
    write_dicom(path, stored, stored=DicomFormat(**options))
    image = read_radiograph(path)
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, expected)
    assert (image.width, image.height) == (stored.shape[1], stored.shape[0])


def test_jpeg_baseline_is_read_as_pydicom_decodes_it(tmp_path):
    rng = np.random.default_rng(0)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (256, 256), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / "rsna.dcm"
    write_dicom(path, pixels, stored=DicomFormat(view_position="AP", sex="F", age="155"))
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
    write_dicom(path, np.full((200, 300), 7, np.uint8), stored=DicomFormat(transfer_syntax="explicit"))
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
    write_dicom(path, np.zeros((8, 8), np.uint8), stored=DicomFormat(transfer_syntax="explicit"))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=r"header\.dcm: DICOM has no pixel data"):
        read_radiograph(path)


def test_missing_decoder_names_the_package(tmp_path):
    path = tmp_path / "lossless.dcm"  # JPEG Lossless: no decoder installed (highdicom brings pyjpegls, a JPEG-LS one)
    write_dicom(path, np.zeros((8, 8), np.uint8))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
    ds.save_as(path)
    with pytest.raises(
        DicomReadError,
        match=r"lossless\.dcm: no decoder installed for transfer syntax JPEG Lossless.*Install one of: .*pylibjpeg",
    ):
        read_radiograph(path)


def test_colour_is_refused(tmp_path):
    path = tmp_path / "rgb.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint8), stored=DicomFormat(transfer_syntax="explicit"))
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "RGB"
    ds.save_as(path)
    with pytest.raises(DicomReadError, match="PhotometricInterpretation RGB is not supported"):
        read_radiograph(path)


def test_multi_frame_is_refused(tmp_path):
    path = tmp_path / "frames.dcm"
    write_dicom(path, np.zeros((8, 8), np.uint8), stored=DicomFormat(transfer_syntax="explicit"))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=r"frames\.dcm: multi-frame DICOM \(2 frames\) is not supported"):
        read_radiograph(path)


def test_bits_above_bits_stored_are_masked_not_clipped(tmp_path):
    path = tmp_path / "overlay.dcm"
    write_dicom(path, STORED_12, stored=DicomFormat(transfer_syntax="explicit", bits_stored=12))
    ds = pydicom.dcmread(path)
    ds.PixelData = (STORED_12 | 0xF000).astype("<u2").tobytes()  # unused high bits set, as overlays did
    ds.save_as(path)
    np.testing.assert_array_equal(read_radiograph(path).pixels, VARIANTS["STORED_12_BY_BIT_DEPTH"][2])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"voi_lut": (0, 12, [0, 5000])}, r"VOI LUT value 5000 exceeds the 12 bits per entry"),
        ({"voi_lut": (0, 8, [i // 16 for i in range(4096)])}, r"VOI LUT of 4096 8-bit entries"),
        ({"modality_lut": MODALITY_LUT_16, "rescale": (1.0, 0.0)}, r"both a Modality LUT Sequence and Rescale"),
        ({"window": (2000.0, 0.5)}, r"Window Width must be greater than or equal to 1"),
    ],
    ids=[
        "VOI_LUT_ABOVE_ITS_BITS",
        "VOI_LUT_8_BIT_LONGER_THAN_256",
        "MOD_LUT_AND_RESCALE",
        "WIN_LINEAR_NARROWER_THAN_1",
    ],
)
def test_luts_and_windows_that_cannot_be_applied(tmp_path, options, message):
    path = tmp_path / "lut.dcm"
    write_dicom(path, STORED_12, stored=DicomFormat(transfer_syntax="explicit", bits_stored=12, **options))
    with pytest.raises(DicomReadError, match=r"lut\.dcm: pixel values cannot be mapped to 8 bits .*" + message):
        read_radiograph(path)
