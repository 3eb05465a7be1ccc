"""`openi:ROOT` — the Indiana University chest X-ray collection (IU X-ray / OpenI), in either of its
two published layouts.

1. The NLM release (openi.nlm.nih.gov/faq, "Indiana University Chest X-ray Collection"):
   `NLMCXR_reports.tgz` unpacked to `ROOT/ecgen-radiology/<n>.xml` (or the .tgz itself in ROOT) and
   `NLMCXR_png.tgz` unpacked anywhere under ROOT. Each XML is an `eCitation` with `<uId id="CXR1"/>`,
   `<AbstractText Label="COMPARISON|INDICATION|FINDINGS|IMPRESSION">` sections and one
   `<parentImage id="CXR1_1_IM-0001-3001">` per image, whose PNG is `<id>.png`.
   (torchxrayvision 1.5.7 ships the real NLMCXR_reports.tgz: 3,955 reports.)
2. The Kaggle version (kaggle.com/datasets/raddar/chest-xrays-indiana-university):
   `ROOT/indiana_reports.csv` (uid,MeSH,Problems,image,indication,comparison,findings,impression),
   `ROOT/indiana_projections.csv` (uid,filename,projection: Frontal | Lateral) and the PNGs in
   `ROOT/images/images_normalized/<filename>`.

Items: one per image, caption = its report's INDICATION, COMPARISON, FINDINGS, IMPRESSION as
`LABEL: text` lines (IU's `XXXX` de-identification placeholders kept). Metadata: modality DR,
body_part chest, view from the Kaggle projection (the XML names none per image), patient = the
report uid (CXR<n> / uid: one patient's study per report; the split key), study = the same uid.
IU publishes no split: the split is the salted patient hash. A report without images is the reject
"report_without_images"; a parentImage whose PNG is absent is "missing_file" in the task.
"""
from __future__ import annotations

import csv
import io
import posixpath
import tarfile
import xml.etree.ElementTree as ET

from ..sources import Discovery, filesystem, join, read_bytes
from . import register
from .common import exists, is_dir, sections_text

SECTIONS = ("INDICATION", "COMPARISON", "FINDINGS", "IMPRESSION")


def _chunked(label: str, root: str, records: list, step: int) -> list[dict]:
    return [{"kind": "records", "source": label, "uri": root, "records": records[a: a + step]}
            for a in range(0, len(records), step)]


def parse_report_xml(data: bytes) -> tuple[str, str, list[str]]:
    """(uid, caption, parentImage ids) of one ecgen-radiology XML."""
    root = ET.fromstring(data)
    uid = (root.find("uId").get("id") if root.find("uId") is not None else "") or ""
    texts = {el.get("Label", "").upper(): (el.text or "") for el in root.iter("AbstractText")}
    caption = sections_text((s, texts.get(s)) for s in SECTIONS)
    return uid, caption, [el.get("id") for el in root.iter("parentImage") if el.get("id")]


def _xml_reports(root: str):
    import pyarrow.fs as pafs

    fs, path = filesystem(join(root, "ecgen-radiology"))
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        for f in sorted(fs.get_file_info(pafs.FileSelector(path)), key=lambda i: i.path):
            if f.path.endswith(".xml"):
                yield posixpath.basename(f.path), read_bytes(f.path)
        return
    tgz = join(root, "NLMCXR_reports.tgz")
    if exists(tgz):
        with tarfile.open(fileobj=io.BytesIO(read_bytes(tgz)), mode="r:gz") as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".xml"):
                    yield posixpath.basename(m.name), tar.extractfile(m).read()


def _png_index(root: str) -> dict[str, str]:
    import pyarrow.fs as pafs

    fs, path = filesystem(root)
    return {posixpath.basename(i.path)[:-4]: posixpath.relpath(i.path, path)
            for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if i.type == pafs.FileType.File and i.path.lower().endswith(".png")}


def _discover_nlm(label: str, root: str, opts: dict, out: Discovery) -> None:
    pngs = _png_index(root)
    records = []
    for name, data in _xml_reports(root):
        try:
            uid, caption, images = parse_report_xml(data)
        except ET.ParseError:
            out.rejects.append((f"{label}:{name}", "report_unreadable"))
            continue
        if not images:
            out.rejects.append((f"{label}:{name}", "report_without_images"))
        for image_id in images:
            records.append({"path": pngs.get(image_id, image_id + ".png"), "caption": caption,
                            "given": {"modality": "DR", "body_part": "chest", "patient": uid, "study": uid}})
    out.chunks += _chunked(label, root, records, opts["files_per_chunk"])


def _csv(uri: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(read_bytes(uri).decode("utf-8-sig"))))


def _discover_kaggle(label: str, root: str, opts: dict, out: Discovery) -> None:
    reports = {r["uid"]: r for r in _csv(join(root, "indiana_reports.csv"))}
    folder = next((f for f in ("images/images_normalized", "images_normalized", "images") if is_dir(join(root, f))), "")
    records, used = [], set()
    for p in _csv(join(root, "indiana_projections.csv")):
        report = reports.get(p["uid"])
        path = posixpath.join(folder, p["filename"]) if folder else p["filename"]
        if report is None:
            out.rejects.append((f"{label}:{path}", "report_missing"))
            continue
        used.add(p["uid"])
        caption = sections_text((s, report.get(s.lower())) for s in SECTIONS)
        view = {"frontal": "frontal", "lateral": "lateral"}.get(p.get("projection", "").strip().lower(), "")
        records.append({"path": path, "caption": caption, "given": {"modality": "DR", "body_part": "chest",
                                                                    "view": view, "patient": p["uid"], "study": p["uid"]}})
    out.rejects += [(f"{label}:report{uid}", "report_without_images") for uid in sorted(set(reports) - used)]
    out.chunks += _chunked(label, root, records, opts["files_per_chunk"])


@register("openi")
def discover(label: str, root: str, opts: dict) -> Discovery:
    out = Discovery()
    if exists(join(root, "indiana_projections.csv")) and exists(join(root, "indiana_reports.csv")):
        _discover_kaggle(label, root, opts, out)
    elif is_dir(join(root, "ecgen-radiology")) or exists(join(root, "NLMCXR_reports.tgz")):
        _discover_nlm(label, root, opts, out)
    else:
        raise FileNotFoundError(f"openi: the given folder holds neither ecgen-radiology/ (or NLMCXR_reports.tgz) nor "
                                "indiana_reports.csv + indiana_projections.csv")
    return out
