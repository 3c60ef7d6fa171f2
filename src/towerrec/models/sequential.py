"""What every next-item sequence model shares: the item table, the next-item losses, training on
windows through the shared loop (`models/train.py`), scoring from ordered histories, artifacts.

A concrete model (`sasrec.py`, `gru4rec.py`, `nextitnet.py`, `hstu.py`) is one file with its
Config, a `NextItemModule` subclass that defines `encode` (the sequence encoder from
`towers/sequence.py`), and a `SequentialRecommender` subclass that builds it.

Scoring a user = encode their newest `max_len` items and dot the last position's state with every
item vector (input and output item embeddings are tied, as in SASRec). `score_users` reads the
model's training log; `score_histories(Sequences)` any other ordered history, e.g. train + valid
for the test pass of a leave-one-out split (RecBole's protocol; `towerrec.evaluation` does this for
every model that declares `capabilities.sequences`).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences, Windows
from towerrec.errors import TowerrecError
from towerrec.models import losses
from towerrec.models.base import Capabilities, FitOptions, Recommender
from towerrec.models.sequence_batches import LengthBatches
from towerrec.models.train import TrainConfig, train
from towerrec.models.update import UpdateConfig
from towerrec.towers.content import ItemContent, sequence_content
from towerrec.towers.features import TableSpec

log = logging.getLogger(__name__)
SEQUENCE_LOSSES = ("auto", "ce", "sampled_softmax", "bce", "gbce")


@dataclass(frozen=True)
class SequenceTraining(TrainConfig):
    """How every sequence model trains: the shared loop's settings (`TrainConfig`) and the next-item
    loss. Defaults are RecBole's (200 epochs, patience 10, full softmax over the catalogue).

    `batch_size` counts target positions per step (windows of similar length fill it)."""

    epochs: int = 200
    patience: int = 10                  # RecBole stopping_step
    loss: str = "ce"                    # "ce" | "sampled_softmax" | "bce" | "gbce"
    negatives: int = 256                # sampled_softmax: shared per batch; bce/gbce: per position
    negative_sampler: str = "uniform"   # or "popularity" (logQ-corrected for sampled_softmax)
    gbce_t: float = 0.75                # gSASRec calibration (only for loss="gbce")
    window_stride: int | None = None    # None = max_len // 2 (BERT4Rec: max_len): every target sees >= half a window
    sampled_above: int = 0              # loss "auto": full softmax up to this many items, sampled softmax above

    def resolved_loss(self, n_items: int) -> str:
        """The loss a fit on `n_items` items uses ("auto" picks by catalogue size)."""
        if self.loss != "auto":
            return self.loss
        return "ce" if n_items <= self.sampled_above else "sampled_softmax"

    def validate(self) -> None:
        super().validate()
        if self.loss not in SEQUENCE_LOSSES:
            raise TowerrecError(f"unknown loss {self.loss!r}; choose one of {', '.join(SEQUENCE_LOSSES)}")
        if self.negative_sampler not in ("uniform", "popularity"):
            raise TowerrecError(f"negative_sampler must be 'uniform' or 'popularity', got {self.negative_sampler!r}")


@dataclass(frozen=True)
class SequenceModelConfig:
    """What every next-item model reads; each model's config adds its encoder's settings."""

    embedding_dim: int = 64
    max_len: int = 50               # items of history read; RecBole's MAX_ITEM_LIST_LENGTH
    # item content (towerrec.towers.content): the item tower's feature encoders and/or a frozen
    # sentence model over the text columns, projected and added to each item's id embedding
    item_features: bool = False
    text: str = "none"              # "none" | "pretrained"
    text_model: str = ""            # "" = the bundled all-MiniLM-L6-v2; any sentence-transformers path/name
    train: SequenceTraining = SequenceTraining()   # loss, negatives, window_stride and the loop (epochs, ...)
    update: UpdateConfig = UpdateConfig()          # `update`: passes over new rows + a replay share


class NextItemModule(nn.Module):
    """Item table + `encode` (subclass) + next-item loss.

    Tokens: item i is token i + 1, token 0 is padding (`towerrec.data.sequences`).
    `encode(inputs [B, L], times [B, L] | None) -> [B, L, dim]`.
    Losses (config.train.loss): "ce" = softmax over the full catalogue; "sampled_softmax" = softmax over
    the positive and `negatives` negatives shared by the batch, logQ-corrected when drawn by
    popularity; "bce" / "gbce" = logistic loss with `negatives` negatives per position (gSASRec's
    calibrated gBCE for "gbce", plain BCE as in the SASRec paper for "bce").

    `config.seen_bias` adds one learned offset to the score of every item already in the input
    window (a repeat-or-explore prior in the spirit of RepeatNet, Ren et al., AAAI 2019): it turns
    negative on logs without repeats (MovieLens) and positive where people re-consume (music).
    Off by default: vanilla SASRec/GRU4Rec have no such term.
    """

    SEEN_SCALE = 10.0   # the bias is SEEN_SCALE * a scalar: one AdamW step then moves it by ~0.01

    def __init__(self, n_items: int, config: Any) -> None:
        super().__init__()
        self.n_items = n_items
        training = config.train
        self.negatives = training.negatives
        self.gbce_beta = losses.gbce_beta(training.negatives, n_items, training.gbce_t) if training.loss == "gbce" else 1.0
        self.loss_name = training.resolved_loss(n_items)
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_dim, padding_idx=0)
        self.seen_logit = nn.Parameter(torch.zeros(())) if getattr(config, "seen_bias", False) else None
        self.content: ItemContent | None = None
        self._table: torch.Tensor | None = None      # item_table of the pass in progress (`_one_item_table`)

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def encode_last(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """[B, dim]: the state after the newest item, what `score` reads (encoders that can skip the
        other positions' outputs override this)."""
        return self.encode(inputs, times)[:, -1]

    def attach_content(self, content: ItemContent) -> None:
        """Add item features / text (`towerrec.towers.content`) to every item's id embedding."""
        init_normal(content)
        self.content = content

    def item_table(self) -> torch.Tensor:
        """[rows, dim] item vectors by token: the id embedding, plus the item's content vector
        when content is attached (row 0, padding, stays zero)."""
        if self._table is not None:
            return self._table
        weight = self.item_embedding.weight
        if self.content is None:
            return weight
        content = self.content()
        return weight + F.pad(content, (0, 0, 0, weight.shape[0] - content.shape[0]))

    @contextmanager
    def _one_item_table(self) -> Iterator[None]:
        """Inside, `item_table` is computed once: a pass reads it for the inputs and again for the
        output scores, and with content attached each read runs the content encoders."""
        if self.content is None or self._table is not None:
            yield
            return
        self._table = self.item_table()
        try:
            yield
        finally:
            self._table = None

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Input vectors of tokens [...] -> [..., dim], rows of `item_table`."""
        return self.item_embedding(tokens) if self.content is None else F.embedding(tokens, self.item_table())

    def item_vectors(self) -> torch.Tensor:
        """[n_items, dim] output vectors (tied with the input embeddings; padding row left out)."""
        return self.item_table()[1:self.n_items + 1]

    def output_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """Output vectors of some tokens [...] -> [..., dim], consistent with `item_vectors`."""
        return self.embed(tokens)

    def score(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """[B, n_items] scores of the next item after each (left-padded) sequence [B, L]."""
        with self._one_item_table():
            return self.scores_of(self.encode_last(inputs, times), inputs)

    def scores_without_each(self, full: torch.Tensor, shifted: torch.Tensor,
                            variants: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Leave one position out of one window, sharing what the variants have in common: (scores
        [1, n_items] of `full` [1, w], scores [P, n_items] of `variants` [P, w], row r = `full` without
        position w - P + r, left-padded: the newest P positions), or None where the encoder has no
        such path (the caller then scores the variants one by one). `shifted` [1, w] is the window
        without its newest item: a causal encoder's states at positions <= p of the variant leaving
        out p are its states."""
        with self._one_item_table():
            states = self.states_without_each(full[0], shifted[0], first=full.shape[1] - len(variants))
            if states is None:
                return None
            scores = self.scores_of(states, torch.cat([full, variants]))
            return scores[:1], scores[1:]

    def states_without_each(self, full: torch.Tensor, shifted: torch.Tensor, first: int) -> torch.Tensor | None:
        """Newest states [w + 1 - first, dim] of the tokens `full` [w] (row 0), of the variants leaving
        out one position p >= `first`, and of `shifted` (the last row), from the encoder's own
        shared-prefix path; None where the encoder has none."""
        return None

    def scores_of(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """[B, n_items] next-item scores of newest states [B, dim] read from `inputs` [B, L]."""
        with self._one_item_table():
            scores = state @ self.item_vectors().T
        if self.seen_logit is not None:
            seen = torch.zeros(len(inputs), self.n_items + 1, device=inputs.device).scatter_(1, inputs, 1.0)
            scores = scores + self.SEEN_SCALE * self.seen_logit * seen[:, 1:]
        return scores

    def seen_before(self, inputs: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """[N, n_items + 1] 1.0 where a token is among the inputs at positions <= t of the window of
        each target position (b, t) selected by `where` [B, L] (rows in `where`'s order)."""
        B, L = inputs.shape
        tri = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()          # [t, s]: s <= t
        b, t, s = (where[:, :, None] & tri[None] & (inputs[:, None, :] > 0)).nonzero(as_tuple=True)
        row = (torch.cumsum(where.reshape(-1).long(), 0) - 1).view(B, L)
        seen = torch.zeros(int(where.sum()), self.n_items + 1, device=inputs.device)
        seen[row[b, t], inputs[b, s]] = 1.0
        return seen

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: inputs, targets [B, L] tokens (0 = no loss), optional times [B, L], negatives
        (tokens: [M] shared for sampled softmax, [B, L, M] for bce/gbce), log_q [n_items + 1]."""
        with self._one_item_table():
            return self._loss(batch)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encode(batch["inputs"], batch.get("times"))
        targets = batch["targets"]
        where = targets > 0
        h = hidden[where]                                          # [N, dim]
        pos = targets[where]                                       # [N] tokens
        bias = None
        if self.seen_logit is not None:
            bias = self.SEEN_SCALE * self.seen_logit * self.seen_before(batch["inputs"], where)  # [N, n_items + 1]
        if self.loss_name == "ce":
            logits = h @ self.item_vectors().T
            return losses.full_softmax(logits if bias is None else logits + bias[:, 1:], pos - 1)
        positive = (h * self.output_vectors(pos)).sum(-1)          # [N]
        if bias is not None:
            positive = positive + bias.gather(1, pos[:, None])[:, 0]
        negatives = batch["negatives"]
        if self.loss_name == "sampled_softmax":
            negative = h @ self.output_vectors(negatives).T        # [N, M]
            if bias is not None:
                negative = negative + bias[:, negatives]
            log_q = batch.get("log_q")
            return losses.shared_negative_softmax(
                positive, negative, same_item=negatives[None, :] == pos[:, None],
                log_q_positive=None if log_q is None else log_q[pos],
                log_q_negative=None if log_q is None else log_q[negatives])
        neg = negatives[where]                                     # [N, M]
        negative = torch.einsum("nd,nmd->nm", h, self.output_vectors(neg))
        if bias is not None:
            negative = negative + bias.gather(1, neg)
        negative = negative.masked_fill(neg == pos[:, None], -torch.inf)  # an accidental hit is no negative
        if self.loss_name == "bce":
            return losses.bce(positive, negative.clamp_min(-1e4))
        return losses.gbce(positive, negative.clamp_min(-1e4), self.gbce_beta)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """BERT/RecBole initialisation: N(0, std) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SequentialRecommender(Recommender):
    """Lifecycle of a next-item model; subclasses set `name`, `Config` and `Module`.

    The config is a `SequenceModelConfig` (embedding_dim, max_len, item content, `train`) plus the
    encoder's own settings.
    """

    uses_time: bool = False   # HSTU reads timestamps
    # Explanations leave out each of the newest 20 positions (None: every position of the window).
    # With max_len 50 the whole window costs ~6 ms per request on one CPU thread, the newest 20 ~2 ms,
    # and the top-explained item agrees with the whole window's in most requests (benchmarks/README.md).
    explain_positions: int | None = 20

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(histories=True, sequences=True, similar_items=True)

    Module: ClassVar[type[NextItemModule]] = NextItemModule   # the model's nn.Module: Module(n_items, config)

    def _build(self, n_items: int) -> NextItemModule:
        return self.Module(n_items, self.config)

    def stream_refusal(self) -> str | None:
        return (f"{self.name} reads each user's whole ordered history, which a stream of rows does not hold; "
                "load the log into memory (without --stream)")

    def _training_windows(self, sequences: Sequences) -> Windows:
        """Next-item windows, every target once, with at least max_len - stride + 1 items of context.

        The default stride max_len // 2 costs ~2x the non-overlapping windows on long histories
        (nothing on short ones) and was better on ml-100k (test NDCG@10 0.0605 vs 0.0570 at equal
        settings, one seed each; `benchmarks/sequential.py`). BERT4Rec overrides with item chunks.
        """
        stride = self.config.train.window_stride or max(1, self.config.max_len // 2)
        return sequences.windows(self.config.max_len, stride)

    def _corrupt(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per-batch input/target transformation (BERT4Rec's masking); identity for causal models."""
        return inputs, targets

    # ---- training ------------------------------------------------------------------------------
    def _fit(self, interactions: Interactions, *, user_features: FeatureTable | None,
             item_features: FeatureTable | None, valid: Interactions | None, options: FitOptions) -> None:
        cfg = self.config
        cfg.train.validate()
        torch.manual_seed(options.seed)
        self.sequences_ = Sequences.from_interactions(interactions)
        windows = self._training_windows(self.sequences_)
        if len(windows) == 0:
            raise TowerrecError(f"{self.name}: no user has two interactions, nothing to learn from")
        self.module_ = self._build(interactions.n_items)
        if cfg.train.loss == "auto":
            log.info("%s: loss auto -> %s (%s items, full softmax up to %s)", self.name, self.module_.loss_name,
                     f"{interactions.n_items:,}", f"{cfg.train.sampled_above:,}")
        self.content_spec_ = self._attach_content(item_features, interactions)
        counts = np.bincount(interactions.item_idx, minlength=interactions.n_items).astype(np.float64)
        prob = np.concatenate([[0.0], counts / counts.sum()])      # by token; padding never drawn
        use_times = self.uses_time and windows.times is not None
        batches = LengthBatches(windows, cfg.train.batch_size, options.seed)
        make_batch = self._batcher(windows, batches, prob, use_times)

        def valid_scorer() -> Callable[[np.ndarray], torch.Tensor]:
            return lambda user_idx: self._score_from(self.sequences_, user_idx)

        # one "sample" of the shared loop is one length-bucketed batch of windows
        result = train(self.module_, n_samples=batches.n_batches, make_batch=make_batch,
                       config=dataclasses.replace(cfg.train, batch_size=1),
                       options=options, valid=valid, valid_scorer=valid_scorer,
                       exclude_rows=self.seen_, desc=self.name)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.module_.eval()

    def _attach_content(self, table: FeatureTable | None, interactions: Interactions) -> dict | None:
        """Item features / text into the item vectors when the config asks for them; the spec (JSON)."""
        cfg = self.config
        features, text = cfg.item_features, cfg.text
        self.content_text_ = None
        if not features and text == "none":
            return None
        if table is not None and table.id_map != interactions.item_map:
            raise TowerrecError("item_features must be aligned to the interactions' item map (build it with "
                                "FeatureTable.from_frame(frame, interactions.item_map, ...))")
        content, arrays = sequence_content(table, interactions.n_items, features=features, text=text,
                                           text_model=cfg.text_model, owner=self.name)
        self.content_text_ = content.text          # how `update` encodes the text of new items
        self.module_.attach_content(ItemContent(content.table, arrays, cfg.embedding_dim))
        return content.table.to_json()

    def _batcher(self, windows: Windows, batches: LengthBatches, prob: np.ndarray, use_times: bool
                 ) -> Callable[[np.ndarray, np.random.Generator], dict[str, torch.Tensor]]:
        cfg = self.config.train
        loss = self.module_.loss_name
        n_tokens = len(prob)
        popularity = cfg.negative_sampler == "popularity"
        log_q = None
        if loss == "sampled_softmax" and popularity:
            log_q = torch.from_numpy(np.log(cfg.negatives * prob + 1e-12).astype(np.float32))

        def draw(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
            if popularity:
                return rng.choice(n_tokens, size=size, p=prob)
            return rng.integers(1, n_tokens, size=size)

        def make_batch(batch_idx: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
            idx = batches.windows_of(batch_idx, rng)
            inputs = windows.inputs[idx]
            # left padding: drop the columns that are padding in every row of this batch
            first = int(np.argmax((inputs != 0).any(axis=0)))
            inputs, targets = self._corrupt(inputs[:, first:], windows.targets[idx, first:], rng)
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
            if use_times:
                batch["times"] = torch.from_numpy(windows.times[idx, first:])
            if loss == "sampled_softmax":
                batch["negatives"] = torch.from_numpy(draw(rng, cfg.negatives))
                if log_q is not None:
                    batch["log_q"] = log_q
            elif loss in ("bce", "gbce"):
                shape = (*batch["inputs"].shape, cfg.negatives)
                batch["negatives"] = torch.from_numpy(draw(rng, shape))
            return batch

        return make_batch

    # ---- continual learning --------------------------------------------------------------------
    def _update(self, delta, *, old_seen, items, users, options: FitOptions) -> None:
        """Append the new rows to the sequences, grow the item table, fine-tune on the windows with
        new targets plus replay windows (`towerrec.models.sequential_update`)."""
        from towerrec.models import sequential_update

        result = sequential_update.update(self, delta, items, options)
        self.update_history_ = result.history if result is not None else []

    # ---- scoring -------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def _score_from(self, sequences: Sequences, user_idx: np.ndarray, batch_size: int = 128) -> torch.Tensor:
        """[len(user_idx), n_items] from the newest `max_len` items of each user in `sequences`.

        Users are encoded in order of history length so that each batch drops the padding columns
        its rows share (most users of sparse logs are short); rows come back in the caller's order.
        """
        device = self._device()
        user_idx = np.asarray(user_idx, dtype=np.int64)
        lengths = np.minimum(sequences.lengths()[user_idx], self.config.max_len)
        order = np.argsort(lengths, kind="stable")
        out = torch.empty(len(user_idx), self.n_items, dtype=torch.float32, device=device)
        for s in range(0, len(order), batch_size):
            pos = order[s:s + batch_size]
            width = max(int(lengths[pos].max()), 1)
            inputs = sequences.padded(user_idx[pos], self.config.max_len)[:, -width:]
            times = None
            if self.uses_time and sequences.times is not None:
                times = torch.from_numpy(sequences.padded_times(user_idx[pos], self.config.max_len)[:, -width:])
                times = times.to(device)
            with torch.no_grad():
                out[torch.from_numpy(pos).to(device)] = self.module_.score(
                    torch.from_numpy(inputs).to(device), times).float()
        return out

    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._score_from(self.sequences_, user_idx).cpu()

    def _score_histories(self, histories: Sequences) -> torch.Tensor:
        """Scores [n, n_items] from ordered histories (oldest first): the newest `max_len` items."""
        return self._score_from(histories, np.arange(histories.n_users)).cpu()

    def _item_scores(self, item_idx: np.ndarray) -> torch.Tensor:
        """`similar_items`: next-item scores after a history made of the query item alone."""
        return self._score_histories(Sequences.from_lists(list(np.asarray(item_idx, dtype=np.int64)[:, None])))

    def history_of(self, user_idx: int) -> Sequences:
        self._check_fitted()
        return self.sequences_.take(np.array([user_idx]))

    def history_effects(self, user_idx: int, history: Sequences, item_idx: np.ndarray) -> np.ndarray:
        """Leave one position out, over the newest `explained_positions()` positions (0 for the others:
        those beyond `max_len` are outside the window the model reads, so removing one changes
        nothing; those inside it but older than `explain_positions` are not computed)."""
        from towerrec.explain import leave_one_out

        length = int(history.lengths()[0])
        shared = self._leave_one_out_shared(history, np.asarray(item_idx, dtype=np.int64))
        if shared is not None:
            return shared
        return leave_one_out(self, user_idx, history, item_idx,
                             positions=np.arange(max(0, length - self.explained_positions()), length))

    def explained_positions(self) -> int:
        """How many of the newest positions an explanation leaves out one by one: `explain_positions`
        (None: the whole `max_len` window)."""
        limit = self.explain_positions
        return self.config.max_len if limit is None else max(1, min(int(limit), self.config.max_len))

    def _leave_one_out_shared(self, history: Sequences, item_idx: np.ndarray) -> np.ndarray | None:
        """`history_effects` through the module's `scores_without_each` (the same numbers as scoring
        each variant whole, less work), None where it has none."""
        module, tokens = self.module_, history.tokens
        n = len(tokens)
        w = min(n, self.config.max_len)
        if w < 2 or module.training or (self.uses_time and history.times is not None):
            return None
        first = w - min(w, self.explained_positions())     # the oldest position left out
        full = tokens[n - w:]
        shifted = np.concatenate([np.zeros(max(0, w - (n - 1)), dtype=np.int64), tokens[max(0, n - 1 - w):n - 1]])
        slot = np.arange(w)
        # row r leaves out position first + r
        variants = np.where(slot[None, :] <= slot[first:, None], shifted[None, :], full[None, :])
        device = self._device()
        with torch.no_grad():
            out = module.scores_without_each(*(torch.from_numpy(a.astype(np.int64)).to(device)
                                               for a in (full[None], shifted[None], variants)))
        if out is None:
            return None
        idx = torch.from_numpy(item_idx).to(device)
        effects = np.zeros((n, len(item_idx)))
        effects[n - w + first:] = (out[0][:, idx] - out[1][:, idx]).double().cpu().numpy()
        return effects

    def explanation_method(self) -> str:
        return (f"leave one position out (the newest {self.explained_positions()}): the score minus the score "
                "without that item of the sequence")

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.numel() for p in self.module_.parameters()))

    def item_space(self) -> torch.Tensor:
        """The (tied) item embeddings that score the next item."""
        self._check_fitted()
        with torch.no_grad():
            return self.module_.item_vectors().detach().cpu()

    # ---- artifacts -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        state["sequences.tokens"] = self.sequences_.tokens
        state["sequences.indptr"] = self.sequences_.indptr
        if self.sequences_.times is not None:
            state["sequences.times"] = self.sequences_.times
        return state

    def _extra(self) -> dict:
        return {"content_spec": getattr(self, "content_spec_", None), "content_text": getattr(self, "content_text_", None)}

    def _load_state(self, tensors: dict[str, np.ndarray], extra: dict) -> None:
        self.module_ = self._build(len(self.item_map_))
        self.content_spec_ = extra.get("content_spec")
        self.content_text_ = extra.get("content_text")
        if self.content_spec_:
            prefix = "module.content.rows."
            arrays = {k[len(prefix):]: np.array(v) for k, v in tensors.items() if k.startswith(prefix)}
            self.module_.attach_content(ItemContent(TableSpec.from_json(self.content_spec_), arrays,
                                                    self.config.embedding_dim))
        self.module_.load_state_dict({k[len("module."):]: torch.from_numpy(np.array(v))
                                      for k, v in tensors.items() if k.startswith("module.")})
        self.module_.eval()
        self.sequences_ = Sequences(tensors["sequences.tokens"], tensors["sequences.indptr"],
                                    tensors.get("sequences.times"))
