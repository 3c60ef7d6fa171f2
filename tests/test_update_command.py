"""`towerrec update`: new rows folded into a saved model, the next version published to a store."""
from __future__ import annotations

import pandas as pd

from towerrec.artifact import publish, read_item_table, read_titles, resolve_artifact, write_item_table, write_titles
from towerrec.cli import main
from towerrec.data.interactions import Interactions
from towerrec.models import load_model
from towerrec.models.als import ALS
from towerrec.models.base import FitOptions


def _log() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{u}" for u in range(20) for _ in range(3)],
                         "item_id": [f"i{(u + j) % 9}" for u in range(20) for j in range(3)]})


def test_update_publishes_the_next_version(tmp_path, capsys):
    inter = Interactions.from_frame(_log())
    model = ALS(factors=4, iterations=3, regularization=1.0).fit(inter, options=FitOptions(seed=0))
    store = tmp_path / "store"
    first = publish(model, store)
    items = pd.DataFrame({"item_id": inter.item_map.ids, "title": [f"Title {i}" for i in inter.item_map.ids]})
    write_titles(first, items["title"].tolist())
    write_item_table(first, items, inter.item_map)
    new = tmp_path / "new.csv"
    pd.DataFrame({"user_id": ["u1", "fresh", "fresh"], "item_id": ["i5", "i1", "i-new"]}).to_csv(new, index=False)
    new_items = tmp_path / "new_items.csv"
    pd.DataFrame({"item_id": ["i-new"], "title": ["Brand new"]}).to_csv(new_items, index=False)
    assert main(["update", str(store), "--data", str(new), "--items", str(new_items), "--publish", str(store)]) == 0
    assert "version 2" in capsys.readouterr().out
    latest = resolve_artifact(store)
    assert latest.name == "v000002"
    updated = load_model(str(store))
    assert updated.version == 2 and "fresh" in updated.user_map_ and "i-new" in updated.item_map_
    assert updated.lineage_[-1]["new_items"] == 1 and updated.lineage_[-1]["changed_users"] == 1
    assert read_titles(latest, updated.n_items)[-1] == "Brand new"
    assert read_item_table(latest)["item_id"].tolist()[-1] == "i-new"
    out = tmp_path / "folder"
    assert main(["update", str(latest), "--data", str(new), "--out", str(out)]) == 0
    assert load_model(str(out)).version == 3


def test_update_needs_a_target(tmp_path, capsys):
    assert main(["update", str(tmp_path), "--data", "x.csv"]) == 2
    assert "--out" in capsys.readouterr().err
