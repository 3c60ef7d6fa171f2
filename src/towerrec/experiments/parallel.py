"""`towerrec run --jobs N`: the experiment's (seed, model) cells in N worker processes.

A two-core machine gains little from giving one fit two threads (small matmuls, and OpenMP
threads that stall when the other core is busy), but gains almost 2x from two single-threaded
fits side by side. Workers are spawned (not forked: a process that already ran torch or OpenMP
must not fork), receive the experiment, the splits and the feature tables once, and return
`ModelRun`s without the fitted model. Cells are submitted longest first, so the short ones fill
the gaps at the end: models that train for epochs before the closed-form and neighbourhood ones,
then in the experiment file's model order (list the costliest first), each over its seeds.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from types import SimpleNamespace

from towerrec.runner import ModelRun
from towerrec.splits import Split

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_WORKER: dict = {}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(n_cells: int) -> int:
    """One worker per core on a CPU (at most one per cell); 1 when a GPU is present, which one
    process keeps busy."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(available_cores(), n_cells))


def threads_per_job(jobs: int) -> int:
    """torch / BLAS threads for each of `jobs` worker processes: their share of the cores."""
    return max(1, available_cores() // jobs)


def _init_worker(exp, splits: dict[int, Split], dataset, threads: int, fit: Callable[..., ModelRun]) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(exp=exp, splits=splits, dataset=dataset, threads=threads, fit=fit)


def _run_cell(seed: int, label: str) -> ModelRun:
    w = _WORKER
    return w["fit"](w["exp"], w["splits"][seed], w["dataset"], label, threads=w["threads"], progress=False)


@contextmanager
def thread_environment(threads: int):
    """BLAS / OpenMP pools of spawned workers sized to their share of the cores (read at start-up)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cost_rank(exp, label: str) -> int:
    """Bigger first: models trained by the shared loop (a `train` config) take longest, by epochs."""
    train = getattr(exp.models[label].build().config, "train", None)
    return -int(train.epochs) if train is not None else 0


def run_cells(exp, splits: dict[int, Split], dataset, cells: Sequence[tuple[int, str]], jobs: int,
              fit: Callable[..., ModelRun],
              on_done: Callable[[int, str, ModelRun], None] | None = None) -> dict[tuple[int, str], ModelRun]:
    """Fit and evaluate `cells` ((seed, label) pairs) in `jobs` processes; {(seed, label): run}.

    `fit(exp, split, dataset, label, threads=, progress=)` runs one cell (the runner's
    `_fit_and_evaluate`, a module-level function so spawned workers can unpickle it; passed in
    rather than imported so this module does not import the runner that imports it)."""
    threads = threads_per_job(jobs)
    ranks = {label: (_cost_rank(exp, label), n) for n, label in enumerate(exp.models)}
    order = sorted(cells, key=lambda cell: (ranks[cell[1]], cell[0]))   # model by model, seeds in order
    # the dataset object may hold an open loader or a text model: send only what fitting reads
    payload = SimpleNamespace(user_features=dataset.user_features, item_features=dataset.item_features)
    runs: dict[tuple[int, str], ModelRun] = {}
    with thread_environment(threads), ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(exp, splits, payload, threads, fit)) as pool:
        pending = {pool.submit(_run_cell, *cell): cell for cell in order}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                cell = pending.pop(future)
                if future.exception() is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise future.exception()
                runs[cell] = future.result()
                if on_done is not None:
                    on_done(*cell, runs[cell])
    return runs
