"""Two-tower retrieval model: a user tower, an item tower and a scoring function f(y, z).

The towers concatenate their inputs (id embeddings, feature encoders, a frozen sentence-transformers
text embedding projected by a trainable layer, or a small text CNN, and on the user side a pooled
history of past items) and map them through an MLP (Covington et al., "Deep Neural Networks for
YouTube Recommendations", RecSys 2016; Yi et al., RecSys 2019 for the sampled softmax with logQ
correction). Three presets:

- `cf`: ids only on both sides (neural matrix factorisation). Cannot score new users or items.
- `content`: the item tower sees only item features and text, the user tower user features and
  the content of the items in the user's history, so it recommends items no one interacted with
  and serves new users from a history.
- `hybrid`: ids, features and text on both sides, with id dropout so that items without a trained
  id (cold items, `add_items`) still embed well from their content.

Leak guard: training samples are (user, item) pairs, and the item is removed from its own user's
history in that sample (otherwise the model learns to find the target in the history).

Cold start: `recommend(history=[...])` / `_score_histories` embed a user from an item history
(user features missing, user id unknown); `recommend_features(frame)` embeds new users from a
feature frame (plus optional histories); `add_items(frame)` embeds new items from their features
without retraining.
"""
from __future__ import annotations

from towerrec.models.two_tower.config import PRESETS, TwoTowerConfig
from towerrec.models.two_tower.model import TwoTower, preset_factory
from towerrec.models.two_tower.module import TwoTowerModule

__all__ = ["PRESETS", "TwoTower", "TwoTowerConfig", "TwoTowerModule", "preset_factory"]
