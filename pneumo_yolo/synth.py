"""Synthetic RSNA-like chest radiographs, labels and folders, for tests and the demo.

A case is first *sampled* (:func:`sample_chest`: anatomy, view, class, opacity boxes, all
from one RNG) and then *rendered* (:func:`render_chest`: a pure function of the sampled
:class:`ChestSpec`). Removing the opacities from a spec renders the same patient without
them, which is how tests check that each opacity lies inside its box.

The smooth anatomy (body, lungs, heart, ribs, opacities) is drawn at 256 px at most and
upscaled; film grain and markers are added at full size. The label statistics follow the
real stage-2 training labels (see ``DATA.md``): 22.5% positive patients, 1–4 boxes per
positive image (two boxes usually one per lung), box sizes around 217 × 298 px of 1024.

:func:`make_rsna_like` writes a whole folder in the real RSNA layout::

    out/
    ├── stage_2_train_images/<patientId>.dcm
    ├── stage_2_train_labels.csv
    ├── stage_2_detailed_class_info.csv
    ├── stage_2_test_images/<patientId>.dcm      (only with n_test > 0)
    ├── stage_2_sample_submission.csv            (only with n_test > 0)
    └── stage_2_test_labels.csv                  (only with n_test > 0; RSNA has none)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .dicom.write import write_dicom
from .files import atomic_write_text

OPACITY = "Lung Opacity"
NOT_NORMAL = "No Lung Opacity / Not Normal"
NORMAL = "Normal"
CLASSES = (OPACITY, NOT_NORMAL, NORMAL)

POSITIVE_RATE = 0.225
NOT_NORMAL_SHARE = 0.57
PA_SHARE = 0.54
MALE_SHARE = 0.57
BOX_COUNT_PROBS = {1: 0.435, 2: 0.543, 3: 0.020, 4: 0.002}
SAME_LUNG_PAIR_RATE = 0.02
IMAGE_LEFT_SINGLE_RATE = 0.535
REAL_SIDE = 1024
BOX_WIDTH_MEDIAN, BOX_WIDTH_LOG_SD, BOX_WIDTH_RANGE = 217 / REAL_SIDE, 0.28, (40 / REAL_SIDE, 528 / REAL_SIDE)
BOX_HEIGHT_MEDIAN, BOX_HEIGHT_LOG_SD, BOX_HEIGHT_RANGE = 298 / REAL_SIDE, 0.50, (45 / REAL_SIDE, 942 / REAL_SIDE)
BOX_SIZE_CORRELATION = 0.6
FINDINGS = ("cardiomegaly", "line", "ecg", "pacemaker")
RENDER_SIDE = 256
HEART_TILT = (np.cos(np.radians(25.0)), np.sin(np.radians(25.0)))
MIN_SIZE = 64

TRAIN_IMAGES = "stage_2_train_images"
TEST_IMAGES = "stage_2_test_images"
TRAIN_LABELS = "stage_2_train_labels.csv"
CLASS_INFO = "stage_2_detailed_class_info.csv"
SAMPLE_SUBMISSION = "stage_2_sample_submission.csv"
TEST_LABELS = "stage_2_test_labels.csv"
LABEL_HEADER = "patientId,x,y,width,height,Target"


@dataclass(frozen=True)
class Anatomy:
    """Shape and exposure of one chest, in units of the image side (0–1, y downwards)."""

    centre_x: float
    torso_half_width: float
    neck_half_width: float
    shoulder_y: float
    arms: float
    lung_top: float
    lung_bottom: float
    lung_medial: float
    lung_lateral: float
    apex_curve: float
    dome: float
    right_dome_lift: float
    heart_x: float
    heart_y: float
    heart_half_width: float
    heart_half_height: float
    mediastinum_half_width: float
    clavicle_y: float
    clavicle_rise: float
    scapula: float
    tissue_density: float
    lung_darkness: float
    vessel_strength: float
    rib_count: float
    rib_phase: float
    rib_strength: float
    breast_shadow: float
    gamma: float
    gain: float
    black: float
    grain: float


@dataclass(frozen=True)
class Opacity:
    """One lung opacity: its box (``x, y, width, height`` in pixels) and how it looks."""

    box: tuple[int, int, int, int]
    strength: float
    squareness: float
    coverage: float
    seed: int


@dataclass(frozen=True)
class ChestSpec:
    """Everything :func:`render_chest` needs to draw one radiograph, and its labels."""

    size: int
    view_position: str
    sex: str
    age: int
    class_name: str
    anatomy: Anatomy
    opacities: tuple[Opacity, ...] = ()
    findings: tuple[str, ...] = ()
    marker: str = ""
    texture_seed: int = 0

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` float ``xywh`` boxes in pixels (``(0, 4)`` for a negative case)."""
        return np.array([o.box for o in self.opacities], dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`make_rsna_like` wrote."""

    out: Path
    train_images: int
    train_positive: int
    train_boxes: int
    test_images: int = 0
    test_positive: int = 0


def _ramp(x: np.ndarray) -> np.ndarray:
    """Smoothstep of ``x`` clipped to ``[0, 1]``: a soft edge from 0 to 1."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Unit-scale smooth random field: a coarse Gaussian grid upscaled (bicubic) to ``shape``."""
    grid = rng.standard_normal((max(cells[0], 2), max(cells[1], 2)), dtype=np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _sample_anatomy(rng: np.random.Generator, view: str, findings: tuple[str, ...]) -> Anatomy:
    """Draw one patient's anatomy; AP films have a larger heart, higher clavicles, visible
    scapulae and a shallower inspiration."""
    ap = view == "AP"
    centre = 0.5 + rng.normal(0.0, 0.015)
    torso = rng.uniform(0.38, 0.46)
    shoulder = rng.uniform(-0.02, 0.06)
    top = shoulder + rng.uniform(0.08, 0.13)
    bottom = rng.uniform(0.70, 0.80) if ap else rng.uniform(0.77, 0.88)
    enlarged = rng.uniform(1.25, 1.4) if "cardiomegaly" in findings else 1.0
    heart_width = rng.uniform(0.13, 0.155) * (1.12 if ap else 1.0) * enlarged
    heart_height = rng.uniform(0.10, 0.125) * (1.0 + (enlarged - 1.0) / 2)
    dome = rng.uniform(0.05, 0.10)
    return Anatomy(
        centre_x=centre,
        torso_half_width=torso,
        neck_half_width=rng.uniform(0.07, 0.1),
        shoulder_y=shoulder,
        arms=rng.uniform(0.3, 0.5) if rng.random() < 0.5 else 0.0,
        lung_top=top,
        lung_bottom=bottom,
        lung_medial=rng.uniform(0.015, 0.03),
        lung_lateral=torso - rng.uniform(0.03, 0.055),
        apex_curve=rng.uniform(0.08, 0.14),
        dome=dome,
        right_dome_lift=rng.uniform(0.0, 0.04),
        heart_x=centre + rng.uniform(0.03, 0.06),
        heart_y=bottom - dome * 0.6 - heart_height * rng.uniform(0.6, 0.8),
        heart_half_width=heart_width,
        heart_half_height=heart_height,
        mediastinum_half_width=rng.uniform(0.05, 0.07) * (1.1 if ap else 1.0),
        clavicle_y=top + (rng.uniform(-0.02, 0.03) if ap else rng.uniform(0.03, 0.07)),
        clavicle_rise=rng.uniform(0.0, 0.02) if ap else rng.uniform(0.03, 0.06),
        scapula=rng.uniform(0.03, 0.06) if ap else 0.0,
        tissue_density=rng.uniform(0.55, 0.7),
        lung_darkness=rng.uniform(0.30, 0.42) * (0.85 if ap else 1.0),
        vessel_strength=rng.uniform(0.05, 0.09),
        rib_count=rng.uniform(8.5, 10.0),
        rib_phase=rng.uniform(0.0, 1.0),
        rib_strength=rng.uniform(0.06, 0.11),
        breast_shadow=rng.uniform(0.03, 0.08) if rng.random() < 0.7 else 0.0,
        gamma=rng.uniform(0.85, 1.3),
        gain=rng.uniform(0.85, 1.1),
        black=rng.uniform(0.0, 0.08),
        grain=rng.uniform(2.0, 6.0),
    )


def _lung_regions(anatomy: Anatomy) -> dict[int, tuple[float, float, float, float]]:
    """Where opacities go: ``(x0, y0, x1, y1)`` (image units) of each visible lung field;
    side -1 is the image left (the patient's right lung)."""
    a = anatomy
    regions = {}
    for side in (-1, 1):
        inner = a.centre_x + side * (a.mediastinum_half_width + 0.005)
        outer = a.centre_x + side * a.lung_lateral
        lift = a.right_dome_lift if side < 0 else 0.0
        regions[side] = (min(inner, outer), a.lung_top + 0.07, max(inner, outer), a.lung_bottom - 0.01 - lift)
    return regions


def _box_slots(rng: np.random.Generator, count: int, regions: dict[int, tuple]) -> list[tuple[float, float, float, float]]:
    """Regions to place ``count`` boxes in: one per lung, or upper/lower halves of a lung."""

    def halves(side: int) -> list[tuple[float, float, float, float]]:
        x0, y0, x1, y1 = regions[side]
        middle = (y0 + y1) / 2
        return [(x0, y0, x1, middle), (x0, middle, x1, y1)]

    first = -1 if rng.random() < IMAGE_LEFT_SINGLE_RATE else 1
    if count == 1:
        return [regions[first]]
    if count == 2:
        return halves(first) if rng.random() < SAME_LUNG_PAIR_RATE else [regions[-1], regions[1]]
    if count == 3:
        return [regions[first], *halves(-first)]
    return [*halves(-1), *halves(1)]


def _sample_box(rng: np.random.Generator, region: tuple[float, float, float, float], size: int) -> tuple[int, int, int, int]:
    """A box with RSNA-like size statistics inside ``region``, as integer pixel ``xywh``."""
    x0, y0, x1, y1 = region
    z_width, z_other = rng.standard_normal(2)
    z_height = BOX_SIZE_CORRELATION * z_width + np.sqrt(1 - BOX_SIZE_CORRELATION**2) * z_other
    width = np.clip(BOX_WIDTH_MEDIAN * np.exp(BOX_WIDTH_LOG_SD * z_width), *BOX_WIDTH_RANGE)
    height = np.clip(BOX_HEIGHT_MEDIAN * np.exp(BOX_HEIGHT_LOG_SD * z_height), *BOX_HEIGHT_RANGE)
    width, height = min(width, x1 - x0), min(height, y1 - y0)
    left = x0 + rng.random() * max(x1 - x0 - width, 0.0)
    top = y0 + rng.random() * max(y1 - y0 - height, 0.0)
    px0, py0 = int(np.clip(np.floor(left * size), 0, size - 1)), int(np.clip(np.floor(top * size), 0, size - 1))
    px1 = int(np.clip(np.ceil((left + width) * size), px0 + 1, size))
    py1 = int(np.clip(np.ceil((top + height) * size), py0 + 1, size))
    return px0, py0, px1 - px0, py1 - py0


def sample_chest(rng: np.random.Generator, size: int = REAL_SIDE, class_name: str | None = None) -> ChestSpec:
    """Draw one synthetic case: view, demographics, class, anatomy and opacity boxes.

    ``class_name`` forces one of :data:`CLASSES`; by default it follows the RSNA shares
    (22.5% "Lung Opacity"; negatives 57% "No Lung Opacity / Not Normal", 43% "Normal").
    "Not Normal" cases get a non-opacity finding (large heart, line or tube, ECG leads or
    pacemaker) and never an opacity.

    >>> spec = sample_chest(np.random.default_rng(0), size=512, class_name="Lung Opacity")
    >>> len(spec.opacities) >= 1 and spec.boxes.shape[1] == 4
    True
    """
    if size < MIN_SIZE:
        raise SynthError(f"image size must be at least {MIN_SIZE} pixels, not {size}")
    if class_name is None:
        if rng.random() < POSITIVE_RATE:
            class_name = OPACITY
        else:
            class_name = NOT_NORMAL if rng.random() < NOT_NORMAL_SHARE else NORMAL
    elif class_name not in CLASSES:
        raise ValueError(f"class_name must be one of {', '.join(CLASSES)}, not {class_name!r}")
    view = "PA" if rng.random() < PA_SHARE else "AP"
    sex = "M" if rng.random() < MALE_SHARE else "F"
    age = int(np.clip(round(rng.normal(47, 17)), 1, 92))
    findings: tuple[str, ...] = ()
    if class_name == NOT_NORMAL or (class_name == OPACITY and rng.random() < 0.4):
        findings = tuple(sorted(rng.choice(FINDINGS, size=int(rng.integers(1, 3)), replace=False).tolist()))
    anatomy = _sample_anatomy(rng, view, findings)
    opacities: tuple[Opacity, ...] = ()
    if class_name == OPACITY:
        count = int(rng.choice(list(BOX_COUNT_PROBS), p=list(BOX_COUNT_PROBS.values())))
        slots = _box_slots(rng, count, _lung_regions(anatomy))
        opacities = tuple(
            Opacity(
                box=_sample_box(rng, slot, size),
                strength=float(rng.uniform(0.14, 0.30)),
                squareness=float(rng.uniform(2.0, 3.5)),
                coverage=float(rng.uniform(0.2, 1.2)),
                seed=int(rng.integers(2**63)),
            )
            for slot in slots
        )
    marker = str(rng.choice(["", "R", "L", "AP PORTABLE" if view == "AP" else "PA"], p=[0.3, 0.3, 0.2, 0.2]))
    return ChestSpec(
        size=size,
        view_position=view,
        sex=sex,
        age=age,
        class_name=class_name,
        anatomy=anatomy,
        opacities=opacities,
        findings=findings,
        marker=marker,
        texture_seed=int(rng.integers(2**63)),
    )


def _segment_band(
    u: np.ndarray, v: np.ndarray, start: tuple[float, float], end: tuple[float, float], half_width: float
) -> np.ndarray:
    """Soft band of ``half_width`` around the segment ``start``–``end`` (e.g. a clavicle)."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    distance = np.hypot(u - x0 - t * dx, v - y0 - t * dy)
    return _ramp((half_width - distance) / (0.5 * half_width))


def _lungs(a: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft mask of both lung fields: rounded apices, bowed lateral walls, domed diaphragm."""
    lungs = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    t = np.clip((v - a.lung_top) / (a.lung_bottom - a.lung_top), 0.0, 1.0)
    lateral = 1.0 - 0.35 * (1.0 - t) ** 2
    span = a.lung_lateral - a.lung_medial
    for side in (-1, 1):
        h = (u - a.centre_x - side * a.lung_medial) * side / span
        dome = a.dome + (a.right_dome_lift if side < 0 else 0.0)
        ceiling = a.lung_top + a.apex_curve * ((h - 0.35) / 0.65) ** 2
        floor = a.lung_bottom - dome * (1.0 - ((h - 0.4) / 0.6) ** 2)
        margin = np.minimum(np.minimum(h * span, (lateral - h) * span), np.minimum(v - ceiling, floor - v))
        lungs += _ramp(margin / 0.015)
    return lungs


def _body(a: Anatomy, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue density of neck, shoulders, torso and arms, and the torso mask."""
    x = np.abs(u - a.centre_x)
    half_width = a.neck_half_width + (a.torso_half_width - a.neck_half_width) * _ramp((v - a.shoulder_y) / 0.14)
    half_width = half_width * (1.0 - 0.04 * np.clip(v - 0.8, 0.0, None))
    d = x / half_width
    body = _ramp((1.0 - d) / 0.04)
    density = a.tissue_density * (0.6 + 0.4 * np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))) * body
    if a.arms:
        arm = _ramp((x - a.torso_half_width - 0.02) / 0.015) * _ramp((v - a.shoulder_y - 0.08) / 0.04)
        density = density + a.arms * arm
    return density, body


def _mediastinum(a: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft mask of heart, mediastinal band and aortic knob (they hide the lungs)."""
    du, dv = u - a.heart_x, v - a.heart_y
    along, across = du * HEART_TILT[0] + dv * HEART_TILT[1], dv * HEART_TILT[0] - du * HEART_TILT[1]
    heart = _ramp((1.0 - np.hypot(along / a.heart_half_width, across / a.heart_half_height)) / 0.1)
    band = _ramp((a.mediastinum_half_width - np.abs(u - a.centre_x - 0.008)) / 0.015) * _ramp((a.heart_y - v) / 0.05)
    knob_r = np.hypot(u - a.centre_x - a.mediastinum_half_width, v - a.lung_top - 0.14)
    knob = _ramp((0.035 - knob_r) / 0.01)
    return np.maximum(np.maximum(heart, band), knob)


def _vessels(a: Anatomy, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Branching vascular markings that radiate from each hilum and fade to the periphery.

    A random field that varies fast across and slowly along the radius is looked up in
    (angle, log radius) coordinates around the hilum: its zero crossings become thin,
    mostly radial, forking lines.
    """
    shape = np.broadcast_shapes(u.shape, v.shape)
    side = np.where(u < a.centre_x, -1.0, 1.0)
    dx = (u - a.centre_x - side * 0.09) * side
    dy = v - a.lung_top - 0.27
    radius = np.hypot(dx, dy)
    rows, cols = 48, 256
    field = _smooth_noise(rng, (10, 28), (rows, cols))
    map_x = (np.arctan2(dy, dx) / (2 * np.pi) + 0.5) * cols
    map_y = (np.log(radius + 0.02) + 4.0) * (rows / 4)
    looked_up = cv2.remap(
        field,
        np.broadcast_to(map_x, shape).astype(np.float32),
        np.broadcast_to(map_y, shape).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_WRAP,
    )
    lines = _ramp((0.45 - np.abs(looked_up)) / 0.45) ** 2 * _ramp(radius / 0.06)
    return lines * (0.3 + 0.7 * np.exp(-radius / 0.15)) + 0.6 * np.exp(-(radius**2) / (2 * 0.04**2))


def _ribs(a: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Posterior ribs (arching out from the spine) and fainter anterior ribs (running down
    towards the sternum), spaced wider towards the base."""
    x = np.abs(u - a.centre_x)
    height = a.lung_bottom + 0.05 - a.lung_top

    def family(shift: np.ndarray, count: float, half_width: float) -> np.ndarray:
        depth = np.clip((v - shift - a.lung_top + 0.06) / height, 0.0, None)
        phase = np.mod(depth**0.85 * count + a.rib_phase, 1.0)
        return _ramp((half_width - np.abs(phase - 0.5)) / 0.07)

    posterior = family(-0.25 * x + 3.0 * np.clip(x - 0.2, 0.0, None) ** 2, a.rib_count, 0.2)
    anterior = family(0.45 * (0.45 - x), a.rib_count * 0.8, 0.13) * _ramp((x - 0.1) / 0.04)
    thorax = (
        _ramp((a.lung_lateral + 0.03 - x) / 0.02)
        * _ramp((x - 0.035) / 0.02)
        * _ramp((v - a.shoulder_y - 0.04) / 0.03)
        * _ramp((a.lung_bottom + 0.02 - v) / 0.04)
    )
    return (posterior + 0.45 * anterior) * thorax


def _anatomy_density(spec: ChestSpec, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """X-ray density (brighter = denser) of the chest without opacities, and the mask of the
    lung fields that the heart and mediastinum leave open."""
    a = spec.anatomy
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    u, v = coords[None, :], coords[:, None]
    x = np.abs(u - a.centre_x)

    density, body = _body(a, u, v)
    density = density + 0.06 * _ramp((v - a.lung_bottom + a.dome) / 0.05) * body
    lungs = _lungs(a, u, v)
    mediastinum = _mediastinum(a, u, v)
    open_lung = lungs * (1.0 - mediastinum)
    t = np.clip((v - a.lung_top) / (a.lung_bottom - a.lung_top), 0.0, 1.0)
    darkness = a.lung_darkness * (1.05 - 0.15 * t) - a.vessel_strength * _vessels(a, u, v, rng)
    density = density - darkness * open_lung
    if spec.sex == "F" and a.breast_shadow:
        for s in (-1, 1):
            r = np.hypot((u - a.centre_x - s * 0.24) / 0.17, (v - a.lung_bottom + 0.06) / 0.13)
            density += a.breast_shadow * _ramp((1.0 - r) / 0.25) * body

    spine = _ramp((0.03 - x) / 0.008) * (0.7 + 0.3 * np.cos(2 * np.pi * v / 0.04) ** 2)
    trachea = _ramp((0.013 - np.abs(u - a.centre_x - 0.005)) / 0.006) * _ramp((a.lung_top + 0.13 - v) / 0.02)
    density += (0.035 * spine - 0.10 * trachea) * body
    density += a.rib_strength * _ribs(a, u, v) * (0.35 + 0.65 * open_lung)

    for s in (-1, 1):
        start = (a.centre_x + s * 0.05, a.clavicle_y)
        end = (a.centre_x + s * (a.torso_half_width - 0.03), a.clavicle_y - a.clavicle_rise)
        density += 0.12 * _segment_band(u, v, start, end, 0.017)
    if a.scapula:
        border = (x - a.lung_lateral + 0.12 - 0.25 * (v - a.lung_top)) / 0.01
        density += a.scapula * _ramp(border) * _ramp((a.lung_top + 0.4 - v) / 0.05)

    bubble = np.hypot((u - a.centre_x - 0.17) / 0.05, (v - a.lung_bottom - 0.03) / 0.03)
    density -= 0.12 * _ramp((1.0 - bubble) / 0.3) * body
    density += 0.025 * _smooth_noise(rng, (6, 6), (side, side))
    return density.astype(np.float32), open_lung.astype(np.float32)


def _add_opacity(density: np.ndarray, open_lung: np.ndarray, opacity: Opacity, image_size: int) -> None:
    """Add one soft, blotchy, brighter region to ``density`` (``side`` px) in place.

    When the image is upscaled from ``density``, the region stops 2 low-resolution pixels
    inside its box, the reach of the bicubic kernel, so the final image changes only inside
    the box.
    """
    side = density.shape[0]
    x, y, w, h = opacity.box
    scale = side / image_size
    margin = 2.0 / scale if image_size > side else 0.0
    j0, j1 = int(np.floor(x * scale)), int(np.ceil((x + w) * scale))
    i0, i1 = int(np.floor(y * scale)), int(np.ceil((y + h) * scale))
    cols = ((np.arange(j0, j1, dtype=np.float32) + 0.5) / scale - (x + w / 2)) / (w / 2 - margin)
    rows = ((np.arange(i0, i1, dtype=np.float32) + 0.5) / scale - (y + h / 2)) / (h / 2 - margin)
    p = opacity.squareness
    radius = (np.abs(cols[None, :]) ** p + np.abs(rows[:, None]) ** p) ** (1.0 / p)
    envelope = _ramp((1.0 - radius) / 0.45)
    rng = np.random.default_rng(opacity.seed)
    cells = (max(3, round((i1 - i0) / 9)), max(3, round((j1 - j0) / 9)))
    field = _smooth_noise(rng, cells, (i1 - i0, j1 - j0))
    blotch = 1.0 / (1.0 + np.exp(-3.0 * (field + opacity.coverage)))
    weight = 0.3 + 0.7 * np.clip(open_lung[i0:i1, j0:j1], 0.0, 1.0)
    density[i0:i1, j0:j1] += opacity.strength * envelope * (0.3 + 0.7 * blotch) * weight


def _draw_findings(density: np.ndarray, spec: ChestSpec, rng: np.random.Generator) -> None:
    """Draw lines, tubes, ECG leads and pacemakers (radiopaque, thin or small) in place."""
    side = density.shape[0]
    a = spec.anatomy
    canvas = np.zeros((side, side), dtype=np.uint8)

    def points(*xy: tuple[float, float]) -> np.ndarray:
        jitter = rng.normal(0.0, 0.01, (len(xy), 2))
        return np.round((np.array(xy) + jitter) * side).astype(np.int32)

    heart = (a.heart_x, a.heart_y)
    if "line" in spec.findings:
        if rng.random() < 0.5:
            path = points(  # central venous catheter ending in the superior vena cava
                (a.centre_x - 0.12, 0.0),
                (a.centre_x - 0.07, a.shoulder_y + 0.07),
                (a.centre_x - 0.03, a.lung_top + 0.12),
                (a.centre_x + 0.005, a.heart_y - 0.6 * a.heart_half_height),
            )
        else:
            path = points(  # nasogastric tube down the oesophagus into the stomach
                (a.centre_x, 0.0),
                (a.centre_x + 0.005, a.lung_top),
                (a.centre_x + 0.02, a.lung_bottom),
                (a.centre_x + 0.15, a.lung_bottom + 0.06),
            )
        cv2.polylines(canvas, [path], False, 255, 1, cv2.LINE_AA)
    if "ecg" in spec.findings:
        for _ in range(int(rng.integers(2, 5))):
            lead = (rng.uniform(a.centre_x - 0.3, a.centre_x + 0.3), rng.uniform(a.lung_top, a.lung_bottom))
            cv2.circle(canvas, tuple(points(lead)[0]), max(2, round(0.012 * side)), 255, 1, cv2.LINE_AA)
            edge = (float(np.clip(lead[0] + rng.normal(0, 0.2), 0, 1)), float(rng.choice([0.0, 1.0])))
            middle = ((lead[0] + edge[0]) / 2 + rng.normal(0, 0.05), (lead[1] + edge[1]) / 2)
            cv2.polylines(canvas, [points(lead, middle, edge)], False, 160, 1, cv2.LINE_AA)
    if "pacemaker" in spec.findings:
        box = (a.centre_x + 0.22, a.shoulder_y + 0.12)
        centre = tuple(points(box)[0])
        axes = (max(2, round(0.035 * side)), max(2, round(0.025 * side)))
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.polylines(canvas, [points(box, (a.centre_x + 0.05, a.lung_top + 0.12), heart)], False, 255, 1, cv2.LINE_AA)
    density += canvas.astype(np.float32) * (0.35 / 255.0)


def _draw_marker(image: np.ndarray, marker: str, rng: np.random.Generator) -> None:
    """Burn a side or view marker ("R", "L", "AP PORTABLE") into the top of the image, in place."""
    size = image.shape[0]
    scale = size / 1024 * (1.6 if len(marker) == 1 else 1.0)
    thickness = max(1, round(size / 340))
    x = int(rng.uniform(0.03, 0.75 if len(marker) > 2 else 0.9) * size)
    y = int(rng.uniform(0.05, 0.12) * size)
    cv2.putText(image, marker, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 240, thickness, cv2.LINE_AA)


def render_chest(spec: ChestSpec) -> np.ndarray:
    """Render ``spec`` as a ``size × size`` uint8 MONOCHROME2 image (bone bright, air dark).

    Pure: the same spec always gives the same pixels, and the opacities only change pixels
    inside their boxes (so ``dataclasses.replace(spec, opacities=())`` renders the same
    patient without them).

    >>> image = render_chest(sample_chest(np.random.default_rng(0), size=256))
    >>> image.shape, image.dtype
    ((256, 256), dtype('uint8'))
    """
    side = min(spec.size, RENDER_SIDE)
    rng = np.random.default_rng(spec.texture_seed)
    density, open_lung = _anatomy_density(spec, side, rng)
    for opacity in spec.opacities:
        _add_opacity(density, open_lung, opacity, spec.size)
    if spec.findings:
        _draw_findings(density, spec, rng)
    a = spec.anatomy
    low = (a.black + a.gain * np.clip(density, 0.0, None) ** a.gamma) * 255.0
    image = cv2.resize(low.astype(np.float32), (spec.size, spec.size), interpolation=cv2.INTER_CUBIC)
    half = (spec.size + 1) // 2
    grain = rng.standard_normal((half, half), dtype=np.float32) * a.grain
    image += cv2.resize(grain, (spec.size, spec.size), interpolation=cv2.INTER_LINEAR)
    pixels = np.clip(image, 0.0, 255.0).astype(np.uint8)
    if spec.marker:
        _draw_marker(pixels, spec.marker, rng)
    return pixels


def patient_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct UUID-4 strings like RSNA's patientIds, drawn from ``rng``.

    >>> patient_ids(np.random.default_rng(0), 1)[0].count("-")
    4
    """
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[str(uuid.UUID(bytes=rng.bytes(16), version=4))] = None
    return list(ids)


def label_rows(patient_id: str, boxes: np.ndarray) -> list[str]:
    """``stage_2_train_labels.csv`` rows of one patient: one per box, or one empty Target-0 row.

    >>> label_rows("p", np.array([[264, 152, 213, 379]])), label_rows("p", np.zeros((0, 4)))
    (['p,264.0,152.0,213.0,379.0,1'], ['p,,,,,0'])
    """
    if not len(boxes):
        return [f"{patient_id},,,,,0"]
    return [f"{patient_id},{x:.1f},{y:.1f},{w:.1f},{h:.1f},1" for x, y, w, h in boxes]


def _csv(header: str, rows: list[str]) -> str:
    """CSV text with ``\n`` line ends, as the RSNA files have."""
    return "\n".join([header, *rows]) + "\n"


class SynthError(ValueError):
    """Synthesis arguments that cannot work, or an output folder that already holds a data set."""


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse to mix a new set with an earlier one unless ``overwrite``."""
    earlier = [out / name for name in (TRAIN_LABELS, CLASS_INFO, SAMPLE_SUBMISSION, TEST_LABELS) if (out / name).exists()]
    earlier += [folder for folder in (out / TRAIN_IMAGES, out / TEST_IMAGES) if any(folder.glob("*.dcm"))]
    if earlier and not overwrite:
        raise SynthError(
            f"{out} already holds a data set ({earlier[0].name}); "
            "choose an empty folder, or pass --overwrite (overwrite=True) to replace it"
        )


def _remove_stale(out: Path, keep: set[str], n_test: int) -> None:
    """After an overwrite, delete the earlier set's images and test CSVs that the new set lacks."""
    for folder in (out / TRAIN_IMAGES, out / TEST_IMAGES):
        for path in folder.glob("*.dcm"):
            if path.stem not in keep:
                path.unlink()
    if n_test == 0:
        for name in (SAMPLE_SUBMISSION, TEST_LABELS):
            (out / name).unlink(missing_ok=True)


def _write_split(out: Path, folder: str, split: int, ids: list[str], seed: int, size: int, bar) -> list[ChestSpec]:
    """Sample, render and write the DICOMs of one split; image ``i`` has its own RNG stream."""
    specs = []
    for index, patient_id in enumerate(ids):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split, index)))
        spec = sample_chest(rng, size)
        write_dicom(
            out / folder / f"{patient_id}.dcm",
            render_chest(spec),
            patient_id=patient_id,
            view_position=spec.view_position,
            sex=spec.sex,
            age=str(spec.age),
        )
        specs.append(spec)
        bar.update()
    return specs


def make_rsna_like(
    out: Path,
    n: int,
    seed: int = 0,
    n_test: int = 0,
    size: int = REAL_SIDE,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic data set in the real RSNA layout and formats (see the module docstring).

    Every file depends only on ``seed``, ``n``, ``n_test`` and ``size``: the same arguments
    give the same bytes. Train and test patientIds never collide. Boxes are in pixels of the
    ``size × size`` images.

    Args:
        out: output folder (created).
        n: training images.
        seed: seed of everything (≥ 0).
        n_test: test images; with ``n_test > 0`` the test folder, a sample submission and
            ``stage_2_test_labels.csv`` (the synthetic ground truth) are written too.
        size: image side in pixels (≥ 64).
        overwrite: replace an earlier data set in ``out`` (its other images are deleted).
        progress: show a progress bar.

    Raises:
        SynthError: ``n < 1``, ``n_test < 0``, ``seed < 0`` or ``size < 64``, or ``out`` already
            holds a data set and ``overwrite`` is false.

    Example:
        >>> make_rsna_like(Path("demo_data"), n=300, n_test=60).train_positive  # doctest: +SKIP
        67
    """
    from tqdm import tqdm

    if n < 1 or n_test < 0 or seed < 0:
        raise SynthError(f"need n >= 1, n_test >= 0 and seed >= 0 (got n={n}, n_test={n_test}, seed={seed})")
    if size < MIN_SIZE:
        raise SynthError(f"image size must be at least {MIN_SIZE} pixels, not {size}")
    out = Path(out)
    _check_output(out, overwrite)
    ids = patient_ids(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))), n + n_test)
    train_ids, test_ids = ids[:n], ids[n:]
    with tqdm(total=n + n_test, desc=f"synth {out}", unit="img", disable=not progress) as bar:
        train = _write_split(out, TRAIN_IMAGES, 1, train_ids, seed, size, bar)
        test = _write_split(out, TEST_IMAGES, 2, test_ids, seed, size, bar)
    if overwrite:
        _remove_stale(out, set(ids), n_test)

    train_rows = [label_rows(pid, spec.boxes) for pid, spec in zip(train_ids, train)]
    texts = {
        TRAIN_LABELS: _csv(LABEL_HEADER, [row for rows in train_rows for row in rows]),
        CLASS_INFO: _csv(
            "patientId,class",
            [f"{pid},{spec.class_name}" for pid, spec, rows in zip(train_ids, train, train_rows) for _ in rows],
        ),
    }
    if n_test:
        test_rows = [row for pid, spec in zip(test_ids, test) for row in label_rows(pid, spec.boxes)]
        texts[TEST_LABELS] = _csv(LABEL_HEADER, test_rows)
        texts[SAMPLE_SUBMISSION] = _csv("patientId,PredictionString", [f"{pid},0.5 0 0 100 100" for pid in test_ids])
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return SynthSummary(
        out=out,
        train_images=n,
        train_positive=sum(bool(spec.opacities) for spec in train),
        train_boxes=sum(len(spec.opacities) for spec in train),
        test_images=n_test,
        test_positive=sum(bool(spec.opacities) for spec in test),
    )
