"""`manifest.json`: what someone needs to reproduce a results folder, or to see why they cannot.

Numbers change with the code (git commit, and whether the tree had uncommitted edits), the
library versions, the exact data bytes (sha256 of the interaction file) and the seeds; the
command line and the experiment file's own checksum say how the run was asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from towerrec.experiments.config import Experiment
from towerrec.files import write_text


def git_state(where: str | Path | None = None) -> dict[str, object]:
    """Commit and dirtiness of the git checkout holding `where` (default: towerrec's source)."""
    import towerrec

    cwd = Path(where) if where else Path(towerrec.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def build_manifest(exp: Experiment, dataset, *, command: Sequence[str], seconds: float | None = None,
                   extra: dict | None = None) -> dict:
    """The manifest as a dict (written by `write_manifest`)."""
    import torch

    from towerrec.runner import versions

    source = getattr(getattr(dataset, "report", None), "source", None)
    return {
        "command": list(command),
        "cwd": os.getcwd(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "experiment": {"file": str(exp.path), "name": exp.name,
                       "sha256": hashlib.sha256(exp.text.encode()).hexdigest()},
        "seeds": list(exp.seeds),
        "data": {"name": dataset.name, "path": str(dataset.path) if dataset.path else None,
                 "interactions_file": source, "sha256": getattr(dataset, "data_sha256", None),
                 "load_report": dataset.report.lines()},
        "git": git_state(),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"},
        **({"seconds": round(seconds, 2)} if seconds is not None else {}),
        **(extra or {}),
    }


def write_manifest(out: str | Path, manifest: dict) -> Path:
    return write_text(Path(out) / "manifest.json", json.dumps(manifest, indent=2, default=str))
