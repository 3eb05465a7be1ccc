"""`radisim <job> [args]`: the console script; each job is also `python -m radisim.jobs.<module>`."""
from __future__ import annotations

import importlib
import sys

#: job name on the command line -> module in radisim.jobs. Each module has `main(argv) -> int`.
JOBS = {
    "prepare-data": "prepare_data",
    "train": "train",
    "demo": "demo",
    "evaluate": "evaluate",
    "ablate": "ablate",
    "tag": "tag",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: radisim <job> [--config FILE] [--set key=value ...] [--smoke] [job options]\n\njobs:")
        for name, module in JOBS.items():
            doc = (importlib.import_module(f"radisim.jobs.{module}").__doc__ or "").strip().splitlines()[0]
            print(f"  {name:<14} {doc}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in JOBS:
        print(f"radisim: unknown job {name!r}; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"radisim.jobs.{JOBS[name]}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
