"""`pmc-oa:ROOT` — PMC-OA (Lin et al. 2023, PMC-CLIP; huggingface.co/datasets/axiong/pmc_oa).

Published layout (the dataset card): `ROOT/train.jsonl`, `ROOT/valid.jsonl`, `ROOT/test.jsonl`
(older release) or `ROOT/pmc_oa.jsonl` / `ROOT/pmc_oa_beta.jsonl` (current release), each line
`{"image": "PMC212319_Fig3_4.jpg", "caption": "...", "pmcid": "PMC212319", "url_name": "..."}`,
and `images.zip` unpacked to `ROOT/images/` (ROOT itself is searched when there is no images/).

Items: one per line; caption = the (sub)figure caption, a one-section report. Metadata: patient =
the paper's pmcid (a paper's subfigures usually show one case, so they stay in one split), split
from the file (train.jsonl -> train, valid/test.jsonl -> eval; pmc_oa*.jsonl has none -> the salted
hash). Modality and anatomy come from the caption (the tagger). Lines are read in the tasks, in
byte ranges; a line that is not a JSON object is "manifest_row_malformed".
"""
from __future__ import annotations

from ..sources import Discovery, join, manifest_chunks, row_transform
from . import register
from .common import exists, is_dir, stat_of

FILES = (("train.jsonl", "train"), ("valid.jsonl", "eval"), ("test.jsonl", "eval"), ("pmc_oa.jsonl", ""),
         ("pmc_oa_beta.jsonl", ""))


@row_transform("pmc-oa")
def pmc_oa_row(row: dict, chunk: dict):
    image, caption = row.get("image"), row.get("caption")
    if not isinstance(image, str) or not image:
        return "missing_file"
    given = {"patient": str(row["pmcid"])} if row.get("pmcid") else {}
    return image, caption if isinstance(caption, str) else None, given



@register("pmc-oa")
def discover(label: str, root: str, opts: dict) -> Discovery:
    out = Discovery()
    images = join(root, "images") if is_dir(join(root, "images")) else root
    for name, split in FILES:
        uri = join(root, name)
        if exists(uri):
            out.chunks += manifest_chunks(label, uri, "jsonl", opts, stat_of(uri), image_base=images,
                                          given={"split": split} if split else {}, row="pmc-oa")
    if not out.chunks and not any(exists(join(root, n)) for n, _ in FILES):
        raise FileNotFoundError(f"pmc-oa: the given folder has none of {', '.join(n for n, _ in FILES)}")
    return out
