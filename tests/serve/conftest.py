"""Tiny artifacts (ALS: served from embeddings; EASE and popularity: served by the model) and a real server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")

from towerrec.artifact import write_item_table, write_titles  # noqa: E402
from towerrec.data.features import FeatureTable  # noqa: E402
from towerrec.data.interactions import Interactions  # noqa: E402
from towerrec.models.als import ALS  # noqa: E402
from towerrec.models.base import FitOptions  # noqa: E402
from towerrec.models.ease import EASE  # noqa: E402
from towerrec.models.pop import Popularity  # noqa: E402
from towerrec.models.two_tower import TwoTower, TwoTowerConfig  # noqa: E402

GENRES = ["Comedy", "Drama", "Horror", "Action"]
N_USERS, N_ITEMS = 40, 60


def tiny_frame() -> pd.DataFrame:
    """40 users x 60 items in 4 genre blocks: each user mostly watches one block."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        block = u % 4
        own = [i for i in range(N_ITEMS) if i % 4 == block]
        picks = list(rng.choice(own, 8, replace=False)) + list(rng.choice(N_ITEMS, 2, replace=False))
        rows += [(f"u{u}", f"i{i}") for i in picks]
    return pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates()


def items_table() -> pd.DataFrame:
    """Titles, a multi-valued `genres` attribute and a numeric `year`."""
    return pd.DataFrame({
        "item_id": [f"i{i}" for i in range(N_ITEMS)],
        "title": [f"Movie {i} ({GENRES[i % 4]})" for i in range(N_ITEMS)],
        "genres": [GENRES[i % 4] + ("|Drama" if i % 5 == 0 and i % 4 != 1 else "") for i in range(N_ITEMS)],
        "year": [1980 + i for i in range(N_ITEMS)],
    })


def users_table() -> pd.DataFrame:
    """Each user's favourite genre block as a categorical `taste` (what the features fallback can use)."""
    return pd.DataFrame({"user_id": [f"u{u}" for u in range(N_USERS)], "taste": [GENRES[u % 4] for u in range(N_USERS)],
                         "age": [20 + u for u in range(N_USERS)]})


def save_artifact(model, path: Path, inter: Interactions) -> Path:
    model.save(path)
    items = items_table()
    titles = items.set_index("item_id").loc[inter.item_map.to_list(), "title"].tolist()
    write_titles(path, titles)
    write_item_table(path, items, inter.item_map)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread() -> Iterator[None]:
    """FAISS builds single-threaded, as `towerrec serve` runs them: multi-threaded OpenMP regions
    stall on a busy machine (a 4000-item PQ build: 10 s instead of 0.2 s). Restored afterwards."""
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """`towerrec serve` sets this process's torch/faiss threads; put them back for the other tests."""
    import faiss
    import torch

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


@pytest.fixture(scope="session")
def tiny_inter() -> Interactions:
    return Interactions.from_frame(tiny_frame())


@pytest.fixture(scope="session")
def als_artifact(tmp_path_factory, tiny_inter) -> Path:
    # every setting explicit: the tuned defaults (regularization for ml-100k) flatten a 40-user log
    model = ALS(factors=8, iterations=10, regularization=1.0, alpha=1.0, reg_exponent=0.0).fit(
        tiny_inter, options=FitOptions(seed=0))
    return save_artifact(model, tmp_path_factory.mktemp("art") / "als", tiny_inter)


@pytest.fixture(scope="session")
def ease_artifact(tmp_path_factory, tiny_inter) -> Path:
    model = EASE().fit(tiny_inter, options=FitOptions(seed=0))
    return save_artifact(model, tmp_path_factory.mktemp("art") / "ease", tiny_inter)


@pytest.fixture(scope="session")
def two_tower_artifact(tmp_path_factory, tiny_inter) -> Path:
    """Hybrid two-tower (ids + genres + year + a CNN over titles: no sentence model needed)."""
    return save_artifact(_two_tower(tiny_inter, user_features=False), tmp_path_factory.mktemp("art") / "two_tower",
                         tiny_inter)


@pytest.fixture(scope="session")
def two_tower_users_artifact(tmp_path_factory, tiny_inter) -> Path:
    """The same, with users' `taste` and `age` as user features (the 'features' fallback)."""
    return save_artifact(_two_tower(tiny_inter, user_features=True), tmp_path_factory.mktemp("art") / "two_tower_u",
                         tiny_inter)


def _two_tower(inter: Interactions, *, user_features: bool) -> TwoTower:
    items = FeatureTable.from_frame(items_table(), inter.item_map, id_col="item_id", kinds={"title": "text"})
    users = FeatureTable.from_frame(users_table(), inter.user_map, id_col="user_id") if user_features else None
    config = TwoTowerConfig.for_preset("hybrid", text="cnn", epochs=40, embedding_dim=8, id_dim=8, feature_dim=4,
                                       text_dim=8, hidden=(), dropout=0.0, learning_rate=1e-2, batch_size=128)
    return TwoTower(config).fit(inter, user_features=users, item_features=items,
                                options=FitOptions(seed=0, threads=1, progress=False))


@pytest.fixture(scope="session")
def pop_artifact(tmp_path_factory, tiny_inter) -> Path:
    model = Popularity().fit(tiny_inter, options=FitOptions(seed=0))
    return save_artifact(model, tmp_path_factory.mktemp("art") / "pop", tiny_inter)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`towerrec serve` in a subprocess on a free loopback port; stopped (and reaped) on exit."""

    def __init__(self, artifact: Path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "towerrec.cli", "serve", str(artifact), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float = 60.0) -> "Server":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout} s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def server_factory() -> Iterator:
    servers: list[Server] = []

    def start(artifact: Path, *args: str, env: dict | None = None) -> Server:
        server = Server(artifact, *args, env=env)
        servers.append(server)
        return server.wait()

    yield start
    for s in servers:
        s.stop()
