"""Ray Tune wiring for sweeps whose trials each run a multi-phase Ray Train curriculum, and the trial
itself (`curriculum_trial`: one arm x seed, validated on the validation split, scored on test).

Resources: a trial's own process is light (it drives the phases and the evaluation), so it asks for a
sliver of a CPU; its Train workers, Ray Data tasks and embedding actors request their own resources
when they start. What must not happen is more concurrent trials than the cluster can give Train worker
groups at once (each group needs all its workers together): `max_concurrent_trials` is derived from
the resources one trial needs and the cluster has.
"""
from __future__ import annotations

import math
from typing import Any, Callable

TRIAL_CPU = 0.01  # Tune rejects {"CPU": 0}


def trial_needs(num_workers: int, cpus_per_worker: float, use_gpu: bool, data_cpus: float = 1.5) -> dict[str, float]:
    """What one trial holds at its peak: a Train worker group plus Ray Data's read and map tasks."""
    return {"CPU": num_workers * cpus_per_worker + data_cpus + TRIAL_CPU, "GPU": float(num_workers if use_gpu else 0)}


def max_concurrent(cluster: dict[str, float], needs: dict[str, float]) -> int:
    """How many trials fit side by side; at least 1 (then trials simply queue)."""
    fits = [math.floor(cluster.get(k, 0.0) / v) for k, v in needs.items() if v > 0]
    return max(1, min(fits) if fits else 1)


def asha(metric: str, max_t: int, grace_period: int, reduction_factor: float):
    """ASHA over `training_iteration`, which the trials advance once per curriculum phase: a trial is
    only ever stopped at a phase boundary, after that phase's evaluation was reported."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric=metric, mode="max", max_t=max_t,
                         grace_period=min(grace_period, max_t), reduction_factor=reduction_factor)


def build_tuner(trainable: Callable, param_space: dict[str, Any], *, name: str, storage_path: str, metric: str,
                max_t: int, max_concurrent_trials: int, num_samples: int = 1, search: str = "grid",
                scheduler=None, callbacks=None):
    import ray.tune

    search_alg = None
    if search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=metric, mode="max")
    return ray.tune.Tuner(
        ray.tune.with_resources(trainable, {"CPU": TRIAL_CPU}),  # trainable: tune.with_parameters(...)
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=scheduler,
                                        max_concurrent_trials=max_concurrent_trials,
                                        metric=None if scheduler or search_alg else metric,
                                        mode=None if scheduler or search_alg else "max"),
        run_config=ray.tune.RunConfig(name=name, storage_path=storage_path, verbose=0, callbacks=callbacks,
                                      failure_config=ray.tune.FailureConfig(max_failures=1)),
    )


def restore_tuner(path: str, trainable: Callable):
    """Resume an interrupted sweep: finished trials are kept, unfinished and errored ones run again."""
    import ray.tune

    if not ray.tune.Tuner.can_restore(path):
        raise FileNotFoundError(f"no Tune sweep state to resume under {path}")
    return ray.tune.Tuner.restore(path, trainable=ray.tune.with_resources(trainable, {"CPU": TRIAL_CPU}),
                                  resume_unfinished=True, resume_errored=True)


# ------------------------------------------------------------------------------ curriculum trials


def arm_config(base, knobs: dict[str, Any], run_name: str):
    """The base job (`JobConfig`) with one trial's knobs applied (curriculum.ablation.arm_spec);
    validated again as a whole."""
    from radisim.curriculum.ablation import arm_spec
    from radisim.platform.config import JobConfig

    tree = base.model_dump(mode="json")
    seed = int(knobs.get("seed", base.train.seed))
    tree["curriculum"] = arm_spec(tree["curriculum"], knobs, seed)
    tree["train"]["seed"] = seed
    tree["eval"]["untrained_baseline"] = False  # the same for every arm of a seed: the sweep compares arms
    tree["tracking"]["run_name"] = run_name
    return JobConfig.model_validate(tree)


def check_equal_budgets(configs: list) -> dict[str, int]:
    from radisim.platform.train.runner import budget

    budgets = [budget(c) for c in configs]
    if any(b != budgets[0] for b in budgets):
        raise ValueError(f"arms differ in budget: {budgets}")
    return budgets[0]


def grid_space(arms: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Every arm (a dict of knobs: ordering, pacing, and for tuned arms their best continuous knobs)
    x every seed, as one grid: each arm x seed cell is one trial."""
    from ray import tune

    return {"arm_knobs": tune.grid_search(arms), "seed": tune.grid_search(seeds)}


def optuna_space(cfg, ordering: str, pacing: str) -> dict[str, Any]:
    """One arm's tuning space: its continuous knobs only. Ordering, pacing and the seed are constants,
    so the searcher never picks a seed and trials are not replicates."""
    from ray import tune

    from radisim.curriculum.pacing import uses_replay

    a = cfg.ablate
    space: dict[str, Any] = {"arm_knobs": {"ordering": ordering, "pacing": pacing}, "seed": a.tuning_seed,
                             "lr_scale": tune.loguniform(*a.lr_scale)}
    if uses_replay(pacing) and a.replay[1] > a.replay[0]:
        space["replay"] = tune.uniform(*a.replay)
    if a.search_phase_fractions:
        space.update({f"phase_w{i}": tune.uniform(0.5, 2.0) for i in range(len(cfg.curriculum.phases))})
    return space


def trial_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial config -> the knobs `arm_config` applies."""
    knobs = {**config.get("arm_knobs", {}), "seed": config["seed"]}
    knobs.update({k: v for k, v in config.items() if k in ("lr_scale", "replay") or k.startswith("phase_w")})
    return knobs


def test_root(cfg) -> str:
    from radisim.platform.config import resolve_path

    return resolve_path(cfg.ablate.test_data_root or storage_join(cfg.data.root, "test"))


def storage_join(root: str, *parts: str) -> str:
    from radisim.platform import storage

    return storage.join(root, *parts)


def replicates_path(cfg, sweep_name: str, trial_id: str) -> str:
    from radisim.platform.config import resolve_path

    return storage_join(resolve_path(cfg.train.storage_path), f"{sweep_name}-replicates", f"{trial_id}.json")


def score_on_test(cfg, checkpoint_dir: str, label: str) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The final weights on the held-out test split: `test/stage<N>/score` and `test/score/mean`,
    and each stage's bootstrap replicates (the same resample indices for every arm of a seed)."""
    import numpy as np

    from radisim.evals.suite import ModelRef, run_suite
    from radisim.platform.config import resolve_path

    ref = ModelRef(cfg.model.name, checkpoint=checkpoint_dir, siglip=cfg.curriculum.uses_siglip, label=label)
    result = run_suite(ref, subtasks=None if cfg.eval.subtasks == ["all"] else list(cfg.eval.subtasks),
                       data_root=test_root(cfg), cache_dir=resolve_path(cfg.eval.cache_dir),
                       n_bootstrap=cfg.eval.n_bootstrap, seed=cfg.eval.seed, source=cfg.eval.source,
                       roots=cfg.ablate.test_roots or None, driver_max_images=cfg.eval.driver_max_images)
    scores = {f"test/stage{s}/score": float(result.metrics[f"stage{s}/score"]) for s in range(1, 6)}
    scores["test/score/mean"] = float(np.mean(list(scores.values())))
    reps = {f"stage{s}": np.asarray(result.stage_resamples[s], float).tolist() for s in range(1, 6)
            if s in result.stage_resamples}
    if len(reps) == 5:
        reps["mean"] = np.mean([reps[f"stage{s}"] for s in range(1, 6)], axis=0).tolist()
    return scores, reps


def curriculum_trial(config: dict[str, Any], job: dict, sweep_name: str, sweep_run_id: str, multi_pacing: bool,
                     on_test: bool = True) -> None:
    """Tune function trainable (bind the constants with `tune.with_parameters`): one arm x seed.
    Reports the validation stage scores after every evaluated phase (ASHA and Optuna act on those, so a
    trial is only stopped at a phase boundary); with `on_test`, the last report also carries the final
    weights' test scores, and the test bootstrap replicates go to `replicates_path`."""
    import ray.tune

    from radisim.curriculum.ablation import arm_label, stage_report
    from radisim.evals.suite import evaluator
    from radisim.platform import storage
    from radisim.platform.config import JobConfig
    from radisim.platform.train.runner import phase_label, phase_number, run_curriculum

    base = JobConfig.model_validate(job)
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = arm_config(base, trial_knobs(config), run_name=f"{sweep_name}-{trial_id}")
    effective = cfg.curriculum.effective().phases
    final_label = phase_label(len(effective) - 1, effective[-1].name)
    arm = arm_label(cfg.curriculum.ordering, cfg.curriculum.pacing.name, multi_pacing)
    validate = evaluator(cfg)

    def evaluate(checkpoint_dir: str, label: str) -> dict[str, float]:
        metrics = validate(checkpoint_dir, label)
        if on_test and label == final_label:
            test, reps = score_on_test(cfg, checkpoint_dir, label)
            storage.write_json(replicates_path(cfg, sweep_name, trial_id),
                               {"arm": arm, "seed": cfg.train.seed, "replicates": reps})
            metrics = {**metrics, **test}
        return metrics

    def report(evaluations):
        label, metrics = evaluations[-1]
        scores = stage_report(metrics)
        print(f"[trial {trial_id} {arm} seed {cfg.train.seed}] after {label} (validation): "
              + " ".join(f"s{s}={scores[f'stage{s}/score']:.3f}" for s in range(1, 6)), flush=True)
        ray.tune.report({**scores, **{k: v for k, v in metrics.items() if k.startswith("test/")},
                         "phase": phase_number(label)})

    tags = {"sweep": sweep_name, "trial_id": trial_id, "arm": arm}
    # One phase after the other: ASHA decides at each phase boundary, before the next phase is paid for.
    run_curriculum(cfg, evaluate=evaluate, on_evaluation=report, extra_tags=tags, parent_run_id=sweep_run_id,
                   overlap_eval=False)
