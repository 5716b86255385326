"""The run record (`run.json`) beside every result: config, command, protocol and data hashes, library versions,
git commit and timings: what it takes to reproduce or audit a number, and what `starec report` prints above it."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "pandas", "gymnasium", "transformers", "trl", "starec-env")


def run_record(config, records: list[dict], timings: list[dict]) -> dict:
    """Everything needed to reproduce or audit the numbers: config, protocol, data hashes, versions, timings."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit, changed = _git_state()
    return {"config": asdict(config), "command": sys.argv, "git_commit": commit,
            "git_uncommitted_changes": changed, "protocols": records,
            "versions": versions, "python": sys.version, "platform": platform.platform(),
            "timings": timings}


@functools.cache
def _git_state() -> tuple[str | None, bool]:
    """(commit, uncommitted changes?) of the code, read once per process: a commit made while a run is going
    does not become that run's."""
    return _git("rev-parse", "HEAD") or None, bool(_git("status", "--porcelain", "--untracked-files=no"))


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent,
                              check=False).stdout.strip()
    except OSError:
        return ""
