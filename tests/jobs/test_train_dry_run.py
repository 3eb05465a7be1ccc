"""`radisim train --dry-run`: the seed recipe's plan resolved on CPU against a small manifest, without
starting Ray, a fit, MLflow or a model (the hub model is never touched)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from radisim.jobs import train as train_job
from radisim.platform.data.pipeline import expected_rows, phase_counts, train_dir

RECIPE = str(Path(train_job.__file__).parent / "configs" / "seed_recipe.yaml")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from radisim.curriculum.phantom import write_phantom_dataset

    root = tmp_path_factory.mktemp("dry-run") / "data"
    write_phantom_dataset(root, n_train_images=40, n_eval_images=10, progress=False)
    return root


def test_the_recipe_plan(manifest, capsys, tmp_path, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)

    def no_ray(*args, **kwargs):  # other tests in this process may have left a Ray up: forbid starting one
        raise AssertionError("the dry-run started Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    assert train_job.main(["--dry-run", "--config", RECIPE, "--set", f"data.root={manifest}",
                           "--set", "curriculum.phases.0.warmup_steps=2"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "mlflow.db").exists()
    assert "contrastive batch 8192" in out and "workers 4" in out and "GPUs 4" in out and "precision bf16" in out
    assert "BiomedCLIP" in out and "continue" in out
    cfg = train_job.load_config(train_job.job_parser("train", "").parse_args(
        ["--config", RECIPE, "--set", f"data.root={manifest}", "--set", "curriculum.phases.0.warmup_steps=2"]))
    from radisim.platform.train.plan import build_plan, resolve_epochs

    plan = build_plan(cfg, phase_counts(train_dir(str(manifest))))
    counts = phase_counts(train_dir(str(manifest)))
    resolved = resolve_epochs(cfg, counts).curriculum
    assert [p.name for p in plan.phases] == ["modality", "anatomy", "localization", "abnormality", "grading"]
    for i, p in enumerate(plan.phases):
        own_rows = sum(counts.get(tag, 0) for tag in resolved.phases[i].data)  # epochs count the phase's own rows
        assert p.rows == expected_rows(counts, resolved.mix(i, counts)) > 0
        assert p.steps == max(1, math.floor(10 * own_rows / 8192)) and p.epochs_given == 10
        assert f"{p.name}" in out and p.loss == "siglip"
    assert plan.total_steps == sum(p.steps for p in plan.phases) and plan.gpus == 4
    assert plan.phases[0].lr_start == pytest.approx(1e-4 / 2)  # step 1 of a 2-step warm-up
    # the data-stream sizing section (platform/sizing.py): no GPU rate given, so cores per 1,000 images/s
    assert "data stream sizing:\n  GPU step rate not given: each 1,000 images/s per GPU needs 2.5 decode cores" in out
    plan.sections["sizing"] = ["decode: 1 core per 300 images/s"]
    from radisim.platform.train.plan import format_plan

    assert "sizing:\n  decode" in format_plan(plan)


def test_warmup_longer_than_the_resolved_schedule_is_named(manifest, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="warmup_steps \\(2000\\) exceeds"):
        train_job.main(["--dry-run", "--config", RECIPE, "--set", f"data.root={manifest}"])


def test_epochs_resolve_to_the_same_steps_in_every_ordering(manifest):
    """Equal budgets: epochs are turned into steps on the written order, then the ordering permutes."""
    from radisim.platform.config import load_job_config
    from radisim.platform.train.plan import resolve_epochs
    from radisim.platform.train.runner import budget

    counts = phase_counts(train_dir(str(manifest)))
    spec = "{name: e, phases: [{name: modality, epochs: 2}, {name: anatomy, epochs: 1}, {name: grading, epochs: 3}]}"
    budgets = set()
    for ordering in ("curriculum", "anti_curriculum", "random_order"):
        cfg = load_job_config(overrides=[f"curriculum={spec}", f"curriculum.ordering={ordering}",
                                         "train.batch_size=4"])
        budgets.add(budget(resolve_epochs(cfg, counts))["budget/optimizer_steps"])
    assert len(budgets) == 1
    with pytest.raises(ValueError, match="either `steps` or `epochs`"):
        load_job_config(overrides=["curriculum={name: x, phases: [{name: modality, steps: 2, epochs: 1}]}"])
    with pytest.raises(ValueError, match="resolve them into steps"):
        load_job_config(overrides=[f"curriculum={spec}"]).curriculum.total_steps
