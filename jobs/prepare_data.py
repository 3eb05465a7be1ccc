"""Write the training and evaluation manifests: real data with --source, else the built-in synthetic phantom.

With --source KIND:PATH (repeatable) a published dataset in its own layout: mimic-cxr, openi,
chexpert, pmc-oa, roco, radimagenet (docs/sources.md); or a bare PATH/URI: a CSV/TSV, JSON Lines or
Parquet manifest (image + caption columns, see data.ingest.image_column/caption_column), a
WebDataset shard or brace pattern, or a folder of PNG/JPEG/DICOM/NIfTI images with sidecar
<stem>.txt captions; local paths or s3:// / gs:// URIs. Writes DIR/train and DIR/eval Parquet
shards and DIR/data_card.json (also logged to MLflow); paths and identifiers appear only as salted
hashes. Re-runs skip finished chunks; a re-run with unchanged inputs does nothing.

  export RADISIM_PHI_SALT=...   # or a salt file outside DIR (data.ingest.salt_file, default ~/.config/radisim/phi_salt)
  radisim prepare-data --source mimic-cxr:/data/mimic-cxr-jpg --source openi:/data/iu-xray \
      --source scans/ --out radisim_work/data/mine --set data.ingest.eval_fraction=0.1
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from radisim.jobs.common import job_parser, load_config, quiet_logs
from radisim.platform.config import JobConfig, resolve_path


def phantom_ready(cfg: JobConfig) -> bool:
    """True when data.root holds phantom manifests made with exactly these generator settings."""
    card = Path(resolve_path(cfg.data.root)) / "data_card.json"
    if not card.is_file():
        return False
    meta = json.loads(card.read_text())
    p = cfg.data.phantom
    return (meta.get("seed"), meta.get("size"), meta["splits"]["train"]["images"], meta["splits"]["eval"]["images"],
            meta.get("cohort_fraction", 0.0)) == (p.seed, p.size, p.n_train_images, p.n_eval_images, p.cohort_fraction)


def prepare_phantom(cfg: JobConfig, force: bool = False) -> dict:
    from radisim.curriculum.phantom import write_phantom_dataset

    root = Path(resolve_path(cfg.data.root))
    if phantom_ready(cfg) and not force:
        print(f"phantom data already in {root} (delete it or pass --force to regenerate)")
        return json.loads((root / "data_card.json").read_text())
    p = cfg.data.phantom
    print(f"writing SYNTHETIC phantom radiology data to {root}: {p.n_train_images} train + "
          f"{p.n_eval_images} held-out eval images (each + {p.cohort_fraction:.0%} disease-cohort cases), "
          f"{p.size}px, seed {p.seed}")
    return write_phantom_dataset(root, n_train_images=p.n_train_images, n_eval_images=p.n_eval_images,
                                 seed=p.seed, size=p.size, progress=True, cohort_fraction=p.cohort_fraction)


def prepare_sources(cfg: JobConfig, sources: list[str], out: str) -> dict:
    """Ingest real data (radisim.platform.data.ingest); prints a summary, returns the data card."""
    from radisim.platform.data.ingest import run_ingest

    result = run_ingest(sources, resolve_path(out), cfg.data.ingest, cfg.ray, cfg.tracking)
    print("sources: " + ", ".join(f"{s['label']} ({s['chunks']} chunks)" for s in result.card["sources"]))
    card = result.card
    if result.up_to_date:
        print(f"{out}: up to date ({result.reused_chunks} chunks, nothing to do)")
    else:
        print(f"{out}: staged {result.staged_chunks} chunks, reused {result.reused_chunks}")
    print(f"inputs {card['inputs']} (+{card['expanded']} extra rows: slices, frames, phase captions) -> kept {card['kept']}, "
          f"rejected {card['rejected_total']}: " + ", ".join(f"{r} {v['count']}" for r, v in card["rejected"].items()))
    for split in ("train", "eval"):
        s = card["splits"][split]
        print(f"{split}: {s['rows']} rows, {s['groups']} patient/study groups; by phase {s['by_phase']}")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("prepare-data", __doc__)
    parser.add_argument("--force", action="store_true", help="regenerate even if the data exists (phantom)")
    parser.add_argument("--source", action="append", default=[], metavar="[KIND:]PATH",
                        help="real data to ingest (repeatable): KIND is mimic-cxr, openi, chexpert, pmc-oa, roco, "
                             "radimagenet, csv, parquet, jsonl, wds or folder (default: decided by PATH); without "
                             "--source, the synthetic phantom is written")
    parser.add_argument("--out", metavar="DIR", help="output directory for --source (default: data.root)")
    args = parser.parse_args(argv)
    cfg = load_config(args)
    quiet_logs()
    if args.source:
        if "://" in (args.out or cfg.data.root):
            print("error: --out must be a local directory (sources may be URIs)", file=sys.stderr)
            return 2
        from radisim.platform.data.ingest.phi import PhiPolicyError

        try:
            prepare_sources(cfg, args.source, args.out or cfg.data.root)
        except (PhiPolicyError, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    if args.out:
        print("error: --out needs --source (the phantom is written to data.root)", file=sys.stderr)
        return 2
    card = prepare_phantom(cfg, force=args.force)
    train = card["splits"]["train"]
    print(f"train: {train['images']} images, {train['rows']} image-caption rows; by phase {train['by_phase']}")
    print(f"eval: {card['splits']['eval']['images']} images (held out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
