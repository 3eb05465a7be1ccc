"""The whole study on the embedded default: phantom data, five-phase curriculum, five-stage eval, MLflow.

Cost: 5 phase fits, 440 steps x 64 samples in all (radisim-tiny, local Ray, sqlite MLflow store in the
working directory); measured on a 2-core VM on 2026-11-30: 7 min 37 s to 8 min 44 s in its normal
hours, 9 min 19 s to 12 min 28 s in its slower ones, and 7 min 57 s to 8 min 39 s since the image
tower trains channels-last; 16-36 s per phase fit is Ray Train start-up, partly overlapped with the
evaluations (README "Two commands" has the runs and the scores).
What it gives: the stage-score table after every phase next to the untrained model's, with each
stage's gain over it and a paired bootstrap 95% CI, a radar plot in MLflow, and the `mlflow ui`
command to browse it. All data is SYNTHETIC.
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
