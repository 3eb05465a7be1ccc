"""The final checkpoint of a curriculum run becomes a version of its curriculum's registered model, with
the stage scores as metadata; real MLflow sqlite store."""
from __future__ import annotations

from types import SimpleNamespace

from radisim.platform.config import load_job_config
from radisim.platform.tracking import Tracker
from radisim.platform.train.runner import PhaseOutcome, register_final_model


def test_final_model_is_registered_per_curriculum_with_stage_scores(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = load_job_config(overrides=["curriculum={name: tiny_cl, description: two phases, phases: [{name: modality, steps: 2}]}",
                                     f"tracking.tracking_uri={uri}"])
    tracker = Tracker("reg", uri)
    parent = tracker.start_run("run")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for n in (1, 2):
        last = PhaseOutcome(1, "modality", "child", SimpleNamespace(path=str(ckpt)), {},
                            eval_metrics={"stage1/score": 0.25 * n, "stage1/br35h/auc": 0.9, "stage2/score": 0.5})
        register_final_model(cfg, tracker, parent, last, "run")
    versions = tracker.client.search_model_versions("name='radisim-tiny_cl'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    v2 = next(v for v in versions if str(v.version) == "2")
    assert v2.tags["stage1/score"] == "0.5" and v2.tags["stage2/score"] == "0.5" and "stage1/br35h/auc" not in v2.tags
    assert v2.source == str(ckpt) and v2.run_id == parent and v2.tags["format"] == "open_clip local-dir"
    assert tracker.client.get_run(parent).data.tags["radisim.registered_model"] == "radisim-tiny_cl/2"
    assert "registered model radisim-tiny_cl version 2" in capsys.readouterr().out
