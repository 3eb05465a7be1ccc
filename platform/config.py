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
    n_eval_images: int = Field(1500, ge=10)
    #: Disease-cohort cases added to each split, as a fraction of its size (curriculum.phantom.COHORTS):
    #: without them the stage-5 subtasks have a few dozen cases to learn and score from.
    cohort_fraction: float = Field(0.25, ge=0.0, le=1.0)
    seed: int = 0
    size: int = Field(64, ge=32)


class IngestConfig(Strict):
    """Real data for `radisim prepare-data --source ...` (see radisim.platform.data.ingest)."""

    #: CSV/Parquet manifests: the image column (a path relative to the manifest, a URI, or bytes) and
    #: the caption column. open_clip's defaults are filepath/title.
    image_column: str = "filepath"
    caption_column: str = "title"
    #: CSV separator; "auto" = tab for .tsv, comma otherwise.
    csv_separator: str = "auto"
    #: Your own tag columns: tag name (phase, modality, anatomy, view, finding, subtype, grade,
    #: patient, study) -> column. Columns named exactly like a tag are used without being listed.
    tag_columns: dict[str, str] = {}
    #: Share of patients/studies held out in DIR/eval (split by salted patient/study key, no leakage).
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    #: Salt of the patient/study keys; None = $RADISIM_PHI_SALT, else a random salt kept in DIR/.phi_salt.
    salt: Optional[str] = None
    ct_window: str = "soft_tissue"
    #: NIfTI volumes: views cut and slices per view (central slices, evenly spaced).
    nifti_views: list[Literal["axial", "sagittal", "coronal"]] = ["axial", "sagittal", "coronal"]
    nifti_slices_per_view: int = Field(3, ge=1)
    #: Multi-frame DICOM: the middle frame or every frame.
    dicom_frames: Literal["middle", "all"] = "middle"
    #: Images are stored with their longest side at most this (aspect kept); smaller than min_side is rejected.
    max_side: int = Field(512, ge=16)
    min_side: int = Field(8, ge=1)
    max_caption_chars: int = Field(1000, ge=10)
    #: Work units: folder files / manifest rows per staged chunk (the unit of resume).
    files_per_chunk: int = Field(256, ge=1)
    rows_per_chunk: int = Field(2048, ge=1)
    #: CPUs each Ray chunk task asks for.
    task_cpus: float = Field(0.5, gt=0)


class DataConfig(Strict):
    #: Directory with train/ and eval/ Parquet manifests (as written by prepare-data).
    root: str = "radisim_work/data/phantom"
    phantom: PhantomConfig = PhantomConfig()
    ingest: IngestConfig = IngestConfig()
    #: CPUs each Ray Data preprocessing task (decode, resize, tokenize) asks for.
    preprocess_cpus: float = Field(0.5, gt=0)
    #: Rows held in each Train worker's local shuffle buffer.
    shuffle_buffer: int = Field(1024, ge=0)
    #: Keep Ray Data's output order fixed (same seed -> same batches -> same metrics on CPU).
    deterministic: bool = True


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
    #: Micro-batches per optimizer step, accumulated as open_clip's `accum_freq` does (train/accumulate.py):
    #: the contrastive problem spans batch_size * grad_accum * num_workers samples.
    grad_accum: int = Field(1, ge=1)
    #: auto: bf16 on GPUs that have it, else fp16 + GradScaler; fp32 on CPU (train/precision.py).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Batches each worker's stream prepares ahead, already on the device (Ray Data iter_torch_batches).
    prefetch_batches: int = Field(2, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.98, gt=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.2, ge=0)
    grad_clip: Optional[float] = Field(1.0, gt=0)
    #: Contrastive loss across ranks: local loss + all-gather with gradients (open_clip's scaling recipe).
    local_loss: bool = True
    gather_with_grad: bool = True
    compile: bool = False
    #: The image tower's weights and inputs in NHWC memory layout (`torch.channels_last`), the layout
    #: oneDNN and cuDNN convolutions run fastest in; the model computes the same (loop.use_channels_last).
    channels_last: bool = True
    seed: int = 0
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    #: Restarts of a phase's worker group after a worker dies (resumes from the latest checkpoint).
    max_failures: int = Field(3, ge=-1)
    #: Ray Train storage for checkpoints: a local path or a pyarrow-supported URI (s3://, gs://).
    storage_path: str = "radisim_work/ray_results"
    #: Threads per worker for CPU math; None = cpus_per_worker rounded up on a cluster, and on the embedded
    #: local Ray the host's cores shared among the workers (runner.worker_threads).
    torch_threads: Optional[int] = Field(None, ge=1)
    #: Ray Train's own console lines (worker group start, every reported result with its metrics dict,
    #: checkpoint paths). The job prints its own progress line per log window; INFO brings Ray's back.
    #: Ray Train's log files under the Ray session keep every level either way.
    ray_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    #: Fault injection for testing the non-finite-loss guard: poison the loss at this step.
    debug_nan_at_step: Optional[int] = Field(None, ge=1)


class EvalConfig(Strict):
    #: Zero-shot evaluation of the training job's checkpoints at all.
    enabled: bool = True
    #: `phantom`: the held-out phantom split under `data_root`; `real`: public/internal datasets in
    #: their published layouts, one root per dataset adapter in `roots` (see `radisim evaluate --list`).
    source: Literal["phantom", "real"] = "phantom"
    #: Phantom eval split root; None = data.root (prepare-data writes <root>/eval).
    data_root: Optional[str] = None
    roots: dict[str, str] = {}
    #: Subtask ids (see `radisim evaluate --list`) or ["all"].
    subtasks: list[str] = ["all"]
    n_bootstrap: int = Field(1000, ge=0)
    seed: int = 0
    cache_dir: str = "radisim_work/embedding_cache"
    #: Image splits up to this size are embedded in the driver when the cluster has no GPU (a Ray Data
    #: actor costs a process start + model build, ~6 s on 2 cores); larger ones, or any on a GPU
    #: cluster, go through Ray Data. 0 = always Ray Data.
    driver_max_images: int = Field(2048, ge=0)
    after_each_phase: bool = True
    untrained_baseline: bool = True
    #: Evaluate each phase's weights (and the untrained ones) while the next phase's fit starts: Ray Train's
    #: start-up is mostly processes importing torch, one core each, which leaves room for the driver's
    #: evaluation. Off: strictly one after the other. Tune trials always run them one after the other.
    overlap: bool = True


class TrackingConfig(Strict):
    experiment: str = "radisim-cl"
    #: Register the final checkpoint of a finished curriculum run in the MLflow model registry, its
    #: stage scores as version tags; `registered_model` None = "radisim-<curriculum name>".
    register_model: bool = True
    registered_model: Optional[str] = None
    #: None: $MLFLOW_TRACKING_URI if set, else sqlite:///<cwd>/mlflow.db (the embedded default).
    tracking_uri: Optional[str] = None
    run_name: Optional[str] = None


class AblateConfig(Strict):
    """A Ray Tune sweep over curricula (`radisim ablate`). Every arm gets the same step/sample budget."""

    #: Stable sweep name: its Tune state lives in <train.storage_path>/<name>, so --resume finds it.
    name: str = "ablation"
    search: Literal["grid", "optuna"] = "grid"
    orderings: list[str] = ["curriculum", "anti_curriculum", "random_order", "shuffled"]
    pacings: list[str] = ["step"]
    seeds: list[int] = [0, 1, 2]
    #: Optuna: trials, and the ranges of its continuous knobs.
    num_samples: int = Field(16, ge=1)
    lr_scale: tuple[float, float] = (0.3, 3.0)
    replay: tuple[float, float] = (0.0, 0.5)
    #: Optuna also searches each phase's share of the (fixed) total step budget.
    search_phase_fractions: bool = True
    #: ASHA early stopping on the mean stage score reported after every phase.
    asha: bool = True
    grace_period: int = Field(2, ge=1)
    reduction_factor: float = Field(2.0, gt=1)
    #: None: derived from the cluster's free CPUs/GPUs and one trial's needs.
    max_concurrent_trials: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _known_names(self) -> "AblateConfig":
        from radisim.curriculum.orderings import ordering_names
        from radisim.curriculum.pacing import pacing_names

        bad = [o for o in self.orderings if o not in ordering_names()]
        if bad:
            raise ValueError(f"orderings: unknown {bad}; registered: {ordering_names()}")
        bad = [p for p in self.pacings if p not in pacing_names()]
        if bad:
            raise ValueError(f"pacings: unknown {bad}; registered: {pacing_names()}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed")
        for name in ("lr_scale", "replay"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name}: low {lo} > high {hi}")
        if self.replay[1] >= 1:
            raise ValueError("replay: the share must stay below 1")
        return self


class JobConfig(Strict):
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    curriculum: CurriculumSpec
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    ablate: AblateConfig = AblateConfig()

    def resolved(self) -> "JobConfig":
        """Relative paths and the default tracking URI made absolute against the working directory
        now, so that processes started elsewhere (Tune trials, Ray workers) use the same places."""
        from radisim.platform.tracking import tracking_uri

        return self.model_copy(update={
            "data": self.data.model_copy(update={"root": resolve_path(self.data.root)}),
            "train": self.train.model_copy(update={"storage_path": resolve_path(self.train.storage_path)}),
            "eval": self.eval.model_copy(update={
                "cache_dir": resolve_path(self.eval.cache_dir),
                "data_root": resolve_path(self.eval.data_root or self.data.root),
                "roots": {k: resolve_path(v) for k, v in self.eval.roots.items()}}),
            "tracking": self.tracking.model_copy(update={"tracking_uri": tracking_uri(self.tracking.tracking_uri)}),
        })

    @model_validator(mode="after")
    def _gpu_needs_workers(self) -> "JobConfig":
        if self.train.precision in ("bf16", "fp16") and not self.train.use_gpu:
            raise ValueError(f"train.precision: {self.train.precision} autocast is for GPUs; use 'auto' or 'fp32' with use_gpu false")
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
