"""`mimic-cxr:ROOT` — MIMIC-CXR-JPG 2.0.0 with the free-text reports of MIMIC-CXR 2.0.0.

Published layout (PhysioNet, physionet.org/content/mimic-cxr-jpg/2.0.0 and /mimic-cxr/2.0.0; the
MIT-LCP/mimic-cxr code reads the same names):

    ROOT/mimic-cxr-2.0.0-metadata.csv[.gz]  dicom_id,subject_id,study_id,PerformedProcedureStepDescription,
                                            ViewPosition,Rows,Columns,StudyDate,StudyTime,...
    ROOT/mimic-cxr-2.0.0-split.csv[.gz]     dicom_id,study_id,subject_id,split   (train | validate | test)
    ROOT/mimic-cxr-2.0.0-chexpert.csv[.gz]  subject_id,study_id,<14 CheXpert labels>   (not needed here)
    ROOT/files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg    pXX = first two digits of subject_id
    ROOT/files/pXX/pXXXXXXXX/sXXXXXXXX.txt               the study's report (mimic-cxr-reports.zip
                                                         unpacked into the same ROOT, as users do)

Items: one per image; the caption is its study's report (one report shared by every image of the
study) as `LABEL: text` lines (EXAMINATION, INDICATION, TECHNIQUE, COMPARISON, FINDINGS,
IMPRESSION...; the "FINAL REPORT" banner dropped; MIMIC's `___` de-identification placeholders kept).
Metadata: modality DR, body_part chest, view from ViewPosition (PA/AP -> frontal, LATERAL/LL ->
lateral), patient = subject_id (the split key), study = study_id, split = the official split
(train -> train; validate and test -> eval). An image without a split row is rejected
("split_missing"), a study without its report file "report_missing". The index is read in the
driver (one pass over the metadata CSV; the split CSV as a dict), images and reports in the tasks.
"""
from __future__ import annotations

import csv
import gzip
import io

from radisim.platform.data.imaging import dr_view

from ..sources import REPORT_FORMATS, Discovery, filesystem, join
from . import register
from .common import exists, sections_text, split_report

PREFIX = "mimic-cxr-2.0.0-"
SPLITS = {"train": "train", "validate": "eval", "test": "eval"}


def mimic_report(text: str) -> str:
    return sections_text(split_report(text))


REPORT_FORMATS["mimic"] = mimic_report


def _table(root: str, name: str):
    for suffix in (".csv", ".csv.gz"):
        uri = join(root, PREFIX + name + suffix)
        if exists(uri):
            return uri
    return None


def _rows(uri: str):
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression=None) as raw:
        stream = gzip.GzipFile(fileobj=raw) if uri.endswith(".gz") else raw
        yield from csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))


@register("mimic-cxr")
def discover(label: str, root: str, opts: dict) -> Discovery:
    out = Discovery()
    meta_uri, split_uri = _table(root, "metadata"), _table(root, "split")
    if meta_uri is None or split_uri is None:
        missing = [n for n, u in (("metadata", meta_uri), ("split", split_uri)) if u is None]
        raise FileNotFoundError(f"mimic-cxr: the given folder has no {', '.join(PREFIX + n + '.csv[.gz]' for n in missing)} "
                                "(MIMIC-CXR-JPG layout expected)")
    splits = {r["dicom_id"]: r["split"] for r in _rows(split_uri)}
    records = []
    for r in _rows(meta_uri):
        sid, study, dicom = r["subject_id"], r["study_id"], r["dicom_id"]
        folder = f"files/p{sid[:2]}/p{sid}/s{study}"
        path = f"{folder}/{dicom}.jpg"
        split = SPLITS.get(splits.get(dicom, ""))
        if split is None:
            out.rejects.append((f"{label}:{path}", "split_missing"))
            continue
        records.append({"path": path, "report": folder + ".txt",
                        "given": {"modality": "DR", "body_part": "chest", "view": dr_view(r.get("ViewPosition")) or "",
                                  "patient": sid, "study": study, "split": split}})
    records.sort(key=lambda x: x["path"])  # a study's images together: its report is read once
    step = opts["files_per_chunk"]
    for a in range(0, len(records), step):
        out.chunks.append({"kind": "records", "source": label, "uri": root, "report_format": "mimic",
                           "records": records[a: a + step]})
    return out
