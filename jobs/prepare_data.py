"""Write the training and evaluation manifests (the built-in synthetic phantom radiology data)."""
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
    return (meta.get("seed"), meta.get("size"), meta["splits"]["train"]["images"], meta["splits"]["eval"]["images"]) == (
        p.seed, p.size, p.n_train_images, p.n_eval_images)


def prepare_phantom(cfg: JobConfig, force: bool = False) -> dict:
    from radisim.curriculum.phantom import write_phantom_dataset

    root = Path(resolve_path(cfg.data.root))
    if phantom_ready(cfg) and not force:
        print(f"phantom data already in {root} (delete it or pass --force to regenerate)")
        return json.loads((root / "data_card.json").read_text())
    p = cfg.data.phantom
    print(f"writing SYNTHETIC phantom radiology data to {root}: {p.n_train_images} train + "
          f"{p.n_eval_images} held-out eval images, {p.size}px, seed {p.seed}")
    return write_phantom_dataset(root, n_train_images=p.n_train_images, n_eval_images=p.n_eval_images,
                                 seed=p.seed, size=p.size, progress=True)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("prepare-data", __doc__)
    parser.add_argument("--force", action="store_true", help="regenerate even if the data exists")
    args = parser.parse_args(argv)
    cfg = load_config(args)
    quiet_logs()
    card = prepare_phantom(cfg, force=args.force)
    train = card["splits"]["train"]
    print(f"train: {train['images']} images, {train['rows']} image-caption rows; by phase {train['by_phase']}")
    print(f"eval: {card['splits']['eval']['images']} images (held out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
