"""Per-sample predictions of a suite run, one Parquet file per subtask, so that a reviewer can
recompute any metric (or a new one) without the model.

`predictions/<subtask>.parquet` (an MLflow artifact of each model's run), one row per example:
  image_id     the image (pool id; internal sets: a salted key)
  case_id      its case (patient / exam / volume): the unit the bootstrap resamples
  label        the class index in the subtask's class order (binary: 0 = classes[0], the negative,
               1 = classes[1], the positive); multi-label subtasks have instead one 0/1 column
               `label_<class>` per label
  query        localization only: the organ the example asks about
  score_<class>  one column per class in class order: the model's probability of that class
               (binary: score_<negative> = 1 - score_<positive>; multi-label: P(label present))
The file's schema metadata holds the subtask id, kind, classes (JSON) and the model's display name.

Reading them back: `read_predictions(path)` -> (kind, y_true, scores, cases) in the shapes
`radisim.evals.metrics` takes, or `load_run_predictions(tracking_uri, run_id)` -> {subtask: DataFrame}.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .suite import SubtaskResult, SuiteResult

ARTIFACT_DIR = "predictions"


def predictions_table(result: "SubtaskResult", model: str = ""):
    """One subtask's predictions as a pyarrow Table (module docstring)."""
    import pyarrow as pa

    task = result.subtask
    columns: dict[str, object] = {"image_id": [str(i) for i in result.image_ids], "case_id": [str(c) for c in result.case_ids]}
    scores = np.asarray(result.scores, dtype=np.float64)
    if task.kind == "multi-label":
        for k, cls in enumerate(task.classes):
            columns[f"label_{cls}"] = np.asarray(result.y_true)[:, k].astype(np.int64)
    else:
        columns["label"] = np.asarray(result.y_true).astype(np.int64)
    if task.kind == "binary":
        scores = np.stack([1.0 - scores, scores], axis=1)
    if result.queries is not None:
        columns["query"] = [str(q) for q in result.queries]
    for k, cls in enumerate(task.classes):
        columns[f"score_{cls}"] = scores[:, k]
    meta = {"subtask": task.id, "kind": task.kind, "classes": json.dumps(list(task.classes)), "model": model}
    return pa.table(columns).replace_schema_metadata({k: v.encode() for k, v in meta.items()})


def write_predictions(result: "SuiteResult", directory: str | Path) -> list[Path]:
    """`<directory>/<subtask>.parquet` for every subtask of the result."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for sid, sub in result.subtasks.items():
        paths.append(directory / f"{sid}.parquet")
        pq.write_table(predictions_table(sub, result.label), paths[-1])
    return paths


def read_predictions(path: str | Path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(kind, y_true, scores, cases) of one file, in `radisim.evals.metrics`' input shapes."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    kind, classes = meta["kind"], json.loads(meta["classes"])
    scores = np.stack([table.column(f"score_{c}").to_numpy() for c in classes], axis=1)
    if kind == "multi-label":
        y = np.stack([table.column(f"label_{c}").to_numpy() for c in classes], axis=1)
    else:
        y = table.column("label").to_numpy()
    if kind == "binary":
        scores = scores[:, 1]
    return kind, y, scores, np.asarray(table.column("case_id").to_pylist(), dtype=object)


def load_run_predictions(tracking_uri: str, run_id: str) -> dict[str, "object"]:
    """{subtask: pandas DataFrame} of every predictions file logged to an MLflow run."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, ARTIFACT_DIR, tmp))
        for path in sorted(local.glob("*.parquet")):
            out[path.stem] = pd.read_parquet(path)
    return out
