"""`radimagenet:ROOT` — RadImageNet (Mei et al. 2022, Radiology: AI; github.com/BMEII-AI/RadImageNet).

Published layout (the released `radiology_ai/` folder): `ROOT/<modality>/<anatomy>/<label>/<image>.png`
with modality CT | MR | US, 11 anatomies (e.g. `abd`, `lung`, `knee`, `spine`, `brain`...) and 165
labels (e.g. `normal`, `acl_tear`, `interstitial_lung_disease`); the official split CSVs list paths
of the same `modality/anatomy/label/file` form.

Captions are templated from the three folder names: `EXAMINATION: CT of the abdomen.` and
`IMPRESSION: <label>` ("No abnormality." for `normal`), so each image has modality, anatomy and
abnormality granularity. Metadata: modality and body_part from the folders. RadImageNet publishes
no patient id in its file names: each image is its own split group (stated in docs/sources.md).
Files that are not images, or not three folders deep, are rejected ("unsupported_file",
"layout_mismatch").
"""
from __future__ import annotations

import posixpath

from ..sources import IMAGE_EXTS, Discovery, ext_of, filesystem, hidden
from . import register
from .common import sections_text

MODALITY = {"CT": ("CT", "CT"), "MR": ("MR", "MRI"), "MRI": ("MR", "MRI"), "US": ("US", "Ultrasound")}
ANATOMY = {"abd": "abdomen", "abdomen": "abdomen", "lung": "chest", "chest": "chest", "knee": "knee",
           "ankle": "ankle", "foot": "foot", "ankle_foot": "ankle and foot", "hip": "hip", "shoulder": "shoulder",
           "spine": "spine", "brain": "brain", "thyroid": "thyroid", "breast": "breast", "pelvis": "pelvis",
           "gyn": "pelvis", "liver": "liver", "kidney": "kidney"}


def caption_for(modality: str, anatomy: str, label: str) -> str:
    name = MODALITY.get(modality.upper(), (modality, modality))[1]
    region = ANATOMY.get(anatomy.lower(), anatomy.replace("_", " ").lower())
    finding = label.replace("_", " ").strip()
    impression = "No abnormality." if finding.lower() == "normal" else finding.capitalize() + "."
    return sections_text([("EXAMINATION", f"{name} of the {region}."), ("IMPRESSION", impression)])


@register("radimagenet")
def discover(label: str, root: str, opts: dict) -> Discovery:
    import pyarrow.fs as pafs

    out = Discovery()
    fs, path = filesystem(root)
    infos = sorted((i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File),
                   key=lambda i: i.path)
    records = []
    for info in infos:
        rel = posixpath.relpath(info.path, path)
        parts = rel.split("/")
        if hidden(rel):
            out.rejects.append((f"{label}:{rel}", "hidden_path"))
        elif ext_of(rel) not in IMAGE_EXTS:
            out.rejects.append((f"{label}:{rel}", "unsupported_file"))
        elif len(parts) != 4:
            out.rejects.append((f"{label}:{rel}", "layout_mismatch"))
        else:
            modality, anatomy, finding = parts[:3]
            records.append({"path": rel, "caption": caption_for(modality, anatomy, finding),
                            "given": {"modality": MODALITY.get(modality.upper(), (modality.upper(),))[0],
                                      "body_part": ANATOMY.get(anatomy.lower(), anatomy.lower())}})
    step = opts["files_per_chunk"]
    out.chunks += [{"kind": "records", "source": label, "uri": root, "records": records[a: a + step]}
                   for a in range(0, len(records), step)]
    return out
