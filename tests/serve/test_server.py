"""The real server: `towerrec serve` in a subprocess on a free loopback port, queried over HTTP."""
from __future__ import annotations

import httpx
import pytest

from towerrec.cli import main


def test_serve_over_http_then_shut_down(server_factory, als_artifact):
    """Two workers (the uvicorn factory path), the token from the environment; one-worker serving is
    exercised by the browser test."""
    server = server_factory(als_artifact, "--workers", "2", env={"TOWERREC_TOKEN": "tok"})
    with httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": "Bearer tok"}) as http:
        assert http.get("/health").json() == {"status": "ok", "model": "als", "items": 60}
        assert http.post("/recommend", json={"user_id": "u1"}, headers={"Authorization": ""}).status_code == 401
        bodies = [http.post("/recommend", json={"user_id": f"u{i}", "k": 5}) for i in range(8)]
        assert {b.status_code for b in bodies} == {200}
        assert all(len(b.json()["items"]) == 5 and b.json()["fallback"] is None for b in bodies)
        assert http.post("/recommend", json={"history": ["i0", "i4"], "k": 3}).json()["fallback"] == "history"
        assert http.post("/recommend", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        assert http.post("/recommend", json={"user_id": "u1", "k": -1}).status_code == 422
        assert http.get("/items/i3/similar?k=2").status_code == 200
        assert http.get("/docs").status_code == 200 and http.get("/").status_code == 200
        info = http.get("/info").json()
        assert info["index"]["kind"] == "exact" and info["catalogue"]["attributes"] == ["genres", "year"]
        # the workers survive bad requests
        assert http.get("/health").status_code == 200
    assert server.stop() in (0, -15)          # SIGTERM: uvicorn shuts down cleanly


def test_serve_reports_a_bad_artifact_in_one_line(tmp_path, capsys, keep_threads):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a towerrec model folder" in capsys.readouterr().err


def test_serve_rejects_faiss_for_models_without_embeddings(ease_artifact, capsys, keep_threads):
    assert main(["serve", str(ease_artifact), "--index", "faiss"]) == 2
    assert "embeddings" in capsys.readouterr().err


def test_index_stats(als_artifact, capsys, keep_threads):
    assert main(["index-stats", str(als_artifact), "--index", "faiss", "--queries", "40", "--json"]) == 0
    import json

    stats = json.loads(capsys.readouterr().out)
    assert stats["index"]["kind"] == "faiss" and 0.0 <= stats["recall_at_10"] <= 1.0
    assert stats["exact_ms"]["p50"] > 0
    assert main(["index-stats", str(als_artifact), "--index", "exact", "--queries", "10"]) == 0
    assert "recall@10 vs exact over 10 user queries: 1.0000" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--workers", "0"]])
def test_serve_bad_options(als_artifact, capsys, args, keep_threads):
    assert main(["serve", str(als_artifact), *args]) == 2
    assert "--workers" in capsys.readouterr().err
