"""Run `fn(task, shared) -> result` over tasks in worker processes, yielding (index, result) as each ends.

- "processes": a local `concurrent.futures` pool of `workers` spawned processes; `shared` (the sweep's data)
  reaches each worker once, through the pool's initializer.
- "dask" (``pip install "witnp[dask]"``, dask.distributed): a `LocalCluster` of `workers` process workers, one
  thread each, or the existing cluster at `scheduler` ("tcp://HOST:PORT"); `shared` is scattered to every
  worker once (broadcast) and tasks take it by reference.
- "auto": dask when it is installed, else processes.

Every task first limits BLAS and Numba to `threads` (default 1: witnp/threads.py says why), so workers never
spin against each other, and a worker process runs one task at a time whatever its thread count (witnp's
noise generator is process-wide): start Dask workers with `--nthreads 1` and as many `--nworkers` as cores. fn must be importable by name in the workers (a module-level function of an
installed package). An exception that escapes fn, or a worker that dies, is reported as the task's result
{"status": "failed", "error": "..."}; the other tasks go on.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Iterator, List, Optional, Tuple

__all__ = ["EXECUTORS", "run_tasks", "Workers", "resolve_executor", "dask_available"]

EXECUTORS = ("auto", "dask", "processes")
_SHARED = None  # the pool worker's copy of `shared`, set once by its initializer
_TASK_LOCK = threading.Lock()


def dask_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("dask") is not None and importlib.util.find_spec("distributed") is not None


def resolve_executor(executor: str, scheduler: Optional[str]) -> str:
    """The executor a sweep will use; refuses, before any work, what cannot run (dask missing, a scheduler
    without dask, an unknown name)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}; expected one of {list(EXECUTORS)}")
    if scheduler is not None:
        if executor == "processes":
            raise ValueError("--scheduler runs the points on a Dask cluster; it does not go with the local process "
                             "pool (--executor processes)")
        if not str(scheduler).strip():
            raise ValueError("--scheduler '': expected the cluster's scheduler address, e.g. tcp://10.0.0.5:8786")
        executor = "dask"
    if executor == "dask" and not dask_available():
        raise ValueError('the Dask executor needs dask.distributed, which is not installed: pip install '
                         '"witnp[dask]" (or --executor processes for a local process pool)')
    if executor == "auto":
        executor = "dask" if dask_available() else "processes"
    return executor


def _failed(e: BaseException) -> dict:
    text = str(e).splitlines()[0] if str(e) else ""
    return {"status": "failed", "error": f"{type(e).__name__}: {text}" if text else type(e).__name__}


def _pool_init(shared, threads: int) -> None:
    global _SHARED
    _SHARED = shared
    from ..threads import set_threads
    set_threads(threads)


def _pool_call(fn, task):
    return fn(task, _SHARED)


def _dask_call(fn, task, shared, threads: int):
    # One task at a time per worker process: a point seeds witnp's process-wide noise generator
    # (manual_seed) and sets the thread limits, so two points in one process (a worker started with
    # --nthreads > 1) would draw from each other's generator. The lock makes such a worker run them in turn.
    with _TASK_LOCK:
        from ..threads import set_threads
        set_threads(threads)
        return fn(task, shared)


def run_tasks(fn: Callable, tasks: List[dict], shared, *, executor: str = "auto", workers: Optional[int] = None,
              scheduler: Optional[str] = None, threads: int = 1, log: Callable[[str], None] = print
              ) -> Iterator[Tuple[int, dict]]:
    """(index into tasks, fn's result) for every task, in the order they finish, on workers started for
    this call (`Workers` keeps them for several batches). workers: the local pool's or local cluster's size
    (default: one per core, at most one per task); ignored with a scheduler."""
    if not tasks:
        return
    n = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with Workers(shared, executor=executor, workers=n, scheduler=scheduler, threads=threads, log=log) as w:
        yield from w.map(fn, tasks)


class Workers:
    """Worker processes kept for several batches of tasks (a search runs many): `shared` is sent to each
    worker once, when they start. A context manager; `map(fn, tasks)` yields (index, result) as tasks end."""

    def __init__(self, shared, *, executor: str = "auto", workers: Optional[int] = None,
                 scheduler: Optional[str] = None, threads: int = 1, log: Callable[[str], None] = print):
        self.shared, self.scheduler, self.threads, self.log = shared, scheduler, threads, log
        self.executor = resolve_executor(executor, scheduler)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = self._client = self._cluster = self._ref = None

    def __enter__(self) -> "Workers":
        if self.executor == "processes":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            # spawn, not fork: a forked copy of a process that has started Numba's or BLAS's threads can deadlock
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_pool_init, initargs=(self.shared, self.threads))
            self.log(f"executor: local process pool, {self.workers} worker{'s' * (self.workers > 1)}, "
                     f"{self.threads} thread(s) each")
            return self
        import logging

        from dask.distributed import Client, LocalCluster
        if self.scheduler:
            self._client = Client(self.scheduler, timeout="30s")
            self.log(f"executor: Dask cluster at {self.scheduler} "
                     f"({len(self._client.scheduler_info().get('workers', {}))} workers), {self.threads} thread(s) "
                     f"per task")
        else:
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.CRITICAL)
            self._client = Client(self._cluster)
            self.log(f"executor: local Dask cluster, {self.workers} process worker{'s' * (self.workers > 1)}, one "
                     f"thread each")
        self._ref = self._client.scatter([self.shared], broadcast=True)[0]  # the data: to every worker once
        return self

    def map(self, fn: Callable, tasks: List[dict]) -> Iterator[Tuple[int, dict]]:
        if self._pool is not None:
            from concurrent.futures import as_completed
            futures = {self._pool.submit(_pool_call, fn, t): i for i, t in enumerate(tasks)}
        else:
            from dask.distributed import as_completed
            futures = {self._client.submit(_dask_call, fn, t, self._ref, self.threads, pure=False): i
                       for i, t in enumerate(tasks)}
        for f in as_completed(list(futures)):
            try:
                yield futures[f], f.result()
            except Exception as e:  # noqa: BLE001 - fn raised, or its worker died (BrokenProcessPool, KilledWorker)
                yield futures[f], _failed(e)

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
