"""PHI policy of ingestion: what identifies a person never reaches a manifest, the data card, a log
line or MLflow.

- **DICOM headers**: `imaging.BASIC_PROFILE` (the identifying attributes of the DICOM PS3.15 Annex E
  basic application level confidentiality profile) is deleted from every dataset, with all private
  tags, before any metadata is read (`imaging.deidentify`); only `imaging.SafeMeta` leaves the reader.
- **Paths**: file and folder names may carry a PatientID or a StudyInstanceUID (PACS exports). Every
  path-derived value (the row's `source_key`, `image_id`, reject samples, the source's label) is a
  salted hash (`public_key`, `source_label`). Users who must trace a row back name a key-map folder
  (`data.ingest.key_map`, outside the output folder): each chunk task writes `<chunk>.jsonl` lines
  `{"key": public key, "path": original key}` there, for the user's eyes only.
- **Report text**: `scrub_report` replaces names after titles or sign-off phrases, dates, times,
  phone numbers, e-mail addresses and ID-like numbers by `___` (MIMIC-CXR's own placeholder);
  the placeholders already in published reports (MIMIC `___`, IU/OpenI `XXXX`) stay as they are.
- **Patient keys**: sha256(salt | kind | id). The salt, in order: `data.ingest.salt`,
  $RADISIM_PHI_SALT, else the user's salt file (`data.ingest.salt_file`, default
  ~/.config/radisim/phi_salt, created once with mode 0600). Whoever holds the salt can hash guessed
  IDs and re-identify the keys, so it never lives in the dataset: a salt file inside the output
  folder (or a legacy DIR/.phi_salt) is refused with an error.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Optional

from radisim.platform.data.imaging import BASIC_PROFILE, SALT_ENV

#: Kept for callers of the old name: the attribute list that `imaging.deidentify` drops.
PHI_ATTRIBUTES = BASIC_PROFILE
DEFAULT_SALT_FILE = "~/.config/radisim/phi_salt"
PLACEHOLDER = "___"


class PhiPolicyError(ValueError):
    """A configuration that would put re-identifying material into the dataset."""


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_outside(path: Optional[str], out_dir: str, what: str) -> None:
    """Refuse `path` (salt file, key map) inside the output folder, where it would ship with the data."""
    if path and "://" not in out_dir and _inside(Path(os.path.expanduser(path)), Path(out_dir)):
        raise PhiPolicyError(f"refusing to keep the {what} ({path}) inside the dataset folder {out_dir}: "
                             f"whoever receives the data could re-identify patients; put it outside {out_dir}")


def resolve_salt(configured: Optional[str], salt_file: Optional[str], out_dir: str) -> tuple[str, str]:
    """(salt, where it came from: "config" | "env" | "file"). Never log the salt, only its origin."""
    legacy = Path(out_dir) / ".phi_salt"
    if "://" not in out_dir and legacy.exists():
        raise PhiPolicyError(f"{legacy} holds the PHI salt inside the dataset: move it out (e.g. "
                             f"`mv {legacy} {DEFAULT_SALT_FILE}`) or export ${SALT_ENV}, then re-run")
    if configured:
        return configured, "config"
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV], "env"
    path = Path(os.path.expanduser(salt_file or DEFAULT_SALT_FILE))
    check_outside(str(path), out_dir, "PHI salt file")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
    return path.read_text().strip(), "file"


def _digest(salt: str, kind: str, value: str, n: int) -> str:
    return hashlib.sha256(f"{salt}|{kind}|{value}".encode("utf-8")).hexdigest()[:n]


def source_label(kind: str, location: str, salt: str) -> str:
    """The name a source goes by in rows, cards and logs: its kind and a salted hash of its location."""
    return f"{kind}-{_digest(salt, 'source', location, 8)}"


def public_key(raw_key: str, salt: str) -> str:
    """`<label>:<path or row>` -> `<label>:<salted hash>`; a key without a label is hashed whole."""
    label, sep, rest = raw_key.partition(":")
    if not sep:
        return _digest(salt, "key", raw_key, 16)
    return f"{label}:{_digest(salt, 'key', rest, 16)}" if rest else label


# ------------------------------------------------------------------------------------- report text

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_NAME = r"[A-Z][A-Za-z'\-]+(?:\s+[A-Z]\.)?(?:\s+[A-Z][A-Za-z'\-]+)?"
#: (pattern, flags). Order matters: dates before numbers, names before generic tokens.
_SCRUB_PATTERNS = [
    r"[\w.+-]+@[\w-]+\.[\w.]+",                                              # e-mail
    r"\b[A-Za-z]+\^[A-Za-z^]+",                                              # DICOM PN: Family^Given
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",                                    # 2019-03-17
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",                                  # 03/17/2019
    rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",             # March 17, 2019
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\.?,?\s+\d{{4}}\b",             # 17 March 2019
    rf"\b{_MONTH}\.?\s+\d{{4}}\b",                                           # March 2019
    r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AaPp]\.?[Mm]\.?)?",                   # 10:45 am
    r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b",                # phone
    r"\b\d{3}-\d{2}-\d{4}\b",                                                # SSN
    r"(?i:\b(?:MRN|accession|acc|record|ID|SSN|case|pager|ext)\b\s*(?:no\.?|number|#)?\s*[:#]?\s*)[A-Z0-9-]*\d[A-Z0-9-]*",
    r"\b(?=[A-Za-z0-9-]*\d{4})[A-Za-z]+[A-Za-z0-9-]*\d[A-Za-z0-9-]*\b",      # ACC55123-like tokens
    r"\b\d{5,}\b",                                                           # long numbers
    rf"\b(?:Dr|Drs|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse|NP|PA-C)\.?\s+{_NAME}",  # titled names
    rf"(?i:\b(?:discussed with|d/w|communicated (?:to|with)|notified|paged|called|reported to|informed|"
    rf"signed by|dictated by|reviewed by|read by|electronically signed by|patient name|name)\b\s*:?\s*(?:the\s+)?)"
    rf"(?:Dr\.?\s+)?{_NAME}",                                                # names after sign-off phrases
]
_SCRUB = re.compile("|".join(f"(?:{p})" for p in _SCRUB_PATTERNS))
_KEEP_LEAD = re.compile(
    r"(?i)^(discussed with|d/w|communicated (?:to|with)|notified|paged|called|reported to|informed|signed by|"
    r"dictated by|reviewed by|read by|electronically signed by|patient name|name|MRN|accession|acc|record|ID|SSN|"
    r"case|pager|ext)\b\s*(?:no\.?|number|#)?\s*[:#]?\s*(?:the\s+)?")
_TITLE = re.compile(r"^(Dr|Drs|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse|NP|PA-C)\.?\s+")


def _replace(match: re.Match) -> str:
    text = match.group(0)
    lead = _KEEP_LEAD.match(text) or _TITLE.match(text)
    if lead and lead.end() < len(text):
        return text[: lead.end()] + PLACEHOLDER
    return PLACEHOLDER


def scrub_report(text: Optional[str]) -> Optional[str]:
    """Report or caption text with identifiers replaced by `___`; `___` and `XXXX` placeholders and
    measurements ("12 mm", "T2", "C5-6", "2 cm") are left alone. Deterministic, line structure kept."""
    if text is None:
        return None
    return _SCRUB.sub(_replace, text)
