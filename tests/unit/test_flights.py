"""One blocking read per key at a time, on a real event loop and its executor."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from modelbay.errors import NotFound
from modelbay.flights import Flights


class Gated:
    """A blocking function that counts its calls and returns once the gate opens."""

    def __init__(self, result: object = "value", error: Exception | None = None) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.result = result
        self.error = error

    def __call__(self, *args: object) -> object:
        self.calls += 1
        assert self.gate.wait(5)
        if self.error is not None:
            raise self.error
        return (self.result, *args)


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_callers_of_one_key_share_one_call_and_other_keys_run_their_own() -> None:
    async def main() -> None:
        flights, read, other = Flights(), Gated(), Gated("other")
        waiting = [asyncio.ensure_future(flights.call("k", read, 1)) for _ in range(50)]
        elsewhere = asyncio.ensure_future(flights.call("j", other, 2))
        await _until(lambda: read.calls == 1 and other.calls == 1)
        read.gate.set()
        other.gate.set()
        assert await asyncio.gather(*waiting) == [("value", 1)] * 50
        assert await elsewhere == ("other", 2)
        assert (read.calls, other.calls) == (1, 1)
        assert not flights.running("k")
        read.gate.set()
        assert await flights.call("k", read, 3) == ("value", 3)  # landed: a new call reads
        assert read.calls == 2

    asyncio.run(main())


def test_a_failure_reaches_every_waiting_caller_and_is_not_kept() -> None:
    async def main() -> None:
        flights, read = Flights(), Gated(error=NotFound("no model 'm'"))
        waiting = [asyncio.ensure_future(flights.call("k", read)) for _ in range(3)]
        await _until(lambda: read.calls == 1)
        read.gate.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, NotFound) for r in results)
        read.error = None
        assert await flights.call("k", read) == ("value",)
        assert read.calls == 2

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_call_to_the_others() -> None:
    async def main() -> None:
        flights, read = Flights(), Gated()
        leaving = asyncio.ensure_future(flights.call("k", read))
        staying = asyncio.ensure_future(flights.call("k", read))
        await _until(lambda: read.calls == 1)
        leaving.cancel()
        await asyncio.sleep(0)
        read.gate.set()
        assert await staying == ("value",)
        assert leaving.cancelled()
        assert read.calls == 1

    asyncio.run(main())


def test_start_runs_in_the_background_once_and_callers_join_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        flights, read = Flights(), Gated()
        flights.start("k", read)
        flights.start("k", read)  # already running: not a second read
        joined = asyncio.ensure_future(flights.call("k", read))
        await _until(lambda: read.calls == 1)
        assert flights.running("k")
        read.gate.set()
        assert await joined == ("value",)
        assert read.calls == 1

        failing = Gated(error=RuntimeError("database is locked"))
        failing.gate.set()
        flights.start("f", failing)
        await _until(lambda: not flights.running("f"))
        await asyncio.sleep(0)  # the failure's callback runs

    with caplog.at_level(logging.WARNING, logger="modelbay.flights"):
        asyncio.run(main())
    assert "database is locked" in caplog.text
