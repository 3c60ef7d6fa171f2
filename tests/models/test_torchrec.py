"""TorchRec sharding of the id tables (`towerrec[torchrec]`, models/torchrec_tables.py).

The torchrun test runs only where TorchRec and FBGEMM load (e.g. a venv with torch 2.13.0,
fbgemm-gpu-cpu 1.8.0 and torchrec 1.8.0); elsewhere it is skipped, and the error test checks the
install hint instead.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_ddp import _run
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models import torchrec_tables
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower

# Not installed by `make test`: fbgemm-gpu-cpu 1.8.0 beside torch 2.13.0 corrupts memory in torch
# processes that never import it (DDP tests crashed with SIGSEGV / "free(): invalid pointer" in most
# runs with it installed, in none of 12 without; benchmarks/README.md "Scale")
needs_torchrec = pytest.mark.skipif(not torchrec_tables.available(), reason="torchrec / fbgemm-gpu not installed")


def test_sharding_needs_torchrec_and_torchrun():
    inter = Interactions.from_frame(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))
    expected = "run under torchrun" if torchrec_tables.available() else "pip install"
    with pytest.raises(TowerrecError, match=expected):
        TwoTower(preset="cf", sharding="row_wise", epochs=1).fit(inter, options=FitOptions(device="cpu",
                                                                                            progress=False))
    with pytest.raises(TowerrecError, match="sharding must be one of"):
        TwoTower(preset="cf", sharding="column_wise").fit(inter)


@needs_torchrec
def test_torchrec_sharded_tables_train_like_ddp(tmp_path):
    """2 gloo processes: cf with its id tables sharded table-wise and row-wise by TorchRec (FBGEMM's
    fused EXACT_ROWWISE_ADAGRAD) follows the DDP run with towerrec's RowWiseAdagrad step for step;
    the tables come back as plain embeddings with the padding row zero; hybrid trains too."""
    worker = Path(__file__).with_name("torchrec_worker.py")
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
          str(worker), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] | {"rank": 0}
    runs = ranks[0]
    ddp = runs["cf/none"]
    for sharding in ("table_wise", "row_wise"):
        sharded = runs[f"cf/{sharding}"]
        assert set(sharded["plan"].values()) == {sharding} and len(sharded["plan"]) == 2   # user and item tables
        for (loss, valid), (ref_loss, ref_valid) in zip(sharded["history"], ddp["history"]):
            assert loss == pytest.approx(ref_loss, rel=1e-5) and valid == pytest.approx(ref_valid, abs=1e-6)
        assert sharded["test_ndcg"] == pytest.approx(ddp["test_ndcg"], abs=1e-6)
        assert sharded["weights_sum"] == pytest.approx(ddp["weights_sum"], rel=1e-4)
        hybrid = runs[f"hybrid/{sharding}"]
        assert len(hybrid["plan"]) == 3                     # user, item and history-item tables
        assert hybrid["history"][-1][0] < hybrid["history"][0][0] and hybrid["test_ndcg"] > 0.1
    assert all(run["plain_tables"] and run["padding_rows_zero"] for key, run in runs.items() if key != "rank")
