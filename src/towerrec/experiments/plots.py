"""The report's figures, each returned as a base64 PNG so report.html needs no other file.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no global backend
state, nothing left open, safe to call from a library. Every function takes plain tables, so a
figure can be redrawn from the results folder alone.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DPI = 90


def colors(labels: Sequence[str]) -> dict[str, str]:
    """One stable colour per model (tab10, then tab20) so a model looks the same in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def to_png(fig) -> str:
    """base64 of the figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_axisbelow(True)
    return fig, axes


def metric_bars(table: pd.DataFrame, metrics: Sequence[str], palette: Mapping[str, str],
                reference: str | None = None) -> str:
    """One panel per metric: a horizontal bar per model (best on top) with its 95% CI.

    `table` is indexed by model with columns `<metric>`, `<metric>_lo`, `<metric>_hi`.
    """
    fig, axes = _figure(3.0 * len(metrics) + 1.2, 0.35 * len(table) + 1.3, len(metrics))
    labels = list(table.index)[::-1]
    y = np.arange(len(labels))
    for ax, metric in zip(axes, metrics):
        mean = table.loc[labels, metric].to_numpy(float)
        err = np.vstack([mean - table.loc[labels, f"{metric}_lo"].to_numpy(float),
                         table.loc[labels, f"{metric}_hi"].to_numpy(float) - mean])
        bars = ax.barh(y, mean, xerr=np.nan_to_num(err), color=[palette[m] for m in labels], capsize=3,
                       edgecolor=["black" if m == reference else "none" for m in labels])
        right = mean + np.nan_to_num(err[1])
        for bar, value, end in zip(bars, mean, right):
            if np.isfinite(value):  # printed past the whisker so the two never overlap
                ax.text(end, bar.get_y() + bar.get_height() / 2, f"  {value:.3f}", va="center", ha="left",
                        fontsize=8)
        ax.set_title(metric)
        ax.set_yticks(y, labels if ax is axes[0] else [""] * len(labels))
        ax.set_xlim(0, np.nanmax(table[f"{metric}_hi"].to_numpy(float)) * 1.25 or 1)
    return to_png(fig)


def k_curves(curves: Mapping[str, pd.DataFrame], palette: Mapping[str, str]) -> str | None:
    """Metric over K (one panel per metric; `curves[metric]` is K x models)."""
    curves = {m: c for m, c in curves.items() if not c.empty}
    if not curves:
        return None
    fig, axes = _figure(5.2 * len(curves), 3.4, len(curves))
    for ax, (metric, frame) in zip(axes, curves.items()):
        for label in frame.columns:
            ax.plot(frame.index, frame[label], marker="o", ms=3, label=label, color=palette[label])
        ax.set_xscale("log")
        ax.set_xticks(frame.index, [str(k) for k in frame.index])
        ax.set_xlabel("K (list length)")
        ax.set_title(f"{metric}@K")
    axes[-1].legend(fontsize=8, loc="best")
    return to_png(fig)


def _valid_key(history: Sequence[Mapping]) -> str | None:
    """The validation-metric key of a history record: `valid_<metric>` (the training loop's
    convention), else any key that names a metric@K. Timing keys never qualify."""
    keys = [k for row in history for k in row]
    return next((k for k in keys if k.startswith("valid")), None) or next((k for k in keys if "@" in k), None)


def training_curves(histories: Mapping[str, Sequence[Mapping]], palette: Mapping[str, str]) -> str | None:
    """Training loss and the validation metric per epoch, from each model's `history_` (first seed)."""
    histories = {m: h for m, h in histories.items() if h}
    if not histories:
        return None
    with_valid = any(_valid_key(h) for h in histories.values())
    fig, axes = _figure(10.5 if with_valid else 5.5, 3.4, 2 if with_valid else 1)
    for label, history in histories.items():
        frame = pd.DataFrame(list(history))
        epoch = frame["epoch"] if "epoch" in frame else pd.Series(np.arange(1, len(frame) + 1))
        loss = "loss" if "loss" in frame else "train_loss" if "train_loss" in frame else None
        if loss and frame[loss].iloc[0]:
            # losses of different models differ by orders of magnitude (ALS's squared error vs a
            # softmax): relative to the first epoch, every curve's shape is readable on one axis
            axes[0].plot(epoch, frame[loss] / frame[loss].iloc[0], marker="o", ms=3, label=label,
                         color=palette[label])
        key = _valid_key(history)
        if key and with_valid:
            axes[1].plot(epoch, frame[key], marker="o", ms=3, label=f"{label} ({key})", color=palette[label])
    axes[0].set_title("training loss, relative to the first epoch")
    if with_valid:
        axes[1].set_title("validation metric")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return to_png(fig)


def popularity(item_share: np.ndarray, rec_counts: Mapping[str, np.ndarray], coverage: pd.Series,
               mean_pop: pd.Series, k: int, palette: Mapping[str, str], bins: int = 10) -> str:
    """Left: where recommendations fall along the catalogue's popularity (items in deciles by train
    popularity, most popular first) against the deciles' share of train interactions. Right:
    Coverage@k against Popularity@k, one point per model (top left = diverse and long-tail)."""
    fig, axes = _figure(11, 3.6, 2)
    order = np.argsort(-item_share, kind="stable")
    decile = np.empty(len(order), dtype=np.int64)
    decile[order] = np.arange(len(order)) * bins // len(order)
    x = np.arange(1, bins + 1)
    catalogue = np.bincount(decile, weights=item_share, minlength=bins)
    axes[0].plot(x, catalogue, color="black", ls="--", lw=2, label="train interactions (catalogue)")
    for label, counts in rec_counts.items():
        share = np.bincount(decile, weights=counts, minlength=bins) / max(counts.sum(), 1)
        axes[0].plot(x, share, marker="o", ms=3, label=label, color=palette[label])
    axes[0].axhline(1 / bins, color="grey", ls=":", label="uniform")
    axes[0].set_yscale("symlog", linthresh=1e-3)  # log-like, but a decile never recommended sits at 0
    axes[0].set_ylim(0, 1.2)
    axes[0].set_xticks(x)
    axes[0].set_xlabel(f"item popularity decile (1 = top {100 // bins}% most popular in train)")
    axes[0].set_ylabel(f"share of top-{k} recommendations")
    axes[0].legend(fontsize=7)
    for i, label in enumerate(coverage.index):
        if pd.notna(coverage[label]) and pd.notna(mean_pop.get(label)):
            point = (coverage[label], mean_pop[label] * len(item_share))
            axes[1].scatter(*point, color=palette[label], s=40)
            axes[1].annotate(label, point, fontsize=8, xytext=(5, 4 if i % 2 == 0 else -11),
                             textcoords="offset points")  # alternate sides: close points stay legible
    axes[1].set_xlabel(f"Coverage@{k} (share of the catalogue ever recommended)")
    axes[1].set_ylabel(f"Popularity@{k} x catalogue size\n(1 = an average item)")
    axes[1].set_title("diversity vs popularity bias")
    axes[0].set_title("recommended-item vs catalogue popularity")
    return to_png(fig)


def distribution(matrix: pd.DataFrame, metric: str, palette: Mapping[str, str]) -> str:
    """Per-user values of one metric (averaged over seeds), one violin per model, mean marked."""
    labels = list(matrix.columns)
    fig, axes = _figure(max(5.5, 1.1 * len(labels) + 2), 3.6)
    ax = axes[0]
    data = [matrix[m].dropna().to_numpy(float) for m in labels]
    keep = [i for i, d in enumerate(data) if len(d)]
    parts = ax.violinplot([data[i] for i in keep], positions=keep, showmeans=True, showextrema=False, widths=0.8)
    for body, i in zip(parts["bodies"], keep):
        body.set_facecolor(palette[labels[i]])
        body.set_alpha(0.6)
    for i in keep:
        zero = float(np.mean(data[i] == 0))
        ax.text(i, -0.06, f"{zero:.0%} at 0", ha="center", va="top", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_ylim(-0.12, 1.02)
    ax.set_ylabel(f"per-user {metric}")
    ax.set_title(f"per-user {metric}, each user's value averaged over seeds (line: mean)")
    return to_png(fig)


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower cost, higher quality), by cost."""
    order = np.lexsort((-quality, cost))
    front, best = [], -np.inf
    for i in order:            # a handful of models: not a hot path
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return np.asarray(front, dtype=np.int64)


def accuracy_cost(table: pd.DataFrame, metric: str, costs: Sequence[tuple[str, str]],
                  palette: Mapping[str, str]) -> str | None:
    """One panel per cost (log x) against `metric`, a point per model and the accuracy-cost frontier
    (the models no other model beats on both). `table` is indexed by model."""
    costs = [(c, name) for c, name in costs if c in table.columns and table[c].notna().sum() >= 1]
    if not costs or metric not in table.columns:
        return None
    fig, axes = _figure(3.6 * len(costs) + 0.6, 3.5, len(costs))
    for ax, (col, name) in zip(axes, costs):
        frame = table[[col, metric]].dropna()
        frame = frame[frame[col] > 0]
        for i, (label, row) in enumerate(frame.iterrows()):
            ax.scatter(row[col], row[metric], color=palette.get(label, "grey"), s=36, zorder=3)
            ax.annotate(label, (row[col], row[metric]), fontsize=7, xytext=(4, 3 if i % 2 == 0 else -9),
                        textcoords="offset points")
        if len(frame) >= 2:
            front = pareto_front(frame[col].to_numpy(float), frame[metric].to_numpy(float))
            ax.step(frame[col].to_numpy(float)[front], frame[metric].to_numpy(float)[front], where="post",
                    color="black", lw=1, ls="--", alpha=0.6, label="frontier")
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name} (log scale)")
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{metric} against cost (higher and further left is better)", fontsize=10)
    return to_png(fig)


def accuracy_diversity(table: pd.DataFrame, metric: str, goals: Sequence[str], curves: Mapping[str, Sequence[str]],
                       palette: Mapping[str, str]) -> str | None:
    """`metric` against each beyond-accuracy goal (ILD, novelty, long tail...), one point per model;
    a re-ranker's entries at several weights (and the model without it) are joined into its trade-off
    curve, `curves[name]` listing the labels in order of weight. `table` is indexed by model."""
    goals = [g for g in goals if g in table.columns and table[g].notna().any()]
    if not goals or metric not in table.columns:
        return None
    from matplotlib import colormaps

    fig, axes = _figure(4.2 * len(goals) + 0.6, 3.7, len(goals))
    in_curve = {label for labels in curves.values() for label in labels}
    curve_colors = colormaps["Set1"]      # one clearly distinct colour per curve, not per entry
    for ax, goal in zip(axes, goals):
        for n, (name, labels) in enumerate(curves.items()):
            frame = table.loc[[m for m in labels if m in table.index], [goal, metric]].dropna()
            if len(frame) >= 2:
                ax.plot(frame[goal], frame[metric], marker="o", ms=3, lw=1.2, label=name,
                        color=curve_colors(n % curve_colors.N))
        for i, (label, row) in enumerate(table[[goal, metric]].dropna().iterrows()):
            if label in in_curve and label not in {labels[0] for labels in curves.values()}:
                continue      # curve points speak through their line; its start is labelled
            ax.scatter(row[goal], row[metric], color=palette.get(label, "grey"), s=36, zorder=3)
            ax.annotate(label, (row[goal], row[metric]), fontsize=7, xytext=(4, 3 if i % 2 == 0 else -9),
                        textcoords="offset points")
        ax.set_xlabel(goal)
        ax.set_title(f"{metric} vs {goal}")
        if curves:
            ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel(metric)
    return to_png(fig)
