"""Seeds x models -> one leaderboard: mean ± std over seeds, and each model against the reference.

The reference is the best model of the baseline family by the primary metric (or the label set
in `[significance] reference`): beating a weak baseline proves nothing, so new models are always
measured against the strongest classical one in the same experiment.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from towerrec.display import text_table
from towerrec.experiments.config import Experiment
from towerrec.experiments.runner import ModelSeed, per_user_long, per_user_matrix
from towerrec.experiments.stats import compare_with_reference


def seed_table(records: Sequence[ModelSeed]) -> pd.DataFrame:
    """One row per (model, seed): test metrics, valid metrics (prefixed `valid_`) and seconds."""
    rows = []
    for r in records:
        if r.test is None:
            continue
        rows.append({"model": r.label, "model_name": r.model, "seed": r.seed, **r.test,
                     **{f"valid_{k}": v for k, v in r.valid.items()},
                     "users": len(r.per_user), "fit_s": r.fit_seconds, "eval_s": r.eval_seconds,
                     **cost_columns(r.cost)})
    return pd.DataFrame(rows)


#: cost columns of the leaderboard (towerrec.cost field, scale)
COST = {"params": ("parameters", 1), "size_mb": ("artifact_bytes", 2**-20), "peak_mb": ("peak_train_mb", 1),
        "p50_ms": ("latency_p50_ms", 1), "p99_ms": ("latency_p99_ms", 1)}


def cost_columns(cost: dict | None) -> dict[str, float]:
    """A run's cost as leaderboard columns (missing figures left out)."""
    if not cost:
        return {}
    return {col: float(cost[key]) * scale for col, (key, scale) in COST.items() if cost.get(key) is not None}


def choose_reference(means: pd.Series, names: dict[str, str], exp: Experiment) -> str | None:
    """The label to compare against: forced, else the best baseline-family model by the primary metric."""
    if exp.significance.reference:
        return exp.significance.reference if exp.significance.reference in means.index else None
    family = [label for label in means.index if names[label] in exp.significance.baselines]
    if not family:
        return None
    return str(means[family].idxmax())


def build_leaderboard(exp: Experiment, records: Sequence[ModelSeed]) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(leaderboard, comparisons, reference label). The leaderboard is sorted by the primary metric."""
    primary = exp.evaluation.primary
    per_seed = seed_table(records)
    names = {label: spec.model for label, spec in exp.models.items()}
    if per_seed.empty:  # no model applies to this split: list them all, with no numbers
        return pd.DataFrame({"rank": np.arange(1, len(names) + 1), "model": list(names),
                             "model_name": list(names.values()), primary: np.nan, "reference": False}), \
            pd.DataFrame(), None
    value_cols = [c for c in per_seed.columns if c not in ("model", "model_name", "seed")]
    grouped = per_seed.groupby("model", sort=False)[value_cols]
    mean, std = grouped.mean(), grouped.std(ddof=1)  # std is NaN with one seed: shown as blank
    metric_cols = [c for c in value_cols if "@" in c and not c.startswith("valid_")]
    # one concat, not a column at a time: with the beyond-accuracy figures there are hundreds
    board = pd.concat([mean, std[metric_cols].add_suffix("_std")], axis=1)
    board.insert(0, "seeds", per_seed.groupby("model", sort=False)["seed"].nunique())
    board.insert(0, "model_name", [names[m] for m in board.index])
    reference = choose_reference(board[primary], names, exp)
    comparisons = pd.DataFrame()
    if reference is not None:
        matrix = per_user_matrix(per_user_long(records), primary, list(board.index))
        comparisons = compare_with_reference(matrix, reference, alpha=exp.significance.alpha)
        extra = comparisons.set_index("model")[["diff", "ci_low", "ci_high", "p_ttest", "p_wilcoxon",
                                                 "p_ttest_holm", "p_wilcoxon_holm", "significant"]]
        board = board.join(extra)
        board["significant"] = board["significant"].astype("boolean")
    board["reference"] = board.index == reference
    missing = [label for label in exp.models if label not in board.index]
    for label in missing:  # not applicable on this split: listed, with no numbers
        board.loc[label, "model_name"] = names[label]
    board = board.sort_values(primary, ascending=False, na_position="last", kind="stable")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    board.index.name = "model"
    return board.reset_index(), comparisons, reference


def _cell(mean: float, std: float | None, digits: int = 4) -> str:
    if mean is None or pd.isna(mean):
        return "n/a"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_columns(exp: Experiment, board: pd.DataFrame | None = None) -> list[str]:
    """Primary metric first, the other metrics at the smallest K, NDCG/Recall at the other K; the
    primary metric of warm and cold users when the split has cold users, and `Tied@K` when a
    model's lists were cut inside ties (the tie rule, not the model, chose those items)."""
    k0 = min(exp.evaluation.k)
    primary = exp.evaluation.primary
    cols = [primary]
    if board is not None:
        cols += [c for c in (f"{primary} (warm)", f"{primary} (cold)") if c in board.columns]
    cols += [f"{m}@{k0}" for m in exp.evaluation.metrics]
    cols += [f"{m}@{k}" for k in exp.evaluation.k if k != k0 for m in ("NDCG", "Recall") if m in exp.evaluation.metrics]
    tied = f"Tied@{primary.rsplit('@', 1)[1]}"
    if board is not None and tied in board.columns and (board[tied].fillna(0) > 0).any():
        cols.append(tied)
    return list(dict.fromkeys(cols))


def _p(value: float) -> str:
    if pd.isna(value):
        return ""
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def markdown_rows(exp: Experiment, board: pd.DataFrame, reference: str | None,
                  compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the Markdown, HTML and terminal leaderboards (`compact` leaves out
    Precision, MAP and F1 at the smallest K, unless primary: they are in leaderboard.csv)."""
    primary, k0 = exp.evaluation.primary, min(exp.evaluation.k)
    hidden = {f"{m}@{k0}" for m in ("Precision", "MAP", "F1")} - {primary} if compact else set()
    cols = [c for c in display_columns(exp, board) if c not in hidden]
    header = ["#", "model", *cols, f"Coverage@{k0}", "fit s"]
    if reference is not None:
        header += [f"Δ {primary} vs {reference} [95% CI]", "p t-test (Holm)", "p Wilcoxon (Holm)"]
    rows = []
    for _, r in board.iterrows():
        cells = [str(r["rank"]), f"{r['model']} ({r['model_name']})" if r["model"] != r["model_name"] else r["model"]]
        cells += [_cell(r.get(c), r.get(f"{c}_std")) for c in cols]
        cells += [_cell(r.get(f"Coverage@{k0}"), None, 3), _cell(r.get("fit_s"), None, 1)]
        if reference is not None:
            if r["model"] == reference:
                cells += ["reference (best baseline)" if not exp.significance.reference else "reference", "", ""]
            elif pd.isna(r.get("diff")):
                cells += ["n/a", "", ""]
            else:
                mark = " *" if bool(r["significant"]) else ""
                cells += [f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]{mark}",
                          _p(r["p_ttest_holm"]), _p(r["p_wilcoxon_holm"])]
        rows.append(cells)
    return header, rows


def footnote(exp: Experiment, reference: str | None, users: int | None) -> str:
    ev = exp.evaluation
    seeds = ", ".join(map(str, exp.seeds))
    text = (f"Test set, split `{exp.split.method}`, seeds {seeds}: mean ± std over seeds "
            f"(std blank with one seed); full ranking, "
            + ("train (+valid) items excluded" if ev.exclude_seen else "nothing excluded") + ".")
    if reference is not None:
        text += (f" Δ: paired difference in per-user {ev.primary} (each user's value averaged over seeds"
                 + (f", {users:,} users" if users else "") + f") against `{reference}`, with its 95% CI. "
                 "p-values Holm-corrected across the comparisons with the reference; "
                 f"`*`: significant at {exp.significance.alpha} by both the paired t-test and the Wilcoxon "
                 f"signed-rank test.")
    else:
        text += " No baseline-family model ran, so there is no significance test."
    return text


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def to_markdown(exp: Experiment, board: pd.DataFrame, reference: str | None, users: int | None = None) -> str:
    header, rows = markdown_rows(exp, board, reference)
    lines = [f"# {exp.name}: leaderboard", "", *_markdown_table(header, rows)]
    text = "\n".join(lines) + "\n\n" + footnote(exp, reference, users) + "\n"
    b_header, b_rows = beyond_rows(exp, board)
    if b_rows:
        text += "\n## Beyond accuracy and cost\n\n" + "\n".join(_markdown_table(b_header, b_rows)) + "\n\n" \
            + beyond_footnote(exp) + "\n"
    return text


def to_text(exp: Experiment, board: pd.DataFrame, reference: str | None) -> str:
    """A terminal table: the first columns of the Markdown one, aligned; then beyond accuracy and cost."""
    header, rows = markdown_rows(exp, board, reference, compact=True)
    keep = [i for i, h in enumerate(header) if not h.startswith("p ")]
    header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    text = text_table(header, rows)
    b_header, b_rows = beyond_rows(exp, board, with_std=False)
    return text + ("\n\n" + text_table(b_header, b_rows) if b_rows else "")


# ---- beyond accuracy and cost ------------------------------------------------------------------
#: the second table's figures at the smallest K, in order (towerrec.beyond; Coverage from evaluation)
BEYOND_DISPLAY = ("ILD", "EmbILD", "Novelty", "Serendipity", "ARP", "LongTail", "Miscalibration", "Coverage", "Gini")
#: cost columns with their display names
COST_DISPLAY = (("params", "params"), ("size_mb", "size MB"), ("peak_mb", "peak fit MB"), ("fit_s", "fit s"),
                ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"))


def beyond_columns(exp: Experiment, board: pd.DataFrame) -> list[str]:
    """Beyond-accuracy columns of `board` at the smallest K, then the primary metric's group gaps."""
    k0 = min(exp.evaluation.k)
    cols = [f"{m}@{k0}" for m in BEYOND_DISPLAY if f"{m}@{k0}" in board.columns]
    if len(cols) == 1 and cols[0].startswith("Coverage"):    # beyond = false: coverage is in the first table
        cols = []
    return cols + [c for c in board.columns if c.startswith(f"{exp.evaluation.primary} gap (") and
                   not c.endswith("_std")]


def beyond_rows(exp: Experiment, board: pd.DataFrame, with_std: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the beyond-accuracy and cost table (no rows when there is nothing to show)."""
    cols = beyond_columns(exp, board)
    costs = [(c, name) for c, name in COST_DISPLAY if c in board.columns and board[c].notna().any()] \
        if costs_present(board) else []
    if not cols and not costs:
        return [], []
    header = ["#", "model", *cols, *[name for _, name in costs]]
    rows = []
    for _, r in board.iterrows():
        cells = [str(r["rank"]), str(r["model"])]
        for c in cols:
            digits = 1 if c.startswith("ARP") else 4
            cells.append(_cell(r.get(c), r.get(f"{c}_std") if with_std else None, digits))
        for c, _ in costs:
            value = r.get(c)
            cells.append("n/a" if value is None or pd.isna(value) else
                         f"{value:,.0f}" if c == "params" else f"{value:.1f}" if c in ("peak_mb", "fit_s")
                         else f"{value:.2f}")
        rows.append(cells)
    return header, rows


def costs_present(board: pd.DataFrame) -> list[str]:
    return [c for c in COST if c in board.columns and board[c].notna().any()]


def beyond_footnote(exp: Experiment) -> str:
    k0 = min(exp.evaluation.k)
    return (f"At K={k0}, mean ± std over seeds (docs/evaluation.md has each formula). ILD: genre (category) "
            "diversity; EmbILD: diversity in the model's own item space; ARP and Miscalibration: lower is less "
            "popularity-biased / better calibrated; Gini of exposure: 0 = every item equally recommended; "
            f"`{exp.evaluation.primary} gap (attr)`: the largest difference of the mean between user groups. "
            "Cost: learned parameters, artifact size on disk, peak memory the fit added, fit seconds, and the "
            "p50/p99 latency of one recommend call (mean over seeds; wall-clock figures depend on the machine's "
            "load). Significance of the per-user figures against the reference: significance_beyond.csv.")


def beyond_significance(exp: Experiment, records: Sequence[ModelSeed], reference: str | None) -> pd.DataFrame:
    """Each per-user beyond-accuracy metric at the smallest K against the reference, like the primary
    metric (paired t-test and Wilcoxon, Holm within each metric's family); a `metric` column first."""
    from towerrec.beyond import PER_USER

    if reference is None:
        return pd.DataFrame()
    k0 = min(exp.evaluation.k)
    long = per_user_long(records)
    labels = list(dict.fromkeys(r.label for r in records if r.per_user is not None))
    frames = []
    for name in PER_USER:
        metric = f"{name}@{k0}"
        if metric not in long.columns:
            continue
        matrix = per_user_matrix(long, metric, labels)
        if reference not in matrix.columns or matrix[reference].isna().all():
            continue
        comp = compare_with_reference(matrix, reference, alpha=exp.significance.alpha)
        comp.insert(0, "metric", metric)
        frames.append(comp)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
