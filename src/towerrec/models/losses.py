"""Training losses for retrieval models, on logits already computed by a scorer.

- `sampled_softmax`: softmax over in-batch (and extra) candidates with the logQ correction of
  Yi et al., "Sampling-bias-corrected neural modeling for large corpus item recommendations"
  (RecSys 2019): subtract log of each candidate's expected count in the candidate set, so the
  sampled softmax estimates the full one instead of over-penalising popular items. Extra uniform
  or popularity negatives give mixed negative sampling (Yang et al., WWW 2020).
- `full_softmax`: cross-entropy over the whole catalogue (small catalogues).
- `bpr`: Rendle et al. (UAI 2009), -log sigmoid(s+ - s-).
- `bce`: pointwise logistic loss, positives 1 and negatives 0.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

LOSSES = ("sampled_softmax", "full_softmax", "bpr", "bce")


def candidate_log_q(item_prob: np.ndarray, n_batch: int, n_extra: int, sampler: str) -> np.ndarray:
    """log expected count of each item in a candidate set made of `n_batch` in-batch positives
    (drawn by `item_prob`, the items' share of training pairs) plus `n_extra` negatives drawn
    uniformly or by popularity. Shape [n_items] float32."""
    n_items = len(item_prob)
    extra = n_extra * (item_prob if sampler == "popularity" else np.full(n_items, 1.0 / max(n_items, 1)))
    return np.log(n_batch * item_prob + extra + 1e-12).astype(np.float32)


def sampled_softmax(logits: torch.Tensor, *, log_q: torch.Tensor | None = None,
                    same_item: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with the positive of row b at column b.

    logits [B, C] (C >= B: in-batch candidates first, then extra negatives); log_q [C] the logQ
    correction; same_item [B, C] bool marks candidates that are the row's own positive item
    (accidental hits, other than the diagonal), which are removed from the softmax.
    """
    if log_q is not None:
        logits = logits - log_q[None, :]
    if same_item is not None:
        eye = torch.zeros_like(same_item)
        eye[:, : logits.shape[0]] = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_item & ~eye, -torch.inf)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float(), target)


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


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's beta = alpha * (t * (1 - 1/alpha) + 1/alpha), alpha = M / (n_items - 1)."""
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(positive: torch.Tensor, negative: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalised BCE (Petrov & Macdonald, "gSASRec", RecSys 2023): the positive probability is
    raised to the power beta, which undoes the overconfidence that negative sampling induces.
    positive [N], negative [N, M] -> -mean(beta * log sigmoid(s+) + sum log sigmoid(-s-)).
    beta = 1 is the plain BCE of SASRec."""
    return -(beta * F.logsigmoid(positive.float()) + F.logsigmoid(-negative.float()).sum(dim=1)).mean()
