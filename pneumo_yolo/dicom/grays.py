"""Stored pixel values to 0–255: the modality LUT, then the VOI LUT or window, with their output ranges.

The rules (which range maps to 0–255, what is refused) are in :mod:`.read`'s docstring; this
module is the arithmetic, on pydicom's own transforms.
"""

from __future__ import annotations

import math

import numpy as np


def _has_rescale(ds) -> bool:
    return "RescaleSlope" in ds and "RescaleIntercept" in ds


def has_modality_lut(ds) -> bool:
    return bool(ds.get("ModalityLUTSequence")) or _has_rescale(ds)


def _has_voi_lut(ds) -> bool:
    return bool(ds.get("VOILUTSequence"))


def _has_window(ds) -> bool:
    return "WindowCenter" in ds and "WindowWidth" in ds


def has_voi(ds) -> bool:
    return _has_voi_lut(ds) or _has_window(ds)


def _modality_range(ds) -> tuple[float, float]:
    """The lowest and highest stored value Bits Stored allows, through the modality LUT.

    This is pydicom's window output range (``y_min``, ``y_max`` in ``apply_windowing``): with
    a negative Rescale Slope the first value is the larger.
    """
    if ds.get("ModalityLUTSequence"):
        if _has_rescale(ds):
            raise ValueError("both a Modality LUT Sequence and Rescale Slope/Intercept; PS3.3 C.11.1 allows one")
        return 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    bits = int(ds.BitsStored)
    low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if int(ds.PixelRepresentation) else (0.0, 2.0**bits - 1)
    if _has_rescale(ds):
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        if slope == 0 or not math.isfinite(slope) or not math.isfinite(intercept):
            raise ValueError(f"Rescale Slope {slope:g} and Intercept {intercept:g} map every pixel to one value")
        return low * slope + intercept, high * slope + intercept
    return low, high


def _apply_voi_lut_sequence(values: np.ndarray, ds) -> tuple[np.ndarray, tuple[float, float]]:
    """pydicom's ``apply_voi`` on integer input, and the ``[0, 2**n - 1]`` range of its output.

    Input is rounded and held within the LUT's input range (values outside it take the first
    or last entry, as the LUT itself does), so pydicom's index array, of the entries' integer
    type, cannot wrap.
    """
    from pydicom.pixels import apply_voi

    entries, first, bits = (int(value) for value in ds.VOILUTSequence[0].LUTDescriptor)
    entries = entries or 2**16
    if bits == 8 and entries > 256:
        raise ValueError(f"VOI LUT of {entries} 8-bit entries: pydicom indexes it through 8 bits, wrapping the index")
    index = np.rint(np.clip(values, first, first + entries - 1)).astype(np.int64)
    out = apply_voi(index, ds)
    top = 2**bits - 1
    if int(out.max()) > top:
        raise ValueError(f"VOI LUT value {int(out.max())} exceeds the {bits} bits per entry of its LUT Descriptor")
    return out, (0.0, float(top))


def to_uint8(arr: np.ndarray, ds) -> np.ndarray:
    """Modality LUT, then VOI LUT or window, with their output range mapped to 0–255.

    See the module docstring for the ranges. Raises ``ValueError`` (or pydicom's error) for a
    LUT or window that cannot be applied.
    """
    from pydicom.pixels import apply_modality_lut, apply_windowing

    low, high = _modality_range(ds)
    values = apply_modality_lut(arr, ds)
    if _has_voi_lut(ds):
        values, (low, high) = _apply_voi_lut_sequence(values, ds)
    elif _has_window(ds):
        values = apply_windowing(values, ds)
    else:
        low, high = min(low, high), max(low, high)
    if values.dtype == np.uint8 and (low, high) == (0.0, 255.0):  # already 0–255: no float round trip
        return values
    return np.rint((values.astype(np.float64) - low) / (high - low) * 255.0).astype(np.uint8)
