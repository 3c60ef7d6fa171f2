"""The artifact folder: save and load models without pickle, and the files that travel with them.

A folder written by `Recommender.save` (or `save_recommender`) holds

    model.json            format version, model name, config, towerrec version, model extras, a
                          manifest of every tensor (name -> dtype, shape) and the weights' SHA-256;
                          written last. Its extras hold the tie seed, the model's lineage (its
                          version and the data it has seen, `towerrec.lineage`) and the retired
                          item indices, each checked on load
    weights.safetensors   the tensors
    user_ids.json         external user ids, in index order
    item_ids.json         external item ids, in index order
    item_titles.json      optional: a display title per item index
    items.parquet         optional: item attributes (an `item_id` column first) for serving filters
    dataset.json          optional: what the model was trained on (name and counts)

A *model store* is a folder of such artifact folders, one per version (`v000001`, `v000002`, ...),
plus `LATEST`, a one-line file naming the current one: `publish` writes a complete version folder
first and then replaces `LATEST` atomically, so a reader (`resolve_artifact`, a server watching
the store) sees either the old version or the new one, never a half-written folder.

This module is the only one that knows these names. Reading is defensive, because a folder may be
truncated, edited or hostile: every file must resolve (symlinks included) to a path inside the
folder, JSON must parse to the expected shape, the config must pass
`towerrec.config.apply_overrides` (the rules TOML files follow: unknown fields are errors), tensors
must match the manifest, and id lists must be unique strings whose lengths agree with the tensors;
the weights' checksum catches a damaged byte anywhere in them (safetensors itself only checks its
header). Every failure is a `TowerrecError` naming the file, which the CLI prints as one line.
Writing is atomic per file (`towerrec.files`), and model.json is removed first and written last, so
a folder without a complete model.json is never a model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from towerrec.data.idmap import IdMap
from towerrec.errors import TowerrecError
from towerrec.files import atomic_path, write_text
from towerrec.lineage import check_lineage

#: 2 added the tensor manifest and the weights' checksum; format-1 folders (neither) still load
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
USER_IDS_FILE = "user_ids.json"
ITEM_IDS_FILE = "item_ids.json"
TITLES_FILE = "item_titles.json"
ITEM_TABLE_FILE = "items.parquet"
DATASET_FILE = "dataset.json"
LATEST_FILE = "LATEST"

#: keys of model.json; "tensors" (the manifest) and "weights_sha256" are required from format 2 on
META_KEYS = ("format", "model", "config", "towerrec", "extra", "tensors", "weights_sha256")
#: keys of dataset.json, and the type each must have
DATASET_KEYS: dict[str, type] = {"name": str, "users": int, "items": int, "interactions": int}
#: tensors every artifact has besides the model's own (`model.<name>`)
BASE_TENSORS = ("seen.indptr", "seen.indices", "item_popularity")
OPTIONAL_TENSORS = ("user_counts",)   # a streamed fit: training rows per user (seen holds a sample)


@dataclass(frozen=True)
class Artifact:
    """A checked artifact folder: model.json's content, the tensors and both id maps."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]
    user_map: IdMap
    item_map: IdMap


# ---- paths -----------------------------------------------------------------------------------------
def artifact_file(folder: str | Path, name: str) -> Path:
    """`folder/name`, refused when it resolves outside the folder (a symlink to /etc/passwd, say).

    The path may not exist; callers check that themselves (most files are optional).
    """
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise TowerrecError(f"{Path(folder) / name}: refusing to read it: it resolves to {target}, "
                            f"outside the artifact folder {root}")
    return target


def is_artifact(folder: str | Path) -> bool:
    """True when `folder` has a model.json (complete or not: `read_meta` checks it)."""
    return (Path(folder) / MODEL_FILE).exists()


def _read_json(folder: str | Path, name: str) -> Any:
    path = artifact_file(folder, name)
    shown = Path(folder) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TowerrecError(f"{shown}: missing (the artifact folder is incomplete)") from None
    except UnicodeDecodeError as exc:
        raise TowerrecError(f"{shown}: not UTF-8 text ({exc}); the file is corrupt") from None
    except OSError as exc:
        raise TowerrecError(f"{shown}: cannot read it: {exc}") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:   # ValueError: a number over Python's digit limit
        raise TowerrecError(f"{shown}: not valid JSON ({exc}); the file is truncated or corrupt") from None


def _write_json(folder: Path, name: str, value: Any, indent: int | None = None) -> Path:
    return write_text(folder / name, json.dumps(value, indent=indent, default=_jsonable))


# ---- model.json ----------------------------------------------------------------------------------
def read_meta(folder: str | Path) -> dict[str, Any]:
    """model.json, checked: known keys, a readable format, and the type of each entry."""
    folder = Path(folder)
    if not folder.is_dir() or not is_artifact(folder):
        raise TowerrecError(f"{folder}: not a towerrec model folder (no {MODEL_FILE})")
    meta = _read_json(folder, MODEL_FILE)
    where = folder / MODEL_FILE
    if not isinstance(meta, dict):
        raise TowerrecError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise TowerrecError(f"{where}: unknown key(s) {unknown}; known: {', '.join(META_KEYS)}")
    fmt = meta.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise TowerrecError(f"{where}: 'format' must be a positive integer, got {fmt!r}")
    if fmt not in READABLE_FORMATS:
        raise TowerrecError(f"{where}: artifact format {fmt} was written by a newer towerrec; this one reads "
                            f"formats {READABLE_FORMATS[0]}-{READABLE_FORMATS[-1]} (upgrade towerrec)")
    required: dict[str, type] = {"model": str, "config": dict}
    if fmt >= 2:
        required.update(tensors=dict, weights_sha256=str)
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind):
            raise TowerrecError(f"{where}: '{key}' must be a JSON {_json_type(kind)}, got {meta.get(key)!r:.80}")
    for key, kind in (("extra", dict), ("towerrec", str)):
        if key in meta and not isinstance(meta[key], kind):
            raise TowerrecError(f"{where}: '{key}' must be a JSON {_json_type(kind)}, got {meta[key]!r:.80}")
    if "tensors" in meta:
        for name, spec in meta["tensors"].items():
            if not (isinstance(spec, dict) and set(spec) == {"dtype", "shape"} and isinstance(spec["dtype"], str)
                    and isinstance(spec["shape"], list)
                    and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in spec["shape"])):
                raise TowerrecError(f"{where}: tensor manifest entry {name!r} must be "
                                    f'{{"dtype": str, "shape": [int, ...]}}, got {spec!r:.120}')
    return meta


def _json_type(kind: type) -> str:
    return {str: "string", dict: "object", list: "array", int: "integer"}.get(kind, kind.__name__)


# ---- whole artifacts -------------------------------------------------------------------------------
def write_artifact(path: str | Path, *, model: str, config: dict, tensors: dict[str, np.ndarray],
                   user_map: IdMap, item_map: IdMap, extra: dict | None = None,
                   titles: list[str] | None = None, item_table: pd.DataFrame | None = None,
                   dataset: dict | None = None) -> Path:
    """Write the folder `path/` (see the module docstring); model.json goes last.

    Saving into an existing artifact replaces it: its model.json is removed first, and so are the
    optional files of the previous model, which would no longer match the new one.
    """
    from safetensors.numpy import save_file

    from towerrec import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, TITLES_FILE, ITEM_TABLE_FILE, DATASET_FILE):
        (path / name).unlink(missing_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path / WEIGHTS_FILE) as tmp:
        save_file(arrays, str(tmp))
        digest = _sha256(tmp)
    _write_json(path, USER_IDS_FILE, user_map.to_list())
    _write_json(path, ITEM_IDS_FILE, item_map.to_list())
    if titles is not None:
        write_titles(path, titles, n_items=len(item_map))
    if item_table is not None:
        write_item_table(path, item_table, item_map)
    if dataset is not None:
        write_dataset_info(path, dataset)
    meta = {"format": FORMAT_VERSION, "model": model, "config": config, "towerrec": __version__,
            "extra": extra or {},
            "tensors": {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in arrays.items()},
            "weights_sha256": digest}
    _write_json(path, MODEL_FILE, meta, indent=2)
    return path


def read_artifact(path: str | Path) -> Artifact:
    """The checked artifact at `path`; a `TowerrecError` naming the file if anything is off."""
    folder = Path(path)
    meta = read_meta(folder)
    tensors = _read_weights(folder, meta.get("tensors"), meta.get("weights_sha256"))
    users = _read_ids(folder, USER_IDS_FILE, "user")
    items = _read_ids(folder, ITEM_IDS_FILE, "item")
    _check_base_tensors(folder, tensors, len(users), len(items))
    return Artifact(folder, meta, tensors, users, items)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_weights(folder: Path, manifest: dict | None, sha256: str | None) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    file = artifact_file(folder, WEIGHTS_FILE)
    shown = folder / WEIGHTS_FILE
    if not file.exists():
        raise TowerrecError(f"{shown}: missing (the artifact folder is incomplete)")
    if sha256 is not None and _sha256(file) != sha256:
        raise TowerrecError(f"{shown}: its SHA-256 differs from the one in {MODEL_FILE}: the file is truncated, "
                            "corrupt or from another model")
    try:
        tensors = load_file(str(file))
    except Exception as exc:   # safetensors raises its own error type for a truncated or garbled file
        raise TowerrecError(f"{shown}: cannot read the weights ({type(exc).__name__}: {_first_line(exc)}); "
                            "the file is truncated or corrupt") from None
    if manifest is None:       # format 1: no manifest to check against
        return tensors
    missing, unexpected = sorted(set(manifest) - set(tensors)), sorted(set(tensors) - set(manifest))
    if missing or unexpected:
        raise TowerrecError(f"{shown}: does not match the manifest in {MODEL_FILE}: "
                            + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                                          f"unexpected {unexpected}" if unexpected else "") if part))
    for name, spec in manifest.items():
        arr = tensors[name]
        if arr.dtype.name != spec["dtype"] or list(arr.shape) != spec["shape"]:
            raise TowerrecError(f"{shown}: tensor {name!r} is {arr.dtype.name} {list(arr.shape)}, but {MODEL_FILE} "
                                f"says {spec['dtype']} {spec['shape']}")
    return tensors


def _read_ids(folder: Path, name: str, kind: str) -> IdMap:
    ids = _read_json(folder, name)
    where = folder / name
    if not isinstance(ids, list):
        raise TowerrecError(f"{where}: expected a JSON array of {kind} ids, got {type(ids).__name__}")
    bad = next((i for i, x in enumerate(ids) if not isinstance(x, str)), None)
    if bad is not None:
        raise TowerrecError(f"{where}: {kind} ids must be strings; entry {bad} is {ids[bad]!r:.60}")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = [x for x in ids if x in seen or seen.add(x)][:5]   # type: ignore[func-returns-value]
        raise TowerrecError(f"{where}: duplicated {kind} ids: {dup}")
    return IdMap(ids, name=kind)


def _check_base_tensors(folder: Path, tensors: dict[str, np.ndarray], n_users: int, n_items: int) -> None:
    """The tensors every artifact has agree with the id lists (the model's own are checked by its load)."""
    shown = folder / WEIGHTS_FILE
    missing = [t for t in BASE_TENSORS if t not in tensors]
    if missing:
        raise TowerrecError(f"{shown}: missing tensor(s) {missing}")
    stray = sorted(k for k in tensors if k not in BASE_TENSORS + OPTIONAL_TENSORS and not k.startswith("model."))
    if stray:
        raise TowerrecError(f"{shown}: unexpected tensor(s) {stray[:5]}")
    indptr, indices, pop = tensors["seen.indptr"], tensors["seen.indices"], tensors["item_popularity"]
    if indptr.ndim != 1 or indices.ndim != 1 or not (np.issubdtype(indptr.dtype, np.integer)
                                                     and np.issubdtype(indices.dtype, np.integer)):
        raise TowerrecError(f"{shown}: seen.indptr and seen.indices must be 1-d integer arrays")
    if len(indptr) != n_users + 1:
        raise TowerrecError(f"{shown}: seen.indptr has {len(indptr)} entries for {n_users} users in "
                            f"{USER_IDS_FILE} (expected {n_users + 1})")
    if (len(indptr) and (indptr[0] != 0 or indptr[-1] != len(indices))) or np.any(np.diff(indptr) < 0):
        raise TowerrecError(f"{shown}: seen.indptr is not a valid row index for {len(indices)} entries")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise TowerrecError(f"{shown}: seen.indices point outside the {n_items} items in {ITEM_IDS_FILE}")
    if pop.shape != (n_items,) or not np.issubdtype(pop.dtype, np.floating):
        raise TowerrecError(f"{shown}: item_popularity is {pop.dtype.name} {list(pop.shape)}; expected a float "
                            f"per item in {ITEM_IDS_FILE} ({n_items})")
    counts = tensors.get("user_counts")
    if counts is not None and (counts.shape != (n_users,) or not np.issubdtype(counts.dtype, np.integer)
                               or (len(counts) and counts.min() < 0)):
        raise TowerrecError(f"{shown}: user_counts is {counts.dtype.name} {list(counts.shape)}; expected a "
                            f"non-negative integer per user in {USER_IDS_FILE} ({n_users})")


# ---- recommenders ----------------------------------------------------------------------------------
def save_recommender(model: Any, path: str | Path, *, titles: list[str] | None = None,
                     item_table: pd.DataFrame | None = None, dataset: dict | None = None) -> Path:
    """Write a fitted `Recommender` (and optional catalogue files) as an artifact folder."""
    tensors = {f"model.{k}": v for k, v in model._state().items()}
    tensors["seen.indptr"] = model.seen_.indptr.astype(np.int64)
    tensors["seen.indices"] = model.seen_.indices.astype(np.int64)
    tensors["item_popularity"] = model.item_popularity_
    if getattr(model, "user_counts_", None) is not None:   # streamed: who is known comes from the counts
        tensors["user_counts"] = model.user_counts_.astype(np.int64)
    extra = {**model._extra(), "tie_seed": model.ties_.seed}
    if getattr(model, "lineage_", None):
        extra["lineage"] = model.lineage_            # the version and the data seen (towerrec.lineage)
    retired = getattr(model, "retired_", None)
    if retired is not None and retired.any():
        extra["retired"] = np.flatnonzero(retired).tolist()
    return write_artifact(path, model=model.name, config=dataclasses.asdict(model.config), tensors=tensors,
                          user_map=model.user_map_, item_map=model.item_map_, extra=extra,
                          titles=titles, item_table=item_table, dataset=dataset)


def load_recommender(cls: type, path: str | Path) -> Any:
    """A `cls` (a `Recommender` subclass) restored from `path`; any mismatch is a `TowerrecError`."""
    import scipy.sparse as sp

    from towerrec.config import apply_overrides
    from towerrec.ranking import TieOrder

    art = read_artifact(path)
    where = art.path / MODEL_FILE
    name = art.meta["model"]
    if cls.name != "base" and name != cls.name:   # the base class loads whatever the folder holds
        raise TowerrecError(f"{art.path}: holds a {name!r} model, not {cls.name!r}")
    extra = art.meta.get("extra", {})
    tie_seed = extra.get("tie_seed") or 0
    if not isinstance(tie_seed, int) or isinstance(tie_seed, bool):
        raise TowerrecError(f"{where}: extra.tie_seed must be an integer, got {tie_seed!r:.60}")
    try:   # the one config path: unknown fields and wrong types are errors, as in TOML files
        config = apply_overrides(cls.Config(), art.meta["config"], source=f"{where} config")
    except (TypeError, ValueError) as exc:
        raise TowerrecError(f"{where}: invalid {name} config: {_first_line(exc)}") from None
    model = cls(config=config)
    tensors = dict(art.tensors)
    model.user_map_, model.item_map_ = art.user_map, art.item_map
    indptr, indices = tensors.pop("seen.indptr"), tensors.pop("seen.indices")
    model.seen_ = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                                shape=(len(art.user_map), len(art.item_map)))
    model.item_popularity_ = tensors.pop("item_popularity")
    if "user_counts" in tensors:
        model.user_counts_ = tensors.pop("user_counts")
    model.ties_ = TieOrder.seeded(len(art.item_map), tie_seed)
    model.lineage_ = check_lineage(extra.get("lineage", []), str(where))
    model.retired_ = _retired_mask(extra.get("retired", []), len(art.item_map), where)
    state = {k[len("model."):]: v for k, v in tensors.items()}
    try:
        model._load_state(state, extra)
    except TowerrecError as exc:
        raise TowerrecError(f"{art.path}: {exc}") from exc
    except Exception as exc:   # a missing tensor, a shape that load_state_dict refuses, a bad extra
        raise TowerrecError(f"{art.path / WEIGHTS_FILE}: does not fit the {name} model in {MODEL_FILE} "
                            f"({type(exc).__name__}: {_first_line(exc)})") from exc
    return model


def _retired_mask(value: object, n_items: int, where: Path) -> np.ndarray:
    """extra.retired (item indices) as a bool mask [n_items], checked."""
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_items
                                              for i in value):
        raise TowerrecError(f"{where}: extra.retired must be a list of item indices below {n_items}")
    mask = np.zeros(n_items, dtype=bool)
    mask[np.asarray(value, dtype=np.int64)] = True
    return mask


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else repr(exc))[:300]


# ---- model stores: versions and LATEST -------------------------------------------------------------
def is_store(folder: str | Path) -> bool:
    """True when `folder` is a model store (has a LATEST file)."""
    return (Path(folder) / LATEST_FILE).is_file()


def resolve_artifact(folder: str | Path) -> Path:
    """The artifact folder to load: a store's LATEST version, or `folder` itself."""
    folder = Path(folder)
    if not is_store(folder):
        return folder
    name = artifact_file(folder, LATEST_FILE).read_text(encoding="utf-8").strip()
    if not name or "/" in name or name in (".", ".."):
        raise TowerrecError(f"{folder / LATEST_FILE}: expected the name of a version folder, got {name!r:.80}")
    target = artifact_file(folder, name)
    if not is_artifact(target):
        raise TowerrecError(f"{folder / LATEST_FILE}: names {name!r}, which is not a complete model folder")
    return target


def artifact_stamp(folder: str | Path) -> str:
    """Changes whenever what `resolve_artifact(folder)` loads changes (a store's LATEST, or the
    folder's model.json, written last by every save); '' when there is nothing to load yet."""
    folder = Path(folder)
    try:
        if is_store(folder):
            return "store:" + (folder / LATEST_FILE).read_text(encoding="utf-8").strip()
        st = (folder / MODEL_FILE).stat()
        return f"folder:{st.st_mtime_ns}:{st.st_size}"
    except OSError:
        return ""


def publish(model: Any, store: str | Path, **save_kwargs: Any) -> Path:
    """Save `model` as the next version of the store (created if needed) and make it LATEST.

    The folder is named after the model's version (`v000003`; a suffix if that name is taken) and
    written completely before LATEST is replaced (atomically), so a watching server never loads a
    partial model. `save_kwargs` go to `save_recommender` (titles, item_table, dataset)."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    base = f"v{max(int(getattr(model, 'version', 0)), 0):06d}"
    name, n = base, 1
    while (store / name).exists():
        name, n = f"{base}-{n}", n + 1
    path = save_recommender(model, store / name, **save_kwargs)
    write_text(store / LATEST_FILE, name + "\n")
    return path


# ---- titles ------------------------------------------------------------------------------------------
def write_titles(path: str | Path, titles: list[str], *, n_items: int | None = None) -> Path:
    """Write `path/item_titles.json`: a display title per item index."""
    titles = [str(t) for t in titles]
    if n_items is not None and len(titles) != n_items:
        raise TowerrecError(f"{len(titles)} titles for {n_items} items")
    return _write_json(Path(path), TITLES_FILE, titles)


def read_titles(path: str | Path, n_items: int) -> list[str] | None:
    """The titles of the artifact at `path` (None when it has none): one string per item index."""
    if not artifact_file(path, TITLES_FILE).exists():
        return None
    titles = _read_json(path, TITLES_FILE)
    where = Path(path) / TITLES_FILE
    if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
        raise TowerrecError(f"{where}: expected a JSON array of strings")
    if len(titles) != n_items:
        raise TowerrecError(f"{where}: {len(titles)} titles for {n_items} items in {ITEM_IDS_FILE}")
    return titles


# ---- item attribute table -----------------------------------------------------------------------------
def write_item_table(path: str | Path, items: pd.DataFrame, item_map: IdMap) -> Path:
    """Write `path/items.parquet`: the rows of `items` (with an `item_id` column) in item-index order.

    Items with no row get missing attributes; URL-like and constant columns are kept as they are:
    the API shows what the table holds.
    """
    frame = items.copy()
    frame["item_id"] = frame["item_id"].astype(str)
    frame = frame.drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(item_map.to_list(), name="item_id"))
    out = Path(path) / ITEM_TABLE_FILE
    with atomic_path(out) as tmp:
        frame.reset_index().to_parquet(tmp, index=False)
    return out


def read_item_table(path: str | Path) -> pd.DataFrame | None:
    """The artifact's items.parquet as written by `write_item_table` (None when it has none)."""
    file = artifact_file(path, ITEM_TABLE_FILE)
    if not file.exists():
        return None
    where = Path(path) / ITEM_TABLE_FILE
    try:
        frame = pd.read_parquet(file)
    except Exception as exc:   # pyarrow's errors for a truncated or garbled file vary by version
        raise TowerrecError(f"{where}: cannot read the item table ({type(exc).__name__}: {_first_line(exc)}); "
                            "the file is truncated or corrupt") from None
    if "item_id" not in frame.columns:
        raise TowerrecError(f"{where}: no item_id column (columns: {', '.join(map(str, frame.columns))})")
    return frame


# ---- dataset info ----------------------------------------------------------------------------------------
def write_dataset_info(path: str | Path, info: dict) -> Path:
    """Write `path/dataset.json`: what the model was trained on (keys of `DATASET_KEYS` only)."""
    _check_dataset_info(info, "dataset info")
    return _write_json(Path(path), DATASET_FILE, info, indent=2)


def read_dataset_info(path: str | Path) -> dict | None:
    """The artifact's dataset.json, checked (None when it has none)."""
    if not artifact_file(path, DATASET_FILE).exists():
        return None
    info = _read_json(path, DATASET_FILE)
    _check_dataset_info(info, str(Path(path) / DATASET_FILE))
    return info


def _check_dataset_info(info: object, where: str) -> None:
    if not isinstance(info, dict):
        raise TowerrecError(f"{where}: expected a JSON object")
    unknown = sorted(set(info) - set(DATASET_KEYS))
    if unknown:
        raise TowerrecError(f"{where}: unknown key(s) {unknown}; known: {', '.join(DATASET_KEYS)}")
    for key, value in info.items():
        kind = DATASET_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TowerrecError(f"{where}: {key!r} must be a {'non-negative integer' if kind is int else 'string'}, "
                                f"got {value!r:.60}")


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
