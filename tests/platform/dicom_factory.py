"""Write small, valid DICOM files with pydicom for tests: any modality, photometric interpretation,
orientation, frame count, and planted identifying attributes (to prove they never leak)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

#: Identifying values planted by tests; none of them may appear in any output.
PLANTED_PHI = {
    "PatientName": "Zyxwvut^Plantedname",
    "PatientID": "PHIPATIENTID9731",
    "PatientBirthDate": "19431127",
    "AccessionNumber": "ACCPHI55123",
    "InstitutionName": "Plantedville General Hospital",
    "ReferringPhysicianName": "Drqwerty^Plantedphys",
    "PerformingPhysicianName": "Drasdfgh^Plantedperf",
    "StudyDate": "20190317",
    "StudyID": "STUDYPHI8841",
    "StudyDescription": "PLANTEDSTUDYDESC",
    "OperatorsName": "Oprzxcv^Plantedop",
    "InstitutionAddress": "42 Plantedstreet Plantedtown",
}


def write_dicom(path: Path, pixels: np.ndarray, modality: str = "CT", photometric: str = "MONOCHROME2",
                slope: float = 1.0, intercept: float = 0.0, iop: Optional[list] = None,
                phi: Optional[dict] = None, study_uid: Optional[str] = None, patient_id: Optional[str] = None,
                body_part: Optional[str] = None, view_position: Optional[str] = None,
                with_pixels: bool = True) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for key, value in (phi or {}).items():
        setattr(ds, key, value)
    if patient_id is not None:
        ds.PatientID = patient_id
    if body_part:
        ds.BodyPartExamined = body_part
    if view_position:
        ds.ViewPosition = view_position
    if iop is not None:
        ds.ImageOrientationPatient = [float(v) for v in iop]
    pixels = np.asarray(pixels)
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.RescaleSlope = str(slope)
    ds.RescaleIntercept = str(intercept)
    if frames > 1:
        ds.NumberOfFrames = frames
    if with_pixels:
        dtype = np.int16 if ds.PixelRepresentation else np.uint16
        ds.PixelData = pixels.astype(dtype).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path
