"""`roco:ROOT` — ROCO (Pelka et al. 2018; github.com/razorx89/roco-dataset) and ROCOv2 (Rückert et
al. 2024, Sci Data 11:688; Zenodo / ImageCLEFmedical Caption 2023). Only the radiology subset.

ROCO (v1), as in the repository: `ROOT/data/{train,validation,test}/radiology/` (ROOT may also be
the `data/` folder) with `captions.txt` (`ROCO_00020<TAB> caption`, one line per image),
`dlinks.txt` (`ROCO_00020<TAB>wget -nd <ftp .../PMC1234567.tar.gz><TAB><image name>`) and the
images that `scripts/fetch.py` writes to `images/<PMCID>_<image name>`. `non-radiology/` is not
ingested (it is the negative class of the ROCO classifier, not radiology).

ROCOv2: `ROOT/{train,valid,test}_captions.csv` (`ID,Caption`), optional
`ROOT/{train,valid,test}_concepts.csv` (`ID,CUIs`: UMLS CUIs joined by `;`) and the images in
`ROOT/{train,valid,test}/<ID>.jpg`. The manually curated modality CUIs (ROCOv2 paper, Table 2) set
the modality: C0040405 CT, C0024485 MRI, C1306645 plain radiograph (DR); the others (ultrasound
C0041618, angiography C0002978, PET C0032743) are kept as given.

Items: caption = the figure caption (a one-section report). Metadata: split from the folder or file
prefix (train -> train; validation/valid/test -> eval); patient = the PMC article id for ROCO (from
dlinks.txt: an article's figures stay in one split); ROCOv2 names no article, so each image is its
own group. A caption line without a dlinks entry is "manifest_row_malformed".
"""
from __future__ import annotations

from ..sources import Discovery, join, manifest_chunks, read_bytes, row_transform
from . import register
from .common import csv_table, exists, is_dir, stat_of

V1_SPLITS = (("train", "train"), ("validation", "eval"), ("test", "eval"))
V2_SPLITS = (("train", "train"), ("valid", "eval"), ("test", "eval"))
CUI_MODALITY = {"C0040405": "CT", "C0024485": "MR", "C1306645": "DR", "C0041618": "US", "C0002978": "XA",
                "C0032743": "PT"}


def _lines(uri: str) -> list[list[str]]:
    return [line.split("\t") for line in read_bytes(uri).decode("utf-8-sig").splitlines() if line.strip()]


def _v1_split(label: str, folder: str, split: str, out: Discovery, step: int) -> None:
    links = {}
    for parts in _lines(join(folder, "dlinks.txt")) if exists(join(folder, "dlinks.txt")) else []:
        if len(parts) >= 3 and len(parts[1].split(" ")) >= 3:
            archive = parts[1].split(" ")[2]
            pmcid = archive.rsplit("/", 1)[-1][: -len(".tar.gz")]
            links[parts[0].strip()] = (pmcid, parts[-1].strip())
    records = []
    for parts in _lines(join(folder, "captions.txt")):
        rid = parts[0].strip()
        if len(parts) < 2 or rid not in links:
            out.rejects.append((f"{label}:{folder}/captions.txt#{rid}", "manifest_row_malformed"))
            continue
        pmcid, name = links[rid]
        records.append({"path": f"images/{pmcid}_{name}", "caption": parts[1].strip(),
                        "given": {"patient": pmcid, "split": split}})
    out.chunks += [{"kind": "records", "source": label, "uri": folder, "records": records[a: a + step]}
                   for a in range(0, len(records), step)]


@row_transform("rocov2")
def rocov2_row(row: dict, chunk: dict):
    rid, caption = (row.get("ID") or "").strip(), row.get("Caption")
    if not rid:
        return "manifest_row_malformed"
    args = chunk["row_args"]
    given = {}
    if args.get("concepts"):
        concepts = csv_table(args["concepts"], args["concepts_stat"], "ID").get(rid) or {}
        cuis = [c.strip() for c in (concepts.get("CUIs") or "").split(";") if c.strip()]
        modality = next((CUI_MODALITY[c] for c in cuis if c in CUI_MODALITY), "")
        if modality:
            given["modality"] = modality
    return f"{args['images']}/{rid}.jpg", caption, given


@register("roco")
def discover(label: str, root: str, opts: dict) -> Discovery:
    out = Discovery()
    data = join(root, "data") if is_dir(join(root, "data")) else root
    for folder, split in V1_SPLITS:
        radiology = join(data, f"{folder}/radiology")
        if exists(join(radiology, "captions.txt")):
            _v1_split(label, radiology, split, out, opts["files_per_chunk"])
    for prefix, split in V2_SPLITS:
        uri = join(root, f"{prefix}_captions.csv")
        if exists(uri):
            concepts = join(root, f"{prefix}_concepts.csv")
            args = {"images": prefix, "concepts": concepts if exists(concepts) else "",
                    "concepts_stat": stat_of(concepts) if exists(concepts) else ""}
            out.chunks += manifest_chunks(label, uri, "csv", opts, stat_of(uri), image_base=root,
                                          given={"split": split}, row="rocov2", row_args=args)
    if not out.chunks and not out.rejects:
        raise FileNotFoundError(f"roco: the given folder has neither data/<split>/radiology/captions.txt (ROCO) nor "
                                "<split>_captions.csv (ROCOv2)")
    return out
