"""Benchmarks of RadiSim-CL, run from the repo root: `python -m benchmarks.run --quick --out FILE`.

A plain folder (not part of the `radisim` wheel). Numbers depend on the machine and its load; the
scripts measure ratios side by side in one run and write them with versions and hardware."""
