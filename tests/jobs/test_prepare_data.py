"""`radisim prepare-data` on the phantom: written once per generator setting, rewritten when one changes."""
from __future__ import annotations

import json

from radisim.jobs.prepare_data import phantom_ready, prepare_phantom
from radisim.platform.config import load_job_config


def _cfg(root, *sets):
    return load_job_config(overrides=[f"data.root={root}", "data.phantom.n_train_images=12",
                                      "data.phantom.n_eval_images=10", "data.phantom.size=32", *sets])


def test_phantom_is_rewritten_only_when_a_setting_changes(tmp_path, capsys):
    root = tmp_path / "phantom"
    cfg = _cfg(root)
    assert cfg.data.phantom.cohort_fraction == 0.25 and not phantom_ready(cfg)
    card = prepare_phantom(cfg)
    assert card["cohort_fraction"] == 0.25
    assert [card["splits"][s]["cohort_images"] for s in ("train", "eval")] == [3, 2]
    assert phantom_ready(cfg)
    written = (root / "data_card.json").stat().st_mtime_ns
    assert prepare_phantom(cfg) == card and "already in" in capsys.readouterr().out
    assert (root / "data_card.json").stat().st_mtime_ns == written

    plain = _cfg(root, "data.phantom.cohort_fraction=0")
    assert not phantom_ready(plain)  # a different cohort share is a different dataset
    card = prepare_phantom(plain)
    assert json.loads((root / "data_card.json").read_text())["cohort_fraction"] == 0.0
    assert [card["splits"][s]["cohort_images"] for s in ("train", "eval")] == [0, 0]


def test_train_job_knows_before_ray_starts_what_makes_its_data(tmp_path, monkeypatch):
    """`jobs.train.data_writer`: the demo (re)makes the phantom, the embedded default's roots are made on
    first use, any other root must exist already (an error before Ray starts), a ready one needs nothing."""
    import pytest

    from radisim.jobs.train import data_writer

    monkeypatch.chdir(tmp_path)
    elsewhere = _cfg(tmp_path / "mine")
    with pytest.raises(SystemExit, match="has no train/ manifests"):
        data_writer(elsewhere)
    write = data_writer(elsewhere, phantom=True)
    assert callable(write) and not phantom_ready(elsewhere)
    write()
    assert phantom_ready(elsewhere) and data_writer(elsewhere) is None
    default = _cfg("radisim_work/data/phantom")
    write = data_writer(default)
    assert callable(write)
    write()
    assert (tmp_path / "radisim_work/data/phantom/train").is_dir() and data_writer(default) is None
