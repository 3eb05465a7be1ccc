"""The 3,955 Indiana University chest X-ray reports (OpenI; Demner-Fushman et al., JAMIA 2016) that ship
inside the `torchxrayvision==1.5.7` wheel as `torchxrayvision/data/NLMCXR_reports.tgz`.

Layout: the archive OpenI distributes (https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz),
checked against the copy in the wheel: one `ecgen-radiology/<n>.xml` per report; the report text is `MedlineCitation/Article/Abstract/AbstractText`
elements with a `Label` attribute (COMPARISON, INDICATION, FINDINGS, IMPRESSION), anonymised spans as
"XXXX". Licence: CC BY-NC-ND 4.0 (each file's `licenseURL`): the text is not copied into this
repository; the gold set refers to sentences by file name, index and hash.

`reports(wheel)` yields (file name, text) with the sections as `LABEL: text` lines, the form
`radisim tag` reads. `fetch_wheel(cache)` downloads the wheel with pip (nothing is vendored).
"""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Iterator

WHEEL = "torchxrayvision-1.5.7-py3-none-any.whl"
MEMBER = "torchxrayvision/data/NLMCXR_reports.tgz"


def fetch_wheel(cache: Path) -> Path:
    """The wheel in `cache`, downloaded with `pip download --no-deps` when missing (raises on failure)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "torchxrayvision==1.5.7",
                        "-d", str(cache)], check=True, capture_output=True, timeout=600)
    return wheel


def report_text(xml: bytes) -> str:
    root = ET.fromstring(xml)
    lines = [f"{a.get('Label')}: {' '.join(a.text.split())}" for a in root.iter("AbstractText")
             if a.text and a.text.strip()]
    return "\n".join(lines)


def reports(wheel: Path) -> Iterator[tuple[str, str]]:
    """(file name, report text) for every report of the archive, in file-name order."""
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")),
                         key=lambda m: m.name)
        for m in members:
            yield Path(m.name).name, report_text(tar.extractfile(m).read())
