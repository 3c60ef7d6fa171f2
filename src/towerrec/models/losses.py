"""Training losses for retrieval models, on logits already computed by a scorer.

- `sampled_softmax`: softmax over in-batch (and extra) candidates with the logQ correction of
  Yi et al., "Sampling-bias-corrected neural modeling for large corpus item recommendations"
  (RecSys 2019): subtract log of each candidate's expected count in the candidate set, so the
  sampled softmax estimates the full one instead of over-penalising popular items. Computed on
  the distinct candidates (`distinct_candidates`), each weighted by its multiplicity. Extra uniform
  or popularity negatives give mixed negative sampling (Yang et al., WWW 2020).
- `full_softmax`: cross-entropy over the whole catalogue (small catalogues).
- `bpr`: Rendle et al. (UAI 2009), -log sigmoid(s+ - s-).
- `bce`: pointwise logistic loss, positives 1 and negatives 0.
- `ccl`: SimpleX's cosine contrastive loss (Mao et al., CIKM 2021) on raw cosines.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

LOSSES = ("sampled_softmax", "full_softmax", "bpr", "bce", "ccl")


def negative_probabilities(item_counts: np.ndarray, sampler: str, alpha: float = 1.0) -> np.ndarray:
    """The distribution extra negatives are drawn from: uniform over trained items, or by
    popularity, count ** alpha (alpha 0.75: word2vec's smoothed unigram). [n_items] float64."""
    trained = item_counts > 0
    w = np.where(trained, np.power(np.maximum(item_counts, 1e-12), alpha), 0.0) if sampler == "popularity" \
        else trained.astype(np.float64)
    return w / max(w.sum(), 1e-12)


def candidate_log_q(item_prob: np.ndarray, n_batch: int, n_extra: int, sampler: str,
                    negative_prob: np.ndarray | None = None) -> np.ndarray:
    """log expected count of each item in a candidate set made of `n_batch` in-batch positives
    (drawn by `item_prob`, the items' share of training pairs) plus `n_extra` negatives drawn
    uniformly or by popularity (or by `negative_prob`, `negative_probabilities`). [n_items] float32."""
    n_items = len(item_prob)
    if negative_prob is None:
        negative_prob = item_prob if sampler == "popularity" else np.full(n_items, 1.0 / max(n_items, 1))
    return np.log(n_batch * item_prob + n_extra * negative_prob + 1e-12).astype(np.float32)


def distinct_candidates(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct entries of an in-batch candidate list (positives first, then extra negatives).

    keys [C] (an item index, or any integer that names one candidate vector) -> (distinct [U]
    sorted, column [C] of each entry in `distinct`, log_count [U]). A candidate that appears k
    times weighs as its k copies would in the softmax once log k is added to its logit, so the
    softmax over U distinct columns equals the one over all C columns at U/C of the cost (a batch
    of 1,024 ml-100k pairs holds about 600 distinct items), and the item tower runs U times, not C.
    """
    distinct, column = torch.unique(keys, return_inverse=True)
    log_count = torch.bincount(column, minlength=len(distinct)).to(torch.float32).log()
    return distinct, column, log_count


def sampled_softmax(logits: torch.Tensor, target: torch.Tensor, log_count: torch.Tensor,
                    accidental: torch.Tensor | None = None, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of row b against column target[b], over distinct candidates.

    logits [B, U] with the bias already added: log_count - log_q (logQ correction and
    multiplicity); target [B] the column of each row's positive; log_count [U]. The row's own
    positive counts once, as the one true positive: its other copies in the batch are accidental
    hits, not negatives, so its log multiplicity is taken back out of that row's logit, and
    `accidental` [B] (-1 for none) names one more column per row holding the same item in another
    form (its id dropped), which leaves the softmax. Both in place: the matmul that made
    `logits` does not need them for its gradient. `extra` [B, M]: more negative logits per row
    (cross-batch negatives), appended to the softmax as they are.
    """
    rows = torch.arange(len(target), device=logits.device)
    logits[rows, target] -= log_count[target]
    if accidental is not None:
        hit = accidental >= 0
        logits[rows[hit], accidental[hit]] = -torch.inf
    if extra is not None:
        logits = torch.cat([logits, extra], dim=1)
    return F.cross_entropy(logits.float(), target)


def ccl(positive: torch.Tensor, negative: torch.Tensor, weight: torch.Tensor, margin: float,
        negative_weight: float) -> torch.Tensor:
    """SimpleX's cosine contrastive loss, mean over rows of
    (1 - cos+) + negative_weight * sum_j w_j max(0, cos_j - margin) / sum_j w_j.

    positive [B] raw cosines; negative [B, U] raw cosines of the candidates; weight [B, U] each
    candidate's multiplicity for that row (0 removes it: the row's own item, padding). Only
    negatives above the margin cost anything, so easy negatives stop pulling on the embeddings.
    """
    hinge = F.relu(negative.float() - margin) * weight
    neg = hinge.sum(1) / weight.sum(1).clamp_min(1e-9)
    return ((1.0 - positive.float()) + negative_weight * neg).mean()


def full_softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all items: logits [B, n_items], target [B] item indices."""
    return F.cross_entropy(logits.float(), target)


def bpr(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """positive [B], negative [B, M] -> mean of -log sigmoid(s+ - s-)."""
    return -F.logsigmoid(positive[:, None] - negative).float().mean()


def bce(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """positive [B] labelled 1, negative [B, M] labelled 0; negatives weigh as much as positives."""
    return (F.softplus(-positive).float().mean() + F.softplus(negative).float().mean())


# ---- next-item losses for sequence models (SASRec, GRU4Rec, ...): one positive per position and
# ---- negatives shared by the whole batch, so a batch of N positions costs N x M logits, not N x N.
def shared_negative_softmax(positive: torch.Tensor, negative: torch.Tensor, *,
                            log_q_positive: torch.Tensor | None = None, log_q_negative: torch.Tensor | None = None,
                            same_item: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax over [positive, M shared negatives] per row (Jean et al., ACL 2015), with
    the logQ correction (subtract log of each candidate's expected count) and accidental hits
    (a negative equal to the row's positive, `same_item` [N, M]) removed.

    positive [N], negative [N, M] logits; log_q_positive [N], log_q_negative [M].
    """
    if log_q_negative is not None:
        negative = negative - log_q_negative[None, :]
    if log_q_positive is not None:
        positive = positive - log_q_positive
    if same_item is not None:
        negative = negative.masked_fill(same_item, -torch.inf)
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def gbce_beta(negatives: int, n_items: int, t: float) -> float:
    """gSASRec's beta = alpha * (t * (1 - 1/alpha) + 1/alpha), alpha = M / (n_items - 1)."""
    alpha = negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(positive: torch.Tensor, negative: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalised BCE (Petrov & Macdonald, "gSASRec", RecSys 2023): the positive probability is
    raised to the power beta, which undoes the overconfidence that negative sampling induces.
    positive [N], negative [N, M] -> -mean(beta * log sigmoid(s+) + sum log sigmoid(-s-)).
    beta = 1 is the plain BCE of SASRec."""
    return -(beta * F.logsigmoid(positive.float()) + F.logsigmoid(-negative.float()).sum(dim=1)).mean()
