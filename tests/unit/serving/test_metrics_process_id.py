"""The process id the metrics' multiprocess mode reads is kept, and right after a fork."""

from __future__ import annotations

import multiprocessing as mp
import os

from modelbay.serving import metrics


def _report(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    queue.put((metrics._process_id(), os.getpid()))


def test_a_forked_child_gets_its_own_id() -> None:
    assert metrics._process_id() == os.getpid()
    queue: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    child = mp.get_context("fork").Process(target=_report, args=(queue,))
    child.start()
    kept, actual = queue.get(timeout=30)
    child.join(30)
    assert kept == actual == child.pid
    assert kept != os.getpid()
