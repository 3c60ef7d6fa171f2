"""Serving that keeps up with a model that changes: the live service, swapped atomically.

The app answers every request from `LiveService.service`, read once at the start of the request,
so a request runs wholly on one version. Every change builds a complete new `RecommenderService`
off to the side while the old one keeps answering, then replaces that one reference (an atomic
assignment): no request waits, fails or sees half of a change.

- `reload()`: load the artifact again: a model store's LATEST version (`towerrec.artifact.publish`)
  or the folder itself. A load that fails (a damaged folder, a version being written elsewhere)
  keeps the old service and says why. `POST /admin/reload` calls it.
- `watch(interval)`: a daemon thread that polls the artifact's stamp (the store's LATEST, or the
  folder's model.json, written last by every save) and reloads when it changes. With `--workers N`
  each worker process watches for itself; an HTTP reload would reach one worker only.
- `add_items(frame)` / `retire_items(ids)`: copy-on-write changes of the catalogue
  (`RecommenderService.with_items` / `without_items`). Writers take a lock, so two changes never
  race; readers never take it. These changes live in this process only: publish an updated
  artifact (`towerrec update`) to keep them.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from towerrec.artifact import artifact_stamp
from towerrec.errors import TowerrecError
from towerrec.serve.service import RecommenderService

log = logging.getLogger("towerrec.serve")


class LiveService:
    """The current `RecommenderService` and the ways to replace it (see the module docstring)."""

    def __init__(self, service: RecommenderService, *, source: str | Path | None = None,
                 load: Callable[[Path], RecommenderService] | None = None, workers: int = 1) -> None:
        self.service = service
        self.source = Path(source) if source is not None else None
        self._load = load
        self.workers = workers
        self.reloads = 0
        self.last_error: str | None = None
        self._stamp = artifact_stamp(self.source) if self.source is not None else ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reload ------------------------------------------------------------------------------
    def reload(self) -> dict:
        """Load the source again and swap; raises TowerrecError (old service kept) when it cannot."""
        if self.source is None or self._load is None:
            raise TowerrecError("this server was not started from an artifact folder: nothing to reload")
        with self._lock:
            stamp = artifact_stamp(self.source)
            start = time.perf_counter()
            try:
                service = self._load(self.source)           # a store: its LATEST version
            except TowerrecError as exc:
                self.last_error = str(exc)
                raise TowerrecError(f"reload failed, still serving model version {self.service.model.version}: {exc}") \
                    from None
            self.reloads += 1
            self._stamp, self.last_error = stamp, None
            self.service = service                     # the swap: one reference, read once per request
        seconds = time.perf_counter() - start
        log.info("reloaded %s: model version %d in %.2f s", service.artifact, service.model.version, seconds)
        return {"reloaded": True, "model_version": service.model.version,
                "artifact": Path(service.artifact).name if service.artifact else None, "seconds": round(seconds, 3)}

    def changed(self) -> bool:
        """The source's stamp differs from the one loaded (and there is something to load)."""
        stamp = artifact_stamp(self.source) if self.source is not None else ""
        return bool(stamp) and stamp != self._stamp

    def watch(self, interval: float) -> None:
        """Poll the source every `interval` seconds in a daemon thread; reload when it changes."""
        if self.source is None or interval <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                if self.changed():
                    try:
                        self.reload()
                    except TowerrecError as exc:      # keep serving; try again at the next change
                        log.warning("%s", exc)
                        self._stamp = artifact_stamp(self.source)

        self._thread = threading.Thread(target=loop, name="towerrec-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # ---- catalogue changes ---------------------------------------------------------------------
    def add_items(self, frame: pd.DataFrame) -> RecommenderService:
        with self._lock:
            self.service = self.service.with_items(frame)
            return self.service

    def retire_items(self, item_ids: Sequence[str]) -> RecommenderService:
        with self._lock:
            self.service = self.service.without_items(item_ids)
            return self.service

    def info(self) -> dict:
        """Reload state for `/info`."""
        return {"source": self.source.name if self.source is not None else None, "reloads": self.reloads,
                "watching": self._thread is not None, "last_reload_error": self.last_error,
                "workers": self.workers}
