"""What the driver and the Train worker do side by side: the evaluation of phase N while phase N+1's fit
starts (runner), and the first batch of a phase's stream while the model loads (loop). Real MLflow
store, real run state and checkpoints; the fit itself is replaced, so no Ray starts."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from radisim.platform.config import load_job_config
from radisim.platform.train import loop, runner

PHASES = ["modality", "anatomy", "localization"]


class Journal:
    """Who did what, when, on which thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, str]] = []
        self.fit_started = {i: threading.Event() for i in range(len(PHASES))}

    def add(self, what: str, label: str) -> None:
        with self.lock:
            self.events.append((what, label, threading.current_thread().name))

    def index(self, what: str, label: str) -> int:
        return next(n for n, (w, lab, _) in enumerate(self.events) if (w, lab) == (what, label))


@pytest.fixture
def fake_fits(monkeypatch, tmp_path):
    """`fit_phase` replaced by a 0.3 s fit that writes a real checkpoint directory."""
    from ray.train import Checkpoint

    journal = Journal()
    monkeypatch.setattr(runner, "phase_counts", lambda _: {p: 100 for p in PHASES})

    def fit_phase(cfg, index, mix, loop_config, run_name, image_size):
        label = runner.phase_label(index, PHASES[index])
        journal.add("fit-start", label)
        journal.fit_started[index].set()
        time.sleep(0.3)
        out = tmp_path / "ckpt" / label
        out.mkdir(parents=True)
        (out / "weights").write_text(label)
        journal.add("fit-end", label)
        return SimpleNamespace(checkpoint=Checkpoint.from_directory(str(out)), metrics={"train/loss": 1.0})

    monkeypatch.setattr(runner, "fit_phase", fit_phase)
    return journal


def small_config(tmp_path, *overrides):
    spec = "{name: t, phases: [" + ", ".join(f"{{name: {p}, steps: 2}}" for p in PHASES) + "]}"
    return load_job_config(overrides=[f"curriculum={spec}", f"train.storage_path={tmp_path / 'store'}",
                                      f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
                                      f"data.root={tmp_path / 'data'}", *overrides])


def evaluator_for(journal: Journal, wait_for_next_fit: bool):
    def evaluate(checkpoint_dir: str, label: str) -> dict[str, float]:
        journal.add("eval-start", label)
        nxt = runner.phase_number(label)  # the index of the next phase
        if wait_for_next_fit and nxt < len(PHASES):
            assert journal.fit_started[nxt].wait(30), f"{label}: the next fit never started"
        journal.add("eval-end", label)
        return {"stage1/score": 0.1 * (nxt + 1)}
    return evaluate


def test_each_evaluation_runs_while_the_next_fit_starts(fake_fits, tmp_path):
    journal = fake_fits
    seen: list[tuple[list[str], str]] = []
    result = runner.run_curriculum(small_config(tmp_path), evaluate=evaluator_for(journal, True),
                                   on_evaluation=lambda ev: seen.append(([lab for lab, _ in ev],
                                                                         threading.current_thread().name)))
    labels = [runner.UNTRAINED] + [runner.phase_label(i, p) for i, p in enumerate(PHASES)]
    # on_evaluation: phase order, always from the caller's thread
    assert [s[0] for s in seen] == [labels[: n + 1] for n in range(len(labels))]
    assert {s[1] for s in seen} == {threading.current_thread().name}
    for n, label in enumerate(labels[:-1]):  # the untrained model's during fit 1, phase N's during fit N+1
        nxt = labels[n + 1]
        assert journal.index("fit-start", nxt) < journal.index("eval-end", label) < journal.index("fit-end", nxt)
    evals = [e for e in journal.events if e[0] == "eval-start"]
    fits = [e for e in journal.events if e[0] == "fit-start"]
    assert {e[2] for e in evals} == {threading.current_thread().name}
    assert all(e[2].startswith("radisim-fit") for e in fits)
    # the record is the same as one after the other: every phase evaluated, run tree finished
    assert [lab for lab, _ in result.evaluations] == labels
    state = runner.RunState.load_or_new(
        str(tmp_path / "store" / result.run_name / runner.RUN_STATE_FILE), runner.config_hash(small_config(tmp_path)))
    assert state.finished and state.untrained and all(state.phases[str(i)]["evaluated"] for i in range(len(PHASES)))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("radisim-cl").experiment_id])
    assert len(runs) == 1 + len(PHASES) and all(r.info.status == "FINISHED" for r in runs)
    child = next(r for r in runs if r.data.tags.get("phase") == "anatomy")
    assert child.data.metrics["stage1/score"] == pytest.approx(0.3)


def test_overlap_off_keeps_evaluation_and_fit_in_turn(fake_fits, tmp_path):
    journal = fake_fits
    result = runner.run_curriculum(small_config(tmp_path, "eval.overlap=false"),
                                   evaluate=evaluator_for(journal, False))
    order = [(w, lab) for w, lab, _ in journal.events]
    assert order == [("eval-start", "untrained"), ("eval-end", "untrained")] + [
        step for i, p in enumerate(PHASES) for lab in [runner.phase_label(i, p)]
        for step in [("fit-start", lab), ("fit-end", lab), ("eval-start", lab), ("eval-end", lab)]]
    assert all(name == threading.current_thread().name for *_, name in journal.events)
    assert len(result.evaluations) == 1 + len(PHASES)


def test_fit_with_waits_for_the_fit_and_its_error_wins():
    finished = threading.Event()

    def fit(x):
        time.sleep(0.2)
        finished.set()
        return x * 2

    assert runner._fit_with(None, fit, 2) == 4
    assert runner._fit_with(lambda: None, fit, 3) == 6

    def bad_eval():
        raise ValueError("evaluation failed")

    finished.clear()
    with pytest.raises(ValueError, match="evaluation failed"):
        runner._fit_with(bad_eval, fit, 1)
    assert finished.is_set()  # no fit outlives the call

    def bad_fit(_):
        time.sleep(0.1)
        raise RuntimeError("worker group died")

    with pytest.raises(RuntimeError, match="worker group died"):
        runner._fit_with(bad_eval, bad_fit, 1)


def test_fetch_ahead_fetches_the_first_batch_in_the_background():
    fetched_by: list[str] = []
    first_fetched = threading.Event()

    def stream():
        for i in range(3):
            fetched_by.append(threading.current_thread().name)
            if i == 0:
                first_fetched.set()
            yield i

    it = loop.fetch_ahead(stream())
    assert first_fetched.wait(10)  # before anyone asked for it
    assert list(it) == [0, 1, 2]
    assert fetched_by[0].startswith("radisim-first-batch") and fetched_by[1] == threading.current_thread().name
    assert list(loop.fetch_ahead([])) == []

    def broken():
        raise OSError("unreadable shard")
        yield  # pragma: no cover

    it = loop.fetch_ahead(broken())
    with pytest.raises(OSError, match="unreadable shard"):
        next(it)
