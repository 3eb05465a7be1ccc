"""cluster.yaml is a valid Ray cluster-launcher config: checked with Ray's own schema and the same
preparation `ray up` runs (defaults filled in, setup commands merged), without touching a cloud."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_raw_config_matches_rays_json_schema(cluster):
    import jsonschema
    import ray.autoscaler
    import json

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_prepared_config_passes_validate_config(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    # what `ray up` would run on a worker: the project's install comes first, before Ray starts
    worker_type = prepared["available_node_types"]["gpu_g5"]
    assert worker_type["resources"]["GPU"] == 4
    assert prepared["head_node_type"] == "head"


def test_gpu_workers_autoscale_and_project_is_pinned(cluster):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    gpu_types = {k: v for k, v in cluster["available_node_types"].items() if v.get("resources", {}).get("GPU")}
    assert gpu_types and all(t["min_workers"] == 0 < t["max_workers"] for t in gpu_types.values())
    setup = " ".join(cluster["setup_commands"])
    assert f"radisim-{version}-py3-none-any.whl" in setup, "setup_commands must install the pinned radisim version"
    pinned_ray = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                  if d.startswith("ray[")][0].split("==")[1]
    assert cluster["docker"]["image"].startswith(f"rayproject/ray:{pinned_ray}-"), "image Ray must match pyproject"
    run_options = " ".join(cluster["docker"]["run_options"])
    assert "MLFLOW_TRACKING_URI=" in run_options
    assert all("RAY_AUTH_MODE=token" in " ".join(cmds)
               for cmds in (cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]))


def test_cluster_job_config_loads_and_uses_s3_and_gpus():
    from radisim.platform.config import load_job_config

    cfg = load_job_config(ROOT / "jobs" / "configs" / "cluster.yaml")
    assert cfg.train.use_gpu and cfg.train.storage_path.startswith("s3://")
    assert cfg.model.name == "radisim-vit-b16"
