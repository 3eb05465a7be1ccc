"""Ablation arms: equal budgets, knob application, the per-arm summary and its verdicts."""
from __future__ import annotations

import pytest

from radisim.curriculum import ablation
from radisim.platform.config import load_job_config
from radisim.platform.tune import max_concurrent, trial_needs


def test_apportion_keeps_total_and_minimums():
    steps = ablation.apportion(400, [0.5, 2.0, 1.0, 1.0, 1.3], [10, 5, 5, 5, 5])
    assert sum(steps) == 400 and all(s >= m for s, m in zip(steps, [10, 5, 5, 5, 5]))
    assert steps[1] == max(steps)
    with pytest.raises(ValueError):
        ablation.apportion(10, [1, 1], [6, 6])


def test_every_arm_has_the_same_budget():
    base = load_job_config()
    arms = [ablation.arm_config(base, {"ordering": o, "pacing": p, "seed": s}, "x")
            for o in ("curriculum", "anti_curriculum", "random_order", "shuffled")
            for p in ("step", "cumulative", "root") for s in (0, 1)]
    arms.append(ablation.arm_config(base, {"ordering": "curriculum", "pacing": "step", "seed": 0, "lr_scale": 2.0,
                                           "replay": 0.3, **{f"phase_w{i}": w for i, w in enumerate([2, 1, .5, 1, 1.5])}}, "y"))
    b = ablation.check_equal_budgets(arms)
    assert b["budget/optimizer_steps"] == base.curriculum.total_steps
    tuned = arms[-1]
    assert tuned.curriculum.phases[0].lr == pytest.approx(2 * base.curriculum.phases[0].lr)
    assert [p.replay for p in tuned.curriculum.phases] == [0.0, 0.3, 0.3, 0.3, 0.3]
    assert tuned.curriculum.phases[0].steps > tuned.curriculum.phases[2].steps
    assert [p.replay_last for p in tuned.curriculum.phases] == [p.replay_last for p in base.curriculum.phases]
    # a sampled replay of 0 on a spec with `replay_last` (the bundled one) is an arm without replay
    assert any(p.replay_last for p in base.curriculum.phases)
    none = ablation.arm_config(base, {"replay": 0.0}, "z").curriculum.phases
    assert [(p.replay, p.replay_last) for p in none] == [(0.0, 0)] * len(none)
    with pytest.raises(ValueError, match="differ in budget"):
        ablation.check_equal_budgets([base, base.model_copy(update={"train": base.train.model_copy(update={"batch_size": 8})})])


def test_arm_config_sets_ordering_seed_and_run_name():
    cfg = ablation.arm_config(load_job_config(), {"ordering": "random_order", "pacing": "linear", "seed": 7}, "sweep-t1")
    assert (cfg.curriculum.ordering, cfg.curriculum.order_seed, cfg.curriculum.pacing.name) == ("random_order", 7, "linear")
    assert cfg.train.seed == 7 and cfg.tracking.run_name == "sweep-t1"
    assert cfg.eval.after_each_phase and not cfg.eval.untrained_baseline
    # the sweep's own evaluation setting is kept (the smoke sweep evaluates each trial once)
    once = load_job_config(overrides=["eval.after_each_phase=false"])
    assert not ablation.arm_config(once, {"ordering": "curriculum", "seed": 0}, "t").eval.after_each_phase


def _rows():
    rows = []
    for arm, base in (("curriculum", 0.8), ("shuffled", 0.5), ("anti_curriculum", 0.78)):
        for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
            scores = {f"stage{s}/score": base + jitter for s in range(1, 6)}
            rows.append({"arm": arm, "seed": seed, **scores, "score/mean": base + jitter})
    return rows


def test_summary_intervals_and_verdicts():
    summary = ablation.summarise(_rows())
    cur = next(r for r in summary if r["arm"] == "curriculum" and r["stage"] == 1)
    assert cur["mean"] == pytest.approx(0.8) and cur["n_seeds"] == 3
    # t(0.975, 2) = 4.303; sd = 0.01; half width = 4.303 * 0.01 / sqrt(3)
    assert cur["ci_high"] - cur["mean"] == pytest.approx(4.303 * 0.01 / 3 ** 0.5, rel=1e-3)
    lines = ablation.verdicts(summary)
    assert lines[0] == "stage 1: curriculum beats shuffled beyond the CIs; not the others"
    assert ablation.best_arms(summary)["stage3"] == "curriculum"
    assert "curriculum" in ablation.format_summary(summary)


def test_single_seed_interval_is_degenerate_and_says_so():
    mean, lo, hi = ablation.t_interval([0.4])
    assert mean == lo == hi == 0.4
    assert ablation.verdicts(ablation.summarise([{"arm": "shuffled", **{f"stage{s}/score": 0.5 for s in range(1, 6)},
                                                  "score/mean": 0.5}])) == ["no 'curriculum' arm finished; no comparison made"]


def test_concurrency_never_oversubscribes_train_workers():
    needs = trial_needs(num_workers=1, cpus_per_worker=1.0, use_gpu=False)
    assert max_concurrent({"CPU": 4.0}, needs) == 1
    assert max_concurrent({"CPU": 64.0, "GPU": 8.0}, trial_needs(4, 4.0, True)) == 2
    assert max_concurrent({"CPU": 1.0}, needs) == 1  # queue rather than deadlock
