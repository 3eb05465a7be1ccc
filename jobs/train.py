"""Train a curriculum: one Ray Train fit per phase, zero-shot five-stage evaluation after each, MLflow run tree."""
from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from radisim.evals.suite import evaluator
from radisim.jobs.common import job_parser, load_config, preflight, quiet_logs
from radisim.platform.config import JobConfig, resolve_path
from radisim.platform.raysession import ray_session
from radisim.platform.tracking import Tracker, ui_command
from radisim.platform.train.runner import CurriculumResult, NonFiniteLossError, run_curriculum

if TYPE_CHECKING:
    from radisim.platform.train.plan import TrainPlan

DEFAULT_PHANTOM_ROOTS = ("radisim_work/data/phantom", "radisim_work/data/phantom-smoke")


def data_writer(cfg: JobConfig, phantom: bool = False) -> Optional[Callable[[], object]]:
    """What makes data.root ready: None when it is, the phantom generator when data.root is one of the
    embedded default's roots (or `phantom`, the demo). Anything else must already exist: that is
    checked here, before any Ray resource starts."""
    root = Path(resolve_path(cfg.data.root))
    ready = (root / "train").is_dir() or "://" in cfg.data.root
    if phantom or (not ready and str(root) in {resolve_path(r) for r in DEFAULT_PHANTOM_ROOTS}):
        from radisim.jobs.prepare_data import prepare_phantom

        return lambda: prepare_phantom(cfg)
    if ready:
        return None
    raise SystemExit(f"error: data.root {root} has no train/ manifests; run `radisim prepare-data` first")


def ensure_data(cfg: JobConfig) -> None:
    """The embedded default makes its phantom data on first use; anything else must already exist."""
    write = data_writer(cfg)
    if write:
        write()


def print_stage_table(evaluations) -> None:
    from radisim.evals.report import format_gain_table, format_stage_table

    print("\nzero-shot stage scores (held-out split):")
    print(format_stage_table(dict(evaluations)), flush=True)
    gains = format_gain_table(*evaluations[-1])
    if gains:
        print("\n" + gains, flush=True)


def log_reports(cfg: JobConfig, result: CurriculumResult) -> None:
    """Radar of the five stage scores per phase and the score table, as artifacts of the parent run."""
    from radisim.evals.report import comparison_csv, radar_plot

    tracker = Tracker(cfg.tracking.experiment, cfg.tracking.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        by_label = dict(result.evaluations)
        radar = radar_plot(by_label, Path(tmp) / "stage_scores_radar.png",
                           title=f"{result.run_name}: zero-shot stage scores")
        table = comparison_csv(by_label, Path(tmp) / "stage_scores.csv")
        for path in (radar, table):
            tracker.log_artifact(result.run_id, path, "report")


def run(cfg: JobConfig, phantom: bool = False) -> CurriculumResult:
    """The train job; `phantom`: (re)make the phantom data in data.root first if its settings changed."""
    preflight(cfg)
    write = data_writer(cfg, phantom)
    spec = cfg.curriculum
    print(f"curriculum {spec.name!r} ({spec.ordering}): "
          + " -> ".join(f"{p.name}[{p.steps if p.steps else f'{p.epochs:g} epochs'}]" for p in spec.phases))
    # The phantom data (~8 s on one core) is written while Ray starts its processes.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="radisim-data") as pool:
        written = pool.submit(write) if write else None
        with ray_session(cfg.ray, deterministic=cfg.data.deterministic):
            if written:
                written.result()
            result = run_curriculum(cfg, evaluate=evaluator(cfg) if cfg.eval.enabled else None,
                                    on_evaluation=print_stage_table)
    if result.evaluations:
        log_reports(cfg, result)
    print(f"\nMLflow run {result.run_name} ({result.run_id}) in {result.tracking_uri}")
    print(f"browse it with:\n  {ui_command(result.tracking_uri)}")
    return result


def dry_run(cfg: JobConfig) -> "TrainPlan":
    """Resolve and print the plan (phases with rows, steps, epochs, LR schedule, contrastive batch,
    workers, GPUs) from the manifest's row counts; starts no Ray, no fit, no MLflow run. Returns it."""
    from radisim.platform.data.pipeline import phase_counts, train_dir
    from radisim.platform.sizing import section_for_plan
    from radisim.platform.train.plan import build_plan, format_plan

    root = Path(resolve_path(cfg.data.root))
    if "://" not in cfg.data.root and not (root / "train").is_dir():
        raise SystemExit(f"error: data.root {root} has no train/ manifests; the plan's rows and epochs come from "
                         f"them (run `radisim prepare-data` first)")
    try:
        plan = build_plan(cfg, phase_counts(train_dir(resolve_path(cfg.data.root))))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    plan.sections["data stream sizing"] = section_for_plan(plan)  # cores per GPU (platform/sizing.py)
    print(format_plan(plan), flush=True)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("train", __doc__)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved plan (phases, rows, steps, epochs, LR, batch, workers) and exit")
    args = parser.parse_args(argv)
    cfg = load_config(args)
    quiet_logs()
    if args.dry_run:
        dry_run(cfg)
        return 0
    try:
        run(cfg)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
