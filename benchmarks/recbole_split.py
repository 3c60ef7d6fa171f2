"""Feed RecBole 1.2.1 the towerrec split files, so the peers are scored on exactly our split.

The shared peer runner (`../shared/peers/run_recbole.py`) lets RecBole cut its own split. RecBole
also reads a ready split through its `benchmark_filename` option: `<name>.train.inter`,
`<name>.valid.inter` and `<name>.test.inter` in `<data_path>/<name>/`, used as they are (its own
`eval_args.split` is then ignored; valid masks train items, test masks train + valid, as ours).
This script does two things, and imports no RecBole code of its own:

    # 1) towerrec venv: write the seed-0 random 8:1:1 split of a dataset as RecBole atomic files
    PYTHONPATH=src python benchmarks/recbole_split.py export --datasets ml-100k,ciao --out /tmp/tr-splits
    # 2) any python3: run one RecBole model on those files through the shared runner (its venv,
    #    its /usr/bin/time wrapper, its JSON line), with `benchmark_filename` added to its config
    python3 benchmarks/recbole_split.py run --splits /tmp/tr-splits --model BPR --dataset ml-100k \
        --epochs 300 --time-budget 1800 --threads 1 --out benchmarks/results/general_peers.jsonl
    # 3) every peer cell (BPR, MultiVAE, NeuMF, LightGCN x 7 datasets) not yet in --out
    python3 benchmarks/recbole_split.py all --splits /tmp/tr-splits --out benchmarks/results/general_peers.jsonl

The RecBole dataset name is `tr-<dataset>-s<seed>` (a name RecBole has no packaged copy of: for
`ml-100k` it would read its own file instead). Every other argument goes to `run_recbole.py`
unchanged (RecBole's defaults apart from what that runner sets: see ../shared/peers/SUMMARY.md).
Catalogue note: RecBole's catalogue is the items present in the three files; towerrec's also
holds items listed in items.csv with no interaction (18 on ml-latest-small), which can never be
a target.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = Path(os.environ.get("TOWERREC_PEERS", HERE.parents[1] / "shared" / "peers"))


def recbole_name(dataset: str, seed: int = 0) -> str:
    return f"tr-{dataset}-s{seed}"


def export(datasets: list[str], out: Path, seed: int = 0, data_dir: str | None = None) -> None:
    """Write each dataset's random split (seed `seed`) as RecBole atomic files, original ids."""
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from general import load_split  # the benchmark's own loading and split: the same files

    for name in datasets:
        split = load_split(name, seed, data_dir=data_dir)
        folder = out / recbole_name(name, seed)
        folder.mkdir(parents=True, exist_ok=True)
        for part in ("train", "valid", "test"):
            inter = getattr(split, part)
            frame = pd.DataFrame({"user_id:token": split.train.user_map.ids[inter.user_idx],
                                  "item_id:token": split.train.item_map.ids[inter.item_idx]})
            path = folder / f"{folder.name}.{part}.inter"
            tmp = path.with_suffix(".tmp")
            frame.to_csv(tmp, sep="\t", index=False)
            tmp.replace(path)
        print(f"{name}: {folder} train {len(split.train):,} valid {len(split.valid):,} test {len(split.test):,}")


def _runner():
    sys.path.insert(0, str(PEERS_DIR))
    import run_recbole  # the shared runner, not RecBole

    return run_recbole


def run(argv: list[str]) -> int:
    """Outer: the shared runner's outer mode, re-running this file inside the peers' venv.
    Inner (--inner): the shared runner's inner mode with `benchmark_filename` in RecBole's config."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--splits", required=True, help="the folder written by `export`")
    p.add_argument("--split-seed", type=int, default=0)
    mine, rest = p.parse_known_args(argv)
    rr = _runner()
    a = rr.parse_args(rest)
    a.dataset = recbole_name(a.dataset, mine.split_seed) if not a.dataset.startswith("tr-") else a.dataset
    splits = str(Path(mine.splits).resolve())
    if not (Path(splits) / a.dataset / f"{a.dataset}.train.inter").exists():
        print(f"error: no split files for {a.dataset} under {splits} (run `export` first)", file=sys.stderr)
        return 2
    base = rr.build_config_dict

    def with_split(args, run_dir):
        cfg = base(args, run_dir)
        cfg.update({"data_path": splits, "benchmark_filename": ["train", "valid", "test"],
                    "load_col": {"inter": ["user_id", "item_id"]}})
        return cfg

    rr.build_config_dict = with_split
    if a.inner:
        return rr.inner(a)
    # the outer re-runs `__file__ + sys.argv[1:]` in the venv: point it at this file, dataset renamed
    rr.__file__ = os.path.abspath(__file__)
    sys.argv = [sys.argv[0], "run", "--splits", splits, "--split-seed", str(mine.split_seed),
                *_replace(rest, "--dataset", a.dataset)]
    return rr.outer(a)


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    out, skip = [], False
    for i, x in enumerate(args):
        if skip:
            skip = False
            continue
        if x == flag:
            skip = True
            continue
        if x.startswith(flag + "="):
            continue
        out.append(x)
    return out + [flag, value]


PEER_MODELS = ("BPR", "MultiVAE", "NeuMF", "LightGCN")
# cheapest first, so an interrupted run leaves whole datasets done
PEER_DATASETS = ("ml-100k", "ciao", "ml-latest-small", "lastfm-hetrec2011", "amazon-magazine-subscriptions",
                 "amazon-beauty", "amazon-sports")


def run_all(argv: list[str]) -> int:
    """Every (dataset, model) cell not yet in --out, one process at a time (resumable)."""
    import json
    import subprocess

    p = argparse.ArgumentParser(description="run every peer cell on the towerrec split files")
    p.add_argument("--splits", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--datasets", default=",".join(PEER_DATASETS))
    p.add_argument("--models", default=",".join(PEER_MODELS))
    p.add_argument("--epochs", type=int, default=300)          # RecBole's default
    p.add_argument("--stopping-step", type=int, default=10)    # RecBole's default
    p.add_argument("--time-budget", type=float, default=1800)  # a bound per cell on 2 cores, recorded
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rerun-stopped", action="store_true",
                   help="run again the cells that a time budget stopped (a new line is appended; the table takes the last)")
    a = p.parse_args(argv)
    done = set()
    if Path(a.out).exists():
        for line in Path(a.out).read_text().splitlines():
            r = json.loads(line)
            if "error" not in r and not (a.rerun_stopped and r.get("stopped_by_time_budget")):
                done.add((r["dataset"], r["model"]))
    for dataset in a.datasets.split(","):
        for model in a.models.split(","):
            if (recbole_name(dataset), model) in done:
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "run", "--splits", a.splits, "--model", model,
                   "--dataset", dataset, "--epochs", str(a.epochs), "--stopping-step", str(a.stopping_step),
                   "--time-budget", str(a.time_budget), "--threads", str(a.threads), "--out", a.out,
                   "--note", f"towerrec seed-0 random split files (benchmark_filename); load {os.getloadavg()}"]
            print(" ".join(cmd), flush=True)
            subprocess.call(cmd)
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("export", "run", "all"):
        print(__doc__)
        return 2
    if sys.argv[1] == "run":
        return run(sys.argv[2:])
    if sys.argv[1] == "all":
        return run_all(sys.argv[2:])
    p = argparse.ArgumentParser(description="write towerrec splits as RecBole benchmark files")
    p.add_argument("--datasets", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(sys.argv[2:])
    export(a.datasets.split(","), Path(a.out), a.seed, a.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
