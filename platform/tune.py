"""Ray Tune wiring for sweeps whose trials each run a multi-phase Ray Train curriculum.

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
