"""Is every dependency pyproject.toml asks for installed, in a version it accepts? (``make install`` runs
this after installing from the lock files, so a dependency added without ``make lock`` is named at once.)

    python scripts/check_deps.py [EXTRA ...]     # e.g. dev

Exit 0 when all are there; else 1, naming each missing or unfit one.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def problems(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    out = []
    for req in map(Requirement, wanted):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = version(req.name)
        except PackageNotFoundError:
            out.append(f"{req} is not installed")
            continue
        if not req.specifier.contains(have, prereleases=True):
            out.append(f"{req} is wanted, {req.name} {have} is installed")
    return out


if __name__ == "__main__":
    found = problems(sys.argv[1:])
    for line in found:
        print(f"!!! {line}", file=sys.stderr)
    if found:
        print(
            "!!! the lock files lack what pyproject.toml asks for: run `make lock`, then `make install`",
            file=sys.stderr,
        )
    sys.exit(1 if found else 0)
