"""Typed configuration, one model per concern, validated at load before Ray starts anything.

A job's configuration is YAML (``--config FILE``) plus dotted overrides (``--set train.batch_size=32``,
``--set curriculum.phases.*.steps=10``); every value is checked here and a bad one fails with its
dotted field name. Defaults are the embedded laptop setting: local Ray, local MLflow store, phantom data.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radisim.curriculum.spec import CurriculumSpec, load_spec_dict


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the dotted field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(Strict):
    """Where to run. `address` None means RAY_ADDRESS if set, else a local Ray started by the job."""

    address: Optional[str] = None
    #: Logical CPUs of a local Ray. Over-subscribing 2 physical cores is deliberate: Ray Data's
    #: read tasks ask for a whole CPU and would otherwise starve next to the Train workers.
    num_cpus: int = Field(4, ge=1)
    object_store_mb: int = Field(512, ge=100)
    include_dashboard: Optional[bool] = None


class PhantomConfig(Strict):
    """The built-in synthetic radiology data (`radisim prepare-data`)."""

    n_train_images: int = Field(3000, ge=10)
    n_eval_images: int = Field(700, ge=10)
    seed: int = 0
    size: int = Field(64, ge=32)


class DataConfig(Strict):
    #: Directory with train/ and eval/ Parquet manifests (as written by prepare-data).
    root: str = "radisim_work/data/phantom"
    phantom: PhantomConfig = PhantomConfig()
    #: Ray Data preprocessing actors (decode, resize, tokenize) and the CPUs each asks for.
    preprocess_actors: int = Field(1, ge=1)
    preprocess_cpus: float = Field(0.5, gt=0)
    #: Rows held in each Train worker's local shuffle buffer.
    shuffle_buffer: int = Field(1024, ge=0)


class ModelConfig(Strict):
    #: A bundled config (platform/models/configs), any open_clip name, or an hf-hub: id.
    name: str = "radisim-tiny"
    #: open_clip pretrained tag or a local weights file; None = random init.
    pretrained: Optional[str] = None


class TrainConfig(Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    #: Per-worker micro-batch; the optimizer step sees batch_size * grad_accum * num_workers samples.
    batch_size: int = Field(64, ge=2)
    grad_accum: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.98, gt=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.2, ge=0)
    grad_clip: Optional[float] = Field(1.0, gt=0)
    #: Contrastive loss across ranks: local loss + all-gather with gradients (open_clip's scaling recipe).
    local_loss: bool = True
    gather_with_grad: bool = True
    compile: bool = False
    seed: int = 0
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    #: Restarts of a phase's worker group after a worker dies (resumes from the latest checkpoint).
    max_failures: int = Field(3, ge=-1)
    #: Ray Train storage for checkpoints: a local path or a pyarrow-supported URI (s3://, gs://).
    storage_path: str = "radisim_work/ray_results"
    #: Threads per worker for CPU math; None = cpus_per_worker rounded up.
    torch_threads: Optional[int] = Field(None, ge=1)


class EvalConfig(Strict):
    #: Subtask ids (see `radisim evaluate --list`) or ["all"].
    subtasks: list[str] = ["all"]
    n_bootstrap: int = Field(1000, ge=0)
    seed: int = 0
    cache_dir: str = "radisim_work/embedding_cache"
    after_each_phase: bool = True
    untrained_baseline: bool = True


class TrackingConfig(Strict):
    experiment: str = "radisim-cl"
    #: None: $MLFLOW_TRACKING_URI if set, else sqlite:///<cwd>/mlflow.db (the embedded default).
    tracking_uri: Optional[str] = None
    run_name: Optional[str] = None


class JobConfig(Strict):
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    curriculum: CurriculumSpec
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _gpu_needs_workers(self) -> "JobConfig":
        if self.train.precision == "bf16" and not self.train.use_gpu:
            raise ValueError("train.precision: bf16 autocast is for GPUs; use 'auto' or 'fp32' with use_gpu false")
        return self


# --------------------------------------------------------------------------------------------- loading


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars/lists: 3, 1e-4, true, null, [a, b], strings."""
    return yaml.safe_load(text) if text != "" else ""


def apply_override(tree: dict, dotted: str, value: Any) -> None:
    """Set tree[a][b][c] = value for 'a.b.c'; integers index lists and '*' means every list item."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"--set {dotted}: empty path segment")

    def walk(node: Any, i: int, trail: str) -> None:
        key = parts[i]
        last = i == len(parts) - 1
        if isinstance(node, list):
            if key == "*":
                targets = range(len(node))
            elif key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
                targets = [int(key)]
            else:
                raise ConfigError(f"--set {dotted}: {trail or '<root>'} is a list of {len(node)}; '{key}' is no index")
            for t in targets:
                if last:
                    node[t] = copy.deepcopy(value)
                else:
                    walk(node[t], i + 1, f"{trail}.{t}")
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                walk(node.setdefault(key, {}), i + 1, f"{trail}.{key}".lstrip("."))
        else:
            raise ConfigError(f"--set {dotted}: {trail} is a value, not a section")

    walk(tree, 0, "")


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], (dict, list)) else ""
        lines.append(f"  {loc}: {e['msg']}{got}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_job_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    base: dict | None = None,
) -> JobConfig:
    """Defaults <- `base` (e.g. a job's smoke overlay) <- YAML file <- `--set` overrides, then validate."""
    tree: dict[str, Any] = copy.deepcopy(base) if base else {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"--config {path}: not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path}: expected a mapping at the top level")
        deep_merge(tree, loaded)
    # The curriculum may be named (a bundled spec or a YAML path); expand it so --set can reach inside.
    try:
        tree["curriculum"] = load_spec_dict(tree.get("curriculum", "radisim_cl"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item}: expected dotted.key=value")
        if key.strip() == "curriculum":
            try:
                tree["curriculum"] = load_spec_dict(parse_value(raw))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        else:
            apply_override(tree, key.strip(), parse_value(raw))
    try:
        return JobConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def deep_merge(into: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'l': [x, y]} -> {'a.b': 1, 'l.0': x, 'l.1': y}: MLflow params of a resolved config."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = tree
    return out


def resolve_path(path: str) -> str:
    """Relative local paths are relative to the working directory; URIs pass through."""
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())
