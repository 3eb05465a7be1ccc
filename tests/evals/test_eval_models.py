"""Model families beside open_clip: tiny random Hugging Face CLIP and SigLIP models (built from configs
offline, save_pretrained into a temporary folder) evaluated end to end through `radisim evaluate`,
and the exit-2 error for a transformers model that is not on disk."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import real_replicas as rr


def evaluate(*args: str, cwd, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radisim.jobs.evaluate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(env or {})})


def test_transformers_models_embed_normalised_and_key_the_cache_by_their_version(hf_models):
    import transformers
    from PIL import Image

    from radisim.evals.embed import ModelRef
    from radisim.evals.models import TransformersModel

    for kind, path in hf_models.items():
        model = ModelRef(str(path), family="transformers").load()
        assert isinstance(model, TransformersModel) and model.model_type == kind
        assert model.describe()["transformers"] == transformers.__version__
        texts = model.encode_texts(["a CT scan of the liver", "an MR image of the knee"])
        images = model.encode_images([Image.new("RGB", (40, 50), (30, 60, 90)), Image.new("RGB", (20, 20), (200, 10, 0))])
        np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
        assert texts.shape[1] == images.shape[1] and not np.allclose(texts[0], texts[1])
    clip = ModelRef(str(hf_models["clip"]), family="transformers").load()
    assert clip.fingerprint != ModelRef(str(hf_models["siglip"]), family="transformers").load().fingerprint


def test_missing_transformers_model_offline_exits_2(tmp_path):
    proc = evaluate("--model", "transformers:nobody/not-downloaded", "--smoke", cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot load model transformers:nobody/not-downloaded" in proc.stderr
    assert "huggingface-cli download nobody/not-downloaded" in proc.stderr


@pytest.mark.slow
def test_tiny_transformers_clip_and_siglip_evaluate_end_to_end(hf_models, tmp_path):
    from mlflow.tracking import MlflowClient

    from radisim.evals.predictions import load_run_predictions

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    clip, siglip = (f"transformers:{hf_models[k]}" for k in ("clip", "siglip"))
    proc = evaluate("--source", "real", "--root", f"br35h={rr.br35h(tmp_path / 'br35h')}",
                    "--root", f"mrnet={rr.mrnet(tmp_path / 'mrnet')}", "--model", clip, "--model", siglip,
                    "--reference", clip, "--set", "eval.n_bootstrap=100", "--set", "tracking.experiment=hf",
                    "--set", "ray.num_cpus=2", "--set", "ray.object_store_mb=128",
                    cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{siglip} - {clip}, paired difference" in proc.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("hf").experiment_id])
    models = {r.data.tags["model"]: r for r in runs if r.data.tags.get("kind") == "model"}
    assert set(models) == {clip, siglip} and models[siglip].data.tags["model.family"] == "transformers"
    for run in models.values():
        m = run.data.metrics
        for key in ("stage4/br35h/auc", "stage4/mrnet_acl/auc", "stage4/mrnet_meniscus/auc", "stage4/score"):
            assert np.isfinite(m[key]), key
        assert sorted(load_run_predictions(uri, run.info.run_id)) == ["br35h", "mrnet_acl", "mrnet_meniscus"]
    paired = models[siglip].data.metrics
    assert paired["stage4/score_delta"] == pytest.approx(
        models[siglip].data.metrics["stage4/score"] - models[clip].data.metrics["stage4/score"])


@pytest.mark.slow
@pytest.mark.parametrize("family, build, a_file", [("pmc-clip", "build_pmc_clip", "text_projection_layer.pth"),
                                                    ("medclip", "build_medclip", "pytorch_model.bin")])
def test_pmc_clip_and_medclip_release_layouts_evaluate(family, build, a_file, ray_session, tmp_path):
    """Tiny models in PMC-CLIP's and MedCLIP's published file layouts, through the suite on a replica;
    a missing release file is the loader's clear error (the CLI turns it into exit 2)."""
    import hf_models as hf

    from radisim.evals.embed import ModelRef
    from radisim.evals.suite import run_suite

    ref = ModelRef(str(getattr(hf, build)(tmp_path / family)), family=family)
    result = run_suite(ref, subtasks=["br35h"], source="real", roots={"br35h": rr.br35h(tmp_path / "br35h")},
                       cache_dir=tmp_path / "cache", n_bootstrap=50, driver_max_images=100)
    assert np.isfinite(result.metrics["stage4/br35h/auc"]) and result.model_fingerprint
    assert result.subtasks["br35h"].scores.shape == (5,)
    (tmp_path / family / a_file).unlink()
    with pytest.raises(RuntimeError, match=rf"missing \['{a_file}'\]"):
        ref.load()
