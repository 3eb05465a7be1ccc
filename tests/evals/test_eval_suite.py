import time

import numpy as np
import pytest
import torch

from radisim.evals import embed as embed_mod
from radisim.evals import suite as suite_mod
from radisim.evals import zeroshot
from radisim.evals.datasets import load_examples
from radisim.evals.suite import ModelRef, run_suite
from radisim.evals.tasks import get_subtask, subtasks
from radisim.platform.models import load_clip, save_checkpoint


def test_full_suite_on_random_tiny_checkpoint_is_finite_with_ordered_cis(suite_runs):
    result = suite_runs["cold"]
    m = result.metrics
    for task in subtasks():
        for name in task.metrics:
            key = task.key(name)
            assert np.isfinite([m[key], m[f"{key}_ci_low"], m[f"{key}_ci_high"]]).all(), key
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key
            assert 0.0 <= m[key] <= 1.0, key
        sub = result.subtasks[task.id]
        assert len(sub.y_true) == len(sub.scores) and sub.classes == task.classes
        for name in task.metrics:  # chance-normalised: (m - chance) / (1 - chance)
            chance = m[task.key(f"{name}_chance")]
            assert m[task.key(f"{name}_norm")] == pytest.approx((m[task.key(name)] - chance) / (1 - chance))
        assert m[task.key("n_cases")] == m[task.key("n_images")] == len(sub.y_true)  # phantom: one image per case
    assert m["stage3/chaos_ct/accuracy_chance"] == 0.25 and m["stage1/modality/accuracy_chance"] == pytest.approx(1 / 3)
    assert m["stage4/br35h/auc_chance"] == 0.5
    assert sorted(result.stage_scores) == [1, 2, 3, 4, 5] and result.undefined == []
    for stage, score in result.stage_scores.items():
        normalised = [m[t.key(t.metric + "_norm")] for t in subtasks(stage=stage)]
        assert score == pytest.approx(np.mean(normalised))
        assert m[f"stage{stage}/score_raw"] == pytest.approx(np.mean([m[t.key(t.metric)] for t in subtasks(stage=stage)]))
        assert m[f"stage{stage}/n_covered"] == m[f"stage{stage}/n_subtasks"] == len(normalised)
        low, high = m[f"stage{stage}/score_ci_low"], m[f"stage{stage}/score_ci_high"]
        assert low <= score <= high and high - low < 1.0
        # the stage's resamples are its subtasks' resamples averaged, so its CI is narrower than theirs
        assert high - low <= max(m[t.key(t.metric) + "_norm_ci_high"] - m[t.key(t.metric) + "_norm_ci_low"]
                                 for t in subtasks(stage=stage)) + 1e-9
        assert result.stage_resamples[stage].shape == (1000,)
    assert len(m) == 6 * 5 + sum(7 * len(t.metrics) + 3 for t in subtasks())


def test_stage_gains_are_paired_over_the_same_resamples(suite_runs):
    from dataclasses import replace

    from radisim.evals.suite import stage_gains

    base = suite_runs["cold"]
    assert set(stage_gains(base, base).values()) == {0.0}  # itself: every resample's difference is 0
    # a model that scores 0.1 higher on every resample gains 0.1 with a CI of exactly 0.1
    better = replace(base, metrics={**base.metrics, **{f"stage{s}/score": v + 0.1 for s, v in base.stage_scores.items()}},
                     stage_resamples={s: r + 0.1 for s, r in base.stage_resamples.items()})
    gains = stage_gains(better, base)
    for s in range(1, 6):
        assert gains[f"stage{s}/gain"] == pytest.approx(0.1)
        assert gains[f"stage{s}/gain_ci_low"] == pytest.approx(0.1) == gains[f"stage{s}/gain_ci_high"]
    # other examples (here: other labels) cannot be paired: no gain at all rather than a wrong one
    other = replace(base, subtasks={k: replace(r, y_true=r.y_true[::-1].copy()) if r.subtask.stage == 2 else r
                                    for k, r in base.subtasks.items()})
    assert stage_gains(better, other) == {}


def test_second_run_is_served_from_the_cache(suite_runs, monkeypatch):
    cold, warm = suite_runs["cold"], suite_runs["warm"]
    assert list(cold.cache_hits.values()) == [False] and list(warm.cache_hits.values()) == [True]
    assert warm.metrics == cold.metrics  # same embeddings, same seeded bootstrap
    print(f"\n[evals] cold {suite_runs['walls'][0]:.1f} s vs cached {suite_runs['walls'][1]:.1f} s")

    def must_not_run(*args, **kwargs):
        raise AssertionError("embeddings recomputed despite a warm cache")

    monkeypatch.setattr(embed_mod, "compute_embeddings", must_not_run)
    again = run_suite(suite_runs["ref"], subtasks=["modality", "br35h"], data_root=suite_runs["data_root"],
                      cache_dir=suite_runs["cache"], n_bootstrap=200)
    assert again.metrics["stage1/modality/accuracy"] == cold.metrics["stage1/modality/accuracy"]


def test_driver_embeddings_equal_the_ray_data_ones(suite_runs, monkeypatch):
    ref = suite_runs["ref"]
    pool = load_examples("phantom", suite_runs["data_root"], get_subtask("modality")).pool
    bundle = ref.load()
    t = time.perf_counter()
    via_ray = embed_mod.compute_embeddings(ref, pool, bundle.fingerprint, bundle=bundle, driver_max_images=0)
    ray_s = time.perf_counter() - t

    import ray

    def no_ray_data(*args, **kwargs):
        raise AssertionError("a small pool on a CPU cluster should not go through Ray Data")

    monkeypatch.setattr(ray.data, "from_arrow", no_ray_data)
    t = time.perf_counter()
    here = embed_mod.compute_embeddings(ref, pool, bundle.fingerprint, bundle=bundle, driver_max_images=len(pool))
    print(f"\n[evals] {len(pool)} images embedded through Ray Data {ray_s:.1f} s, in the driver {time.perf_counter() - t:.1f} s")
    assert here.shape == via_ray.shape == (len(pool), bundle.model.text_projection.shape[1])
    np.testing.assert_allclose(here, via_ray, atol=1e-5)
    with pytest.raises(AssertionError, match="should not go through Ray Data"):  # above the limit: Ray Data
        embed_mod.compute_embeddings(ref, pool, bundle.fingerprint, bundle=bundle, driver_max_images=len(pool) - 1)


def test_changed_checkpoint_changes_the_cache_key(suite_runs, tmp_path, monkeypatch):
    ref = suite_runs["ref"]
    bundle = ref.load()
    with torch.no_grad():
        next(bundle.model.visual.parameters()).add_(1e-3)  # any image-tower weight
    changed = ModelRef("radisim-tiny", checkpoint=str(save_checkpoint(bundle.model, "radisim-tiny", tmp_path / "c2")))
    fp_old, fp_new = suite_runs["cold"].model_fingerprint, changed.load().fingerprint
    assert fp_old != fp_new
    pool = load_examples("phantom", suite_runs["data_root"], get_subtask("modality")).pool
    assert embed_mod.cache_key(embed_mod.cache_note(ref.load(), ref, pool)) != \
        embed_mod.cache_key(embed_mod.cache_note(changed.load(), changed, pool))
    calls = []

    def fake_compute(model_ref, pool, *args, **kwargs):
        calls.append(model_ref)
        return np.random.default_rng(0).normal(size=(len(pool), 128)).astype(np.float32)

    monkeypatch.setattr(embed_mod, "compute_embeddings", fake_compute)
    result = run_suite(changed, subtasks=["modality"], data_root=suite_runs["data_root"],
                       cache_dir=suite_runs["cache"], n_bootstrap=10)
    assert calls == [changed] and result.cache_hits == {next(iter(result.cache_hits)): False}


@pytest.mark.parametrize("subtask_id", ["modality", "br35h", "chaos_mr"])
def test_oracle_embeddings_score_perfectly(subtask_id, phantom_root, tiny_checkpoint, monkeypatch):
    """Image embedding := the text embedding of its true class -> accuracy and AUC 1.0 (scoring path)."""
    ref = ModelRef("radisim-tiny", checkpoint=str(tiny_checkpoint))
    task = get_subtask(subtask_id)
    ex = load_examples("phantom", phantom_root, task)
    encoder = zeroshot.make_text_encoder(ref.load())
    oracle = np.zeros((len(ex.pool), 128), np.float32)
    for i, (row, y) in enumerate(zip(ex.rows, ex.y)):
        query = None if ex.queries is None else ex.queries[i]
        oracle[row] = zeroshot.classifier(task, encoder, query=query)[y]

    monkeypatch.setattr(suite_mod, "embed_pool", lambda *a, **k: (oracle, False))
    m = run_suite(ref, subtasks=[subtask_id], data_root=phantom_root, cache_dir=None, n_bootstrap=100).metrics
    assert m[task.key("accuracy")] == 1.0 and m[task.key("auc")] == 1.0
    assert m[task.key("macro_f1")] == 1.0 and m[f"stage{task.stage}/score"] == 1.0


def test_multilabel_scores_are_per_organ_probabilities(phantom_root, tiny_checkpoint):
    bundle = load_clip("radisim-tiny", checkpoint=tiny_checkpoint)
    task = get_subtask("totalseg_ct_organs")
    emb = np.random.default_rng(0).normal(size=(7, 128))
    scores = zeroshot.score(task, emb, zeroshot.make_text_encoder(bundle), zeroshot.logit_scale_of(bundle.model))
    assert scores.shape == (7, len(task.classes)) and ((scores > 0) & (scores < 1)).all()


def test_cache_entries_cannot_go_stale(suite_runs, tmp_path, monkeypatch):
    """The key holds the open_clip version, the preprocess and the embedding-code version, and the note
    next to the array is checked on read: a changed one, a missing one, or a foreign array of the right
    row count is recomputed, never served."""
    import json

    from radisim.evals.models import OpenClipModel

    ref = suite_runs["ref"]
    model = ref.load()
    pool = load_examples("phantom", suite_runs["data_root"], get_subtask("modality")).pool
    note = embed_mod.cache_note(model, ref, pool)
    import open_clip

    assert note["model.open_clip"] == open_clip.__version__ and "Normalize" in note["model.preprocess"]
    assert note["embed_code_version"] == embed_mod.EMBED_CODE_VERSION
    calls = []

    def fake_compute(model_ref, pool, *args, **kwargs):
        calls.append(1)
        return np.full((len(pool), 8), float(len(calls)), np.float32)

    monkeypatch.setattr(embed_mod, "compute_embeddings", fake_compute)
    embed = lambda m: embed_mod.embed_pool(ref, pool, m.fingerprint, tmp_path, bundle=m)  # noqa: E731
    first, hit = embed(model)
    assert not hit and embed(model)[1] and len(calls) == 1
    for bump in ("version", "preprocess", "code"):
        if bump == "version":
            monkeypatch.setattr(open_clip, "__version__", "0.0.0")
        elif bump == "preprocess":
            monkeypatch.setattr(OpenClipModel, "describe", lambda self: {"family": "open_clip", "preprocess": "other"})
        else:
            monkeypatch.setattr(embed_mod, "EMBED_CODE_VERSION", "999")
        assert embed(model)[1] is False  # a new key: computed again
    n_before = len(calls)
    monkeypatch.undo()
    monkeypatch.setattr(embed_mod, "compute_embeddings", fake_compute)
    path = tmp_path / f"{embed_mod.cache_key(note)}.npy"
    np.save(path, np.zeros((len(pool), 8), np.float32))  # someone else's array, right row count
    (tmp_path / f"{embed_mod.cache_key(note)}.json").write_text(json.dumps({"note": {**note, "n": "1"}}))
    again, hit = embed(model)
    assert not hit and len(calls) == n_before + 1 and again[0, 0] == len(calls)
    path.with_suffix(".json").unlink()  # an array without its note
    assert embed(model)[1] is False


def test_an_undefined_metric_is_reported_and_the_stage_shows_its_coverage():
    """A subtask whose test set holds one class has no AUC: the stage averages the others, says "1/2",
    and the undefined key is listed, instead of the subtask silently dropping out."""
    from radisim.evals.datasets import Examples, ImagePool
    from radisim.evals.report import format_stage_table
    from radisim.evals.suite import score_subtask, stage_summaries

    rng = np.random.default_rng(0)

    def examples(task, y):
        pool = ImagePool("x", tuple(f"i{k}" for k in range(len(y))), [b""] * len(y))
        return Examples(pool, np.arange(len(y)), np.asarray(y), task.classes, cases=np.asarray(pool.image_ids, dtype=object))

    br35h, ich = get_subtask("br35h"), get_subtask("ct_ich")
    results = {"br35h": score_subtask(br35h, examples(br35h, [0, 1] * 10), rng.random(20), 100, 0),
               "ct_ich": score_subtask(ich, examples(ich, [1] * 20), rng.random(20), 100, 0)}  # positives only
    flat, resamples = stage_summaries(results, 100)
    assert not np.isfinite(results["ct_ich"].values["auc"])
    assert flat["stage4/n_subtasks"] == 2 and flat["stage4/n_covered"] == 1
    assert flat["stage4/score"] == pytest.approx(results["br35h"].metrics["stage4/br35h/auc_norm"])
    assert resamples[4].shape == (100,)
    table = format_stage_table({"m": flat})
    assert f"{flat['stage4/score']:.3f} 1/2" in table
