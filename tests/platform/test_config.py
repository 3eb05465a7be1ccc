"""Config validation: bad values fail at load with the dotted field name, before Ray starts."""
from __future__ import annotations

import pytest

from radisim.platform.config import ConfigError, apply_override, flatten, load_job_config


def test_defaults_are_the_embedded_laptop_setting():
    cfg = load_job_config()
    assert cfg.model.name == "radisim-tiny"
    assert [p.name for p in cfg.curriculum.phases] == ["modality", "anatomy", "localization", "abnormality", "grading"]
    assert cfg.train.max_failures > 0  # fault tolerance is on by default
    assert cfg.tracking.tracking_uri is None  # -> $MLFLOW_TRACKING_URI or ./mlflow.db


def test_overrides_reach_lists_and_wildcards():
    cfg = load_job_config(overrides=["curriculum.phases.*.steps=7", "curriculum.phases.*.warmup_steps=1",
                                     "curriculum.phases.2.lr=3e-4", "train.num_workers=2"])
    assert [p.steps for p in cfg.curriculum.phases] == [7] * 5
    assert cfg.curriculum.phases[2].lr == pytest.approx(3e-4)
    assert cfg.train.num_workers == 2
    assert cfg.curriculum.total_steps == 35


@pytest.mark.parametrize("override, field", [
    ("curriculum.phases.2.lr=-1", "curriculum.phases.2.lr"),
    ("train.batchsize=3", "train.batchsize"),
    ("train.batch_size=zero", "train.batch_size"),
    ("curriculum.phases.0.replay=0.5", "phases.0.replay"),
    ("curriculum.phases.1.data=[anatomy, spleen]", "curriculum.phases.1"),
    ("curriculum.phases.0.loss=triplet", "curriculum.phases.0.loss"),
    ("train.precision=bf16", "train.precision"),
    ("curriculum.phases.9.steps=3", "curriculum.phases"),
    ("curriculum=no_such_spec", "no_such_spec"),
    ("data.phantom.cohort_fraction=1.5", "data.phantom.cohort_fraction"),
])
def test_bad_values_name_their_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_job_config(overrides=[override])
    assert field in str(err.value)


def test_yaml_file_and_errors(tmp_path):
    good = tmp_path / "job.yaml"
    good.write_text("train:\n  batch_size: 8\ncurriculum: radisim_cl\n")
    assert load_job_config(good).train.batch_size == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_job_config(tmp_path / "missing.yaml")


def test_duplicate_phase_names_rejected():
    with pytest.raises(ConfigError, match="unique"):
        load_job_config(overrides=["curriculum.phases.1.name=modality"])


def test_apply_override_and_flatten():
    tree = {"a": [{"x": 1}, {"x": 2}]}
    apply_override(tree, "a.*.x", 5)
    apply_override(tree, "b.c", "d")
    assert tree == {"a": [{"x": 5}, {"x": 5}], "b": {"c": "d"}}
    assert flatten(tree) == {"a.0.x": 5, "a.1.x": 5, "b.c": "d"}
