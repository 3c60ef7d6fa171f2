"""Artifact folders: what save writes, and load refusing every damaged, edited or escaping file in one line."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from towerrec import artifact
from towerrec.cli import main
from towerrec.errors import TowerrecError
from towerrec.models import load_model
from towerrec.models.base import FitOptions
from towerrec.models.ease import EASE

ALL_FILES = ("model.json", "weights.safetensors", "user_ids.json", "item_ids.json", "item_titles.json",
             "items.parquet", "dataset.json")


@pytest.fixture
def saved(tiny_interactions, tmp_path) -> Path:
    """An EASE artifact with every optional file (titles, item table, dataset info)."""
    model = EASE(l2=10.0).fit(tiny_interactions, options=FitOptions(seed=0))
    ids = model.item_map_.to_list()
    items = pd.DataFrame({"item_id": ids, "title": [f"Film {i}" for i in ids], "year": range(1990, 1990 + len(ids))})
    return artifact.save_recommender(model, tmp_path / "art", titles=[f"Film {i}" for i in ids], item_table=items,
                                     dataset={"name": "tiny", "users": 12, "items": 9, "interactions": 66})


def _meta(path: Path) -> dict:
    return json.loads((path / "model.json").read_text())


def _edit_meta(path: Path, **changes) -> None:
    (path / "model.json").write_text(json.dumps({**_meta(path), **changes}))


def _error(path: Path) -> str:
    with pytest.raises(TowerrecError) as info:
        load_model(str(path))
    return str(info.value)


# ---- what save writes ---------------------------------------------------------------------------------
def test_save_writes_every_file_and_a_manifest(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted(ALL_FILES)    # no temporary files left over
    meta = _meta(saved)
    assert meta["format"] == artifact.FORMAT_VERSION == 2
    tensors = load_file(str(saved / "weights.safetensors"))
    assert meta["tensors"] == {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in tensors.items()}
    assert meta["weights_sha256"] == hashlib.sha256((saved / "weights.safetensors").read_bytes()).hexdigest()
    assert artifact.read_titles(saved, 9)[0].startswith("Film ")
    assert artifact.read_dataset_info(saved) == {"name": "tiny", "users": 12, "items": 9, "interactions": 66}
    assert artifact.read_item_table(saved)["item_id"].tolist() == json.loads((saved / "item_ids.json").read_text())


def test_model_json_is_written_last(tiny_interactions, tmp_path, monkeypatch):
    """A save that dies part-way leaves a folder that is not taken for a model, even over an old one."""
    model = EASE(l2=10.0).fit(tiny_interactions, options=FitOptions(seed=0))
    path = model.save(tmp_path / "art")
    assert load_model(str(path)).name == "ease"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "write_dataset_info", crash)      # the last file before model.json
    with pytest.raises(OSError):
        artifact.save_recommender(model, path, dataset={"name": "x"})
    assert not (path / "model.json").exists()
    assert "not a towerrec model folder" in _error(path)


def test_saving_again_drops_the_previous_models_files(saved, tiny_interactions):
    EASE(l2=5.0).fit(tiny_interactions, options=FitOptions(seed=0)).save(saved)
    assert not any((saved / f).exists() for f in ("item_titles.json", "items.parquet", "dataset.json"))
    assert load_model(str(saved)).config.l2 == 5.0


def test_format_1_artifacts_still_load(saved):
    """Before the manifest: no "tensors" key, format 1."""
    meta = _meta(saved)
    del meta["tensors"], meta["weights_sha256"]
    (saved / "model.json").write_text(json.dumps({**meta, "format": 1}))
    assert load_model(str(saved)).n_items == 9


# ---- model.json -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, words", [
    ({"format": 3}, "format 3 was written by a newer towerrec"),
    ({"format": "2"}, "'format' must be a positive integer"),
    ({"config": {"l2": 10.0, "l3": 1}}, "config: unknown field 'l3'"),
    ({"config": {"l2": "ten"}}, "config: l2 must be a number, got 'ten'"),
    ({"config": []}, "'config' must be a JSON object"),
    ({"extra": "x"}, "'extra' must be a JSON object"),
    ({"model": 7}, "'model' must be a JSON string"),
    ({"weights": "elsewhere"}, "unknown key(s) ['weights']"),
    ({"model": "sasrec"}, "unknown field 'l2'"),    # the class named in model.json does not take this config
    ({"extra": {"tie_seed": "x"}}, "extra.tie_seed must be an integer"),
])
def test_bad_model_json_is_named(saved, changes, words):
    _edit_meta(saved, **changes)
    message = _error(saved)
    assert words in message and "model.json" in message, message


def test_manifest_is_checked_against_the_weights(saved):
    meta = _meta(saved)
    name = next(iter(meta["tensors"]))
    meta["tensors"][name]["shape"] = [1, 2, 3]
    (saved / "model.json").write_text(json.dumps(meta))
    message = _error(saved)
    assert "weights.safetensors" in message and name in message and "[1, 2, 3]" in message


def test_a_damaged_byte_inside_the_weights_is_caught(saved):
    """safetensors checks its header only; the checksum in model.json covers the data too."""
    data = bytearray((saved / "weights.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (saved / "weights.safetensors").write_bytes(bytes(data))
    message = _error(saved)
    assert "weights.safetensors" in message and "SHA-256" in message


def _rewrite_weights(path: Path, change) -> None:
    """Edit the tensors, manifest and checksum together, as a consistent but wrong artifact would be."""
    file = path / "weights.safetensors"
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file))
    _edit_meta(path, tensors={k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in tensors.items()},
               weights_sha256=hashlib.sha256(file.read_bytes()).hexdigest())


def test_a_missing_model_tensor_is_named_not_a_traceback(saved):
    _rewrite_weights(saved, lambda t: t.pop(next(k for k in t if k.startswith("model."))))
    message = _error(saved)
    assert "weights.safetensors" in message and "KeyError" in message


def test_a_torch_shape_mismatch_is_named_not_a_traceback(tiny_interactions, tmp_path):
    from towerrec.models.two_tower import TwoTower, TwoTowerConfig

    config = TwoTowerConfig.for_preset("cf", epochs=1, embedding_dim=4, id_dim=4, hidden=())
    path = TwoTower(config).fit(tiny_interactions, options=FitOptions(seed=0, threads=1, progress=False)).save(
        tmp_path / "tt")
    key = next(k for k, v in load_file(str(path / "weights.safetensors")).items()
               if k.startswith("model.module.") and v.ndim == 2)
    _rewrite_weights(path, lambda t: t.update({key: np.zeros((3, 5), dtype=np.float32)}))
    message = _error(path)
    assert "weights.safetensors" in message and "does not fit the two-tower model" in message


# ---- id lists ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, ids, words", [
    ("user_ids.json", lambda ids: ids[:-1], "11 users"),
    ("item_ids.json", lambda ids: ids + ["extra"], "item_popularity"),
    ("user_ids.json", lambda ids: [ids[0]] + ids[1:-1] + [ids[0]], "duplicated user ids"),
    ("item_ids.json", lambda ids: [7] + ids[1:], "must be strings"),
    ("item_ids.json", lambda ids: {"ids": ids}, "expected a JSON array"),
])
def test_bad_id_lists_are_named(saved, name, ids, words):
    (saved / name).write_text(json.dumps(ids(json.loads((saved / name).read_text()))))
    message = _error(saved)
    assert name in message or "weights.safetensors" in message
    assert words in message, message


def test_titles_must_match_the_items(saved):
    (saved / "item_titles.json").write_text(json.dumps(["only one"]))
    with pytest.raises(TowerrecError, match="item_titles.json: 1 titles for 9 items"):
        artifact.read_titles(saved, 9)


def test_dataset_info_keys_are_checked(saved):
    (saved / "dataset.json").write_text(json.dumps({"name": "tiny", "secret": "x"}))
    with pytest.raises(TowerrecError, match=r"dataset.json: unknown key\(s\) \['secret'\]"):
        artifact.read_dataset_info(saved)
    (saved / "dataset.json").write_text(json.dumps({"name": "tiny", "users": -1}))
    with pytest.raises(TowerrecError, match="'users' must be a non-negative integer"):
        artifact.read_dataset_info(saved)


# ---- files outside the folder --------------------------------------------------------------------------------
def _read_everything(path: Path) -> None:
    """What `towerrec serve` reads."""
    load_model(str(path))
    artifact.read_titles(path, 9)
    artifact.read_item_table(path)
    artifact.read_dataset_info(path)


@pytest.mark.parametrize("name", ALL_FILES)
def test_files_resolving_outside_the_folder_are_refused(saved, tmp_path, name):
    """A symlink pointing out of the folder is never followed, whatever it points at."""
    _read_everything(saved)
    outside = tmp_path / "outside" / name
    outside.parent.mkdir()
    os.replace(saved / name, outside)          # a valid file, only in the wrong place
    (saved / name).symlink_to(outside)
    with pytest.raises(TowerrecError, match=f"{name}: refusing to read it: .* outside the artifact folder"):
        _read_everything(saved)


def test_a_symlinked_artifact_folder_and_links_inside_it_are_fine(saved, tmp_path):
    (saved / "titles-v2.json").write_text((saved / "item_titles.json").read_text())
    (saved / "item_titles.json").unlink()
    (saved / "item_titles.json").symlink_to("titles-v2.json")
    (tmp_path / "latest").symlink_to(saved)
    assert artifact.read_titles(tmp_path / "latest", 9)[0].startswith("Film ")
    assert load_model(str(tmp_path / "latest")).n_items == 9


# ---- damaged files on the command line -------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):     # garble every 7th byte, header included
        data[i] = (data[i] + 101) % 256
    path.write_bytes(bytes(data))


#: the files each command reads; the others it leaves alone (`recommend` shows no attributes)
READS = {"recommend": set(ALL_FILES) - {"items.parquet", "dataset.json"}, "serve": set(ALL_FILES)}
COMMANDS = {"recommend": ["recommend", "{art}", "--user", "u1", "--k", "2"],
            "serve": ["serve", "{art}", "--port", "1"]}   # never reached: loading fails first


@pytest.mark.parametrize("damage", [_truncate, _corrupt], ids=["truncated", "corrupt"])
@pytest.mark.parametrize("name", ALL_FILES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_damaged_files_are_one_line_on_the_cli(saved, command, name, damage, capsys, monkeypatch):
    if command == "serve":
        pytest.importorskip("fastapi")
        pytest.importorskip("faiss")
        monkeypatch.delenv("TOWERREC_SERVE_CONFIG", raising=False)   # `serve` sets it for its workers
        monkeypatch.delenv("TOWERREC_TOKEN", raising=False)
        monkeypatch.setattr("towerrec.serve.app.set_threads", lambda n: None)   # keep this process's threads
    damage(saved / name)
    code = main([a.format(art=saved) for a in COMMANDS[command]])
    err = capsys.readouterr().err
    if name not in READS[command]:
        assert code == 0, err
        return
    lines = [line for line in err.splitlines() if line.startswith("towerrec: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert name in lines[0], lines[0]
