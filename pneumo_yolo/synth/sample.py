"""Sampling of synthetic cases: RSNA label statistics, chest specs, opacity boxes, patientIds.

:func:`sample_chest` draws one case (view, demographics, class, anatomy, opacity boxes)
from one RNG into a :class:`ChestSpec`, which :mod:`.render` turns into pixels. The label
statistics follow the real stage-2 training labels (see ``DATA.md``): 22.5% positive
patients, 1–4 boxes per positive image (two boxes usually one per lung), box sizes around
217 × 298 px of 1024.

A :class:`Preset` sets how hard the pictures are to read. ``easy`` (the default) draws clear
opacities. ``hard`` draws faint ones, and gives half of the "No Lung Opacity / Not Normal"
images (so about 29 % of the negatives, 22 % of all images) opacity look-alikes that carry no
box (:class:`Mimic`). Both presets make the same draws up to the last one of the easy preset,
so one seed gives the same patients, classes and boxes in both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

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
MIMIC_KINDS = {"patch": 0.5, "band": 0.2, "crowding": 0.3}
MIN_SIZE = 64
MAX_IMAGES = 100_000
"""The most radiographs of one data set (train and test together): about three RSNA downloads.
Every case's spec is kept until the CSVs are written, so the count is bounded before any is made."""

Region = tuple[float, float, float, float]  # (x0, y0, x1, y1) in image units


class SynthError(ValueError):
    """Synthesis arguments that cannot work, or an output folder that already holds a data set."""


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
class Mimic:
    """Something in a lung field that looks like an opacity but is not labelled as one.

    ``kind`` is ``patch`` (a faint blotch, e.g. scarring), ``band`` (a thin, wide band: plate
    atelectasis) or ``crowding`` (packed vessel markings). The other fields mean what they
    mean for an :class:`Opacity`; ``box`` is where it is drawn, never a label.
    """

    kind: str
    box: tuple[int, int, int, int]
    strength: float
    squareness: float
    coverage: float
    seed: int


@dataclass(frozen=True)
class Preset:
    """How hard a synthetic set is to read (see the module docstring)."""

    opacity_strength: tuple[float, float]
    """Range (uniform) of the density an opacity adds at its core."""
    mimic_rate: float = 0.0
    """Share of "No Lung Opacity / Not Normal" images that get 1–2 :class:`Mimic`."""
    mimic_strength: tuple[float, float] = (0.0, 0.0)
    """Range (uniform) of a mimic's density."""


PRESETS = {
    "easy": Preset(opacity_strength=(0.14, 0.30)),
    "hard": Preset(opacity_strength=(0.09, 0.20), mimic_rate=0.5, mimic_strength=(0.06, 0.14)),
}
"""The presets by name; ``easy`` is the default everywhere."""


@dataclass(frozen=True)
class ChestSpec:
    """Everything :func:`.render.render_chest` needs to draw one radiograph, and its labels."""

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
    mimics: tuple[Mimic, ...] = ()

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` float ``xywh`` boxes in pixels (``(0, 4)`` for a negative case)."""
        return np.array([o.box for o in self.opacities], dtype=np.float64).reshape(-1, 4)


def preset_params(name: str) -> Preset:
    """The :class:`Preset` called ``name``; :class:`SynthError` names the valid ones.

    >>> preset_params("hard").mimic_rate
    0.5
    """
    if name not in PRESETS:
        raise SynthError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    return PRESETS[name]


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


def _lung_regions(anatomy: Anatomy) -> dict[int, Region]:
    """Where opacities go: ``(x0, y0, x1, y1)`` (image units) of each visible lung field;
    side -1 is the image left (the patient's right lung)."""
    a = anatomy
    regions: dict[int, Region] = {}
    for side in (-1, 1):
        inner = a.centre_x + side * (a.mediastinum_half_width + 0.005)
        outer = a.centre_x + side * a.lung_lateral
        lift = a.right_dome_lift if side < 0 else 0.0
        regions[side] = (min(inner, outer), a.lung_top + 0.07, max(inner, outer), a.lung_bottom - 0.01 - lift)
    return regions


def _box_slots(rng: np.random.Generator, count: int, regions: dict[int, Region]) -> list[Region]:
    """Regions to place ``count`` boxes in: one per lung, or upper/lower halves of a lung."""

    def halves(side: int) -> list[Region]:
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


def _place_box(
    rng: np.random.Generator, region: Region, width: float, height: float, size: int
) -> tuple[int, int, int, int]:
    """A ``width × height`` box (image units, cut to ``region``) at a random place inside
    ``region``, as integer pixel ``xywh``."""
    x0, y0, x1, y1 = region
    width, height = min(width, x1 - x0), min(height, y1 - y0)
    left = x0 + rng.random() * max(x1 - x0 - width, 0.0)
    top = y0 + rng.random() * max(y1 - y0 - height, 0.0)
    px0, py0 = int(np.clip(np.floor(left * size), 0, size - 1)), int(np.clip(np.floor(top * size), 0, size - 1))
    px1 = int(np.clip(np.ceil((left + width) * size), px0 + 1, size))
    py1 = int(np.clip(np.ceil((top + height) * size), py0 + 1, size))
    return px0, py0, px1 - px0, py1 - py0


def _sample_box(rng: np.random.Generator, region: Region, size: int) -> tuple[int, int, int, int]:
    """A box with RSNA-like size statistics inside ``region``, as integer pixel ``xywh``."""
    z_width, z_other = rng.standard_normal(2)
    z_height = BOX_SIZE_CORRELATION * z_width + np.sqrt(1 - BOX_SIZE_CORRELATION**2) * z_other
    width = np.clip(BOX_WIDTH_MEDIAN * np.exp(BOX_WIDTH_LOG_SD * z_width), *BOX_WIDTH_RANGE)
    height = np.clip(BOX_HEIGHT_MEDIAN * np.exp(BOX_HEIGHT_LOG_SD * z_height), *BOX_HEIGHT_RANGE)
    return _place_box(rng, region, width, height, size)


def _sample_mimics(rng: np.random.Generator, anatomy: Anatomy, size: int, preset: Preset) -> tuple[Mimic, ...]:
    """1–2 opacity look-alikes in random lung fields: patches and vessel crowding the size of
    real boxes, bands thin and wide in a lung's lower half."""
    regions = _lung_regions(anatomy)
    mimics = []
    for _ in range(int(rng.integers(1, 3))):
        kind = str(rng.choice(list(MIMIC_KINDS), p=list(MIMIC_KINDS.values())))
        x0, y0, x1, y1 = regions[-1 if rng.random() < 0.5 else 1]
        if kind == "band":
            box = _place_box(rng, (x0, (y0 + y1) / 2, x1, y1), rng.uniform(0.08, 0.18), rng.uniform(0.025, 0.045), size)
        else:
            box = _sample_box(rng, (x0, y0, x1, y1), size)
        mimics.append(
            Mimic(
                kind=kind,
                box=box,
                strength=float(rng.uniform(*preset.mimic_strength)),
                squareness=float(rng.uniform(2.0, 3.5)),
                coverage=float(rng.uniform(0.2, 1.2)),
                seed=int(rng.integers(2**63)),
            )
        )
    return tuple(mimics)


def sample_chest(
    rng: np.random.Generator, size: int = REAL_SIDE, class_name: str | None = None, preset: str = "easy"
) -> ChestSpec:
    """Draw one synthetic case: view, demographics, class, anatomy and opacity boxes.

    ``class_name`` forces one of :data:`CLASSES`; by default it follows the RSNA shares
    (22.5% "Lung Opacity"; negatives 57% "No Lung Opacity / Not Normal", 43% "Normal").
    "Not Normal" cases get a non-opacity finding (large heart, line or tube, ECG leads or
    pacemaker) and never an opacity; with the ``hard`` :data:`PRESETS` some also get mimics.

    >>> spec = sample_chest(np.random.default_rng(0), size=512, class_name="Lung Opacity")
    >>> len(spec.opacities) >= 1 and spec.boxes.shape[1] == 4
    True
    """
    if size < MIN_SIZE:
        raise SynthError(f"image size must be at least {MIN_SIZE} pixels, not {size}")
    params = preset_params(preset)
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
                strength=float(rng.uniform(*params.opacity_strength)),
                squareness=float(rng.uniform(2.0, 3.5)),
                coverage=float(rng.uniform(0.2, 1.2)),
                seed=int(rng.integers(2**63)),
            )
            for slot in slots
        )
    marker = str(rng.choice(["", "R", "L", "AP PORTABLE" if view == "AP" else "PA"], p=[0.3, 0.3, 0.2, 0.2]))
    texture_seed = int(rng.integers(2**63))
    mimics: tuple[Mimic, ...] = ()
    if params.mimic_rate and class_name == NOT_NORMAL and rng.random() < params.mimic_rate:
        mimics = _sample_mimics(rng, anatomy, size, params)
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
        texture_seed=texture_seed,
        mimics=mimics,
    )


def patient_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct UUID-4 strings like RSNA's patientIds, drawn from ``rng``.

    >>> patient_ids(np.random.default_rng(0), 1)[0].count("-")
    4
    """
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[str(uuid.UUID(bytes=rng.bytes(16), version=4))] = None
    return list(ids)
