"""Several models through the same suite, tracked side by side in MLflow.

Run tree: one parent run (tag kind=comparison, `reference` = the reference model) holding the report
artifacts — comparison CSV, radar of the five stage scores per model, stage table, paired-difference
table, and per model ROC curves (binary subtasks) and confusion matrices (single-label, localization) —
and one sibling child run per model (tag kind=model, `model` = its display name, plus family/name/
pretrained/checkpoint/fingerprint, `undefined_metrics`) with every suite metric (`radisim.evals.suite`),
`eval/*` timings and cache hits, the artifact `predictions/<subtask>.parquet` per subtask
(`radisim.evals.predictions`), and, for every model but the reference, the paired differences against
it: `stage<N>/<subtask>/<metric>_delta` and `stage<N>/score_delta`, each with `_ci_low`/`_ci_high` from
the case bootstrap on the same cases (`suite.paired_differences`; models scored on different images are
refused with `PairingError`).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .embed import ModelRef
from .predictions import ARTIFACT_DIR, write_predictions
from .suite import SuiteResult, paired_differences, run_suite
from .tasks import Subtask


@dataclass
class Comparison:
    parent_run_id: str
    model_run_ids: dict[str, str]  # display name -> run id
    results: list[SuiteResult]
    tracking_uri: str
    artifacts: list[str] = field(default_factory=list)
    reference: str = ""
    differences: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> paired differences


def model_tags(ref: ModelRef, result: SuiteResult, source: str) -> dict[str, str]:
    return {"kind": "model", "model": ref.display, "model.family": ref.family, "model.name": ref.name,
            "model.pretrained": str(ref.pretrained or ""), "model.checkpoint": str(ref.checkpoint or ""),
            "model.fingerprint": result.model_fingerprint, "undefined_metrics": ", ".join(result.undefined) or "none",
            "source": source, "synthetic": str(source == "phantom").lower()}


def timing_metrics(result: SuiteResult) -> dict[str, float]:
    out = {f"eval/{k}": float(v) for k, v in result.timings.items()}
    out["eval/pools"] = float(len(result.cache_hits))
    out["eval/cache_hit_pools"] = float(sum(result.cache_hits.values()))
    return out


def compare_models(
    refs: Sequence[ModelRef],
    tracker,
    run_name: str,
    source: str = "phantom",
    params: Mapping[str, Any] | None = None,
    on_result: Callable[[SuiteResult], None] | None = None,
    reference: str | None = None,
    **suite_kwargs: Any,
) -> Comparison:
    """`run_suite(ref, source=source, **suite_kwargs)` for every ref, logged as described above.
    `reference` is the display name of the model the others are paired against (default: the first).
    `tracker` is a `radisim.platform.tracking.Tracker`; runs that raise are marked FAILED."""
    from .report import write_report

    labels = [r.display for r in refs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"models must have distinct names in one comparison, got {labels}")
    reference = labels[0] if reference is None else reference
    if reference not in labels:
        raise ValueError(f"reference {reference!r} is not one of the models {labels}")
    parent = tracker.start_run(run_name, tags={"kind": "comparison", "job": "evaluate", "source": source,
                                               "models": ", ".join(labels), "reference": reference,
                                               "synthetic": str(source == "phantom").lower()})
    status = "FAILED"
    try:
        tracker.log_params(parent, dict(params or {}))
        results, run_ids = [], {}
        for ref in refs:
            result = run_suite(ref, source=source, **suite_kwargs)
            child = tracker.start_run(ref.display, parent_id=parent, tags=model_tags(ref, result, source))
            tracker.log_params(child, dict(params or {}))
            tracker.log_metrics(child, {**result.metrics, **timing_metrics(result)})
            with tempfile.TemporaryDirectory() as tmp:
                for path in write_predictions(result, Path(tmp) / ARTIFACT_DIR):
                    tracker.log_artifact(child, path, ARTIFACT_DIR)
            tracker.end(child)
            results.append(result)
            run_ids[ref.display] = child
            if on_result:
                on_result(result)
        base = results[labels.index(reference)]
        differences = {r.label: paired_differences(r, base) for r in results if r.label != reference}
        for label, diffs in differences.items():
            tracker.log_metrics(run_ids[label], diffs)
        artifacts = []
        with tempfile.TemporaryDirectory() as tmp:
            files = write_report(results, Path(tmp) / "report", reference=reference, differences=differences)
            for kind, paths in files.items():
                for path in paths:
                    rel = path.relative_to(Path(tmp)).parent.as_posix()
                    tracker.log_artifact(parent, path, rel)
                    artifacts.append(f"{rel}/{path.name}")
        status = "FINISHED"
        return Comparison(parent, run_ids, results, tracker.uri, artifacts, reference, differences)
    finally:
        tracker.end(parent, status)


def subtask_rows(tasks: Sequence[Subtask]) -> list[dict[str, Any]]:
    """The registry as plain rows (for `radisim evaluate --list`)."""
    return [{"id": t.id, "stage": t.stage, "phase": t.phase, "modalities": list(t.modalities),
             "modality": "/".join(t.modalities), "dataset": t.dataset, "kind": t.kind, "metric": t.metric,
             "classes": list(t.classes)} for t in tasks]


def format_subtask_table(tasks: Sequence[Subtask]) -> str:
    header = ["stage", "id", "modality", "dataset", "kind", "metric", "classes"]
    body = [[f"{r['stage']} {r['phase']}", r["id"], r["modality"], r["dataset"], r["kind"], r["metric"],
             ", ".join(r["classes"])] for r in subtask_rows(tasks)]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header) - 1)]
    fmt = lambda row: "  ".join([*(str(c).ljust(w) for c, w in zip(row, widths)), str(row[-1])])  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths] + ["-" * 7]), *map(fmt, body)])
