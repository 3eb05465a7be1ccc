"""The whole study on the embedded default: phantom data, five-phase curriculum, five-stage eval, MLflow.

`radisim demo [--set ...]` is `radisim train` with `phantom=True`: it (re)writes the SYNTHETIC
phantom data in data.root where its settings changed, trains `curriculum/specs/radisim_cl.yaml`
(5 phase fits, 440 steps x 64 samples, radisim-tiny, local Ray, an sqlite MLflow store in the working
directory) and evaluates the untrained model and every phase's checkpoint.
Cost: ~8-10 minutes on 2 CPU cores, about a quarter of it Ray Train start-up (runs by the hour:
benchmarks/results/radisim-tiny_cpu2-amd-epyc_2026-11-30.md).
What it gives: the stage-score table after every phase next to the untrained model's, with each
stage's gain over it and a paired bootstrap 95% CI, a radar plot in MLflow, and the `mlflow ui`
command to browse it. The same seed prints the same scores to the last digit (README "Current results").
"""
from __future__ import annotations

import sys

from radisim.jobs.common import job_parser, load_config, quiet_logs
from radisim.jobs.train import run


def main(argv: list[str] | None = None) -> int:
    args = job_parser("demo", __doc__).parse_args(argv)
    cfg = load_config(args)
    quiet_logs()
    run(cfg, phantom=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
