"""One rank of tests/models/test_torchrec.py's torchrun run (not collected: no test_ prefix).

    python -m torch.distributed.run --nproc_per_node 2 torchrec_worker.py OUT_DIR

For each sharding: a cf and a hybrid two-tower trained with their id tables sharded by TorchRec
(table-wise or row-wise), then evaluated as a plain model; writes OUT_DIR/rank<r>.json.
"""
from __future__ import annotations

import faulthandler
import json
import os
import sys


from towerrec.evaluation import evaluate
from towerrec.models import torchrec_tables
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower, TwoTowerConfig
from towerrec.splits import random_split

faulthandler.enable()   # a crash in a rank prints its Python stack to stderr (the test shows it)


def main() -> None:
    from towerrec.data.synthetic import synthetic

    out_dir, rank = sys.argv[1], int(os.environ.get("RANK", "0"))
    ds = synthetic(200, 80, 4_000, seed=3)
    split = random_split(ds.interactions, seed=0)
    options = FitOptions(seed=0, threads=1, progress=False, device="cpu", dist_timeout=120.0)
    result: dict = {"rank": rank}
    seen_plans = []
    original = torchrec_tables.distribute

    def recording(*args, **kw):
        dmp = original(*args, **kw)
        seen_plans.append({name: str(ps.sharding_type) for module_plan in dmp.plan.plan.values()
                           for name, ps in module_plan.items()})
        return dmp

    torchrec_tables.distribute = recording
    runs = [("none", "cf", {}), ("table_wise", "cf", {}), ("row_wise", "cf", {}),
            ("table_wise", "hybrid", {"text": "none"}), ("row_wise", "hybrid", {"text": "none"})]
    for sharding, preset, extra in runs:
        config = TwoTowerConfig.for_preset(preset, epochs=4, patience=4, batch_size=64, embedding_dim=16,
                                           id_dim=16, feature_dim=8, hidden=(), learning_rate=1e-2,
                                           embedding_optimizer="rowwise_adagrad", embedding_learning_rate=0.1,
                                           weight_decay=0.0, sharding=sharding, **extra)
        model = TwoTower(config).fit(split.train, user_features=ds.user_features,
                                     item_features=ds.item_features, valid=split.valid, options=options)
        weights = {n: p.detach() for n, p in model.module_.named_parameters()}
        digest = float(sum(float(w.double().sum()) for w in weights.values()))
        result[f"{preset}/{sharding}"] = {
            "history": [(h["loss"], h["valid_NDCG@10"]) for h in model.history_],
            "test_ndcg": evaluate(model, split).summary["NDCG@10"],
            "plain_tables": all(type(m.embedding).__name__ == "Embedding"
                                for m in model.module_.modules() if type(m).__name__ == "IdEmbedding"),
            "padding_rows_zero": all(float(m.embedding.weight[0].abs().sum()) == 0
                                     for m in model.module_.modules() if type(m).__name__ == "IdEmbedding"),
            "weights_sum": digest, "plan": seen_plans[-1] if sharding != "none" else {}}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
