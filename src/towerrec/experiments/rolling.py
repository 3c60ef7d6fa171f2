"""Rolling evaluation from the command line and experiment files: tables, files, figures, report.

    towerrec evaluate --data ml-100k --split rolling --windows 5 --models als,hybrid --out results/rolling
    towerrec run examples/ml100k-rolling.toml          # [split] method = "rolling", windows = 5

The protocol is `towerrec.rolling`'s. The results folder holds `rolling.json` (every row: model,
seed, window, track, metrics, seconds, counts; the windows' facts; the per-model summary),
`rolling.csv` (the rows, flat), `rolling.png` (metrics and seconds over the windows, refit against
update, and each window's cold-item and new-user shares) and, from `towerrec run`, `report.html`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.display import text_table
from towerrec.files import write_bytes, write_text
from towerrec.rolling import RollingResult, rolling_split, run_rolling

log = logging.getLogger(__name__)

TRACK_STYLE = {"refit": "-o", "update": "--s"}


def summary_rows(result: RollingResult, k0: int = 10, k1: int = 20) -> list[dict]:
    """Per model (and seed mean): each track's mean NDCG@k0, Recall@k1 and seconds over the windows,
    update / refit ratios."""
    frame = result.frame()
    out = []
    for label, part in frame.groupby("model", sort=False):
        refit, update = part[part.track == "refit"], part[part.track == "update"]
        row: dict = {"model": label}
        for name in (f"NDCG@{k0}", f"Recall@{k1}", "seconds"):
            row[f"refit {name}"] = float(refit[name].mean()) if len(refit) else None
            row[f"update {name}"] = float(update[name].mean()) if len(update) else None
        ndcg, secs = (row[f"refit NDCG@{k0}"], row[f"update NDCG@{k0}"]), (row["refit seconds"], row["update seconds"])
        row[f"NDCG@{k0} update/refit"] = ndcg[1] / ndcg[0] if ndcg[0] and ndcg[1] is not None else None
        row["seconds update/refit"] = secs[1] / secs[0] if secs[0] and secs[1] is not None else None
        out.append(row)
    return out


def rolling_text(result: RollingResult, k0: int = 10, k1: int = 20) -> str:
    """The per-window table and the summary, as text."""
    frame = result.frame()
    columns = ["model", "window", "track", f"NDCG@{k0}", f"Recall@{k1}", f"NDCG@{k0} (warm)", "users", "seconds"]
    rows = [[r.get(c, "") for c in columns] for r in frame.sort_values(["model", "window", "track"]).to_dict("records")]
    windows = pd.DataFrame(result.info["windows"])
    wcols = ["window", "rows", "users", "new_users", "new_items", "cold_item_share"]
    summary = summary_rows(result, k0, k1)
    scols = list(summary[0]) if summary else []
    return "\n\n".join([
        text_table(wcols, [[w[c] for c in wcols] for w in windows.to_dict("records")]),
        text_table(columns, rows),
        text_table(scols, [[r[c] for c in scols] for r in summary]),
    ])


def figure(result: RollingResult, k0: int = 10, k1: int = 20) -> bytes | None:
    """rolling.png: NDCG@k0, Recall@k1, seconds (log) per window, refit solid and update dashed,
    and each window's cold-item and new-user shares; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    import io

    from towerrec.experiments import plots

    frame = result.frame()
    palette = plots.colors(list(frame["model"].unique()))
    fig = Figure(figsize=(15, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, metric in zip(axes[:3], (f"NDCG@{k0}", f"Recall@{k1}", "seconds")):
        means = frame.groupby(["model", "track", "window"], sort=False)[metric].mean().reset_index()
        for (model, track), part in means.groupby(["model", "track"], sort=False):
            ax.plot(part["window"], part[metric], TRACK_STYLE.get(track, "-"), color=palette[model],
                    label=f"{model} {track}", markersize=4)
        ax.set_title(f"{metric}{' (fit or update)' if metric == 'seconds' else ''}")
        ax.set_xlabel("window")
        ax.set_xticks(sorted(frame["window"].unique()))
        ax.grid(True, alpha=0.3)
        if metric == "seconds":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    windows = pd.DataFrame(result.info["windows"])
    axes[3].bar(windows["window"], windows["cold_item_share"], color="#999999", label="cold-item rows")
    axes[3].plot(windows["window"], windows["cold_user_share"], "k-o", markersize=4, label="new-user rows")
    axes[3].set_title("share of the window's rows")
    axes[3].set_xticks(windows["window"].tolist())
    axes[3].set_xlabel("window")
    axes[3].legend(fontsize=7)
    axes[3].grid(True, alpha=0.3)
    fig.suptitle("refit (solid) vs incremental update (dashed)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def write_rolling(out: str | Path, result: RollingResult, *, protocol: dict, command: Sequence[str] | None = None,
                  k0: int = 10, k1: int = 20) -> Path:
    """rolling.json, rolling.csv and rolling.png into `out` (each written atomically)."""
    from towerrec.runner import versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"protocol": protocol, "windows": result.info, "summary": summary_rows(result, k0, k1),
               "rows": result.rows, "seconds": result.seconds, "command": list(command or []), "versions": versions()}
    write_text(out / "rolling.json", json.dumps(payload, indent=2, default=_plain, allow_nan=False))
    flat = result.frame().drop(columns=["new_item"], errors="ignore")
    new_item = pd.json_normalize([r.get("new_item") or {} for r in result.rows]).add_prefix("new_item.")
    write_text(out / "rolling.csv", pd.concat([flat.reset_index(drop=True), new_item], axis=1).to_csv(index=False))
    png = figure(result, k0, k1)
    if png is not None:
        write_bytes(out / "rolling.png", png)
    return out


def _plain(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not np.isfinite(value) else float(value)
    return str(value)


def protocol(windows: int, start: float, seed: int, ks: Sequence[int]) -> dict:
    return {"split": "rolling", "windows": windows, "start": start, "seed": seed, "k": list(ks),
            "exclude_seen": True, "catalogue": "items seen before the window; cold-item rows count in |R|",
            "tracks": {"update": "the running model updated with the slice before the window",
                       "refit": "a fresh fit on every row before the window"}}


def evaluate_rolling(dataset, models: Sequence[tuple[str, object]], *, windows: int, start: float, seed: int,
                     ks: tuple[int, ...], out: str | None, command: Sequence[str] | None, batch_size: int = 1024,
                     threads: int | None = None) -> RollingResult:
    """`towerrec evaluate --split rolling`: both tracks for every (label, unfitted model) pair."""
    import copy

    from towerrec.models import FitOptions

    split = rolling_split(dataset, windows=windows, start=start, seed=seed)
    log.info("%s", split)
    factories = [(label, (lambda m=model: copy.deepcopy(m))) for label, model in models]
    ks = tuple(sorted(set(ks) | {10, 20}))
    result = run_rolling(split, factories, k=ks, options=FitOptions(seed=seed, threads=threads, progress=False),
                         batch_size=batch_size)
    print(f"\n{dataset.name} | split rolling, {windows} windows from quantile {start:g} | refit vs update\n")
    print(rolling_text(result))
    if out:
        write_rolling(out, result, protocol=protocol(windows, start, seed, ks), command=command)
    return result


# ---- experiment files (`towerrec run` with [split] method = "rolling") ---------------------------------
def run_rolling_experiment(exp, out: str | Path, *, data_dir: str | None = None,
                           command: Sequence[str] | None = None) -> RollingResult:
    """Every model of the experiment on both tracks, once per seed (the windows do not depend on the
    seed; the models' initialisation and replay samples do); writes the rolling files and report.html."""
    import time

    from towerrec.experiments.runner import load_data
    from towerrec.models import FitOptions
    from towerrec.rolling import ROLLING_METRICS

    start = time.perf_counter()
    dataset = load_data(exp, data_dir)
    ks = tuple(sorted(set(exp.evaluation.k) | {10, 20}))
    metrics = tuple(m for m in exp.evaluation.metrics if m in ROLLING_METRICS) or ROLLING_METRICS
    rows, info = [], {}
    for seed in exp.seeds:
        split = rolling_split(dataset, windows=exp.split.windows, start=exp.split.start, seed=seed)
        log.info("seed %d: %s", seed, split)
        factories = [(label, spec.build) for label, spec in exp.models.items()]
        result = run_rolling(split, factories, k=ks, metrics=metrics, options=FitOptions(seed=seed, progress=False),
                             batch_size=exp.evaluation.batch_size)
        rows += [{**row, "seed": seed} for row in result.rows]
        info = result.info
    result = RollingResult(rows, info, time.perf_counter() - start)
    write_rolling(out, result, protocol=protocol(exp.split.windows, exp.split.start, exp.seeds[0], ks), command=command)
    write_text(Path(out) / "report.html", report_html(result, title=f"{exp.name}: {dataset.name}, rolling evaluation"))
    return result


def report_html(result: RollingResult, *, title: str) -> str:
    """A self-contained page: the summary, the figure, the windows' facts and every row."""
    import base64
    import html

    from towerrec.experiments.report import CSS

    def table(frame: pd.DataFrame) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                       for row in frame.itertuples(index=False))
        return f"<table><tr>{head}</tr>{body}</table>"

    png = figure(result)
    img = (f'<img alt="metrics and seconds per window" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png is not None else "<p>(matplotlib is not installed: no figure)</p>")
    rows = result.frame().drop(columns=["new_item"], errors="ignore")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            "<p class='verdict'>Each window is ranked by a model <b>refitted</b> on every row before it and by "
            "the running model <b>updated</b> with the slice just before it (the same rows). Ratios are "
            "update / refit, means over windows (and seeds).</p>"
            f"<h2>Summary</h2>{table(pd.DataFrame(summary_rows(result)))}<h2>Over the windows</h2>{img}"
            f"<h2>Windows</h2>{table(pd.DataFrame(result.info['windows']))}<h2>Every row</h2>{table(rows)}"
            "</body></html>")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if np.isfinite(value) else ""
    return "" if value is None else str(value)
