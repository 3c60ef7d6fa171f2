"""report.html: one self-contained page (inline CSS, base64 PNGs, no links) for one experiment.

Ordered for a reader with one minute: a plain-language verdict first (which model is best, by how
much against the best baseline, whether that is significant, what it recommends to a typical
user), then the leaderboard, then the figures and tables that back each claim.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from towerrec.experiments import plots
from towerrec.experiments.leaderboard import (
    beyond_footnote,
    beyond_rows,
    beyond_significance,
    footnote,
    markdown_rows,
)
from towerrec.experiments.runner import ExperimentResult, per_user_long, per_user_matrix
from towerrec.experiments.stats import mean_ci
from towerrec.files import write_text

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1220px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:32px}
.verdict{background:#f3f7fb;border-left:5px solid #2b6cb0;padding:10px 16px;font-size:1.08em}
.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.86em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.ref td{background:#fffbe6} .hit{background:#dff5df;font-weight:600}
img{max-width:100%;display:block;margin:6px 0}
code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt_p(p: float) -> str:
    return "n/a" if pd.isna(p) else ("p < 0.0001" if p < 1e-4 else f"p = {p:.4f}")


def _titles(result: ExperimentResult, idx: Sequence[int]) -> list[str]:
    return result.dataset.titles(list(idx)) if len(idx) else []


def verdict(result: ExperimentResult, board: pd.DataFrame, comparisons: pd.DataFrame,
            reference: str | None) -> str:
    """The plain-language summary at the top of the report (HTML)."""
    exp = result.experiment
    primary, alpha = exp.evaluation.primary, exp.significance.alpha
    ranked = board[board[primary].notna()]
    if ranked.empty:
        return "No model could be evaluated on this split."
    best = ranked.iloc[0]
    comp = comparisons.set_index("model") if not comparisons.empty else pd.DataFrame()
    parts = [f"<b>{_e(best['model'])}</b> is the best model by {_e(primary)} "
             f"({best[primary]:.4f} on the test set, mean of {len(exp.seeds)} seed{'s' * (len(exp.seeds) > 1)})."]

    def against(label: str) -> str:
        row = comp.loc[label]
        rel = row["diff"] / row["mean_reference"] if row["mean_reference"] else float("nan")
        sig = "<b>significant</b>" if row["significant"] else "<b>not significant</b>"
        return (f"<b>{_e(label)}</b> scores {abs(row['diff']):.4f} {'higher' if row['diff'] > 0 else 'lower'} "
                f"({rel:+.1%}) than <b>{_e(reference)}</b> (95% CI of the difference [{row['ci_low']:+.4f}, "
                f"{row['ci_high']:+.4f}], {int(row['n_users']):,} users): {sig} at {alpha} after Holm correction "
                f"(paired t-test {_fmt_p(row['p_ttest_holm'])}, Wilcoxon {_fmt_p(row['p_wilcoxon_holm'])}).")

    if reference is None:
        parts.append("No baseline-family model ran, so nothing was tested for significance.")
    elif best["model"] != reference and best["model"] in comp.index:
        parts.append(f"Against the best baseline: {against(best['model'])}")
    elif len(ranked) > 1 and ranked.iloc[1]["model"] in comp.index:
        parts.append(f"It is itself the best baseline; the runner-up {against(ranked.iloc[1]['model'])}")
    ex = result.examples
    if ex.user_ids:
        mid = len(ex.user_ids) // 2
        record = next((r for r in result.records if r.label == best["model"] and r.examples), None)
        if record is not None:
            recs = _titles(result, record.examples[ex.user_ids[mid]][:3])
            hist = _titles(result, ex.history[mid][:3])
            parts.append(f"For a typical user (user {_e(ex.user_ids[mid])}, {ex.n_history[mid]} items in train, "
                         f"most recently {_e(', '.join(hist))}) it recommends first "
                         f"{_e('; '.join(recs))}.")
    return " ".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], ref_rows: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="ref"' if i < len(ref_rows) and ref_rows[i] else ""
        cells = "".join(f'<td class="num">{_e(c)}</td>' if j > 1 else f"<td>{_e(c)}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(b64: str | None, alt: str, missing: str) -> str:
    if b64 is None:
        return f'<p class="muted">{_e(missing)}</p>'
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _bar_metrics(result: ExperimentResult) -> list[str]:
    ev = result.experiment.evaluation
    k0 = min(ev.k)
    wanted = [ev.primary] + [f"{m}@{k0}" for m in ("Recall", "MRR", "HitRate", "Precision") if m in ev.metrics]
    return list(dict.fromkeys(wanted))[:4]


def figures(result: ExperimentResult, board: pd.DataFrame, reference: str | None) -> dict[str, str | None]:
    """All figures as base64 PNGs (None where there is nothing to draw)."""
    exp = result.experiment
    primary = exp.evaluation.primary
    labels = [m for m in board["model"] if pd.notna(board.set_index("model").loc[m, primary])]
    palette = plots.colors(list(board["model"]))
    long = per_user_long(result.records)
    bars = pd.DataFrame(index=labels)
    for metric in _bar_metrics(result):
        matrix = per_user_matrix(long, metric, labels)
        bars[metric] = matrix.mean()
        ci = [mean_ci(matrix[m].to_numpy()) for m in labels]
        bars[f"{metric}_lo"], bars[f"{metric}_hi"] = [c[0] for c in ci], [c[1] for c in ci]
    indexed = board.set_index("model")
    curves = {}
    for metric in ("NDCG", "Recall"):
        ks = [k for k in exp.evaluation.eval_k if f"{metric}@{k}" in indexed.columns]
        if metric in exp.evaluation.metrics and len(ks) > 1:
            curves[metric] = pd.DataFrame({m: [indexed.loc[m, f"{metric}@{k}"] for k in ks] for m in labels}, index=ks)
    first = [r for r in result.records if r.seed == exp.seeds[0] and r.test is not None]
    k = result.rec_k
    return {
        "bars": plots.metric_bars(bars, _bar_metrics(result), palette, reference) if labels else None,
        "curves": plots.k_curves(curves, palette),
        "training": plots.training_curves({r.label: r.history for r in first}, palette),
        "popularity": plots.popularity(result.item_share, {r.label: r.rec_counts for r in first},
                                       indexed.loc[labels, f"Coverage@{k}"],
                                       indexed.loc[labels].get(f"Popularity@{k}", pd.Series(dtype=float)), k, palette)
        if labels and f"Coverage@{k}" in indexed.columns else None,
        "distribution": plots.distribution(per_user_matrix(long, primary, labels), primary, palette) if labels else None,
        "diversity": plots.accuracy_diversity(indexed.loc[labels], primary, diversity_goals(exp),
                                              rerank_curves(exp, labels), palette) if labels else None,
        "cost": plots.accuracy_cost(indexed.loc[labels], primary, COST_AXES, palette) if labels else None,
    }


#: the cost axes of the accuracy-cost figure (leaderboard column, label)
COST_AXES = (("fit_s", "fit seconds"), ("p99_ms", "p99 ms of one recommend call"),
             ("params", "parameters"), ("size_mb", "artifact MB"))


def diversity_goals(exp) -> list[str]:
    k0 = min(exp.evaluation.k)
    return [f"ILD@{k0}", f"Novelty@{k0}", f"LongTail@{k0}", f"Miscalibration@{k0}"]


def rerank_curves(exp, labels: Sequence[str]) -> dict[str, list[str]]:
    """{"ease + mmr": [ease, ease-mmr-0.2, ease-mmr-0.5, ...]}: entries with the same model, config and
    re-ranker (all but its weight), by weight, after the same model without a re-ranker when it ran."""
    import json

    def key(spec) -> str:
        return f"{spec.model}|{json.dumps(spec.overrides, sort_keys=True, default=str)}"

    groups: dict[tuple, list[tuple[float, str]]] = {}
    for label, spec in exp.models.items():
        if spec.rerank is not None and label in labels:
            rest = tuple(sorted((k, str(v)) for k, v in spec.rerank.items() if k != "weight"))
            groups.setdefault((key(spec), rest), []).append((float(spec.rerank["weight"]), label))
    out = {}
    for (base_key, rest), members in groups.items():
        base = next((label for label, spec in exp.models.items()
                     if spec.rerank is None and key(spec) == base_key and label in labels), None)
        method = dict(rest)["method"]
        out[f"{base or base_key.split('|')[0]} + {method}"] = ([base] if base else []) + [m for _, m in sorted(members)]
    return out


def beyond_html(result: ExperimentResult, board: pd.DataFrame, reference: str | None, figs: dict) -> str:
    """The beyond-accuracy and cost section: table, trade-off figures, significance, user groups."""
    exp = result.experiment
    header, rows = beyond_rows(exp, board)
    if not rows:
        return '<p class="muted">Beyond-accuracy figures and cost were switched off ([evaluation] beyond, cost).</p>'
    parts = [_table(header, rows, [bool(x) for x in board.get("reference", [])]),
             f'<p class="muted">{_e(beyond_footnote(exp))}</p>',
             "<h3>Accuracy against diversity</h3>",
             '<p class="muted">One point per model; a re-ranker run at several weights is joined into its trade-off '
             'curve, starting from the model without it.</p>',
             _img(figs.get("diversity"), "accuracy against diversity", "no diversity figure to plot"),
             "<h3>Accuracy against cost</h3>",
             '<p class="muted">Dashed: the frontier, the models that no other model beats on both accuracy and that '
             'cost. Wall-clock costs were measured on a shared machine (see results.json for the load average).</p>',
             _img(figs.get("cost"), "accuracy against cost", "no cost was measured")]
    comp = beyond_significance(exp, result.records, reference)
    if not comp.empty:
        parts.append("<h3>Significance of the per-user figures</h3>")
        sig_rows = [[r["metric"], r["model"], f"{r['mean_model']:.4f}", f"{r['mean_reference']:.4f}",
                     f"{r['diff']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]", _fmt_p(r["p_ttest_holm"]),
                     _fmt_p(r["p_wilcoxon_holm"]), "yes" if r["significant"] else "no"]
                    for _, r in comp.iterrows() if pd.notna(r["diff"])]
        parts.append(_table(["metric", "model", "mean", f"{reference} mean", "Δ", "95% CI", "p t (Holm)",
                             "p W (Holm)", "significant"], sig_rows))
    parts.append(fairness_html(result))
    return "".join(parts)


def fairness_html(result: ExperimentResult) -> str:
    """Mean primary metric per user group (first seed), one column per model."""
    exp = result.experiment
    primary = exp.evaluation.primary
    first = [r for r in result.records if r.seed == exp.seeds[0] and r.fairness]
    if not first:
        return ""
    labels = [r.label for r in first]
    rows = []
    for attr in first[0].fairness:
        groups = first[0].fairness[attr]["groups"]
        for g, values in groups.items():
            cells = [attr, g, f"{values['users']:,}"]
            for r in first:
                v = r.fairness.get(attr, {}).get("groups", {}).get(g, {}).get(primary)
                cells.append("n/a" if v is None else f"{v:.4f}")
            rows.append(cells)
        rows.append([attr, "gap (max - min)", ""] + [
            "n/a" if r.fairness.get(attr, {}).get("gap", {}).get(primary) is None
            else f"{r.fairness[attr]['gap'][primary]:.4f}" for r in first])
    return (f"<h3>User groups: {_e(primary)} by user attribute</h3><p class=\"muted\">First seed; numeric "
            "attributes cut into quartiles.</p>" + _table(["attribute", "group", "users", *labels], rows))


def examples_html(result: ExperimentResult, labels: Sequence[str]) -> str:
    """Per example user: history titles next to each model's top titles (test hits highlighted)."""
    ex = result.examples
    first = {r.label: r for r in result.records if r.seed == result.experiment.seeds[0] and r.examples}
    labels = [m for m in labels if m in first]
    out = []
    for i, uid in enumerate(ex.user_ids):
        columns = [_titles(result, ex.history[i])] + [_titles(result, first[m].examples[uid]) for m in labels]
        hits = [[False] * len(columns[0])] + [[j in ex.targets[i] for j in first[m].examples[uid]] for m in labels]
        n_rows = max(map(len, columns))
        head = (f"<th>history ({ex.n_history[i]} items, most recent first)</th>"
                + "".join(f"<th>{_e(m)}</th>" for m in labels))
        body = []
        for r in range(n_rows):
            cells = []
            for col, hit in zip(columns, hits):
                text = col[r] if r < len(col) else ""
                cls = ' class="hit"' if r < len(hit) and hit[r] else ""
                cells.append(f"<td{cls}>{_e(text)}{' ✓' if cls else ''}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        out.append(f"<h3>user {_e(uid)} <span class=\"muted\">({len(ex.targets[i])} test items)</span></h3>"
                   f"<table><tr>{head}</tr>{''.join(body)}</table>")
    if not out:
        return '<p class="muted">No example users.</p>'
    return ("<p class=\"muted\">Users at the 25th, 50th and 75th percentile of history length (first seed). "
            "Highlighted with ✓: recommended items the user really has in the test set.</p>" + "".join(out))


def significance_html(comparisons: pd.DataFrame, reference: str | None, primary: str) -> str:
    if reference is None or comparisons.empty:
        return '<p class="muted">No comparison: the experiment has no baseline-family model or only one model.</p>'
    header = ["model", "vs", "users", f"mean {primary}", "reference mean", "Δ", "95% CI", "p t-test",
              "p t (Holm)", "p Wilcoxon", "p W (Holm)", "significant"]
    rows = [[r["model"], r["reference"], f"{int(r['n_users']):,}", f"{r['mean_model']:.4f}",
             f"{r['mean_reference']:.4f}", f"{r['diff']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
             _fmt_p(r["p_ttest"]), _fmt_p(r["p_ttest_holm"]), _fmt_p(r["p_wilcoxon"]), _fmt_p(r["p_wilcoxon_holm"]),
             "yes" if r["significant"] else "no"] for _, r in comparisons.iterrows()]
    return _table(header, rows)


def render(result: ExperimentResult, board: pd.DataFrame, comparisons: pd.DataFrame, reference: str | None,
           manifest: dict) -> str:
    """The whole page as a string."""
    exp = result.experiment
    inter = result.dataset.interactions
    figs = figures(result, board, reference)
    header, rows = markdown_rows(exp, board, reference, compact=True)
    users = int(comparisons["n_users"].max()) if not comparisons.empty else None
    labels = [m for m in board["model"] if pd.notna(board.set_index("model").loc[m, exp.evaluation.primary])]
    na = [(r.label, r.not_applicable) for r in result.records if r.not_applicable and r.seed == exp.seeds[0]]
    split = exp.split
    ratios = "" if split.method in ("loo",) else " " + ":".join(f"{r:g}" for r in split.ratios)
    git = manifest.get("git", {})
    provenance = {
        "command": " ".join(manifest.get("command", [])),
        "git commit": f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}",
        "data sha256": manifest.get("data", {}).get("sha256"),
        "versions": ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items()),
        "run time": f"{result.seconds:.1f} s",
    }
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(exp.name)}: towerrec report</title>
<style>{CSS}</style></head><body>
<h1>{_e(exp.name)}</h1>
<p class="muted">{_e(result.dataset.name)}: {len(inter):,} interactions, {inter.n_users:,} users,
{inter.n_items:,} items &middot; split <code>{_e(split.method)}{_e(ratios)}</code> &middot; seeds
{_e(', '.join(map(str, exp.seeds)))} &middot; full-catalogue ranking, primary metric <code>{_e(exp.evaluation.primary)}</code></p>
<p class="verdict">{verdict(result, board, comparisons, reference)}</p>
<h2>Leaderboard</h2>
{_table(header, rows, [bool(x) for x in board.get("reference", [])])}
<p class="muted">{_e(footnote(exp, reference, users))} Every metric at every K is in leaderboard.csv.</p>
{''.join(f'<p class="muted">{_e(m)}: not applicable ({_e(why)})</p>' for m, why in na)}
<h2>Metrics with 95% confidence intervals</h2>
<p class="muted">Bars: mean over users of each user's value averaged over seeds; whiskers: 95% CI of that mean.
The reference model has a black outline.</p>
{_img(figs['bars'], 'metric bars', 'nothing to plot')}
<h2>Quality over the list length K</h2>
{_img(figs['curves'], 'NDCG and Recall over K', 'evaluation.curve_k is empty or NDCG/Recall are not evaluated')}
<h2>Training curves</h2>
{_img(figs['training'], 'training curves', 'No model recorded a per-epoch history (closed-form models have none).')}
<h2>Coverage and popularity bias</h2>
{_img(figs['popularity'], 'popularity bias', 'nothing to plot')}
<h2>Beyond accuracy and cost</h2>
{beyond_html(result, board, reference, figs)}
<h2>Per-user {_e(exp.evaluation.primary)}</h2>
{_img(figs['distribution'], 'per-user distribution', 'nothing to plot')}
<h2>Significance against the reference</h2>
{significance_html(comparisons, reference, exp.evaluation.primary)}
<h2>What the models recommend</h2>
{examples_html(result, labels)}
<h2>Provenance</h2>
{_table(["", ""], [[k, str(v)] for k, v in provenance.items()])}
<p class="muted">Every figure can be recomputed from <code>seed-*/split</code>, <code>seed-*/recs</code> and
<code>per_user.parquet</code>; <code>manifest.json</code> has the full record.</p>
</body></html>
"""


def write_report(out: str | Path, result: ExperimentResult, board: pd.DataFrame, comparisons: pd.DataFrame,
                 reference: str | None, manifest: dict) -> Path:
    return write_text(Path(out) / "report.html", render(result, board, comparisons, reference, manifest))

