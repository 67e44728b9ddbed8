"""Rendering of a sampled :class:`~.sample.ChestSpec` as a MONOCHROME2 chest radiograph.

:func:`render_chest` is a pure function of the spec. The smooth anatomy (body, lungs,
heart, ribs, opacities, mimics) is drawn at 256 px at most and upscaled; film grain and
markers are added at full size. Removing the opacities (or mimics) from a spec renders the
same patient without them, which is how tests check that each opacity lies inside its box.
"""

from __future__ import annotations

import cv2
import numpy as np

from .sample import Anatomy, ChestSpec, Mimic, Opacity

RENDER_SIDE = 256
HEART_TILT = (np.cos(np.radians(25.0)), np.sin(np.radians(25.0)))


def _ramp(x: np.ndarray) -> np.ndarray:
    """Smoothstep of ``x`` clipped to ``[0, 1]``: a soft edge from 0 to 1."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Unit-scale smooth random field: a coarse Gaussian grid upscaled (bicubic) to ``shape``."""
    grid = rng.standard_normal((max(cells[0], 2), max(cells[1], 2)), dtype=np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


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


def _envelope(
    box: tuple[int, int, int, int], squareness: float, side: int, image_size: int
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The rows and columns of the ``side`` px grid that ``box`` (pixels of ``image_size``)
    covers, and a soft rounded-rectangle mask over them.

    When the image is upscaled from that grid, the mask stops 2 low-resolution pixels inside
    the box, the reach of the bicubic kernel, so the final image changes only inside the box.
    """
    x, y, w, h = box
    scale = side / image_size
    margin = 2.0 / scale if image_size > side else 0.0
    j0, j1 = int(np.floor(x * scale)), int(np.ceil((x + w) * scale))
    i0, i1 = int(np.floor(y * scale)), int(np.ceil((y + h) * scale))
    cols = ((np.arange(j0, j1, dtype=np.float32) + 0.5) / scale - (x + w / 2)) / (w / 2 - margin)
    rows = ((np.arange(i0, i1, dtype=np.float32) + 0.5) / scale - (y + h / 2)) / (h / 2 - margin)
    p = squareness
    radius = (np.abs(cols[None, :]) ** p + np.abs(rows[:, None]) ** p) ** (1.0 / p)
    return (slice(i0, i1), slice(j0, j1)), _ramp((1.0 - radius) / 0.45)


def _add_opacity(density: np.ndarray, open_lung: np.ndarray, opacity: Opacity | Mimic, image_size: int) -> None:
    """Add one soft, blotchy, brighter region inside ``opacity.box`` to ``density`` in place
    (also draws the ``patch`` and ``band`` mimics)."""
    (rows, cols), envelope = _envelope(opacity.box, opacity.squareness, density.shape[0], image_size)
    rng = np.random.default_rng(opacity.seed)
    shape = envelope.shape
    cells = (max(3, round(shape[0] / 9)), max(3, round(shape[1] / 9)))
    field = _smooth_noise(rng, cells, shape)
    blotch = 1.0 / (1.0 + np.exp(-3.0 * (field + opacity.coverage)))
    weight = 0.3 + 0.7 * np.clip(open_lung[rows, cols], 0.0, 1.0)
    density[rows, cols] += opacity.strength * envelope * (0.3 + 0.7 * blotch) * weight


def _add_crowding(density: np.ndarray, open_lung: np.ndarray, mimic: Mimic, image_size: int) -> None:
    """Add crowded vessel markings inside ``mimic.box`` to ``density`` in place: thin,
    tortuous bright lines, packed more densely the higher ``mimic.coverage``, twice as dense
    as a patch of the same ``strength`` (they are thin)."""
    (rows, cols), envelope = _envelope(mimic.box, mimic.squareness, density.shape[0], image_size)
    rng = np.random.default_rng(mimic.seed)
    shape = envelope.shape
    field = _smooth_noise(rng, (max(3, round(shape[0] / 4)), max(3, round(shape[1] / 4))), shape)
    width = 0.25 + 0.25 * mimic.coverage
    lines = _ramp((width - np.abs(field)) / width) ** 2
    weight = 0.3 + 0.7 * np.clip(open_lung[rows, cols], 0.0, 1.0)
    density[rows, cols] += 2.0 * mimic.strength * envelope * lines * weight


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

    Pure: the same spec always gives the same pixels, and the opacities and mimics only
    change pixels inside their boxes (so ``dataclasses.replace(spec, opacities=())`` renders
    the same patient without them).

    >>> from pneumo_yolo.synth import sample_chest
    >>> image = render_chest(sample_chest(np.random.default_rng(0), size=256))
    >>> image.shape, image.dtype
    ((256, 256), dtype('uint8'))
    """
    side = min(spec.size, RENDER_SIDE)
    rng = np.random.default_rng(spec.texture_seed)
    density, open_lung = _anatomy_density(spec, side, rng)
    for opacity in spec.opacities:
        _add_opacity(density, open_lung, opacity, spec.size)
    for mimic in spec.mimics:
        (_add_crowding if mimic.kind == "crowding" else _add_opacity)(density, open_lung, mimic, spec.size)
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
