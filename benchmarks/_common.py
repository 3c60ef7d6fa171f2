"""Shared bits for benchmark scripts: JSON output with versions and machine facts, peak RSS,
`--set FIELD=VALUE` config overrides."""
from __future__ import annotations

import ast
import json
import os
import platform
import resource
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_set(items: list[str]) -> dict:
    """`--set FIELD=VALUE` items as model overrides (VALUE a Python literal; a bare word is a string).
    Raises ValueError naming the item without a "="."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    import torch

    from towerrec.runner import versions

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor(), **versions()}


def write_json(name: str, payload: dict, *, path: Path | None = None) -> Path:
    """results/<name>.json (or `path`) with the command and machine facts added."""
    path = path if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join([sys.executable.split("/")[-1], *sys.argv]), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
