"""The SR and GSPS of one source image, built with highdicom (their content; :mod:`.results` writes them).

- The SR is a Comprehensive SR holding a TID 1500 Measurement Report. An image-level group
  (TID 1501) says whether an abnormal opacity is present or absent, so a PACS shows that the
  algorithm ran even where it found nothing. Each box is a planar ROI group (TID 1410): a closed
  5-point POLYLINE SCOORD on the source image, the finding DCM 112033 "Abnormal opacity" at SCT
  39607008 "Lung", and its confidence as DCM 111012 "Certainty of Finding" in %. Its region has
  the geometric purpose SCT 75958009 "Bounded by" (DICOM CP 1852), by which viewers such as 3D
  Slicer recognise a bounding box. Every group names the algorithm (TID 4019: ``pneumo-yolo``
  and its version).
- The GSPS (Grayscale Softcopy Presentation State) has one graphic layer holding each box as a
  closed polyline and a text label with its confidence. A box's tracking UID is the one of its SR
  region.

Boxes arrive as submission rows ``conf x y w h`` in the source's pixel grid. DICOM pixel
coordinates put (0, 0) at the top-left corner of the top-left pixel, as the RSNA boxes do, so the
corners are written unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import __version__

SR_SERIES_NUMBER = 901
GSPS_SERIES_NUMBER = 902
ALGORITHM = "pneumo-yolo"
LAYER = "PNEUMO_YOLO"


def polyline(x: float, y: float, w: float, h: float, size: tuple[int, int]) -> np.ndarray:
    """A closed 5-point polyline ``(5, 2)`` around box ``x y w h``, corners kept inside the ``(columns, rows)`` image.

    >>> polyline(10, 20, 30, 40, (100, 100)).tolist()
    [[10.0, 20.0], [40.0, 20.0], [40.0, 60.0], [10.0, 60.0], [10.0, 20.0]]
    """
    columns, rows = size
    x1, x2 = np.clip([x, x + w], 0, columns)
    y1, y2 = np.clip([y, y + h], 0, rows)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float64)


def confidence_label(conf: float) -> str:
    """Text shown beside a box. ``confidence_label(0.8765)`` → ``'opacity 88%'``."""
    return f"opacity {conf:.0%}"


@dataclass(frozen=True)
class Identity:
    """The UIDs and instance number of one result object, and the tracking UIDs of its image and boxes."""

    series_uid: str
    sop_uid: str
    instance: int
    image_tracking_uid: str
    tracking_uids: Sequence[str]


def _algorithm():
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=ALGORITHM, version=__version__)


def _observation_context():
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[ALGORITHM]), name=ALGORITHM, model_name=f"{ALGORITHM} {__version__}"
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def build_sr(reference, rows: np.ndarray, identity: Identity):
    """A Comprehensive SR (TID 1500) of one image's ``(M, 5)`` ``conf x y w h`` rows; ``M = 0`` reports no opacity."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = _algorithm()
    size = (int(reference.Columns), int(reference.Rows))
    verdict = codes.SCT.Present if len(rows) else codes.SCT.Absent
    groups: list = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=identity.image_tracking_uid, identifier="image"),
            finding_type=codes.DCM.AbnormalOpacity,
            algorithm_id=algorithm,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(reference)],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DCM.AbnormalOpacity, verdict)],
        )
    ]
    for k, ((conf, x, y, w, h), uid) in enumerate(zip(rows, identity.tracking_uids, strict=True), start=1):
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=polyline(x, y, w, h, size),
            source_image=hd.sr.SourceImageForRegion.from_source_image(reference),
        )
        certainty = hd.sr.Measurement(
            name=codes.DCM.CertaintyOfFinding,
            value=round(float(conf) * 100, 2),
            unit=codes.UCUM.Percent,
            algorithm_id=algorithm,
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=f"opacity {k}"),
                referenced_region=region,
                geometric_purpose=codes.SCT.BoundedBy,
                finding_type=codes.DCM.AbnormalOpacity,
                algorithm_id=algorithm,
                finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
                measurements=[certainty],
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    return hd.sr.ComprehensiveSR(
        evidence=[reference],
        content=report[0],
        series_instance_uid=identity.series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=identity.sop_uid,
        instance_number=identity.instance,
        manufacturer=ALGORITHM,
        series_description=f"{ALGORITHM} lung opacity report",
        is_complete=True,
    )


def build_gsps(reference, rows: np.ndarray, identity: Identity):
    """A Grayscale Softcopy Presentation State drawing each box of ``rows`` with a confidence label."""
    import highdicom as hd

    size = (int(reference.Columns), int(reference.Rows))
    layer = hd.pr.GraphicLayer(layer_name=LAYER, order=1, description=f"{ALGORITHM} lung opacities")
    pixel = hd.pr.AnnotationUnitsValues.PIXEL
    boxes, labels = [], []
    for k, ((conf, x, y, w, h), uid) in enumerate(zip(rows, identity.tracking_uids, strict=True), start=1):
        outline = polyline(x, y, w, h, size)
        boxes.append(
            hd.pr.GraphicObject(
                graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                graphic_data=outline,
                units=pixel,
                tracking_id=f"opacity {k}",
                tracking_uid=uid,
            )
        )
        labels.append(
            hd.pr.TextObject(
                text_value=confidence_label(float(conf)),
                units=pixel,
                anchor_point=tuple(outline[0]),
                anchor_point_visible=False,
                text_justification=hd.pr.TextJustificationValues.LEFT,
            )
        )
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[reference], graphic_layer=layer, graphic_objects=boxes, text_objects=labels
    )
    shape = "INVERSE" if reference.get("PhotometricInterpretation") == "MONOCHROME1" else "IDENTITY"
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[reference],
        series_instance_uid=identity.series_uid,
        series_number=GSPS_SERIES_NUMBER,
        sop_instance_uid=identity.sop_uid,
        instance_number=identity.instance,
        manufacturer=ALGORITHM,
        manufacturer_model_name=ALGORITHM,
        software_versions=__version__,
        device_serial_number="",
        content_label=LAYER,
        content_description=f"{ALGORITHM} lung opacities",
        graphic_layers=[layer],
        graphic_annotations=[annotation],
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=shape),
        series_description=f"{ALGORITHM} lung opacity boxes",
    )
    gsps.Laterality = ""  # General Series, Type 2C: unknown here, and checkers require it present
    return gsps
