"""The two-tower model's settings: what each tower reads, sizes, regularisation, loss and training,
and the three presets (`cf`, `content`, `hybrid`) tuned on ml-100k's validation split."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from towerrec.config import apply_overrides
from towerrec.errors import TowerrecError
from towerrec.models.losses import LOSSES
from towerrec.models.train import TrainConfig
from towerrec.models.update import UpdateConfig
from towerrec.towers.inputs import EncoderSizes


@dataclass(frozen=True)
class TwoTowerConfig:
    """What each tower reads, sizes, regularisation, the loss and `train` (the shared loop's settings).
    Overrides go through `towerrec.config.apply_overrides` (`epochs=5` sets `train.epochs`)."""

    preset: str = "hybrid"            # a label; `TwoTowerConfig.for_preset(name)` applies a preset
    # what each tower sees
    user_ids: bool = True
    user_features: bool = True
    history: str = "mean"             # "none" | "mean" | "norm" (sum/sqrt n) | "attention": pooled past items
    history_ids: bool = True          # history items embedded by id ...
    history_features: bool = True     # ... and/or by their features and text (needed for cold items)
    # a bias in the history items' projection: a constant under mean or attention pooling (the user
    # MLP's own bias can hold it), but sqrt(n) times it under "norm" pooling, where it drowns the
    # items at init (n = history length)
    history_bias: bool = True
    item_ids: bool = True
    item_features: bool = True
    text: str = "pretrained"          # "none" | "pretrained" (frozen sentence model) | "cnn"
    text_model: str = ""              # "" = bundled all-MiniLM-L6-v2; any sentence-transformers path/name
    text_columns: tuple[str, ...] = ()  # () = the text columns; listed categorical/multi add their labels
    # sizes
    embedding_dim: int = 64           # output of both towers
    id_dim: int = 64
    feature_dim: int = 16             # per categorical / bag / numeric encoder
    text_dim: int = 64
    hidden: tuple[int, ...] = (256,)  # MLP widths on top of each tower; () = one linear layer
    # True: the item tower is one linear layer whatever `hidden` says (Mult-VAE's output layer is a
    # free weight row per item, not an MLP of an id embedding)
    item_linear: bool = False
    # False: a tower whose only input is its id embedding and that has no hidden layer (the item tower
    # under hidden=() or item_linear, the history's item encoder) is the embedding rows themselves, no
    # linear map on top (needs id_dim == embedding_dim): a free vector per id, as in classic MF and
    # Mult-VAE's input and output layers. True: the rows go through one linear layer.
    id_projection: bool = True
    # True: the user and item towers add their id row to the MLP of their other inputs (features,
    # text, history) instead of feeding it to that MLP, y = e_id + MLP(rest) (needs id_dim ==
    # embedding_dim), so `hybrid` nests `cf`'s free rows and its features can only add to them;
    # a dropped or unknown id leaves the unknown row + MLP(rest)
    id_residual: bool = False
    # under id_residual, the features' MLP starts with a zero output layer, so training starts from
    # cf's free rows and the features only move the towers as far as their gradients carry them.
    # Valid NDCG@10 at each dataset's best hybrid trial (seed-0 split, model seed 0), default init ->
    # zero: ml-latest-small 0.1955 -> 0.2085, ciao 0.0293 -> 0.0296, ml-100k 0.2498 -> 0.2510
    # (text: 0.2362 -> 0.2526); amazon-beauty 0.0610 -> 0.0593 (the one loss: it stopped at epoch 10,
    # not 28). False: PyTorch's default init (the hybrid cells run before 2026-12-01 late)
    residual_zero_init: bool = True
    # the user tower first adds a bias to its input and applies the activation: with free history rows
    # (id_projection=False) and "norm" pooling this is Mult-VAE's first encoder layer, tanh(W x + b)
    input_activation: bool = False
    activation: str = "gelu"
    dropout: float = 0.3              # in the tower MLPs; ml-100k valid NDCG@10 0.2329 -> 0.2341 with (256,)
    norm: str = "none"
    bag_mode: str = "mean"
    numeric_buckets: int = 0
    hash_buckets: int = 0             # > 0: hash user and item ids into this many rows
    # "embedding": one free vector per id; "lightgcn": the user and item ids of both towers are
    # LightGCN propagations over the training graph (towers/graph.py), `graph_layers` layers
    id_encoder: str = "embedding"
    graph_layers: int = 2
    # Mult-VAE user tower (Liang et al., WWW 2018): the user MLP outputs a mean and a log-variance,
    # training samples z = mu + eps * sigma and adds kl_weight * min(1, step / kl_anneal_steps) * KL
    variational: bool = False
    kl_weight: float = 0.2
    kl_anneal_steps: int = 2000
    # latent_dim > 0 (variational): z has this size and a decoder layer act(Linear(z)) gives the
    # embedding_dim user vector, Mult-VAE's hidden decoder layer (its output layer is the item
    # tower); 0: z itself is the user vector
    latent_dim: int = 0
    # a learned score offset per item id (Mult-VAE's output bias): an extra dimension, 1 on the user
    # side and the item's bias on the item side, so scores stay inner products (indexable)
    item_bias: bool = False
    # regularisation
    id_dropout: float = 0.2           # per sample, replace an id by "unknown" (cold-start robustness)
    id_l2: float = 0.0                # L2 on the id embedding rows a batch uses (users and positives), per row
    history_dropout: float = 0.0      # per history entry, during training (inverted: kept ones weigh 1 / keep share)
    max_history: int = 0              # > 0: subsample longer training histories to about this length
    # scoring and loss
    scorer: str = "cosine"            # "cosine" | "dot" | "mlp" (mlp: no ANN index possible)
    temperature: float = 0.1          # ml-100k valid NDCG@10: 0.05 -> 0.2282, 0.1 -> 0.2329
    learn_temperature: bool = False
    loss: str = "sampled_softmax"     # "sampled_softmax" | "full_softmax" | "bpr" | "bce" | "ccl"
    logq: bool = True                 # logQ correction of the sampled softmax
    negatives: int = 0                # extra negatives per batch (shared by its rows)
    negative_sampler: str = "uniform"  # "uniform" | "popularity" (count ** popularity_alpha)
    popularity_alpha: float = 1.0     # 0.75: word2vec's smoothed unigram
    # cross-batch negatives (Wang et al., SIGIR 2021): the item vectors of the last `negative_memory`
    # positives (detached) join every row's softmax as negatives, logQ-corrected as in-batch ones
    negative_memory: int = 0
    # "ccl": SimpleX's cosine contrastive loss (Mao et al., CIKM 2021): (1 - cos(u, i+)) +
    # negative_weight * mean over negatives of max(0, cos(u, j) - margin); in-batch + extra negatives
    margin: float = 0.4
    negative_weight: float = 1.0
    # training
    # "pairs": one sample per (user, item) row, the user's other items as history (the row's item
    # left out). "users": one sample per user, a random `holdout` share of the user's items are
    # the targets and the rest the history (Mult-DAE style): each history is pooled once per user
    # instead of once per row, so an epoch costs O(interactions), not O(sum of squared history
    # lengths); needs a history encoder and a softmax loss.
    sampling: str = "pairs"
    holdout: float = 0.2
    user_targets: str = "held_out"    # "users" sampling: targets are the "held_out" share, or "all" items (Mult-VAE)
    users_per_batch: int = 128        # "users" sampling: users per step
    # "users" sampling: each user once an epoch ("uniform"), or once per training interaction
    # ("activity": heavy users recur, as in RecBole's Mult-VAE, whose batches are rows of the log)
    user_weighting: str = "uniform"
    # the shared loop: epochs, batch_size (pairs per step), learning_rate, weight_decay, patience,
    # steps_per_epoch (> 0: batches per "epoch", to validate more often on big logs)
    train: TrainConfig = TrainConfig(epochs=30, batch_size=1024, learning_rate=3e-3, weight_decay=1e-4, patience=3)
    # `update`: passes over the new rows + a replay share of the old log (towerrec.models.update)
    update: UpdateConfig = UpdateConfig()

    def sizes(self) -> EncoderSizes:
        return EncoderSizes(id_dim=self.id_dim, feature_dim=self.feature_dim, text_dim=self.text_dim,
                            hash_buckets=self.hash_buckets, bag_mode=self.bag_mode,
                            numeric_buckets=self.numeric_buckets)

    @property
    def content(self) -> bool:
        """Items are embedded from their features or text (so cold items can be scored)."""
        return self.item_features or self.text != "none"

    def validate(self) -> None:
        """Settings that only make sense together (checked at fit)."""
        c = self
        c.train.validate()
        if c.loss not in LOSSES:
            raise TowerrecError(f"loss must be one of {LOSSES}, got {c.loss!r}")
        if c.sampling not in ("pairs", "users"):
            raise TowerrecError(f"sampling must be 'pairs' or 'users', got {c.sampling!r}")
        if c.id_encoder not in ("embedding", "lightgcn"):
            raise TowerrecError(f"id_encoder must be 'embedding' or 'lightgcn', got {c.id_encoder!r}")
        if c.id_encoder == "lightgcn" and (c.hash_buckets or c.graph_layers < 0):
            raise TowerrecError("id_encoder='lightgcn' needs hash_buckets=0 and graph_layers >= 0 "
                                f"(got hash_buckets={c.hash_buckets}, graph_layers={c.graph_layers})")
        if c.negative_sampler not in ("uniform", "popularity"):
            raise TowerrecError(f"negative_sampler must be 'uniform' or 'popularity', got {c.negative_sampler!r}")
        if c.user_weighting not in ("uniform", "activity"):
            raise TowerrecError(f"user_weighting must be 'uniform' or 'activity', got {c.user_weighting!r}")
        if c.user_targets not in ("held_out", "all"):
            raise TowerrecError(f"user_targets must be 'held_out' or 'all', got {c.user_targets!r}")
        if c.loss == "ccl" and (c.sampling != "pairs" or c.scorer != "cosine"):
            raise TowerrecError("loss='ccl' (SimpleX's cosine contrastive loss) needs sampling='pairs' and "
                                f"scorer='cosine' (got sampling={c.sampling!r}, scorer={c.scorer!r})")
        if c.negative_memory < 0 or (c.negative_memory and (c.loss != "sampled_softmax" or c.sampling != "pairs")):
            raise TowerrecError("negative_memory > 0 (cross-batch negatives) needs loss='sampled_softmax' and "
                                f"sampling='pairs' (got negative_memory={c.negative_memory}, loss={c.loss!r}, "
                                f"sampling={c.sampling!r})")
        if c.latent_dim < 0 or (c.latent_dim and not c.variational):
            raise TowerrecError(f"latent_dim must be >= 0, and > 0 needs variational=True (got latent_dim="
                                f"{c.latent_dim}, variational={c.variational})")
        if c.item_bias and (c.scorer != "dot" or not c.item_ids or c.hash_buckets or c.negative_memory):
            raise TowerrecError("item_bias=True needs scorer='dot', item_ids=True, hash_buckets=0 and "
                                f"negative_memory=0 (got scorer={c.scorer!r}, item_ids={c.item_ids}, "
                                f"hash_buckets={c.hash_buckets}, negative_memory={c.negative_memory})")
        if c.id_residual and not (c.user_ids or c.item_ids):
            raise TowerrecError("id_residual=True adds the id rows to the tower outputs, but neither tower reads "
                                "ids: set user_ids or item_ids")
        if c.id_residual and (c.id_dim != c.embedding_dim or c.variational):
            raise TowerrecError("id_residual=True adds the id rows to the tower outputs: it needs id_dim == "
                                f"embedding_dim and variational=False (got id_dim={c.id_dim}, embedding_dim="
                                f"{c.embedding_dim}, variational={c.variational})")
        if not c.id_projection and c.id_dim != c.embedding_dim:
            raise TowerrecError("id_projection=False uses the id rows as the vectors: it needs id_dim == "
                                f"embedding_dim (got id_dim={c.id_dim}, embedding_dim={c.embedding_dim})")
        if c.variational and c.history == "none" and not c.user_ids:
            raise TowerrecError("variational=True needs a user tower input (a history or user ids)")
        if c.sampling == "users" and (c.history == "none" or c.loss not in ("full_softmax", "sampled_softmax")
                                      or not 0.0 < c.holdout < 1.0):
            raise TowerrecError("sampling='users' needs a history encoder (history 'mean' or 'attention'), "
                                f"a softmax loss and 0 < holdout < 1 (got history={c.history!r}, loss={c.loss!r}, "
                                f"holdout={c.holdout})")

    @classmethod
    def for_preset(cls, name: str = "hybrid", **overrides: object) -> "TwoTowerConfig":
        """The preset `name` ("cf", "content", "hybrid") with `overrides` on top."""
        if name not in PRESETS:
            raise TowerrecError(f"unknown two-tower preset {name!r}; choose one of {', '.join(PRESETS)}")
        return apply_overrides(dataclasses.replace(cls(), preset=name, **PRESETS[name]), overrides,
                               source=f"two-tower[{name}]")


# Defaults tuned on the ml-100k random split's VALID part (benchmarks/two_tower.py).
PRESETS: dict[str, dict] = {
    # cf: one linear layer over each id embedding (matrix factorisation) and no id dropout (an id-only
    # model has nothing to fall back on): valid NDCG@10 0.2241, best epoch 10, against 0.2209 at epoch
    # 19 with the shared MLP (256,) and id dropout 0.2
    "cf": dict(user_ids=True, user_features=False, history="none", item_ids=True, item_features=False,
               text="none", hidden=(), id_dropout=0.0),
    "content": dict(user_ids=False, user_features=True, history="mean", history_ids=False,
                    history_features=True, item_ids=False, item_features=True, text="pretrained"),
    "hybrid": dict(user_ids=True, user_features=True, history="mean", history_ids=True, history_features=True,
                   item_ids=True, item_features=True, text="pretrained", id_dropout=0.2),
    # lightgcn: cf whose user and item ids are a LightGCN propagation over the training graph
    # (towers/graph.py), trained with the same in-batch sampled softmax + logQ as cf
    "lightgcn": dict(user_ids=True, user_features=False, history="none", item_ids=True, item_features=False,
                     text="none", hidden=(), id_dropout=0.0, id_encoder="lightgcn", graph_layers=2),
    # fism: FISM (Kabbur et al., KDD 2013) as a two-tower model, ids only: the user vector is the user's
    # past items' free rows summed / sqrt(n) (FISM's alpha = 0.5) under one linear layer, the item
    # vector a second free row per item; a training row leaves its own item out of the history (FISM's
    # exclusion) and 30% of the rest (inverted), with the in-batch sampled softmax + logQ. No per-user
    # parameter: a user with two or three items is as well served as the item rows are, and a new user
    # is served from a few items without refitting. amazon-magazine-subscriptions (72K users, 1.2 items
    # each) valid NDCG@10 (seed-0 split): 0.2227, against cf's 0.2158 and ItemKNN's 0.2208; 0.2206
    # without the history dropout, 0.2167 at tau 0.24 and lr 3e-3 (benchmarks/README.md)
    "fism": dict(user_ids=False, user_features=False, history="norm", history_ids=True, history_features=False,
                 item_ids=True, item_features=False, text="none", hidden=(), embedding_dim=256, id_dim=256,
                 id_projection=False, id_dropout=0.0, history_dropout=0.3, temperature=0.1,
                 train=TrainConfig(epochs=30, batch_size=1024, learning_rate=1e-3, weight_decay=1e-4, patience=3)),
    # multvae: Mult-VAE (Liang et al. 2018) as a user tower over the history bag, in RecBole's shape: the
    # history's free item rows (600 wide) summed / sqrt(n) plus a bias under tanh (the first encoder
    # layer), one linear layer to the mean and log-variance of a 64-dim z, a tanh decoder layer to the
    # 600-dim user vector, whose product with free item rows plus an item offset is the output
    # layer; targets are all of the user's items, the input keeps a random half (inverted input
    # dropout 0.5), multinomial likelihood = full softmax over the catalogue, KL annealed over 200,000
    # steps; 2,048 users a step (one step an epoch on ml-100k), Adam 1e-3 without decay. ml-100k
    # valid NDCG@10 0.2475 against 0.1951 for the previous preset (a tanh MLP (600) over
    # projected 64-dim rows, 32 users a step), ml-latest-small 0.1739 against 0.1331 (benchmarks/README.md)
    "multvae": dict(user_ids=False, user_features=False, history="norm", history_ids=True, history_features=False,
                    history_bias=False, item_ids=True, item_features=False, text="none", embedding_dim=600,
                    id_dim=600, hidden=(), id_projection=False, input_activation=True, item_bias=True,
                    activation="tanh", dropout=0.0, id_dropout=0.0, variational=True, latent_dim=64,
                    kl_anneal_steps=200_000, scorer="dot", temperature=1.0, loss="full_softmax",
                    sampling="users", user_targets="all", holdout=0.5, users_per_batch=2048,
                    train=TrainConfig(epochs=300, batch_size=1024, learning_rate=1e-3, weight_decay=0.0, patience=30)),
}
