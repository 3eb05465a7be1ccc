"""PHI policy of ingestion.

What never leaves a reader: every attribute of the DICOM PS3.15 Annex E basic application level
confidentiality profile that identifies a person, a visit or a place. `imaging.read_dicom` copies no
attribute into its output except the non-identifying ones of `SafeMeta`; this list documents what it
guarantees to leave behind, and tests plant values in these attributes and grep every output for them.

Patient and study keys are salted SHA-256 hashes (`imaging.salted_key`). The salt, in order:
`data.ingest.salt` (config / --set), $RADISIM_PHI_SALT, else a random salt created once and kept in
DIR/.phi_salt (mode 0600) so that re-runs produce the same keys. The salt itself is never written to
manifests, the data card, logs or MLflow; keep it secret and stable across the runs whose keys must
match (the train/eval split depends on it).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Optional

from radisim.platform.data.imaging import SALT_ENV

#: The identifying attributes of the PS3.15 basic profile that commonly carry PHI (not exhaustive
#: for private tags and free text: nothing outside SafeMeta is copied at all).
PHI_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge",
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName",
    "MedicalRecordLocator", "AccessionNumber", "StudyID", "StudyDate", "SeriesDate", "AcquisitionDate",
    "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OperatorsName", "PhysiciansOfRecord", "RequestingPhysician",
    "StationName", "DeviceSerialNumber", "StudyDescription", "SeriesDescription", "RequestAttributesSequence",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "AdditionalPatientHistory",
    "PatientComments", "ImageComments", "Occupation", "EthnicGroup",
)


def resolve_salt(configured: Optional[str], out_dir: str) -> tuple[str, str]:
    """(salt, where it came from). Never log the salt, only where it came from."""
    if configured:
        return configured, "config"
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV], "env"
    if "://" in out_dir:
        raise ValueError(f"set data.ingest.salt or ${SALT_ENV} when writing to a remote URI ({out_dir})")
    path = Path(out_dir) / ".phi_salt"
    if path.is_file():
        return path.read_text().strip(), "file"
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(salt + "\n")
    return salt, "file"
