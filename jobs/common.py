"""What every job shares: `--config FILE`, repeated `--set dotted.key=value`, `--smoke`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from radisim.platform.config import ConfigError, JobConfig, load_job_config

#: The tiny mode of every job (same code path, smaller sizes). `train --smoke`: ~2.5 min on 2 CPUs, nearly all
#: of it Ray Train start-up (~25 s per phase fit, five fits).
SMOKE_BASE = {
    "data": {"root": "radisim_work/data/phantom-smoke", "phantom": {"n_train_images": 300, "n_eval_images": 240},
             "shuffle_buffer": 64},
    "train": {"batch_size": 16, "log_every": 2, "checkpoint_every": 4},
    "eval": {"n_bootstrap": 100},
}
SMOKE_SETS = ["curriculum.phases.*.steps=4", "curriculum.phases.*.warmup_steps=1"]


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"radisim {prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML job config (see jobs/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. train.num_workers=2 or curriculum.phases.*.steps=10")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, same code path (train: ~2.5 min on 2 CPUs)")
    return parser


def load_config(args: argparse.Namespace) -> JobConfig:
    """Validate everything before any Ray or MLflow resource is touched; exit 2 naming the bad field."""
    try:
        cfg = load_job_config(args.config, (SMOKE_SETS if args.smoke else []) + args.overrides,
                              base=SMOKE_BASE if args.smoke else None)
        return cfg.resolved()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def quiet_logs() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("ray", "ray.data", "ray.train", "ray.tune", "alembic", "mlflow", "urllib3", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


def preflight(cfg: JobConfig) -> None:
    """Checks that need no cluster, run before any Ray resource starts: the tracker answers."""
    from radisim.platform.tracking import TrackerUnavailable, check_reachable, tracking_uri

    try:
        check_reachable(tracking_uri(cfg.tracking.tracking_uri))
    except TrackerUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
