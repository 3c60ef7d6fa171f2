"""Shared fixtures. Real data lives in ../shared/data: missing data fails under CI=true, else skips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from towerrec.data.interactions import Interactions

from shared_data import SHARED_DATA, shared_dataset  # noqa: E402,F401


@pytest.fixture
def ml100k_dir() -> Path:
    return shared_dataset("ml-100k")


@pytest.fixture
def tiny_interactions() -> Interactions:
    """12 users x 9 items with timestamps: three taste blocks, every user has 6 rows."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(12):
        block = u % 3
        items = [block * 3 + j for j in range(3)] + list(rng.choice(9, 3, replace=False))
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", 1.0 + (t % 5), 1000 + 10 * t + u))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame = frame.drop_duplicates(["user_id", "item_id"])
    return Interactions.from_frame(frame, rating_col="rating", time_col="timestamp")
