"""Save and load models without pickle: config JSON, safetensors weights, id maps as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from towerrec.data.idmap import IdMap
from towerrec.errors import TowerrecError

FORMAT_VERSION = 1


def write_artifact(path: str | Path, *, model: str, config: dict, tensors: dict[str, np.ndarray],
                   user_map: IdMap, item_map: IdMap, extra: dict | None = None) -> Path:
    """Write `path/` with model.json, weights.safetensors, user_ids.json and item_ids.json."""
    from towerrec import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, "model": model, "config": config, "towerrec": __version__,
            "extra": extra or {}}
    (path / "model.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "weights.safetensors"))
    (path / "user_ids.json").write_text(json.dumps(user_map.to_list()))
    (path / "item_ids.json").write_text(json.dumps(item_map.to_list()))
    return path


def read_artifact(path: str | Path) -> tuple[dict, dict[str, np.ndarray], IdMap, IdMap]:
    """(meta, tensors, user_map, item_map); a clear error if the folder is not an artifact."""
    path = Path(path)
    if not (path / "model.json").exists():
        raise TowerrecError(f"{path}: not a towerrec model folder (no model.json)")
    meta = json.loads((path / "model.json").read_text())
    tensors = load_file(str(path / "weights.safetensors"))
    users = IdMap(json.loads((path / "user_ids.json").read_text()), name="user")
    items = IdMap(json.loads((path / "item_ids.json").read_text()), name="item")
    return meta, tensors, users, items


def _jsonable(obj: object) -> object:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)
