"""Ray Train storage and data manifests on S3-compatible object storage (a local `moto` server via
AWS_ENDPOINT_URL, dummy credentials), through pyarrow filesystems — the same code paths as on S3."""
from __future__ import annotations


import pytest

from services import BUCKET, EXPERIMENT, TWO_PHASE_NAMES, s3_keys


@pytest.mark.slow
def test_train_smoke_checkpoints_land_in_bucket(cloud_run):
    """conftest.py's run wrote its Ray Train storage to s3://BUCKET/ray; each phase resumed from the
    previous phase's checkpoint there, and the final evaluation read the last one back."""
    from mlflow.tracking import MlflowClient

    keys = s3_keys(cloud_run["s3_env"]["AWS_ENDPOINT_URL"], BUCKET, "ray/")
    (run_name,) = {k.split("/")[1] for k in keys if k.endswith("/radisim_run.json")}
    assert any(k.startswith(f"ray/{run_name}/init/") and k.endswith("open_clip_pytorch_model.bin") for k in keys)
    for i, phase in enumerate(TWO_PHASE_NAMES, 1):
        ckpts = [k for k in keys if k.startswith(f"ray/{run_name}-p{i}-{phase}/checkpoint_")]
        assert any(k.endswith("open_clip_pytorch_model.bin") for k in ckpts), (phase, sorted(keys)[:50])
        assert any(k.endswith("train_state.pt") for k in ckpts)
    client = MlflowClient(cloud_run["uri"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and -1 <= parent.data.metrics["stage1/score"] <= 1  # chance-normalised
    assert 0 <= parent.data.metrics["stage1/score_raw"] <= 1


@pytest.mark.slow
def test_phase_manifests_read_from_s3(s3, tmp_path, monkeypatch):
    """data.root on s3://: the phase counts and the Ray Data phase stream read the bucket directly."""
    import pyarrow.fs as pafs

    from radisim.curriculum.phantom import write_phantom_dataset
    from radisim.platform.data.pipeline import phase_counts, phase_dataset, train_dir

    env = s3
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    local = tmp_path / "phantom"
    write_phantom_dataset(local, n_train_images=40, n_eval_images=10, seed=0, size=32, progress=False)
    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/data/phantom")
    pafs.copy_files(str(local), path, destination_filesystem=fs)
    remote = f"s3://{BUCKET}/data/phantom"
    counts = phase_counts(train_dir(remote))
    assert counts == phase_counts(train_dir(str(local))) and sum(counts.values()) > 0

    import ray

    if ray.is_initialized():  # another test module's session-wide Ray lacks this test's S3 environment
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {k: v for k, v in env.items()}})
    try:
        ds = phase_dataset(train_dir(remote), {"modality": 1.0}, image_size=32, model_name="radisim-tiny")
        assert ds.count() == counts["modality"]
    finally:
        ray.shutdown()
