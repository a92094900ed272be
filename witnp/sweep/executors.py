"""Run `fn(task, shared) -> result` over tasks in worker processes, yielding (index, result) as each ends.

- "processes": a local `concurrent.futures` pool of `workers` spawned processes; `shared` (the sweep's data)
  reaches each worker once, through the pool's initializer.
- "dask" (``pip install "witnp[dask]"``, dask.distributed): a `LocalCluster` of `workers` process workers, one
  thread each, or the existing cluster at `scheduler` ("tcp://HOST:PORT"); `shared` is scattered to every
  worker once (broadcast) and tasks take it by reference.
- "auto": dask when it is installed, else processes.

Every task first limits BLAS and Numba to `threads` (default 1: witnp/threads.py says why), so workers never
spin against each other. fn must be importable by name in the workers (a module-level function of an
installed package). An exception that escapes fn, or a worker that dies, is reported as the task's result
{"status": "failed", "error": "..."}; the other tasks go on.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator, List, Optional, Tuple

__all__ = ["EXECUTORS", "run_tasks", "resolve_executor", "dask_available"]

EXECUTORS = ("auto", "dask", "processes")
_SHARED = None  # the pool worker's copy of `shared`, set once by its initializer


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
    from ..threads import set_threads
    set_threads(threads)
    return fn(task, shared)


def run_tasks(fn: Callable, tasks: List[dict], shared, *, executor: str = "auto", workers: Optional[int] = None,
              scheduler: Optional[str] = None, threads: int = 1, log: Callable[[str], None] = print
              ) -> Iterator[Tuple[int, dict]]:
    """(index into tasks, fn's result) for every task, in the order they finish. workers: the local pool's
    or local cluster's size (default: one per core, at most one per task); ignored with a scheduler."""
    if not tasks:
        return
    executor = resolve_executor(executor, scheduler)
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if executor == "processes":
        yield from _run_pool(fn, tasks, shared, workers, threads, log)
    else:
        yield from _run_dask(fn, tasks, shared, workers, scheduler, threads, log)


def _run_pool(fn, tasks, shared, workers, threads, log):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    log(f"executor: local process pool, {workers} worker{'s' * (workers > 1)}, {threads} thread(s) each")
    # spawn, not fork: a forked copy of a process that has started Numba's or BLAS's threads can deadlock
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                             initargs=(shared, threads))
    try:
        futures = {ex.submit(_pool_call, fn, t): i for i, t in enumerate(tasks)}
        for f in as_completed(futures):
            try:
                yield futures[f], f.result()
            except Exception as e:  # noqa: BLE001 - a worker that died, or fn raised: the task failed
                yield futures[f], _failed(e)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _run_dask(fn, tasks, shared, workers, scheduler, threads, log):
    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
        log(f"executor: Dask cluster at {scheduler} ({len(client.scheduler_info().get('workers', {}))} workers), "
            f"{threads} thread(s) per task")
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        log(f"executor: local Dask cluster, {workers} process worker{'s' * (workers > 1)}, one thread each")
    try:
        shared_ref = client.scatter([shared], broadcast=True)[0]  # the data: to every worker once
        futures = {client.submit(_dask_call, fn, t, shared_ref, threads, pure=False): i for i, t in enumerate(tasks)}
        for f in as_completed(list(futures)):
            try:
                yield futures[f], f.result()
            except Exception as e:  # noqa: BLE001 - fn raised, or its worker died (KilledWorker)
                yield futures[f], _failed(e)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
