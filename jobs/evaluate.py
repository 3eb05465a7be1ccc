"""Evaluate models zero-shot on the five-stage, 24-subtask suite; MLflow runs side by side.

  radisim evaluate --list [--format json]              the 24 subtasks (stage, modality, dataset, metric)
  radisim evaluate --smoke                             random-init radisim-tiny on a small SYNTHETIC phantom split
  radisim evaluate --checkpoint DIR --model ViT-B-16:openai --model hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224
  radisim evaluate --source real --root br35h=/data/Br35H --root mrnet=/data/MRNet-v1.0 \
      --adapter-option mrnet.planes=[sagittal]
  radisim evaluate --model transformers:openai/clip-vit-base-patch16 --model transformers:/models/medsiglip \
      --checkpoint DIR --reference transformers:openai/clip-vit-base-patch16

Models: `--model NAME[:PRETRAINED]` (a bundled config, an open_clip name with a pretrained tag or a
local weights file, or an `hf-hub:` id), `--model transformers:ID_OR_PATH` (a Hugging Face CLIP or
SigLIP model: PubMedCLIP, SigLIP, MedSigLIP...; `radisim.evals.models`) and `--checkpoint DIR` (a
checkpoint of ours; architecture from its radisim.json, else `model.name`), all repeatable; none given = `model.name`/`model.pretrained` from the config. A model
without weights is evaluated from a seeded random-init checkpoint (`eval.seed`), saved once under
`eval.cache_dir`/init, so the embedding cache recognises it on the next run.
Paired comparison: with several models, each is paired against `--reference NAME` (a model's display
name, default the first): per subtask and stage the difference with a case-bootstrap 95% CI on the same
cases, logged as `..._delta` metrics and printed; runs scored on different images are refused (exit 2).
Every model's run also holds `predictions/<subtask>.parquet` (per-image labels and scores).
Data: `--source phantom` (default) reads the phantom eval split of `data.root` (made on first use for
the default roots); `--source real` runs each subtask's adapter on `--root DATASET=PATH`, and with
`eval.subtasks` "all" evaluates the subtasks whose dataset has a root.
Cost: --smoke about 1-2 minutes on 2 CPU cores (24 subtasks, 240 + 60 disease-cohort images, 100 bootstrap resamples);
a re-run is faster, its image embeddings come from the cache. Weights are never downloaded for you
offline: a missing one exits 2 naming what to download and where to put it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from radisim.jobs.common import job_parser, load_config, quiet_logs
from radisim.platform.config import JobConfig, flatten, parse_value, resolve_path

#: Data roots whose phantom split is generated on first use (as `radisim train` does).
DEFAULT_PHANTOM_ROOTS = ("radisim_work/data/phantom", "radisim_work/data/phantom-smoke")


class UsageError(Exception):
    """A problem the user fixes on the command line or on disk: printed without a traceback, exit 2."""


def parse_model(spec: str):
    """NAME, NAME:PRETRAINED (tag or weights file), hf-hub:ORG/REPO or FAMILY:ID (e.g. transformers:ID_OR_PATH) -> ModelRef."""
    from radisim.evals.embed import ModelRef
    from radisim.evals.models import DEFAULT_FAMILY, split_spec

    family, rest = split_spec(spec)
    if family != DEFAULT_FAMILY:
        if not rest:
            raise UsageError(f"--model {spec!r}: expected {family}:ID_OR_PATH")
        return ModelRef(rest, family=family)
    if spec.startswith("hf-hub:"):
        return ModelRef(spec)
    name, _, pretrained = spec.partition(":")
    if not name:
        raise UsageError(f"--model {spec!r}: expected NAME[:PRETRAINED]")
    return ModelRef(name, pretrained or None)


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def adapter_options(items: list[str]) -> dict[str, dict]:
    """`DATASET.OPTION=VALUE` (YAML value) -> {dataset: {option: value}}."""
    out: dict[str, dict] = {}
    for key, value in parse_pairs(items, "--adapter-option").items():
        dataset, dot, option = key.partition(".")
        if not dot:
            raise UsageError(f"--adapter-option {key}={value}: expected DATASET.OPTION=VALUE")
        out.setdefault(dataset, {})[option] = parse_value(value)
    return out


def seeded_init_checkpoint(name: str, seed: int, cache_dir: str) -> str:
    """A random-init model's weights, saved once: the same (name, seed) is the same checkpoint, so its
    embeddings are cached like any other model's."""
    import torch

    from radisim.platform.models import load_clip, save_checkpoint
    from radisim.platform.models.factory import WEIGHTS_FILE

    directory = Path(cache_dir) / "init" / f"{name.replace('/', '_').replace(':', '_')}-seed{seed}"
    if not (directory / WEIGHTS_FILE).is_file():
        torch.manual_seed(seed)
        save_checkpoint(load_clip(name).model, name, directory)
    return str(directory)


def checkpoint_model_name(directory: str, default: str) -> str:
    """The architecture a train-job checkpoint records in its radisim.json (platform.train.loop.META_FILE)."""
    meta = Path(directory) / "radisim.json"
    try:
        return str(json.loads(meta.read_text())["model_name"]) if meta.is_file() else default
    except (ValueError, KeyError):
        return default


def has_logit_bias(directory: str) -> bool:
    """A SigLIP-trained checkpoint carries a logit_bias, which the model must be built with to load it."""
    import torch

    from radisim.platform.models.factory import WEIGHTS_FILE

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        return False  # preflight reports the missing weights
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return "logit_bias" in state.get("state_dict", state)


def model_refs(args, cfg: JobConfig) -> list:
    from dataclasses import replace

    from radisim.evals.embed import ModelRef

    refs = [parse_model(m) for m in args.model]
    refs += [ModelRef(checkpoint_model_name(c, cfg.model.name), checkpoint=str(Path(c).resolve()), siglip=has_logit_bias(c))
             for c in args.checkpoint]
    if not refs:
        refs = [ModelRef(cfg.model.name, cfg.model.pretrained)]
    out = []
    for ref in refs:
        if ref.family == "open_clip" and ref.pretrained is None and ref.checkpoint is None and not ref.name.startswith("hf-hub:"):
            ckpt = seeded_init_checkpoint(ref.name, cfg.eval.seed, resolve_path(cfg.eval.cache_dir))
            ref = replace(ref, checkpoint=ckpt, label=f"{ref.name} (random init, seed {cfg.eval.seed})")
        out.append(ref)
    return out


def preflight(refs) -> None:
    """Build every model once before Ray starts: missing weights fail here, with what to download."""
    for ref in refs:
        if ref.checkpoint and not Path(ref.checkpoint).is_dir():
            raise UsageError(f"--checkpoint {ref.checkpoint}: no such directory")
        try:
            ref.load("cpu")
        except Exception as err:  # offline hub errors, a checkpoint that does not fit, an unknown name
            hint = ""
            if ref.family != "open_clip":
                hint = ""  # the family's loader names what to download and where
            elif ref.name.startswith("hf-hub:"):
                org_repo = ref.name.removeprefix("hf-hub:").replace("/", "--")
                hint = f" The hub cache folder is $HF_HOME/hub/models--{org_repo} (default ~/.cache/huggingface)."
            elif ref.pretrained:
                hint = f" With a weights file: --model {ref.name}:/path/to/open_clip_pytorch_model.bin"
            raise UsageError(f"cannot load model {ref.display}: {err}{hint}") from None


def choose_subtasks(cfg: JobConfig, source: str, roots: dict[str, str]) -> list[str] | None:
    from radisim.evals.tasks import subtasks

    chosen = subtasks(None if cfg.eval.subtasks == ["all"] else cfg.eval.subtasks)
    if source == "phantom":
        return [t.id for t in chosen]
    datasets = sorted({t.dataset for t in chosen})
    if unknown := sorted(set(roots) - {t.dataset for t in subtasks()}):
        raise UsageError(f"--root {unknown}: no subtask reads these datasets; datasets: {', '.join(datasets)}")
    if cfg.eval.subtasks == ["all"]:
        chosen = [t for t in chosen if t.dataset in roots]
        if not chosen:
            raise UsageError("--source real needs --root DATASET=PATH for at least one of: " + ", ".join(datasets))
    elif missing := sorted({t.dataset for t in chosen} - set(roots)):
        raise UsageError("--source real: give " + " ".join(f"--root {d}=PATH" for d in missing))
    for dataset, path in roots.items():
        if not Path(path).exists():
            raise UsageError(f"--root {dataset}={path}: no such file or directory")
    return [t.id for t in chosen]


def ensure_phantom(cfg: JobConfig) -> str:
    root = Path(resolve_path(cfg.data.root))
    if str(root) in {resolve_path(r) for r in DEFAULT_PHANTOM_ROOTS}:
        from radisim.jobs.prepare_data import prepare_phantom

        prepare_phantom(cfg)  # a no-op when the split exists with these settings
    elif not (root / "eval").is_dir():
        raise UsageError(f"data.root {root} has no eval/ split; run `radisim prepare-data` first")
    return str(root)


def print_list(fmt: str) -> None:
    from radisim.evals.compare import format_subtask_table, subtask_rows
    from radisim.evals.tasks import subtasks

    if fmt == "json":
        print(json.dumps(subtask_rows(subtasks()), indent=2))
    else:
        print(format_subtask_table(subtasks()))


def run(args, cfg: JobConfig) -> int:
    from radisim.evals.compare import compare_models
    from radisim.evals.datasets import DatasetNotFoundError
    from radisim.evals.report import format_paired_table, format_stage_table, format_subtask_counts
    from radisim.evals.suite import PairingError
    from radisim.platform.raysession import ray_session
    from radisim.platform.tracking import Tracker, ui_command

    roots = {k: str(Path(v).expanduser().resolve()) for k, v in parse_pairs(args.root, "--root").items()}
    options = adapter_options(args.adapter_option)
    ids = choose_subtasks(cfg, args.source, roots)
    if stray := sorted(set(options) - set(roots) - {"phantom"}):
        raise UsageError(f"--adapter-option for {stray}: not among the datasets given with --root ({sorted(roots)})")
    refs = model_refs(args, cfg)
    if args.reference is not None and args.reference not in [r.display for r in refs]:
        raise UsageError(f"--reference {args.reference!r}: not one of the models {[r.display for r in refs]}")
    preflight(refs)  # before any data is generated or read: a missing download fails in seconds
    data_root = ensure_phantom(cfg) if args.source == "phantom" else None
    print(f"evaluating {len(refs)} model(s) on {len(ids)} subtasks ({args.source}"
          f"{', SYNTHETIC phantom data' if args.source == 'phantom' else ''}): " + ", ".join(r.display for r in refs))

    def report(result) -> None:
        hits = sum(result.cache_hits.values())
        t = result.timings
        print(f"  {result.label}: total {t['total_s']:.1f} s, image embeddings {t['embed_s']:.1f} s "
              f"({hits}/{len(result.cache_hits)} image pools from the cache)", flush=True)

    tracker = Tracker(cfg.tracking.experiment, cfg.tracking.tracking_uri)
    run_name = cfg.tracking.run_name or f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    params = {**flatten(cfg.model_dump(mode="json", include={"data", "model", "eval", "ray"})),
              "source": args.source, **{f"root.{k}": v for k, v in roots.items()}}
    try:
        with ray_session(cfg.ray):
            comparison = compare_models(
                refs, tracker, run_name, source=args.source, params=params, on_result=report, subtasks=ids,
                reference=args.reference,
                data_root=data_root, roots=roots, adapter_options=options, cache_dir=resolve_path(cfg.eval.cache_dir),
                n_bootstrap=cfg.eval.n_bootstrap, seed=cfg.eval.seed, driver_max_images=cfg.eval.driver_max_images)
    except (DatasetNotFoundError, PairingError) as err:
        raise UsageError(str(err)) from None
    except TypeError as err:  # an adapter refusing an option it does not know (adapters never ignore one)
        if "unexpected keyword argument" not in str(err):
            raise
        raise UsageError(f"--adapter-option: {err}") from None
    for result in comparison.results:
        print(f"\n{result.label}: per subtask (95% CI from resampling cases):\n{format_subtask_counts(result)}")
    print("\nzero-shot stage scores (chance-normalised: 0 = chance, 1 = perfect; subtasks covered):")
    print(format_stage_table(comparison.results))
    for label, diffs in comparison.differences.items():
        print("\n" + format_paired_table(label, comparison.reference, diffs))
    print(f"\nMLflow experiment {cfg.tracking.experiment!r}: comparison run {run_name} ({comparison.parent_run_id}), "
          f"{len(comparison.model_run_ids)} model run(s), {len(comparison.artifacts)} report files, in {comparison.tracking_uri}")
    print(f"browse it with:\n  {ui_command(comparison.tracking_uri)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("evaluate", __doc__)
    parser.add_argument("--list", action="store_true", help="print the 24 subtasks and exit")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="--list output format")
    parser.add_argument("--model", action="append", default=[], metavar="NAME[:PRETRAINED]",
                        help="model (repeatable): bundled config, NAME:TAG, NAME:/path/weights.bin, hf-hub:ORG/REPO, transformers:ID_OR_PATH")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="a checkpoint directory of ours (repeatable; architecture from its radisim.json, else model.name)")
    parser.add_argument("--reference", default=None, metavar="NAME",
                        help="the model the others are paired against (its display name; default the first)")
    parser.add_argument("--source", choices=("phantom", "real"), default="phantom",
                        help="phantom eval split of data.root, or the real datasets given with --root")
    parser.add_argument("--root", action="append", default=[], metavar="DATASET=PATH",
                        help="where a real dataset lies in its published layout (repeatable; see --list for names)")
    parser.add_argument("--adapter-option", action="append", default=[], metavar="DATASET.OPTION=VALUE",
                        help="an option of a dataset adapter, e.g. rsna_pneumonia.max_images=500 (repeatable)")
    args = parser.parse_args(argv)
    if args.list:
        print_list(args.format)
        return 0
    cfg = load_config(args)
    quiet_logs()
    try:
        return run(args, cfg)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
