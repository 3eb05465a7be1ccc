"""Medical image readers as pure functions (no Ray): DICOM and NIfTI in, uint8 grayscale out.

Shared by ingestion (`radisim.platform.data.ingest`) and the evaluation dataset adapters, so that a
training image and an evaluation image of the same scan look the same.

Intensity handling, per modality (the part that differs from photos):

- **CT**: stored values -> Hounsfield units with RescaleSlope/RescaleIntercept, then a window
  (default soft tissue W400/L40; `CT_WINDOWS` names brain, lung, bone, abdomen, soft_tissue;
  a `(width, level)` tuple works too) mapped to [0, 1].
- **MR** (and anything else without a physical scale): 1st-99th percentile normalisation.
- **DR** (CR/DX/DR/RG/MG radiographs): MONOCHROME1 is inverted first (there, high values are
  dark), then percentile-normalised like MR.

Header windows: when a DICOM carries a VOI LUT or WindowCenter/WindowWidth, that window is used (what
the radiologist saw, through pydicom's `apply_modality_lut` / `apply_voi_lut`); otherwise CT gets the
configured preset and other modalities percentiles (`window_source="preset"` ignores the header).
Compressed transfer syntaxes decode through pydicom's pixel plugins (pylibjpeg, pylibjpeg-libjpeg,
pylibjpeg-openjpeg are dependencies); a missing decoder is the reject reason
"dicom_decoder_missing", with pydicom's message (which names the plugin to install).

Geometry: `fit_side` resizes to a longest side with square pixels (DICOM PixelSpacing, NIfTI voxel
sizes via `slice_spacing`), so a coronal slice of 5 mm sections is not squashed; ingestion and the
evaluation adapters share it.

PHI: `read_dicom` deletes the `BASIC_PROFILE` attributes and private tags (`deidentify`) and
returns a `SafeMeta`, which holds only non-identifying fields. Patient and study
identity survive only as salted SHA-256 keys (`salted_key`), so splits can keep a patient's images
together without any identifier leaving the reader. The salt comes from the caller, else the
environment variable ``RADISIM_PHI_SALT``, else a built-in constant (which only pseudonymises
against a casual reader: set a secret salt for real data and keep it out of the outputs).

Errors: every failure is an `ImagingError` whose `reason` is a short stable code
("dicom_unreadable", "dicom_no_pixels", "nifti_bad_dims", "image_corrupt", ...), which ingestion
counts in its data card. Messages never carry DICOM attribute values.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

PathOrBytes = Union[str, os.PathLike, bytes]

#: CT windows as (width, level) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (400.0, 40.0),
    "brain": (80.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "abdomen": (350.0, 50.0),
}
DEFAULT_CT_WINDOW = "soft_tissue"

#: DICOM Modality values that are projection radiographs; all map to the platform's "DR".
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "MG", "PX", "RF", "XA"})

#: Views, as in the phantom and the tagger vocabulary.
VIEWS = ("axial", "sagittal", "coronal")

SALT_ENV = "RADISIM_PHI_SALT"

#: The identifying attributes of the DICOM PS3.15 Annex E basic application level confidentiality
#: profile (action X/Z/D/U there): names, IDs, dates and times, institutions, physicians, operators,
#: devices, free-text descriptions and comments, UIDs. `deidentify` deletes each from a dataset, with
#: every private tag, before anything else reads it.
BASIC_PROFILE = (
    "AccessionNumber", "AcquisitionComments", "AcquisitionDate", "AcquisitionDateTime", "AcquisitionDeviceProcessingDescription",
    "AcquisitionTime", "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID", "AdmittingDate",
    "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime", "Allergies", "Arbitrary",
    "AuthorObserverSequence", "BranchOfService", "CommentsOnThePerformedProcedureStep", "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorName", "ContentCreatorIdentificationCodeSequence", "ContentDate", "ContentTime", "ContributionDateTime",
    "ContributionDescription", "CountryOfResidence", "CurrentPatientLocation", "CurveDate", "CurveTime",
    "CustodialOrganizationSequence", "DataSetTrailingPadding", "DerivationDescription", "DetectorID", "DeviceDescription",
    "DeviceSerialNumber", "DeviceUID", "DigitalSignaturesSequence", "DischargeDiagnosisDescription", "DistributionAddress",
    "DistributionName", "EthnicGroup", "FrameComments", "FrameOfReferenceUID", "GantryID", "GeneratorID",
    "GraphicAnnotationSequence", "HumanPerformerName", "HumanPerformerOrganization", "IconImageSequence", "IdentifyingComments",
    "ImageComments", "ImagePresentationComments", "ImagingServiceRequestComments", "InstanceCreationDate", "InstanceCreationTime",
    "InstanceCreatorUID", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName", "InstitutionalDepartmentName",
    "InsurancePlanIdentification", "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence",
    "InterpretationAuthor", "InterpretationDiagnosisDescription", "InterpretationIDIssuer", "InterpretationRecorder",
    "InterpretationText", "InterpretationTranscriber", "IssuerOfAdmissionID", "IssuerOfPatientID", "LastMenstrualDate",
    "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence", "ModifiedImageDescription",
    "ModifyingDeviceID", "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation",
    "OperatorIdentificationSequence", "OperatorsName", "OriginalAttributesSequence", "OrderCallbackPhoneNumber",
    "OrderEnteredBy", "OrderEntererLocation", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "OverlayDate", "OverlayTime", "ParticipantSequence", "PatientAddress", "PatientAge",
    "PatientBirthDate", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientID", "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName", "PatientName", "PatientPrimaryLanguageCodeSequence", "PatientReligiousPreference",
    "PatientSex", "PatientSexNeutered", "PatientSize", "PatientState", "PatientTelephoneNumbers", "PatientTransportArrangements",
    "PatientWeight", "PerformedLocation", "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime", "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedStationAETitle", "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName", "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName", "PersonAddress", "PersonIdentificationCodeSequence", "PersonName", "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "PlateID", "PreMedication", "PregnancyStatus", "ProtocolName",
    "ReasonForTheImagingServiceRequest", "ReasonForStudy", "ReferencedDigitalSignatureSequence", "ReferencedImageSequence",
    "ReferencedPatientAliasSequence", "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence", "ReferencedStudySequence", "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence", "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence", "RequestAttributesSequence", "RequestedContrastAgent", "RequestedProcedureComments",
    "RequestedProcedureDescription", "RequestedProcedureID", "RequestedProcedureLocation", "RequestingPhysician",
    "RequestingService", "ResponsibleOrganization", "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence",
    "ResultsIDIssuer", "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName", "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime", "ScheduledProcedureStepDescription", "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName", "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "SeriesDate", "SeriesDescription", "SeriesInstanceUID",
    "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID", "SmokingStatus", "SOPInstanceUID",
    "SourceImageSequence", "SpecialNeeds", "StationName", "StudyComments", "StudyDate", "StudyDescription", "StudyID",
    "StudyIDIssuer", "StudyInstanceUID", "StudyTime", "TextComments", "TextString", "TimezoneOffsetFromUTC",
    "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle", "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName", "VerifyingObserverSequence", "VerifyingOrganization", "VisitComments",
)
_DEFAULT_SALT = "radisim-default-salt-set-RADISIM_PHI_SALT"


class ImagingError(ValueError):
    """An input that cannot become an image. `reason` is a stable code for counting rejects."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


# --------------------------------------------------------------------------------------- intensities


def parse_window(window: Union[str, tuple[float, float], list]) -> Union[str, tuple[float, float]]:
    """A preset name, "width/level" (e.g. "1500/-600") or a (width, level) pair -> what `window_ct` takes."""
    if isinstance(window, str) and "/" in window:
        try:
            width, level = (float(v) for v in window.split("/"))
        except ValueError:
            raise ValueError(f"CT window {window!r}: expected a preset or 'width/level', e.g. '400/40'") from None
        return width, level
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise ValueError(f"unknown CT window {window!r}; choose from {', '.join(CT_WINDOWS)} or 'width/level'")
        return window
    width, level = (float(v) for v in window)
    return width, level


def window_ct(hu: np.ndarray, window: Union[str, tuple[float, float]] = DEFAULT_CT_WINDOW) -> np.ndarray:
    """Hounsfield units -> float32 in [0, 1] through a (width, level) window, "width/level" or a preset."""
    if isinstance(window, str) and "/" in window:
        window = parse_window(window)
    if isinstance(window, str):
        try:
            width, level = CT_WINDOWS[window]
        except KeyError:
            raise ValueError(f"unknown CT window {window!r}; choose from {', '.join(CT_WINDOWS)}") from None
    else:
        width, level = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"CT window width must be > 0, got {width}")
    low = level - width / 2
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / width, 0.0, 1.0)


def normalise_mr(x: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Percentile normalisation to [0, 1] (MR has no absolute scale). A constant image becomes 0."""
    x = np.asarray(x, dtype=np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi <= lo:
        hi = float(finite.max())
        lo = float(finite.min())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    out = (np.nan_to_num(x, nan=lo) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (rounded, clipped); uint8 input passes through."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(np.nan_to_num(x, nan=0.0) * 255.0), 0, 255).astype(np.uint8)


def normalise(x: np.ndarray, modality: str, window: Union[str, tuple[float, float]] = DEFAULT_CT_WINDOW) -> np.ndarray:
    """Modality-appropriate [0, 1] scaling: CT windowed (input in HU), everything else percentiles."""
    if modality == "CT":
        return window_ct(x, window)
    return normalise_mr(x)


def encode_png(arr: np.ndarray) -> bytes:
    """uint8 2-D array -> PNG bytes (grayscale, mode L)."""
    from PIL import Image

    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"encode_png wants a uint8 2-D array, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/... bytes -> uint8 2-D grayscale. Truncated or corrupt files raise ImagingError
    ("image_corrupt"); 16-bit and float images are percentile-normalised instead of clipped."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode everything now: truncated files fail here, not later
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return to_uint8(normalise_mr(np.asarray(img)))
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise ImagingError("image_corrupt", type(err).__name__) from None


def resize_gray(arr: np.ndarray, size: int) -> np.ndarray:
    """uint8 2-D -> uint8 [size, size] (bilinear), the pipeline's resize."""
    from PIL import Image

    if arr.shape == (size, size):
        return arr
    return np.asarray(Image.fromarray(arr, mode="L").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def fit_side(image: np.ndarray, max_side: Optional[int] = None,
             spacing: Optional[tuple[float, float]] = None) -> np.ndarray:
    """uint8 2-D -> square pixels (with `spacing` = (row, column) mm: the finer axis is kept, the other
    stretched) and at most `max_side` on its longest side (aspect kept, bilinear). The one resize of
    ingestion and evaluation, so a thick-slice coronal view looks the same in both."""
    from PIL import Image

    h, w = image.shape
    th, tw = float(h), float(w)
    if spacing is not None and spacing[0] > 0 and spacing[1] > 0 and not np.isclose(spacing[0], spacing[1]):
        th *= spacing[0] / min(spacing)
        tw *= spacing[1] / min(spacing)
    if max_side and max(th, tw) > max_side:
        scale = max_side / max(th, tw)
        th, tw = th * scale, tw * scale
    size = (max(1, int(round(tw))), max(1, int(round(th))))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image, mode="L").resize(size, Image.BILINEAR), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ PHI


def phi_salt(salt: Optional[str] = None) -> str:
    """The salt for patient/study keys: the argument, else $RADISIM_PHI_SALT, else a built-in constant."""
    return salt or os.environ.get(SALT_ENV) or _DEFAULT_SALT


def salted_key(value: Optional[str], salt: Optional[str] = None, kind: str = "") -> Optional[str]:
    """A stable pseudonymous key: sha256(salt | kind | value), 20 hex digits. None/empty stays None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    digest = hashlib.sha256(f"{phi_salt(salt)}|{kind}|{text}".encode("utf-8")).hexdigest()
    return digest[:20]


@dataclass(frozen=True)
class SafeMeta:
    """The only DICOM metadata that leaves `read_dicom`: nothing here identifies a person.

    Patient and study appear as salted keys; dates, names, IDs, institutions, physicians, UIDs and
    free-text descriptions are never copied.
    """

    modality: str                       # "CT" | "MR" | "DR" | other DICOM Modality code
    body_part: Optional[str] = None     # BodyPartExamined, lower-case ("chest", "head", ...)
    view: Optional[str] = None          # axial/sagittal/coronal from ImageOrientationPatient; frontal/lateral for DR
    patient_key: Optional[str] = None   # salted hash of PatientID
    study_key: Optional[str] = None     # salted hash of StudyInstanceUID
    series_key: Optional[str] = None    # salted hash of SeriesInstanceUID
    photometric: Optional[str] = None
    n_frames: int = 1
    rows: int = 0
    columns: int = 0
    spacing: Optional[tuple[float, float]] = None   # PixelSpacing (row, column) in mm
    window_from: str = "preset"         # "voi_lut" | "header" (WindowCenter/Width) | "preset" | "percentile"

    def to_dict(self) -> dict:
        return asdict(self)


def view_from_orientation(iop: Optional[Sequence[float]]) -> Optional[str]:
    """ImageOrientationPatient (row and column direction cosines, LPS) -> axial/sagittal/coronal:
    the plane is named by the patient axis closest to the slice normal (row x column)."""
    if iop is None:
        return None
    try:
        v = np.asarray([float(x) for x in iop], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if v.shape != (6,):
        return None
    normal = np.cross(v[:3], v[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-6:
        return None
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def dr_view(position: Optional[str]) -> Optional[str]:
    """A radiograph's ViewPosition (PA, AP, LL, LATERAL, ...; also "Frontal"/"Lateral") -> frontal/lateral."""
    pos = str(position or "").strip().upper()
    if pos in ("PA", "AP", "FRONTAL", "AP AXIAL", "PA LLD", "AP LLD", "AP RLD", "PA RLD"):
        return "frontal"
    if pos in ("LL", "RL", "LAT", "LATERAL", "RLD", "LLD", "XTABLE LATERAL", "LAO", "RAO"):
        return "lateral"
    return None


def _dr_view(ds) -> Optional[str]:
    return dr_view(ds.get("ViewPosition", ""))


def platform_modality(dicom_modality: str) -> str:
    m = (dicom_modality or "").strip().upper()
    return "DR" if m in RADIOGRAPH_MODALITIES else (m or "OT")


def deidentify(ds, salt: Optional[str] = None) -> dict[str, Optional[str]]:
    """Delete every `BASIC_PROFILE` attribute and every private tag from `ds` (in place), file meta
    included. Returns the salted patient/study/series keys, computed before the identifiers go."""
    keys = {"patient_key": salted_key(ds.get("PatientID"), salt, "patient"),
            "study_key": salted_key(ds.get("StudyInstanceUID"), salt, "study"),
            "series_key": salted_key(ds.get("SeriesInstanceUID"), salt, "series")}
    for keyword in BASIC_PROFILE:
        if keyword in ds:
            delattr(ds, keyword)
    ds.remove_private_tags()
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        del meta.MediaStorageSOPInstanceUID
    return keys


def _pixel_spacing(ds) -> Optional[tuple[float, float]]:
    value = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def _safe_meta(ds, keys: dict, n_frames: int, shape: tuple[int, int]) -> SafeMeta:
    modality = platform_modality(str(ds.get("Modality", "") or ""))
    view = _dr_view(ds) if modality == "DR" else view_from_orientation(ds.get("ImageOrientationPatient"))
    body = str(ds.get("BodyPartExamined", "") or "").strip().lower() or None
    return SafeMeta(
        modality=modality,
        body_part=body,
        view=view,
        **keys,
        photometric=str(ds.get("PhotometricInterpretation", "") or "") or None,
        n_frames=n_frames,
        rows=int(shape[0]),
        columns=int(shape[1]),
        spacing=_pixel_spacing(ds),
    )


def _dcmread(path_or_bytes: PathOrBytes):
    import pydicom
    from pydicom.errors import InvalidDicomError

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings may quote element values
            return pydicom.dcmread(src)
    except InvalidDicomError:
        raise ImagingError("dicom_unreadable", "not a DICOM file") from None
    except FileNotFoundError:
        raise ImagingError("missing_file") from None
    except Exception as err:
        raise ImagingError("dicom_unreadable", type(err).__name__) from None


def dicom_pixels(ds) -> np.ndarray:
    """Stored values as float32, [frames, rows, cols] (a single frame gets frames=1), decoded through
    pydicom's pixel plugins. A compressed transfer syntax without an installed decoder raises
    "dicom_decoder_missing" carrying pydicom's message, which names the plugins that would decode it."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImagingError("dicom_no_pixels", "no pixel data element")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(ds.pixel_array)
    except Exception as err:  # truncated PixelData, missing codec for a compressed transfer syntax, ...
        text = str(err)
        if "missing dependencies" in text:
            raise ImagingError("dicom_decoder_missing", " ".join(text.split())) from None
        raise ImagingError("dicom_no_pixels", f"pixel data not decodable ({type(err).__name__})") from None
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1:  # colour (e.g. secondary capture): luminance
        arr = arr[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape) < 1 or arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ImagingError("dicom_no_pixels", f"unexpected pixel array shape {arr.shape}")
    return arr.astype(np.float32)


def _voi_output_range(ds) -> tuple[float, float]:
    """The range `apply_voi_lut` maps into (PS3.3 C.11.2.1.2): a VOI LUT's entry bit depth, else the
    stored range carried through the Modality LUT or rescale, as pydicom's `apply_windowing` does."""
    if "VOILUTSequence" in ds:
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", 16) or 16)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    lo, hi = (0.0, 2.0 ** bits - 1) if int(ds.get("PixelRepresentation", 0) or 0) == 0 else \
        (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def _has_header_window(ds) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def dicom_intensities(ds, raw: np.ndarray, modality: str, window: Union[str, tuple[float, float]],
                      window_source: str = "header") -> tuple[np.ndarray, str]:
    """Stored values -> [0, 1] floats as displayed, and which window was used.

    Modality LUT / rescale first (`apply_modality_lut`: CT -> HU). Then, with `window_source="header"`
    and a VOI LUT or WindowCenter/Width in the header, `apply_voi_lut` (the header's first window);
    else CT through `window` and everything else by percentiles. MONOCHROME1 is inverted last."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    values = raw if colour else np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    if window_source == "header" and not colour and _has_header_window(ds):
        lo, hi = _voi_output_range(ds)
        source = "voi_lut" if "VOILUTSequence" in ds else "header"
        lut_input = raw.astype(np.int64) if source == "voi_lut" else values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(apply_voi_lut(lut_input, ds, prefer_lut=True), dtype=np.float32)
        scaled = np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    elif modality == "CT":
        scaled, source = window_ct(values, window), "preset"
    else:
        scaled, source = normalise_mr(values), "percentile"
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled  # high stored values are dark in MONOCHROME1
    return scaled.astype(np.float32), source


def read_dicom(
    path_or_bytes: PathOrBytes,
    window: Union[str, tuple[float, float]] = DEFAULT_CT_WINDOW,
    frame: Union[int, str] = "middle",
    salt: Optional[str] = None,
    window_source: str = "header",
) -> tuple[np.ndarray, SafeMeta]:
    """One DICOM image -> (uint8 2-D array, SafeMeta), windowed by `dicom_intensities` (the header's
    window when present, else CT `window` / percentiles). Multi-frame: `frame` is an index or
    "middle" (use `read_dicom_frames` for all frames).
    """
    frames, meta = read_dicom_frames(path_or_bytes, window=window, salt=salt, window_source=window_source)
    if frame == "middle":
        idx = len(frames) // 2
    else:
        idx = int(frame)
        if not -len(frames) <= idx < len(frames):
            raise IndexError(f"frame {idx} out of range for {len(frames)} frames")
    return frames[idx], meta


def read_dicom_frames(
    path_or_bytes: PathOrBytes,
    window: Union[str, tuple[float, float]] = DEFAULT_CT_WINDOW,
    salt: Optional[str] = None,
    window_source: str = "header",
) -> tuple[list[np.ndarray], SafeMeta]:
    """Every frame of a DICOM -> (list of uint8 2-D arrays, SafeMeta). The identifiers are deleted
    (`deidentify`) before anything is read; MR/DR frames share one percentile scale (computed over
    all frames), so a multi-frame series keeps its contrast."""
    from dataclasses import replace

    ds = _dcmread(path_or_bytes)
    keys = deidentify(ds, salt)
    raw = dicom_pixels(ds)
    meta = _safe_meta(ds, keys, raw.shape[0], raw.shape[1:])
    scaled, source = dicom_intensities(ds, raw, meta.modality, parse_window(window), window_source)
    return [to_uint8(f) for f in scaled], replace(meta, window_from=source)


# ---------------------------------------------------------------------------------------------- NIfTI


def _load_nifti(path_or_bytes: PathOrBytes):
    import nibabel as nib

    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            data = bytes(path_or_bytes)
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            try:
                return nib.Nifti1Image.from_bytes(data)
            except Exception:
                return nib.Nifti2Image.from_bytes(data)
        if not Path(path_or_bytes).exists():
            raise ImagingError("missing_file")
        return nib.load(str(path_or_bytes))
    except ImagingError:
        raise
    except Exception as err:
        raise ImagingError("nifti_unreadable", type(err).__name__) from None


def read_nifti(path_or_bytes: PathOrBytes) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume (path or bytes, .nii or .nii.gz) -> (float32 3-D volume, 4x4 affine), reoriented
    to the closest canonical (RAS+) orientation: axis 0 runs to the patient's Right, 1 Anterior,
    2 Superior. 4-D images with a single volume are squeezed; other shapes raise "nifti_bad_dims"."""
    import nibabel as nib

    img = _load_nifti(path_or_bytes)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise ImagingError("nifti_bad_dims", f"expected a 3-D volume, got shape {tuple(shape)}")
    if min(img.shape) < 1 or sorted(img.shape)[1] < 2:
        raise ImagingError("nifti_bad_dims", f"degenerate volume shape {tuple(img.shape)}")
    try:
        img = nib.as_closest_canonical(img)
        volume = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:
        raise ImagingError("nifti_unreadable", type(err).__name__) from None
    return volume, np.asarray(img.affine, dtype=np.float64)


_VIEW_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def slice_indices(length: int, n: int, margin: float = 0.2) -> list[int]:
    """`n` evenly spaced indices in the central (1 - 2*margin) of an axis (edges are mostly empty)."""
    if n <= 0 or length <= 0:
        return []
    lo, hi = margin * (length - 1), (1 - margin) * (length - 1)
    if n == 1:
        return [int(round((length - 1) / 2))]
    return sorted({int(round(v)) for v in np.linspace(lo, hi, n)})


def nifti_slices(
    volume: np.ndarray,
    affine: Optional[np.ndarray],
    view: str,
    n: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
) -> list[np.ndarray]:
    """2-D slices of a canonical (RAS+, as from `read_nifti`) volume in one view, displayed in the
    radiological convention: axial and coronal have the patient's right on the viewer's left, sagittal
    has anterior on the left, and superior (coronal, sagittal) / anterior (axial) is at the top.

    Give `indices` along the view's axis, or `n` for evenly spaced central slices (default 1).
    Values are returned unchanged (float32); scale with `normalise` and `to_uint8`.
    `affine` is accepted for symmetry with `read_nifti`; it must be canonical if given.
    """
    if view not in _VIEW_AXIS:
        raise ValueError(f"view must be one of {', '.join(_VIEW_AXIS)}, got {view!r}")
    if volume.ndim != 3:
        raise ImagingError("nifti_bad_dims", f"expected a 3-D volume, got {volume.ndim}-D")
    if affine is not None:
        import nibabel as nib

        codes = "".join(nib.aff2axcodes(affine))
        if codes != "RAS":
            raise ValueError(f"volume is {codes}-oriented; pass it through read_nifti (as_closest_canonical) first")
    axis = _VIEW_AXIS[view]
    length = volume.shape[axis]
    idx = list(indices) if indices is not None else slice_indices(length, 1 if n is None else n)
    out = []
    for i in idx:
        if not 0 <= i < length:
            raise IndexError(f"{view} slice {i} out of range 0..{length - 1}")
        sl = np.take(volume, i, axis=axis)  # axes: (x, y) axial, (x, z) coronal, (y, z) sagittal
        # transpose -> rows run along the second axis; flip both -> superior/anterior at the top and
        # R (axial, coronal) or A (sagittal) on the viewer's left.
        out.append(np.ascontiguousarray(sl.T[::-1, ::-1]))
    return out


def slice_spacing(affine: Optional[np.ndarray], view: str) -> Optional[tuple[float, float]]:
    """(row, column) pixel spacing in mm of a `nifti_slices` slice of a canonical volume: axial rows
    run along y and columns along x; coronal rows along z, columns x; sagittal rows z, columns y."""
    if affine is None:
        return None
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    rows, cols = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[view]
    return float(zooms[rows]), float(zooms[cols])


def guess_volume_modality(volume: np.ndarray) -> str:
    """Heuristic for NIfTI, which records no modality: values reaching air (< -500) and bone (> 300)
    look like CT Hounsfield units; anything else is treated as MR."""
    finite = volume[np.isfinite(volume)]
    if finite.size and float(finite.min()) < -500 and float(np.percentile(finite, 99.9)) > 300:
        return "CT"
    return "MR"
