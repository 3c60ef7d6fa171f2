"""uvicorn's HTTP protocol with a deadline for receiving each request (slowloris protection).

uvicorn closes a keep-alive connection that stays idle `timeout_keep_alive` seconds after a response,
but nothing bounds the time before a request is complete: a client that connects and sends nothing,
or trickles the request line and headers a byte at a time, holds its connection (and a file
descriptor) for as long as it likes, since every byte received cancels the keep-alive timer
(h11 and httptools alike, checked on uvicorn 0.54). A few hundred such clients exhaust a worker.

`RequestDeadline` arms a timer when a connection opens and again after each response; unless the
next request has been received in full (headers and body) by then, the connection is closed. A
request that has arrived and is being answered is never cut, however long the answer takes.

Used by `towerrec serve` as `uvicorn.run(..., http=request_deadline_protocol())`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

log = logging.getLogger("towerrec.serve")

#: seconds a client has to deliver a complete request (a 256 KiB body at ~26 KB/s fits)
REQUEST_TIMEOUT = 10.0


def request_timeout() -> float:
    """The deadline for this process: `towerrec serve --request-timeout`, passed to every worker
    through the TOWERREC_SERVE_CONFIG environment variable like the rest of the serving config."""
    try:
        value = json.loads(os.environ.get("TOWERREC_SERVE_CONFIG") or "{}").get("request_timeout")
    except (json.JSONDecodeError, AttributeError):
        value = None
    return float(value) if isinstance(value, (int, float)) and value > 0 else REQUEST_TIMEOUT


class RequestDeadline:
    """Mixin over a uvicorn HTTP protocol class (`H11Protocol` or `HttpToolsProtocol`)."""

    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None
        self._timeout = request_timeout()
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self._deadline is not None and self._request_received():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    # ---- the timer --------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle           # the next request brings a new cycle object
        self._deadline = asyncio.get_running_loop().call_later(self._timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_received(self) -> bool:
        """A request newer than the one the timer was armed after has arrived in full."""
        cycle = self.cycle
        return cycle is not None and cycle is not self._waiting_after and not cycle.more_body

    def _expired(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            return                                 # a whole request is being answered: not ours to cut
        if not self.transport.is_closing():
            peer = self.transport.get_extra_info("peername")
            log.info("closing a connection from %s: no complete request within %.1f s", peer, self._timeout)
            self.transport.close()


def request_deadline_protocol() -> type[asyncio.Protocol]:
    """uvicorn's default HTTP protocol (httptools when installed, else h11) with `RequestDeadline`."""
    import importlib.util

    return HttpToolsRequestDeadline if importlib.util.find_spec("httptools") else H11RequestDeadline


# module-level classes (not built in a function): `--workers` pickles the uvicorn config, class included
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402


class H11RequestDeadline(RequestDeadline, H11Protocol):
    """h11 with a request deadline."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:   # httptools is optional in uvicorn
    HttpToolsRequestDeadline = H11RequestDeadline
else:
    class HttpToolsRequestDeadline(RequestDeadline, HttpToolsProtocol):  # type: ignore[no-redef]
        """httptools with a request deadline."""
