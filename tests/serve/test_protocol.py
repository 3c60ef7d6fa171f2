"""The request deadline on both of uvicorn's HTTP protocols (h11 and httptools), with a tiny app in a thread."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sockets import seconds_until_closed

uvicorn = pytest.importorskip("uvicorn")
from towerrec.serve.protocol import H11RequestDeadline, HttpToolsRequestDeadline  # noqa: E402

DEADLINE, SLACK = 0.5, 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def app(scope, receive, send) -> None:
    """/slow answers after twice the deadline; everything else at once."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * DEADLINE)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=[H11RequestDeadline, HttpToolsRequestDeadline], ids=["h11", "httptools"])
def port(request, monkeypatch) -> Iterator[int]:
    monkeypatch.setenv("TOWERREC_SERVE_CONFIG", json.dumps({"request_timeout": DEADLINE}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=request.param,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _seconds_until_closed(sock: socket.socket) -> float:
    return seconds_until_closed(sock, DEADLINE + SLACK + 2)


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_requests_are_closed(port, sent):
    sock = _connect(port)
    sock.sendall(sent)
    assert 0.5 * DEADLINE < _seconds_until_closed(sock) < DEADLINE + SLACK


def test_a_slow_answer_is_not_cut(port):
    """The deadline covers receiving a request, never the time the app takes to answer it."""
    sock = _connect(port)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    start = time.monotonic()
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert time.monotonic() - start >= 1.5 * DEADLINE
    assert _seconds_until_closed(sock) < DEADLINE + SLACK        # then the idle connection goes


def test_a_body_sent_in_time_is_read(port):
    sock = _connect(port)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    time.sleep(0.4 * DEADLINE)
    sock.sendall(b"cd")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
