"""One chunk -> manifest rows and rejects: read, decode, window/normalise, resize, PNG, hash, tag.

Every item ends as rows or as exactly one reject reason; nothing raises out of `process_chunk`
(an unexpected exception is counted as "internal_error" with the item's key).

PHI: every item key becomes its salted hash (`phi.public_key`) before it is used, so rows, rejects
and log lines carry no path; captions and reports pass `phi.scrub_report` before anything else.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from radisim.curriculum.phases import PHASE_INDEX, PHASES
from radisim.curriculum.reports import DROP_SECTIONS, PhaseCaption, StudyMeta, normalise_body_part, phase_captions
from radisim.curriculum.tagger import tag_caption
from radisim.platform.data import imaging as im

from .phi import public_key, scrub_report
from .sources import TAG_NAMES, Item, iter_items

log = logging.getLogger(__name__)

ROW_FIELDS = ("image_id", "image", "caption", "phase", "phase_index", "granularities", "modality", "anatomy",
              "view", "organs", "target_organ", "target_region", "finding", "finding_region", "subtype", "grade",
              "source", "source_key", "content_hash", "patient_key", "study_key", "group_key", "width", "height",
              "synthetic")


#: Columns of staged rows only (dropped from the written manifests): the dataset's official split
#: ("train" | "eval" | "") and the dedup key, sha256(content hash | caption).
STAGED_FIELDS = ("split_hint", "dedup_key")


def schema(staged: bool = False):
    import pyarrow as pa

    s, ls = pa.string(), pa.list_(pa.string())
    types = {"image": pa.binary(), "phase_index": pa.int8(), "granularities": ls, "organs": ls,
             "width": pa.int32(), "height": pa.int32(), "synthetic": pa.bool_()}
    fields = ROW_FIELDS + (STAGED_FIELDS if staged else ())
    return pa.schema([(f, types.get(f, s)) for f in fields])


def check_caption(caption: Optional[str], max_chars: int) -> tuple[Optional[str], Optional[str]]:
    """(clean caption, reject reason). Whitespace is collapsed within lines; line breaks between
    report sections (`LABEL: text` lines) are kept."""
    if caption is None:
        return None, "caption_missing"
    text = "\n".join(" ".join(line.split()) for line in str(caption).splitlines() if line.strip())
    if not text:
        return None, "caption_empty"
    if len(text) > max_chars:
        return None, "caption_too_long"
    return text, None


def _anatomy_from_body_part(body_part: Optional[str]) -> str:
    return normalise_body_part(body_part) if body_part else ""


GIVEN_TAGS = ("modality", "anatomy", "view", "finding", "subtype", "grade")


def captions_for(caption: str, given: dict, meta: dict, extra: dict,
                 drop_sections: Iterable[str] = DROP_SECTIONS) -> list[PhaseCaption]:
    """The phase captions of one image (curriculum/reports.py): one per phase its report supports.
    A given `phase` tag is the user's own decision: the whole caption, at that phase, one row. The
    user's or the dataset's modality/anatomy (body part)/view, else the image header's, are the
    study's metadata."""
    tags = {k: v for k, v in given.items() if k in TAG_NAMES and k not in ("patient", "study")}
    if given.get("phase") in PHASES:
        return [PhaseCaption(given["phase"], caption, tag_caption(caption, given=tags))]
    study = StudyMeta(modality=given.get("modality") or extra.get("modality") or meta.get("modality") or "",
                      body_part=given.get("anatomy") or given.get("body_part") or meta.get("anatomy") or "",
                      view=given.get("view") or extra.get("view") or meta.get("view") or "")
    return phase_captions(caption, study, drop_sections=drop_sections)


def decode_item(item: Item, data: bytes, opts: dict, salt: str) -> tuple[list[tuple[np.ndarray, dict]], dict]:
    """-> ([(uint8 image, per-image tags)], item-level metadata). Raises ImagingError."""
    meta: dict = {}
    if item.kind == "image":
        return [(im.decode_image(data), {})], meta
    if item.kind == "dicom":
        frames, sm = im.read_dicom_frames(data, window=opts["ct_window"], salt=salt,
                                          window_source=opts.get("dicom_window", "header"))
        if opts["dicom_frames"] == "middle":
            frames = [frames[len(frames) // 2]]
        meta = {"modality": sm.modality, "anatomy": _anatomy_from_body_part(sm.body_part), "view": sm.view or "",
                "patient_key": sm.patient_key, "study_key": sm.study_key,
                "group_key": (sm.patient_key or sm.study_key or
                              (f"series:{sm.series_key}" if len(frames) > 1 else None))}
        return [(f, {"spacing": sm.spacing}) for f in frames], meta
    # NIfTI: one volume -> n slices per view, one shared intensity scale, one split group
    volume, affine = im.read_nifti(data)
    modality = im.guess_volume_modality(volume)
    scaled = im.normalise(volume, modality, opts["ct_window"])
    out = []
    for view in opts["nifti_views"]:
        for sl in im.nifti_slices(scaled, affine, view, n=opts["nifti_slices_per_view"]):
            out.append((im.to_uint8(sl), {"view": view, "spacing": im.slice_spacing(affine, view)}))
    meta = {"modality": modality, "group_key": "volume:" + hashlib.sha256(data).hexdigest()[:20]}
    return out, meta


def _reject_reason(err: im.ImagingError) -> str:
    """A decoder that is missing is named in the reason (pydicom's message names the plugin)."""
    if err.reason == "dicom_decoder_missing":
        return str(err)
    return err.reason


@dataclass(frozen=True)
class _ItemKeys:
    """Who an item's rows belong to: its source and its salted patient and study keys."""
    source: str
    patient_key: Optional[str]
    study_key: Optional[str]


def _rows_for_item(item: Item, opts: dict, salt: str, rows: list, rejects: list) -> int:
    """Append the item's rows (one per image and phase caption) or rejects. Returns how many entries
    (rows + rejects) beyond one it expanded to."""
    decoded = _decode_checked(item, opts, salt, rejects)
    if decoded is None:
        return 0
    caption, images, meta = decoded
    keys = _item_keys(item, meta, salt)
    added = 0
    for i, (arr, extra) in enumerate(images):
        key = item.key if len(images) == 1 else f"{item.key}[{extra.get('view', 'frame')}{i}]"
        added += _rows_for_image(item, key, arr, extra, caption, meta, keys, opts, rows, rejects)
    return added - 1


def _decode_checked(item: Item, opts: dict, salt: str, rejects: list):
    """(clean caption, images, item metadata), or None with the item's one reject appended."""
    caption, reason = check_caption(scrub_report(item.caption), opts["max_caption_chars"])
    if reason:
        rejects.append((item.key, reason))
        return None
    drop = opts.get("drop_sections", DROP_SECTIONS)
    if not captions_for(caption, item.given, {}, {}, drop) and item.kind != "dicom":  # a header may add phases
        rejects.append((item.key, "caption_untagged"))
        return None
    try:
        data = item.load()
        images, meta = decode_item(item, data, opts, salt)
    except im.ImagingError as err:
        rejects.append((item.key, _reject_reason(err)))
        return None
    if not images:
        rejects.append((item.key, "no_image"))
        return None
    return caption, images, meta


def _item_keys(item: Item, meta: dict, salt: str) -> _ItemKeys:
    """The header's patient/study keys, else the given ones salted; a dataset's own ids are namespaced
    by the source, so patient 1 of two datasets are two groups."""
    source = item.key.split(":", 1)[0].split("#", 1)[0]
    given_patient, given_study = item.given.get("patient"), item.given.get("study")
    patient_key = meta.get("patient_key") or (im.salted_key(f"{source}|{given_patient}", salt, "patient")
                                              if given_patient else None)
    study_key = meta.get("study_key") or (im.salted_key(f"{source}|{given_study}", salt, "study")
                                          if given_study else None)
    return _ItemKeys(source, patient_key, study_key)


def _rows_for_image(item: Item, key: str, arr: np.ndarray, extra: dict, caption: str, meta: dict,
                    keys: _ItemKeys, opts: dict, rows: list, rejects: list) -> int:
    """Append one image's rows (one per phase caption), or its reject; returns how many were appended."""
    captions = captions_for(caption, item.given, meta, extra, opts.get("drop_sections", DROP_SECTIONS))
    reason = ("caption_untagged" if not captions else "image_too_small" if min(arr.shape) < opts["min_side"]
              else "image_blank" if int(arr.max()) == int(arr.min()) else None)
    if reason:
        rejects.append((key, reason))
        return 1
    arr = im.fit_side(arr, opts["max_side"], extra.get("spacing"))
    content_hash = hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()
    png = im.encode_png(arr)
    for pc in captions:  # one row per (image, phase caption); they share the image's hash and id
        rows.append(_row(pc, item, key, arr, png, content_hash, extra, meta, keys))
    return len(captions)


def _row(pc: PhaseCaption, item: Item, key: str, arr: np.ndarray, png: bytes, content_hash: str, extra: dict,
         meta: dict, keys: _ItemKeys) -> dict:
    """One manifest row (ROW_FIELDS + STAGED_FIELDS) for an image and one of its phase captions."""
    row = pc.tags.as_row()
    row.pop("findings"), row.pop("negated")
    row.update(
        image_id=f"{keys.source}-{hashlib.sha256(key.encode()).hexdigest()[:16]}",
        image=png, caption=pc.caption, phase_index=PHASE_INDEX[pc.phase],
        finding_region="", source=keys.source, source_key=key.split(":", 1)[-1] if ":" in key else key,
        content_hash=content_hash, patient_key=keys.patient_key, study_key=keys.study_key,
        group_key=keys.patient_key or keys.study_key or meta.get("group_key") or content_hash,
        width=int(arr.shape[1]), height=int(arr.shape[0]), synthetic=False,
        split_hint=item.given.get("split") or "",
        dedup_key=hashlib.sha256(f"{content_hash}|{pc.caption}".encode()).hexdigest(),
    )
    # the image header is more reliable than the text for modality and view; a user's given
    # tags describe the study and win on each of its rows
    for k in ("modality", "view"):
        value = extra.get(k) or meta.get(k)
        if value and k not in item.given:
            row[k] = value
    if not row["anatomy"] and meta.get("anatomy"):
        row["anatomy"] = meta["anatomy"]
    row.update({k: str(v) for k, v in item.given.items() if k in GIVEN_TAGS and v not in (None, "")})
    return row


def _public(item: Item, salt: str, key_map: Optional[list]) -> Item:
    key = public_key(item.key, salt)
    if key_map is not None:
        key_map.append((key, item.key))
    item.key = key
    return item


def process_chunk(chunk: dict, opts: dict, salt: str, key_map: Optional[list] = None
                  ) -> tuple[list[dict], list[tuple[str, str]], int, int]:
    """-> (rows, rejects, items, expanded). `items + expanded == len(rows) + len(rejects)`. Every key
    in the output is a salted hash; with `key_map` (a list) the (hash, original key) pairs are
    appended to it for the user's private mapping file."""
    rows: list[dict] = []
    rejects: list[tuple[str, str]] = []
    n_items = expanded = 0
    try:
        for item in iter_items(chunk, opts):
            n_items += 1
            if isinstance(item, tuple):
                key = public_key(item[0], salt)
                if key_map is not None:
                    key_map.append((key, item[0]))
                rejects.append((key, item[1]))
                continue
            item = _public(item, salt, key_map)
            try:
                expanded += _rows_for_item(item, opts, salt, rows, rejects)
            except Exception as err:  # a reader bug must not lose the rest of the chunk
                log.warning("internal error on %s: %s", item.key, type(err).__name__)
                rejects.append((item.key, "internal_error"))
    except Exception as err:
        # the chunk's container itself failed (e.g. unreadable manifest): one reject for the chunk
        log.warning("chunk of %s failed: %s", chunk.get("source"), type(err).__name__)
        n_items += 1
        rejects.append((f"{chunk.get('source')}", "source_unreadable"))
    return rows, rejects, n_items, expanded
