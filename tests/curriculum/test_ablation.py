"""Ablation arms: equal budgets, what moves with an ordering, complete cells, and the verdict's gates."""
from __future__ import annotations

import pytest

from radisim.curriculum import ablation
from radisim.curriculum.spec import load_spec
from radisim.platform.config import load_job_config
from radisim.platform.tune import arm_config, check_equal_budgets, max_concurrent, trial_needs


def test_apportion_keeps_total_and_minimums():
    steps = ablation.apportion(400, [0.5, 2.0, 1.0, 1.0, 1.3], [10, 5, 5, 5, 5])
    assert sum(steps) == 400 and all(s >= m for s, m in zip(steps, [10, 5, 5, 5, 5]))
    assert steps[1] == max(steps)
    with pytest.raises(ValueError):
        ablation.apportion(10, [1, 1], [6, 6])


def test_every_arm_has_the_same_budget():
    base = load_job_config()
    arms = [arm_config(base, {"ordering": o, "pacing": p, "seed": s}, "x")
            for o in ("curriculum", "anti_curriculum", "random_order", "shuffled")
            for p in ("step", "cumulative", "root", "fixed_exponential") for s in (10, 11)]
    arms.append(arm_config(base, {"ordering": "curriculum", "pacing": "step", "seed": 10, "lr_scale": 2.0,
                                  "replay": 0.3, **{f"phase_w{i}": w for i, w in enumerate([2, 1, .5, 1, 1.5])}}, "y"))
    b = check_equal_budgets(arms)
    assert b["budget/optimizer_steps"] == base.curriculum.total_steps
    tuned = arms[-1]
    assert tuned.curriculum.phases[0].lr == pytest.approx(2 * base.curriculum.phases[0].lr)
    assert [p.replay for p in tuned.curriculum.phases] == [0.0, 0.3, 0.3, 0.3, 0.3]
    assert tuned.curriculum.phases[0].steps > tuned.curriculum.phases[2].steps
    none = arm_config(base, {"replay": 0.0}, "z").curriculum.phases
    assert [(p.replay, p.replay_last) for p in none] == [(0.0, 0)] * len(none)
    # a pace other than `step` carries no replay share (the spec would reject one)
    root = arm_config(base, {"pacing": "root"}, "r").curriculum.phases
    assert all(p.replay == 0 for p in root)
    for cfg in arms:  # every effective arrangement keeps the multiset of phase lengths
        assert sorted(p.steps for p in cfg.curriculum.effective().phases) == sorted(p.steps for p in cfg.curriculum.phases)
    with pytest.raises(ValueError, match="differ in budget"):
        check_equal_budgets([base, base.model_copy(update={"train": base.train.model_copy(update={"batch_size": 8})})])


def test_an_ordering_moves_settings_with_content_by_default():
    spec = load_spec("radisim_cl").model_copy(update={"ordering": "anti_curriculum"})
    moved = {p.name: p for p in spec.effective().phases}
    written = {p.name: p for p in spec.phases}
    assert [p.name for p in spec.effective().phases] == ["grading", "abnormality", "localization", "anatomy", "modality"]
    for name in written:  # grading keeps its 120 steps and 3 counterfactuals, modality its frozen image tower
        assert (moved[name].steps, moved[name].freeze, moved[name].hard_negatives, moved[name].lr) == \
            (written[name].steps, written[name].freeze, written[name].hard_negatives, written[name].lr)
    # replay sources move too: abnormality replays localization (not yet taught there: no replay rows)
    assert moved["grading"].replay == 0  # first: nothing earlier to replay
    assert moved["abnormality"].replay_from == ["localization"]
    counts = {p: 100 for p in written}
    arranged = spec.effective()
    assert arranged.mix(1, counts) == {"abnormality": 1.0}
    assert arranged.mix(4, counts)["modality"] == 1.0 and set(arranged.mix(4, counts)) == {"modality"}
    # the position-bound variant: only content moves, grading gets modality's 20 frozen steps
    bound = spec.model_copy(update={"ordering_moves": "content"}).effective().phases
    assert (bound[0].name, bound[0].steps, bound[0].freeze) == ("grading", 20, ["visual"])


def test_arm_config_sets_ordering_seed_and_run_name():
    cfg = arm_config(load_job_config(), {"ordering": "random_order", "pacing": "linear", "seed": 7}, "sweep-t1")
    assert (cfg.curriculum.ordering, cfg.curriculum.order_seed, cfg.curriculum.pacing.name) == ("random_order", 7, "linear")
    assert cfg.train.seed == 7 and cfg.tracking.run_name == "sweep-t1"
    assert cfg.eval.after_each_phase and not cfg.eval.untrained_baseline


def _rows(seeds=(10, 11, 12, 13), arms=(("curriculum", 0.8), ("shuffled", 0.5), ("anti_curriculum", 0.78))):
    rows = []
    for arm, base in arms:
        for seed, jitter in zip(seeds, (-0.01, 0.0, 0.01, 0.005)):
            scores = {f"stage{s}/score": base + jitter + 0.001 * s * (seed % 3) for s in range(1, 6)}
            rows.append({"arm": arm, "seed": seed, **scores, "score/mean": sum(scores.values()) / 5})
    return rows


def test_verdict_covers_complete_cells_only_and_counts_what_it_leaves_out():
    rows = [r for r in _rows() if not (r["arm"] == "shuffled" and r["seed"] == 13)]  # stopped
    arms = ["curriculum", "shuffled", "anti_curriculum"]
    kept, full = ablation.complete_cells(rows, arms, [10, 11, 12, 13])
    assert full == [10, 11, 12] and len(kept) == 9
    lines, diffs = ablation.conclude(rows, arms, [10, 11, 12, 13], stopped=1, failed=0)
    assert lines[0].startswith("verdict over 3 complete seed(s) x 3 arm(s) (9 trials); 1 trial(s) stopped early, 0 failed, "
                               "2 finished trial(s) left out")
    assert {d.n_seeds for d in diffs} == {3} and len(diffs) == 12
    assert any(line.startswith("stage1: curriculum beats shuffled") for line in lines)


def test_fewer_than_three_seeds_gives_no_verdict_and_says_why():
    rows = _rows(seeds=(10, 11))
    lines, diffs = ablation.conclude(rows, ["curriculum", "shuffled", "anti_curriculum"], [10, 11], 0, 1)
    assert lines[-1] == "no verdict: n seeds 2 < 3" and diffs == []
    assert "0 trial(s) stopped early, 1 failed" in lines[0]
    one = ablation.conclude(_rows(seeds=(10,)), ["curriculum", "shuffled"], [10], 0, 0)[0]
    assert one[-1] == "no verdict: n seeds 1 < 3"
    summary = ablation.summarise(_rows(seeds=(10,)))
    assert "curriculum" in ablation.format_summary(summary)


def test_report_renders_the_same_blocks_as_markdown_and_html():
    diffs = ablation.conclude(_rows(), ["curriculum", "shuffled", "anti_curriculum"], [10, 11, 12, 13], 0, 0)[1]
    blocks = [("h", "Verdict"), ("p", "a < b"), ("table", *ablation.paired_table(diffs)), ("img", "forest_plot.png")]
    md, html = ablation.to_markdown(blocks), ablation.to_html(blocks, "t")
    assert "## Verdict" in md and "| shuffled | stage1 | 4 |" in md and "![forest_plot.png]" in md
    assert "<h2>Verdict</h2>" in html and "a &lt; b" in html and html.count("<tr>") == len(diffs) + 1


def test_design_names_arms_with_their_tuned_knobs_and_what_moved():
    lines = ablation.design_lines([{"label": "curriculum", "knobs": {"lr_scale": 1.234567}}, {"label": "shuffled"}],
                                  [10, 11, 12], {"budget/optimizer_steps": 440, "budget/samples": 28160},
                                  "content_and_settings", [0, 1, 2], "optuna")
    assert lines[0] == "Arms: curriculum (lr_scale 1.23); shuffled; search: optuna."
    assert "tuned on [0, 1, 2]" in lines[1] and "440 optimizer steps" in lines[2] and "settings" in lines[3]


def test_concurrency_never_oversubscribes_train_workers():
    needs = trial_needs(num_workers=1, cpus_per_worker=1.0, use_gpu=False)
    assert max_concurrent({"CPU": 4.0}, needs) == 1
    assert max_concurrent({"CPU": 64.0, "GPU": 8.0}, trial_needs(4, 4.0, True)) == 2
    assert max_concurrent({"CPU": 1.0}, needs) == 1  # queue rather than deadlock

