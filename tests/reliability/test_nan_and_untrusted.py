"""A NaN loss stops the phase with an error naming phase and step and keeps the last good checkpoint;
checkpoints and configs cannot execute code."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from helpers import phase_runs, run_train
from radisim.platform.config import ConfigError, load_job_config
from radisim.platform.models import load_clip, save_checkpoint
from radisim.platform.models.factory import WEIGHTS_FILE


@pytest.mark.slow
def test_nan_loss_stops_the_phase_and_keeps_the_last_good_checkpoint(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_train(tmp_path, uri, ["--set", "tracking.experiment=nan", "--set", "train.debug_nan_at_step=5",
                                     "--set", "train.max_failures=3"])
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "phase 'modality' (phase 1) stopped: non-finite loss at step 5" in out
    assert out.count("non-finite loss at step 5: stopping the phase") == 1  # not retried max_failures times
    runs = phase_runs(MlflowClient(uri), "nan")
    assert runs["modality"].info.status == "FAILED" and "anatomy" not in runs
    ckpts = sorted(Path(tmp_path, "radisim_work", "ray_results").glob("*-p1-modality/checkpoint_*/radisim.json"))
    assert ckpts, "no checkpoint kept"
    assert max(json.loads(c.read_text())["step"] for c in ckpts) == 4  # the last good one (every 2 steps)


class _Exploit:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/radisim-pwned"), "pwned"))


def test_checkpoint_loading_never_unpickles_code(tmp_path):
    Path("/tmp/radisim-pwned").unlink(missing_ok=True)
    save_checkpoint(load_clip("radisim-tiny").model, "radisim-tiny", tmp_path)
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    state["payload"] = _Exploit()
    with open(tmp_path / WEIGHTS_FILE, "wb") as f:
        pickle.dump(state, f)
    with pytest.raises(pickle.UnpicklingError):
        load_clip("radisim-tiny", checkpoint=tmp_path)
    assert not Path("/tmp/radisim-pwned").exists()


def test_configs_cannot_name_python(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: !!python/object/apply:os.system ['touch /tmp/radisim-pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job_config(bad)
    for override, field in (("curriculum.pacing.name=os.system", "pacing"),
                            ("curriculum.ordering=builtins.eval", "ordering"),
                            ("ablate.orderings=[subprocess.run]", "orderings")):
        with pytest.raises(ConfigError, match=field):
            load_job_config(overrides=[override])
    assert not Path("/tmp/radisim-pwned").exists()
