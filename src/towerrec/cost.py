"""Cost beside accuracy: what a model takes to fit, to store and to answer one request.

    with PeakMemory() as peak:            # around model.fit(...)
        model.fit(split)
    cost = measure_cost(model, fit_seconds=..., peak=peak)

- `parameters`: the learned numbers (`Recommender.n_parameters`: a torch model's parameters, else
  the floating-point arrays of its saved state: EASE's n_items^2 weights, ItemKNN's kept
  similarities, ALS's factors, popularity's counts);
- `artifact_bytes`: the size on disk of the folder `model.save` writes;
- `peak_train_mb`: memory the fit added at its peak, on top of what the process held before (Linux:
  the resident-set high-water mark, reset before the fit through /proc/self/clear_refs; CUDA: the
  peak allocated by torch); None where it cannot be measured honestly;
- `fit_seconds`: wall-clock of `fit`;
- `latency_p50_ms` / `latency_p99_ms`: one `model.recommend([user], k)` call for `calls` training
  users drawn with a fixed seed (after a few warm-up calls), in this process with its torch threads.

Wall-clock figures depend on the machine and its load: `os.getloadavg()` is recorded beside them.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

#: recommend() calls timed per model, after WARMUP untimed ones
LATENCY_CALLS = 100
WARMUP = 5


@dataclass(frozen=True)
class Cost:
    """One fitted model's cost (see the module docstring for each field)."""

    parameters: int
    artifact_bytes: int | None
    peak_train_mb: float | None
    fit_seconds: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_calls: int = 0
    torch_threads: int = 1
    load_average: float | None = None     # 1-minute load average when the latency was measured
    seconds: float = 0.0                  # what measuring it took (saving, timing)

    def as_dict(self) -> dict:
        return asdict(self)


# ---- peak memory ------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Context manager: the peak memory (MiB) added while inside, `mb` afterwards (None if unknown).

    CPU: resident-set high-water mark minus the resident set at entry, the mark reset at entry
    (Linux >= 4.0). CUDA: torch's peak allocated bytes over those at entry, when CUDA is in use.
    Kernels before 6.2 count a thread's pages into the process's total every 64 page faults, so
    there the mark can miss up to 64 faults' worth (128 MiB in 2 MiB huge pages) of a peak.
    """

    def __init__(self) -> None:
        self.mb: float | None = None
        self._rss0: int | None = None
        self._cuda0: int | None = None

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                     # reset VmHWM to the current VmRSS
            self._rss0 = _status_kb("VmRSS")
        except OSError:
            self._rss0 = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
            self._cuda0 = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kb("VmHWM")
        cpu = (hwm - self._rss0) / 1024 if hwm is not None and self._rss0 is not None else None
        gpu = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = (torch.cuda.max_memory_allocated() - (self._cuda0 or 0)) / 2**20
        self.mb = gpu if gpu else cpu


# ---- the other figures ---------------------------------------------------------------------------------
def artifact_bytes(model) -> int | None:
    """Bytes of the folder `model.save` writes (saved to a temporary folder, then removed)."""
    try:
        with tempfile.TemporaryDirectory(prefix="towerrec-cost-") as tmp:
            path = Path(model.save(Path(tmp) / "model"))
            return int(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    except NotImplementedError:
        return None


def recommend_latency(model, k: int = 10, calls: int = LATENCY_CALLS, seed: int = 0) -> tuple[float, float] | None:
    """(p50, p99) milliseconds of `model.recommend([user], k)`, one training user per call."""
    users = model.user_map_.ids[np.diff(model.seen_.indptr) > 0]
    if len(users) == 0 or calls <= 0:
        return None
    chosen = np.random.default_rng([seed, 0xC057]).choice(users, calls + WARMUP, replace=True)
    times = []
    for n, user in enumerate(chosen):   # one request at a time is what is being measured
        start = time.perf_counter()
        model.recommend([user], k=k)
        if n >= WARMUP:
            times.append((time.perf_counter() - start) * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    return float(p50), float(p99)


def measure_cost(model, *, fit_seconds: float, peak: PeakMemory | None = None, k: int = 10,
                 calls: int = LATENCY_CALLS, seed: int = 0) -> Cost:
    """The `Cost` of a fitted model (saves it once to a temporary folder and times `calls` requests)."""
    start = time.perf_counter()
    size = artifact_bytes(model)
    latency = recommend_latency(model, k=k, calls=calls, seed=seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Cost(parameters=int(model.n_parameters()), artifact_bytes=size,
                peak_train_mb=None if peak is None or peak.mb is None else round(peak.mb, 1),
                fit_seconds=round(float(fit_seconds), 4),
                latency_p50_ms=None if latency is None else round(latency[0], 4),
                latency_p99_ms=None if latency is None else round(latency[1], 4),
                latency_calls=calls if latency is not None else 0, torch_threads=torch.get_num_threads(),
                load_average=None if load is None else round(load, 2),
                seconds=round(time.perf_counter() - start, 3))


__all__ = ["Cost", "PeakMemory", "artifact_bytes", "measure_cost", "recommend_latency"]
