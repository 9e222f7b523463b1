"""Ordered process-parallel map and the progress bar the CLI verbs share.

Invariant: ``pmap`` yields results **in input order** whatever ``jobs`` is, so
every builder writes the same bytes with 1 or N processes. Workers are
started with ``spawn`` (never ``fork``): the parent may hold pyarrow/numpy
thread pools, which ``fork`` would copy in a locked state.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
from typing import Callable, Iterable, Iterator, TypeVar
from cis490.common import InputError

T = TypeVar("T")
R = TypeVar("R")


def pmap(func: Callable[[T], R], items: Iterable[T], *, jobs: int = 1,
         progress: Callable[[int], None] | None = None, chunksize: int = 2) -> Iterator[R]:
    """Map ``func`` over ``items`` in ``jobs`` processes, yielding in order.

    ``items`` may be a generator: the pool's feeder thread takes items as the
    pipe to the workers drains, so they are made a few at a time, not all up
    front (a sized ``items`` of 0 or 1 runs in-process).
    """
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    sized = hasattr(items, "__len__")
    if jobs == 1 or (sized and len(items) <= 1):
        for it in items:
            r = func(it)
            if progress:
                progress(1)
            yield r
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=min(jobs, len(items)) if sized else jobs) as pool:
        for r in pool.imap(func, items, chunksize=chunksize):
            if progress:
                progress(1)
            yield r


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, quiet: bool,
                 unit: str = "episodes") -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal's stderr; plain progress lines (``cis490.progress``)
    when stderr is not a terminal (cron, systemd, a log file); a no-op callable when ``quiet``."""
    if quiet or total == 0:
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        from cis490.progress import LineProgress

        line = LineProgress(description, total, unit=unit)
        try:
            yield line.advance
        finally:
            line.close()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
