"""A model's lineage: its version and the data it has seen, one entry per fit, update or catalogue change.

Saved in the artifact (model.json, `extra.lineage`), shown by `towerrec serve` at `/info`, so a
server, a result file or a person can tell which data a model knows. Entries are plain JSON:

    {"version": 3, "kind": "update", "rows": 8412, "users": 610, "items": 9105, "new_users": 12,
     "new_items": 230, "changed_users": 88, "changed_items": 1930, "time_min": 1.2e9, "time_max": 1.3e9,
     "data_sha256": "...", "seconds": 1.8}

`kind` is "fit" (the lineage restarts at version 1), "update", "add_items" or "retire_items";
`version` grows by one per entry. `data_sha256` hashes the rows' (user id, item id, time) so two
models can be checked to have seen the same data.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from towerrec.errors import TowerrecError

KINDS = ("fit", "update", "add_items", "retire_items")
#: key -> the JSON types it may hold (None: null allowed)
ENTRY_KEYS: dict[str, tuple] = {
    "version": (int,), "kind": (str,), "rows": (int,), "users": (int,), "items": (int,), "new_users": (int,),
    "new_items": (int,), "changed_users": (int,), "changed_items": (int,), "retired": (int,),
    "time_min": (float, int, type(None)), "time_max": (float, int, type(None)),
    "data_sha256": (str, type(None)), "seconds": (float, int), "sweeps": (int,),
}
REQUIRED = ("version", "kind")


def rows_digest(rows) -> str | None:
    """SHA-256 over the rows' (user id, item id, time), in row order; None for no rows.

    Each id is hashed once (pandas' fixed-key hash) and the rows combine the hashes in uint64
    arithmetic, so 20M rows cost a few array passes, not 20M string conversions."""
    if len(rows) == 0:
        return None
    user = pd.util.hash_array(rows.user_map.ids.astype(str).astype(object))
    item = pd.util.hash_array(rows.item_map.ids.astype(str).astype(object))
    with np.errstate(over="ignore"):
        h = user[rows.user_idx] ^ (item[rows.item_idx] * np.uint64(0x9E3779B97F4A7C15))
        if rows.time is not None:
            h ^= pd.util.hash_array(np.asarray(rows.time, dtype=np.float64)) * np.uint64(0xC2B2AE3D27D4EB4F)
    return hashlib.sha256(h.tobytes()).hexdigest()


def entry(kind: str, version: int, *, users: int, items: int, seconds: float, rows=None, **counts: int) -> dict:
    """One lineage entry; `rows` (Interactions) gives the row count, time range and digest."""
    out: dict = {"version": int(version), "kind": kind, "users": int(users), "items": int(items)}
    if rows is not None:
        out["rows"] = len(rows)
        out["time_min"] = float(np.min(rows.time)) if rows.time is not None and len(rows) else None
        out["time_max"] = float(np.max(rows.time)) if rows.time is not None and len(rows) else None
        out["data_sha256"] = rows_digest(rows)
    out.update({k: int(v) for k, v in counts.items()})
    out["seconds"] = round(float(seconds), 4)
    return out


def rows_seen(lineage: list[dict]) -> int:
    """Rows the model has learned from (fit and updates), per its lineage."""
    return sum(int(e.get("rows", 0)) for e in lineage if e.get("kind") in ("fit", "update"))


def version(lineage: list[dict] | None) -> int:
    """The model's version: that of its last entry (0 for a model without lineage)."""
    return int(lineage[-1]["version"]) if lineage else 0


def check_lineage(value: object, where: str) -> list[dict]:
    """A lineage read from a file: a list of entries with known keys, JSON types and growing versions."""
    if not isinstance(value, list):
        raise TowerrecError(f"{where}: extra.lineage must be a JSON array, got {type(value).__name__}")
    last = 0
    for n, e in enumerate(value):
        if not isinstance(e, dict):
            raise TowerrecError(f"{where}: extra.lineage[{n}] must be an object")
        unknown = sorted(set(e) - set(ENTRY_KEYS))
        missing = [k for k in REQUIRED if k not in e]
        if unknown or missing:
            raise TowerrecError(f"{where}: extra.lineage[{n}]: " + "; ".join(
                p for p in (f"unknown key(s) {unknown}" if unknown else "",
                            f"missing {missing}" if missing else "") if p))
        for key, val in e.items():
            kinds = ENTRY_KEYS[key]
            if isinstance(val, bool) or not isinstance(val, kinds):
                raise TowerrecError(f"{where}: extra.lineage[{n}].{key} has the wrong type: {val!r:.60}")
        if e["kind"] not in KINDS:
            raise TowerrecError(f"{where}: extra.lineage[{n}].kind must be one of {KINDS}, got {e['kind']!r:.40}")
        if e["version"] <= last:
            raise TowerrecError(f"{where}: extra.lineage versions must grow, got {e['version']} after {last}")
        last = e["version"]
    return value
