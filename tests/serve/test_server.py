"""The real server: `towerrec serve` in a subprocess on a free loopback port, queried over HTTP and raw sockets."""
from __future__ import annotations

import json
import select
import socket
import sys
import time

import httpx
import pytest
from sockets import seconds_until_closed

from towerrec.cli import main

#: --request-timeout for the servers below; a connection must be closed within it plus SLACK
DEADLINE, SLACK = 1.0, 2.0


def test_serve_over_http_then_shut_down(server_factory, als_artifact):
    """Two workers (the uvicorn factory path), the token from the environment; one-worker serving is
    exercised by the browser test."""
    server = server_factory(als_artifact, "--workers", "2", "--request-timeout", str(DEADLINE),
                            env={"TOWERREC_TOKEN": "tok"})
    # the workers got the deadline (and the protocol class) from the parent: an idle client is dropped
    assert _seconds_until_closed(_connect(server)) < DEADLINE + SLACK
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
        assert http.get("/docs", headers={"Authorization": ""}).status_code == 401
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


# ---- slow and idle clients (slowloris) ---------------------------------------------------------------
def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _seconds_until_closed(sock: socket.socket, limit: float = DEADLINE + SLACK + 3) -> float:
    return seconds_until_closed(sock, limit)


def _closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def deadline_server(server_factory, als_artifact, tmp_path):
    """One worker with a short request deadline and the token from a file."""
    token_file = tmp_path / "token"
    token_file.write_text("file-tok\n")
    return server_factory(als_artifact, "--request-timeout", str(DEADLINE), "--token-file", str(token_file))


@pytest.mark.parametrize("sent", [b"", b"GET /health HT", b"GET /health HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"])
def test_incomplete_requests_are_closed_within_the_deadline(deadline_server, sent):
    """Nothing, half a request line, headers without their end, a body cut short."""
    sock = _connect(deadline_server)
    sock.sendall(sent)
    assert 0.5 * DEADLINE < _seconds_until_closed(sock) < DEADLINE + SLACK


def test_trickled_headers_do_not_keep_a_connection_open(deadline_server):
    """Each byte used to reset uvicorn's only timer; the deadline counts from the connection's start."""
    sock = _connect(deadline_server)
    start = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    for byte in request:
        if _closed(sock) or time.monotonic() - start > DEADLINE + SLACK + 2:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    sock.close()
    assert elapsed < DEADLINE + SLACK


def test_complete_requests_and_keep_alive_still_work(deadline_server):
    """A request sent in pieces within the deadline is answered; the same connection then gets a
    fresh deadline for its next request, and is closed when none comes."""
    sock = _connect(deadline_server)
    for piece in (b"GET /info HTTP/1.1\r\n", b"Host: x\r\nAuthorization: Bearer file-tok\r\n", b"\r\n"):
        sock.sendall(piece)
        time.sleep(0.2 * DEADLINE)
    sock.settimeout(10)
    reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    time.sleep(0.6 * DEADLINE)            # longer than what was left of the first deadline
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert _seconds_until_closed(sock) < DEADLINE + SLACK


def test_token_from_a_file(deadline_server):
    with httpx.Client(base_url=deadline_server.url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/openapi.json").status_code == 401 and http.get("/").status_code == 401
        assert http.get("/openapi.json", headers={"Authorization": "Bearer file-tok"}).status_code == 200
        assert http.get("/", auth=("me", "file-tok")).status_code == 200       # what a browser sends


# ---- options and missing pieces: one line, exit 2 -----------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    """`towerrec serve` in this process sets variables for its workers; they are restored after."""
    monkeypatch.delenv("TOWERREC_TOKEN", raising=False)
    monkeypatch.delenv("TOWERREC_SERVE_CONFIG", raising=False)


def test_token_on_the_command_line_warns(tmp_path, capsys, clean_env, keep_threads):
    assert main(["serve", str(tmp_path), "--token", "abc"]) == 2           # then the empty folder stops it
    err = capsys.readouterr().err
    assert "--token is visible to other users" in err and "--token-file" in err


@pytest.mark.parametrize("args, words", [
    (["--token-file", "{tmp}/missing"], "cannot read the token file"),
    (["--token-file", "{tmp}/empty"], "the token file is empty"),
    (["--token-file", "{tmp}/spaces"], "printable ASCII without spaces"),
    (["--token-file", "{tmp}/empty", "--token", "x"], "not both"),
    (["--request-timeout", "0"], "--request-timeout"),
])
def test_bad_token_options(als_artifact, tmp_path, capsys, clean_env, keep_threads, args, words):
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "spaces").write_text("two words\n")
    assert main(["serve", str(als_artifact), *[a.format(tmp=tmp_path) for a in args]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert words in lines[-1] and lines[-1].startswith("towerrec: error:")


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "faiss", "fastapi_offline"])
def test_a_missing_serve_extra_is_an_install_hint(als_artifact, capsys, monkeypatch, clean_env, module):
    monkeypatch.setitem(sys.modules, module, None)            # `import module` now raises ImportError
    assert main(["serve", str(als_artifact)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'towerrec[serve]'" in err
    assert module.split("_")[0] in err.lower()


def test_request_timeout_reaches_workers_through_the_environment(monkeypatch):
    from towerrec.serve.protocol import REQUEST_TIMEOUT, request_timeout

    monkeypatch.delenv("TOWERREC_SERVE_CONFIG", raising=False)
    assert request_timeout() == REQUEST_TIMEOUT
    monkeypatch.setenv("TOWERREC_SERVE_CONFIG", json.dumps({"request_timeout": 2.5}))
    assert request_timeout() == 2.5
