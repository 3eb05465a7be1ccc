"""Ablate curricula with Ray Tune at equal budgets, and compare the arms paired per seed on a test split.

grid: every arm (orderings x pacings) x every seed is one trial; no early stopping unless
`ablate.asha=true`. optuna: each arm gets `num_samples` Optuna trials on `tuning_seed`, scored on the
validation split (ASHA on by default); each arm's best config is then re-run on `seeds` as a grid.
The verdict covers only seeds whose every arm finished, needs >= 3 of them, and uses the test split.

MLflow: one sweep run -> one child run per trial (tags ordering, pacing, seed, arm) -> one run per phase.
The sweep run holds ablation/trials.csv, arm_summary.csv, paired_differences.csv, forest_plot.png,
arm_radar.png, verdict.txt and report.md/report.html. Cost and commands: docs/ablation.md.
"""
from __future__ import annotations

import csv
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np

from radisim.curriculum import ablation, stats
from radisim.jobs.common import job_parser, load_config, preflight, quiet_logs
from radisim.jobs.train import ensure_data
from radisim.platform import storage
from radisim.platform import tune as tune_wiring
from radisim.platform.config import JobConfig, resolve_path
from radisim.platform.raysession import ray_session
from radisim.platform.tracking import Tracker, ui_command
from radisim.platform.train.runner import worker_threads

SWEEP_STATE_FILE = "radisim_sweep.json"
METRIC = "score/mean"

#: --smoke: two arms x 3 seeds (the fewest a verdict accepts) on a small phantom set; on top of the common
#: smoke sizes. Without early stopping nothing needs the per-phase scores, so each trial evaluates once,
#: after its last phase (validation, then test).
SMOKE_SETS = ["ablate.seeds=[10, 11, 12]", "ablate.orderings=[curriculum, anti_curriculum]",
              "ablate.name=ablation-smoke", "eval.n_bootstrap=50", "curriculum.phases.*.steps=3",
              "eval.after_each_phase=false"]


def arm_list(cfg: JobConfig) -> list[dict]:
    """The compared arms as knob dicts with their label."""
    multi = len(cfg.ablate.pacings) > 1
    return [{"ordering": o, "pacing": p, "label": ablation.arm_label(o, p, multi)}
            for o, p in product(cfg.ablate.orderings, cfg.ablate.pacings)]


def arm_configs(cfg: JobConfig, arms: list[dict] | None = None) -> list[JobConfig]:
    """Every arm x seed as a full config (what the budget check compares)."""
    return [tune_wiring.arm_config(cfg, {**arm, "seed": s}, run_name="budget-check")
            for arm in (arms or arm_list(cfg)) for s in cfg.ablate.seeds]


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


def trial_rows(results, labels: dict[tuple, str]) -> tuple[list[dict], int, int]:
    """One row per trial that finished every phase and its test evaluation; counts of stopped/failed."""
    rows, stopped, failed = [], 0, 0
    for r in results:
        if r.error:
            failed += 1
            continue
        m = r.metrics or {}
        if "test/score/mean" not in m:
            stopped += 1
            continue
        c = r.config
        knobs = c.get("arm_knobs", {})
        rows.append({"trial_id": m.get("trial_id"), "ordering": knobs.get("ordering"), "pacing": knobs.get("pacing"),
                     "seed": c["seed"], "arm": labels[(knobs.get("ordering"), knobs.get("pacing"))],
                     **ablation.stage_report(m, prefix="test/"),
                     **{f"val/{k}": v for k, v in ablation.stage_report(m).items()},
                     **{k: v for k, v in {**knobs, **c}.items() if k in ("lr_scale", "replay") or k.startswith("phase_w")}})
    return rows, stopped, failed


def write_csv(rows: list[dict], path: Path, fields: list[str] | None = None) -> Path:
    keys = fields or list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def load_replicates(cfg: JobConfig, rows: list[dict]) -> dict | None:
    """replicates[arm][seed][stage] from the trials' test evaluations; None if any is missing."""
    out: dict = {}
    for r in rows:
        rec = storage.read_json(tune_wiring.replicates_path(cfg, cfg.ablate.name, r["trial_id"]))
        if not rec or len(rec.get("replicates", {})) < 6:
            return None
        out.setdefault(r["arm"], {})[r["seed"]] = {k: np.asarray(v) for k, v in rec["replicates"].items()}
    return out


def report(cfg: JobConfig, tracker: Tracker, sweep_run: str, results, budget: dict, arms: list[dict],
           extra_failed: int = 0) -> tuple[list[dict], list[str]]:
    from radisim.evals.report import radar_plot

    labels = {(a["ordering"], a["pacing"]): a["label"] for a in arms}
    rows, stopped, failed = trial_rows(results, labels)
    failed += extra_failed
    names = [a["label"] for a in arms]
    kept, _ = ablation.complete_cells(rows, names, cfg.ablate.seeds)
    lines, diffs = ablation.conclude(rows, names, cfg.ablate.seeds, stopped, failed, cfg.ablate.reference,
                                     load_replicates(cfg, kept))
    print(f"\n{len(rows)} trials finished every phase, {stopped} stopped early, {failed} failed; "
          f"every arm: {budget['budget/optimizer_steps']} optimizer steps, {budget['budget/samples']} samples")
    summary = ablation.summarise(kept) if kept else []
    if summary:
        print("\nper-stage test score, mean [95% CI over seeds]:")
        print(ablation.format_summary(summary))
    if diffs:
        print("\npaired differences (curriculum - arm, per seed):")
        print("\n".join(" ".join(f"{c:>14}" for c in row) for row in [ablation.paired_table(diffs)[0],
                                                                       *ablation.paired_table(diffs)[1]]))
    print("\n" + "\n".join(lines))
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "verdict.txt").write_text("\n".join(lines) + "\n")
        files = [t / "verdict.txt"]
        if rows:
            files.append(write_csv(rows, t / "trials.csv"))
        blocks = [("h", "Design"), *[("p", x) for x in ablation.design_lines(
            arms, cfg.ablate.seeds, budget, cfg.curriculum.ordering_moves, cfg.curriculum.tuning_seeds,
            cfg.ablate.search)], ("h", "Verdict"), *[("p", x) for x in lines]]
        if summary:
            files += [write_csv(summary, t / "arm_summary.csv"), ablation.plot_summary(summary, t / "arm_stage_scores.png")]
            means = {r["arm"]: {} for r in summary}
            for r in summary:
                if r["stage"] != "mean":
                    means[r["arm"]][f"stage{r['stage']}/score"] = r["mean"]
            files.append(radar_plot(means, t / "arm_radar.png", title="test stage scores per arm (mean over seeds)"))
            blocks += [("h", "Per-arm stage scores"), ("img", "arm_radar.png"), ("img", "arm_stage_scores.png")]
        if diffs:
            files += [write_csv([d.row() for d in diffs], t / "paired_differences.csv", stats.CSV_FIELDS),
                      stats.forest_plot(diffs, t / "forest_plot.png")]
            blocks += [("h", "Paired differences (Holm-corrected over arms x stages)"),
                       ("table", *ablation.paired_table(diffs)), ("img", "forest_plot.png")]
        (t / "report.md").write_text(ablation.to_markdown(blocks))
        (t / "report.html").write_text(ablation.to_html(blocks, f"Ablation {cfg.ablate.name}"))
        files += [t / "report.md", t / "report.html"]
        for path in files:
            tracker.log_artifact(sweep_run, path, "ablation")
    tracker.log_metrics(sweep_run, {f"arm/{r['arm']}/{'mean' if r['stage'] == 'mean' else 'stage%s' % r['stage']}/{k}": r[k]
                                    for r in summary for k in ("mean", "ci_low", "ci_high")})
    tracker.log_metrics(sweep_run, {"trials/finished": len(rows), "trials/stopped": stopped, "trials/failed": failed,
                                    "trials/in_verdict": len(kept) if diffs else 0})
    for d in diffs:
        tracker.log_metrics(sweep_run, {f"paired/{d.arm}/{d.stage}/{k}": getattr(d, k)
                                        for k in ("mean_diff", "ci_low", "ci_high", "p_holm")})
    for stage in dict.fromkeys(d.stage for d in diffs):
        tracker.client.set_tag(sweep_run, f"best/{stage}", stats.best_arm(diffs, stage, cfg.ablate.reference) or "none separable")
    return rows, lines


def check_sweep_config(cfg: JobConfig) -> None:
    """Sweep settings that contradict each other, caught before Ray starts."""
    a = cfg.ablate
    if a.early_stopping and not cfg.eval.after_each_phase:
        raise SystemExit("error: ablate.asha stops trials on their per-phase stage scores; it needs "
                         "eval.after_each_phase=true (or set ablate.asha=false)")
    if a.search == "grid" and a.early_stopping:
        print("warning: early stopping in a verdict sweep: stopped arm x seed cells drop their seed from the verdict")
    tuned_on = sorted(set(a.seeds) & set(cfg.curriculum.tuning_seeds))
    if tuned_on and not a.allow_tuning_seeds:
        raise SystemExit(f"error: ablate.seeds {tuned_on} are the spec's tuning_seeds: a verdict on them is biased; "
                         f"choose other seeds (or set ablate.allow_tuning_seeds=true)")
    if a.search == "optuna" and a.tuning_seed in a.seeds:
        raise SystemExit(f"error: ablate.tuning_seed {a.tuning_seed} is among ablate.seeds: the best configs are "
                         f"re-run on fresh seeds; choose another tuning_seed")
    if a.reference not in a.orderings:
        raise SystemExit(f"error: ablate.reference {a.reference!r} is not among ablate.orderings {a.orderings}")


def _tuner(cfg, trainable, space, name, concurrent, n_phases, num_samples, search, early, resume):
    path = storage.join(resolve_path(cfg.train.storage_path), name)
    if resume and storage.exists(path) and _can_restore(path):
        return tune_wiring.restore_tuner(path, trainable)
    scheduler = tune_wiring.asha(METRIC, n_phases, cfg.ablate.grace_period, cfg.ablate.reduction_factor) if early else None
    return tune_wiring.build_tuner(trainable, space, name=name, storage_path=resolve_path(cfg.train.storage_path),
                                   metric=METRIC, max_t=n_phases, max_concurrent_trials=concurrent,
                                   num_samples=num_samples, search=search, scheduler=scheduler)


def _can_restore(path: str) -> bool:
    import ray.tune

    return ray.tune.Tuner.can_restore(path)


def tune_arms(cfg, job, sweep_run, concurrent, n_phases, resume) -> tuple[list[dict], int]:
    """Optuna stage: every arm the same number of trials on `tuning_seed`, on validation. Returns each
    arm with its best knobs (an arm whose every trial failed is dropped and counted)."""
    from ray import tune

    tuned, failed = [], 0
    trainable = tune.with_parameters(tune_wiring.curriculum_trial, job=job, sweep_name=f"{cfg.ablate.name}-tune",
                                     sweep_run_id=sweep_run, multi_pacing=len(cfg.ablate.pacings) > 1, on_test=False)
    for arm in arm_list(cfg):
        name = f"{cfg.ablate.name}-tune-{arm['label'].replace('/', '-')}"
        space = tune_wiring.optuna_space(cfg, arm["ordering"], arm["pacing"])
        results = _tuner(cfg, trainable, space, name, concurrent, n_phases, cfg.ablate.num_samples, "optuna",
                         cfg.ablate.early_stopping, resume).fit()
        ok = [r for r in results if not r.error and (r.metrics or {}).get("phase") == n_phases]
        if not ok:
            failed += 1
            print(f"arm {arm['label']}: no tuning trial finished; left out")
            continue
        best = max(ok, key=lambda r: r.metrics[METRIC])
        knobs = {k: v for k, v in best.config.items() if k in ("lr_scale", "replay") or k.startswith("phase_w")}
        print(f"arm {arm['label']}: best validation {METRIC} {best.metrics[METRIC]:.3f} with {knobs}")
        tuned.append({**arm, "knobs": knobs})
    return tuned, failed


#: The phantom's test split is drawn with the generator seed `data.phantom.seed + TEST_SEED_OFFSET`:
#: independent cases from the same distribution as the validation split, none shared with it.
TEST_SEED_OFFSET = 7_000_003


def write_phantom_test_split(cfg: JobConfig, root: Path) -> dict:
    """The phantom's held-out test split as an evaluation root (<root>/eval/, the layout the phantom
    eval adapter reads), the size of the validation split."""
    from radisim.curriculum.phantom import write_phantom_dataset

    p = cfg.data.phantom
    return write_phantom_dataset(root, n_train_images=0, n_eval_images=p.n_eval_images, seed=p.seed + TEST_SEED_OFFSET,
                                 size=p.size, progress=False, cohort_fraction=p.cohort_fraction)


def ensure_test_split(cfg: JobConfig) -> None:
    """The phantom's held-out test split, written next to its train/validation splits on first use."""
    import json

    if cfg.eval.source != "phantom":
        if not cfg.ablate.test_roots:
            raise SystemExit("error: eval.source=real needs ablate.test_roots (a test split per adapter; "
                             "see docs/ablation.md)")
        return
    root = Path(tune_wiring.test_root(cfg))
    card = root / "data_card.json"
    p = cfg.data.phantom
    want = (p.seed + TEST_SEED_OFFSET, p.size, p.cohort_fraction, p.n_eval_images)
    if card.is_file():
        meta = json.loads(card.read_text())
        if (meta.get("seed"), meta.get("size"), meta.get("cohort_fraction"), meta["splits"]["eval"]["images"]) == want:
            return
    if cfg.ablate.test_data_root:
        raise SystemExit(f"error: no phantom test split matching data.phantom at {root}")
    print(f"writing the SYNTHETIC phantom test split ({p.n_eval_images} images, generator seed "
          f"{p.seed + TEST_SEED_OFFSET}) to {root}")
    write_phantom_test_split(cfg, root)


def run(cfg: JobConfig, resume: bool = False):
    check_sweep_config(cfg)
    preflight(cfg)
    ensure_data(cfg)
    ensure_test_split(cfg)
    budget = tune_wiring.check_equal_budgets(arm_configs(cfg))
    sweep_dir = storage.join(resolve_path(cfg.train.storage_path), cfg.ablate.name)
    state_path = storage.join(resolve_path(cfg.train.storage_path), f"{cfg.ablate.name}.{SWEEP_STATE_FILE}")
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
            tracker.log_params(sweep_run, {**{f"ablate.{k}": v for k, v in cfg.ablate.model_dump().items()}, **budget,
                                           "curriculum.ordering_moves": cfg.curriculum.ordering_moves,
                                           "curriculum.tuning_seeds": cfg.curriculum.tuning_seeds})
            tracker.log_metrics(sweep_run, budget)
            storage.write_json(state_path, {"sweep_run_id": sweep_run, "name": cfg.ablate.name})
        n_phases = len(cfg.curriculum.phases)
        needs = tune_wiring.trial_needs(cfg.train.num_workers, cfg.train.cpus_per_worker, cfg.train.use_gpu)
        concurrent = cfg.ablate.max_concurrent_trials or tune_wiring.max_concurrent(ray.cluster_resources(), needs)
        # concurrent trials on a local Ray share the host's cores rather than each taking them all
        job = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"torch_threads": worker_threads(cfg, concurrent)})}).model_dump(mode="json")
        print(f"sweep {cfg.ablate.name!r}: {cfg.ablate.search} search, {concurrent} concurrent trial(s); "
              f"each arm {budget['budget/optimizer_steps']} steps / {budget['budget/samples']} samples")
        t0 = time.perf_counter()
        arms, failed_arms = arm_list(cfg), 0
        if cfg.ablate.search == "optuna":
            arms, failed_arms = tune_arms(cfg, job, sweep_run, concurrent, n_phases, resume)
            budget = tune_wiring.check_equal_budgets(arm_configs(cfg, [{**a, **a["knobs"]} for a in arms]))
        grid = [{**{k: a[k] for k in ("ordering", "pacing")}, **a.get("knobs", {})} for a in arms]
        trainable = tune.with_parameters(tune_wiring.curriculum_trial, job=job, sweep_name=cfg.ablate.name,
                                         sweep_run_id=sweep_run, multi_pacing=len(cfg.ablate.pacings) > 1)
        early = cfg.ablate.early_stopping and cfg.ablate.search == "grid"
        space = tune_wiring.grid_space(grid, cfg.ablate.seeds)
        results = _tuner(cfg, trainable, space, cfg.ablate.name, concurrent, n_phases, 1, "grid", early, resume).fit()
        mark_unfinished(tracker, sweep_run)
        tracker.log_metrics(sweep_run, {"time/sweep_seconds": time.perf_counter() - t0})
        rows, _ = report(cfg, tracker, sweep_run, results, budget, arms, extra_failed=failed_arms)
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
