"""The layering of the four top-level packages, read from the source with `ast` (nothing is imported):
curriculum/ is the pure core and imports none of platform/evals/jobs; platform/ and evals/ may use
curriculum/; nothing imports jobs/ but jobs/ itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curriculum", "platform", "evals", "jobs")
FORBIDDEN = {"curriculum": {"platform", "evals", "jobs"}, "platform": {"jobs"}, "evals": {"jobs"}}


def imported_packages(path: Path, package: str) -> set[str]:
    """The radisim top-level packages a file imports (absolute `radisim.x` and relative `..x`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    depth = len(path.relative_to(ROOT / package).parts)  # file in package root: 1
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level >= depth + 1:  # climbs above the package: `from ..evals import x`
                names = ["radisim." + (node.module or "")]
            else:
                names = [f"radisim.{package}"]
        for name in names:
            parts = name.split(".")
            if parts[0] == "radisim" and len(parts) > 1 and parts[1] in PACKAGES:
                out.add(parts[1])
    return out


def violations() -> list[str]:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            hit = imported_packages(path, package) & forbidden
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    return bad


def test_layering_holds():
    assert violations() == []


def test_the_checker_sees_absolute_relative_and_nested_imports(tmp_path):
    pkg = tmp_path / "curriculum" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("import numpy\nfrom radisim.platform.config import X\n"
                              "def f():\n    from ...evals import suite\n    from . import y\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert imported_packages(pkg / "m.py", "curriculum") == {"platform", "evals", "curriculum"}
        assert violations() == [f"curriculum/sub/m.py imports ['evals', 'platform']"]
    finally:
        ROOT = saved


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_parses(package):
    assert list((ROOT / package).rglob("*.py"))
