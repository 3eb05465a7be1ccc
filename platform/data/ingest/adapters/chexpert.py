"""`chexpert:FOLDER` — CheXpert v1.0 (Irvin et al. 2019; stanfordmlgroup.github.io/competitions/chexpert),
and CheXpert Plus reports when present.

Published layout: FOLDER is the folder holding `train.csv` and `valid.csv`, e.g. `CheXpert-v1.0-small/`;
their header is `Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,
Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,
Pleural Other,Fracture,Support Devices` (the real train.csv ships in torchxrayvision 1.5.7 as
data/chexpert_train.csv.gz), and each `Path` starts with FOLDER's own name
(`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`), so images are found relative to
FOLDER's parent. Label values: 1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned.

Captions are templated from the labels (CheXpert has no report text):
`EXAMINATION: Chest radiograph, AP frontal view.` / `FINDINGS: Cardiomegaly. Possible edema. No
pneumothorax.` / `IMPRESSION: ...` (the positive findings, or "No acute cardiopulmonary finding." for
No Finding = 1). Uncertainty policy for -1 (`data.ingest.chexpert_uncertain`): "uncertain" (default)
writes "possible <finding>", so the tagger's assertion handling sees the radiologist's hedge;
"positive" / "negative" are the U-Ones / U-Zeros policies of the CheXpert paper; "ignore" leaves
the label out (U-Ignore).

CheXpert Plus (Chambon et al. 2024): when FOLDER (or its parent) holds `df_chexpert_plus_*.csv`,
its report sections (`section_findings`, `section_impression`, ...; rows keyed by `path_to_image`,
e.g. `train/patient00001/study1/view1_frontal.jpg`) replace the template for the images it covers.

Metadata: modality DR, body_part chest, view from AP/PA (frontal) or Frontal/Lateral, patient = the
`patientNNNNN` folder (the split key), study = patient/studyN, split: train.csv -> train, valid.csv
-> eval. Rows are read in the tasks, in byte ranges of the CSV.
"""
from __future__ import annotations

import posixpath
import re

from radisim.platform.data.imaging import dr_view

from ..sources import Discovery, filesystem, join, manifest_chunks, row_transform
from . import register
from .common import csv_table, exists, sections_text, stat_of

LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
          "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
          "Support Devices")
POLICIES = ("uncertain", "positive", "negative", "ignore")
_PATIENT = re.compile(r"/(patient\d+)/(study\d+)/")
PLUS_SECTIONS = (("CLINICAL HISTORY", "section_clinical_history"), ("COMPARISON", "section_comparison"),
                 ("TECHNIQUE", "section_technique"), ("FINDINGS", "section_findings"),
                 ("IMPRESSION", "section_impression"))


def _value(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _phrase(label: str) -> str:
    return "support devices" if label == "Support Devices" else label.lower()


def template_caption(row: dict, policy: str = "uncertain") -> str:
    """The labels of one CheXpert row as a report (see the module docstring for the policy)."""
    ap_pa = (row.get("AP/PA") or "").strip()
    fl = (row.get("Frontal/Lateral") or "").strip().lower()
    exam = f"Chest radiograph, {(ap_pa + ' ') if ap_pa else ''}{fl or 'unspecified'} view."
    positive, possible, negative = [], [], []
    for label in LABELS:
        v = _value(row.get(label))
        if v == -1.0:
            v = {"positive": 1.0, "negative": 0.0, "ignore": None}.get(policy, -1.0)
        if v == 1.0:
            positive.append(_phrase(label))
        elif v == -1.0:
            possible.append(_phrase(label))
        elif v == 0.0:
            negative.append(_phrase(label))
    findings = [p.capitalize() + "." for p in positive] + [f"Possible {p}." for p in possible] + \
               [f"No {p}." for p in negative]
    if _value(row.get("No Finding")) == 1.0 and not positive:
        impression = "No acute cardiopulmonary finding."
    else:
        impression = ", ".join(positive + [f"possible {p}" for p in possible]).capitalize() + "." \
            if positive or possible else ""
    return sections_text([("EXAMINATION", exam), ("FINDINGS", " ".join(findings)), ("IMPRESSION", impression)])


def _plus_path(path: str) -> str:
    """`CheXpert-v1.0-small/train/...jpg` -> CheXpert Plus's `train/...jpg`."""
    return path.split("/", 1)[1] if "/" in path else path


@row_transform("chexpert")
def chexpert_row(row: dict, chunk: dict):
    path = row.get("Path") or ""
    m = _PATIENT.search("/" + path)
    if not path or not m:
        return "manifest_row_malformed"
    args = chunk["row_args"]
    caption = template_caption(row, args["policy"])
    if args.get("plus"):
        plus = csv_table(args["plus"], args["plus_stat"], "path_to_image").get(_plus_path(path))
        if plus:
            report = sections_text((lab, plus.get(col)) for lab, col in PLUS_SECTIONS)
            caption = report or caption
    view = dr_view(row.get("AP/PA")) or dr_view(row.get("Frontal/Lateral")) or ""
    given = {"modality": "DR", "body_part": "chest", "view": view, "patient": m.group(1),
             "study": f"{m.group(1)}/{m.group(2)}"}
    return path, caption, given


def _plus_file(folder: str):
    import pyarrow.fs as pafs

    for base in (folder, posixpath.dirname(folder)):
        fs, path = filesystem(base)
        for info in fs.get_file_info(pafs.FileSelector(path)):
            name = posixpath.basename(info.path)
            if name.startswith("df_chexpert_plus") and name.endswith(".csv"):
                return join(base, name)
    return None


@register("chexpert")
def discover(label: str, folder: str, opts: dict) -> Discovery:
    policy = opts.get("chexpert_uncertain", "uncertain")
    if policy not in POLICIES:
        raise ValueError(f"data.ingest.chexpert_uncertain must be one of {', '.join(POLICIES)}, got {policy!r}")
    out = Discovery()
    plus = _plus_file(folder)
    args = {"policy": policy, "plus": plus, "plus_stat": stat_of(plus) if plus else ""}
    found = False
    for name, split in (("train.csv", "train"), ("valid.csv", "eval")):
        uri = join(folder, name)
        if exists(uri):
            found = True
            out.chunks += manifest_chunks(label, uri, "csv", opts, stat_of(uri), image_base=posixpath.dirname(folder),
                                          given={"split": split}, row="chexpert", row_args=args)
    if not found:
        raise FileNotFoundError(f"chexpert: the given folder has neither train.csv nor valid.csv (give the folder that "
                                "holds them, e.g. CheXpert-v1.0-small/)")
    return out
