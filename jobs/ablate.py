"""Ablate curricula with Ray Tune (orderings x pacing x seeds, or Optuna + ASHA) at equal budgets.

MLflow: one sweep run -> one child run per trial (tags ordering, pacing, seed, arm) -> one run per phase.
The sweep run gets the per-trial table, the per-arm summary (mean and 95% CI over seeds per stage), a
plot, the best arm per stage, and the verdict on whether the curriculum beats the other arms beyond
the CIs. Cost of --smoke (4 arms x 2 seeds, phantom data, 2 CPU cores): see README "Ablations".
"""
from __future__ import annotations

import csv
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

from radisim.curriculum import ablation
from radisim.jobs.common import job_parser, load_config, preflight, quiet_logs
from radisim.jobs.train import ensure_data
from radisim.platform import storage
from radisim.platform import tune as tune_wiring
from radisim.platform.config import JobConfig, resolve_path
from radisim.platform.raysession import ray_session
from radisim.platform.tracking import Tracker, ui_command
from radisim.platform.train.runner import worker_threads

STATE_FILE = "radisim_sweep.json"
METRIC = "score/mean"

#: --smoke: the four arms x 2 seeds on a small phantom set; on top of the common smoke sizes. Without
#: ASHA nothing needs the per-phase scores, so each trial evaluates once, after its last phase (a phase
#: fit plus its evaluation took ~50 s, the evaluation ~10 s of it).
SMOKE_SETS = ["ablate.seeds=[0, 1]", "ablate.asha=false", "ablate.name=ablation-smoke", "eval.n_bootstrap=50",
              "curriculum.phases.*.steps=3", "eval.after_each_phase=false"]


def arm_configs(cfg: JobConfig) -> list[JobConfig]:
    """The grid's arms (or, under Optuna, the corners of its categorical choices) as full configs."""
    a = cfg.ablate
    return [ablation.arm_config(cfg, {"ordering": o, "pacing": p, "seed": s}, run_name="budget-check")
            for o, p, s in product(a.orderings, a.pacings, a.seeds)]


def mark_unfinished(tracker: Tracker, sweep_run_id: str, status: str = "KILLED") -> int:
    """Trials that ASHA stopped (or a dead driver left) stay RUNNING in MLflow unless marked."""
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string="attributes.status = 'RUNNING'", max_results=5000)
    sweep_ids = {sweep_run_id}
    changed = 0
    for _ in range(3):  # sweep -> trial -> phase
        for run in runs:
            if run.data.tags.get("mlflow.parentRunId") in sweep_ids and run.info.run_id not in sweep_ids:
                sweep_ids.add(run.info.run_id)
    for run in runs:
        if run.info.run_id in sweep_ids and run.info.run_id != sweep_run_id:
            tracker.end(run.info.run_id, status)
            changed += 1
    return changed


def trial_rows(results, n_phases: int, multi_pacing: bool) -> tuple[list[dict], int, int]:
    rows, stopped, failed = [], 0, 0
    for r in results:
        if r.error:
            failed += 1
            continue
        m = r.metrics or {}
        if m.get("phase") != n_phases:
            stopped += 1
            continue
        c = r.config
        rows.append({"trial_id": m.get("trial_id"), "ordering": c["ordering"], "pacing": c["pacing"], "seed": c["seed"],
                     "arm": ablation.arm_label(c["ordering"], c["pacing"], multi_pacing),
                     **{k: m[k] for k in ablation.stage_report({f"stage{s}/score": m[f"stage{s}/score"] for s in ablation.STAGES})},
                     **{k: v for k, v in c.items() if k in ("lr_scale", "replay") or k.startswith("phase_w")}})
    return rows, stopped, failed


def write_csv(rows: list[dict], path: Path) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def report(cfg: JobConfig, tracker: Tracker, sweep_run: str, results, budget: dict) -> list[dict]:
    multi = len(cfg.ablate.pacings) > 1
    rows, stopped, failed = trial_rows(results, len(cfg.curriculum.phases), multi)
    print(f"\n{len(rows)} trials finished all phases, {stopped} stopped early (ASHA), {failed} failed; "
          f"every arm: {budget['budget/optimizer_steps']} optimizer steps, {budget['budget/samples']} samples")
    if not rows:
        return []
    summary = ablation.summarise(rows)
    print("\nper-stage score, mean [95% CI over seeds]:")
    print(ablation.format_summary(summary))
    lines = ablation.verdicts(summary)
    print("\n" + "\n".join(lines))
    best = ablation.best_arms(summary)
    with tempfile.TemporaryDirectory() as tmp:
        for path in (write_csv(rows, Path(tmp) / "trials.csv"), write_csv(summary, Path(tmp) / "arm_summary.csv"),
                     ablation.plot_summary(summary, Path(tmp) / "arm_stage_scores.png")):
            tracker.log_artifact(sweep_run, path, "ablation")
        (Path(tmp) / "verdict.txt").write_text("\n".join(lines) + "\n")
        tracker.log_artifact(sweep_run, Path(tmp) / "verdict.txt", "ablation")
    tracker.log_metrics(sweep_run, {f"arm/{r['arm']}/{'mean' if r['stage'] == 'mean' else 'stage%s' % r['stage']}/{k}": r[k]
                                    for r in summary for k in ("mean", "ci_low", "ci_high")})
    tracker.log_metrics(sweep_run, {"trials/finished": len(rows), "trials/stopped": stopped, "trials/failed": failed})
    for stage, arm in best.items():
        tracker.client.set_tag(sweep_run, f"best/{stage}", arm)
    return rows


def check_sweep_config(cfg: JobConfig) -> None:
    """Sweep settings that contradict each other, caught before Ray starts."""
    if cfg.ablate.asha and not cfg.eval.after_each_phase:
        raise SystemExit("error: ablate.asha stops trials on their per-phase stage scores; it needs "
                         "eval.after_each_phase=true (or set ablate.asha=false)")


def run(cfg: JobConfig, resume: bool = False):
    check_sweep_config(cfg)
    preflight(cfg)
    ensure_data(cfg)
    budget = ablation.check_equal_budgets(arm_configs(cfg))
    sweep_dir = storage.join(resolve_path(cfg.train.storage_path), cfg.ablate.name)
    state_path = storage.join(resolve_path(cfg.train.storage_path), f"{cfg.ablate.name}.{STATE_FILE}")
    tracker = Tracker(cfg.tracking.experiment, cfg.tracking.tracking_uri)
    with ray_session(cfg.ray, deterministic=cfg.data.deterministic):
        import ray
        from ray import tune

        if resume:
            state = storage.read_json(state_path)
            if state is None:
                raise SystemExit(f"error: nothing to resume: no sweep state {state_path}")
            sweep_run = state["sweep_run_id"]
            killed = mark_unfinished(tracker, sweep_run)
            print(f"resuming sweep {cfg.ablate.name!r} (MLflow run {sweep_run}); {killed} interrupted runs marked KILLED")
            tracker.client.update_run(sweep_run, "RUNNING")
        else:
            if storage.exists(sweep_dir) and tune.Tuner.can_restore(sweep_dir):
                raise SystemExit(f"error: sweep {cfg.ablate.name!r} already exists in {sweep_dir}; "
                                 f"pass --resume, or --set ablate.name=<new name>")
            sweep_run = tracker.start_run(cfg.ablate.name, tags={"sweep": cfg.ablate.name, "kind": "sweep",
                                                                 "search": cfg.ablate.search})
            tracker.log_params(sweep_run, {**{f"ablate.{k}": v for k, v in cfg.ablate.model_dump().items()}, **budget})
            tracker.log_metrics(sweep_run, budget)
            storage.write_json(state_path, {"sweep_run_id": sweep_run, "name": cfg.ablate.name})
        n_phases = len(cfg.curriculum.phases)
        needs = tune_wiring.trial_needs(cfg.train.num_workers, cfg.train.cpus_per_worker, cfg.train.use_gpu)
        concurrent = cfg.ablate.max_concurrent_trials or tune_wiring.max_concurrent(ray.cluster_resources(), needs)
        # concurrent trials on a local Ray share the host's cores rather than each taking them all
        job = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"torch_threads": worker_threads(cfg, concurrent)})}).model_dump(mode="json")
        trainable = tune.with_parameters(ablation.curriculum_trial, job=job,
                                         sweep_name=cfg.ablate.name, sweep_run_id=sweep_run,
                                         multi_pacing=len(cfg.ablate.pacings) > 1)
        print(f"sweep {cfg.ablate.name!r}: {cfg.ablate.search} search, {concurrent} concurrent trial(s); "
              f"each arm {budget['budget/optimizer_steps']} steps / {budget['budget/samples']} samples")
        t0 = time.perf_counter()
        if resume:
            tuner = tune_wiring.restore_tuner(sweep_dir, trainable)
        else:
            scheduler = tune_wiring.asha(METRIC, n_phases, cfg.ablate.grace_period, cfg.ablate.reduction_factor) \
                if cfg.ablate.asha else None
            n = cfg.ablate.num_samples if cfg.ablate.search == "optuna" else 1
            tuner = tune_wiring.build_tuner(trainable, ablation.param_space(cfg), name=cfg.ablate.name,
                                            storage_path=resolve_path(cfg.train.storage_path), metric=METRIC,
                                            max_t=n_phases, max_concurrent_trials=concurrent, num_samples=n,
                                            search=cfg.ablate.search, scheduler=scheduler)
        results = tuner.fit()
        mark_unfinished(tracker, sweep_run)
        tracker.log_metrics(sweep_run, {"time/sweep_seconds": time.perf_counter() - t0})
        rows = report(cfg, tracker, sweep_run, results, budget)
        tracker.end(sweep_run)
    print(f"\nMLflow sweep run {sweep_run} in {tracker.uri}\nbrowse it with:\n  {ui_command(tracker.uri)}")
    return sweep_run, rows


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("ablate", __doc__)
    parser.add_argument("--resume", action="store_true", help="finish an interrupted sweep (Tuner.restore)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.overrides = SMOKE_SETS + args.overrides
    cfg = load_config(args)
    quiet_logs()
    run(cfg, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
