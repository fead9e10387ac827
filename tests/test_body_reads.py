"""BodyReads: the bound on anonymous request bodies being read at once (server/gate.py).

A stream's window grows to its whole request once the server reads it, so these limits are what
keeps anonymous callers from making the server buffer max_request_bytes per open call.
"""
import asyncio

import pytest

from hashmatch.server.errors import LimitExceeded, RateLimited
from hashmatch.server.gate import BodyReads


class Body:
    """A call whose body arrives when `arrive()` is called (never, for a slow sender)."""

    def __init__(self):
        self._arrived = asyncio.get_running_loop().create_future()

    def arrive(self, body=b"request"):
        self._arrived.set_result(body)

    async def read(self):
        return await self._arrived


def test_reads_beyond_the_slots_wait_and_each_address_is_capped():
    async def scenario():
        reads = BodyReads(most=2, per_address=2, timeout_s=5)
        bodies = [Body() for _ in range(3)]
        first = asyncio.ensure_future(reads.read(bodies[0], "a"))
        second = asyncio.ensure_future(reads.read(bodies[1], "a"))
        await asyncio.sleep(0.01)
        with pytest.raises(RateLimited, match=r"anonymous_reads_per_address \(2\)"):
            await reads.read(Body(), "a")               # a third body from the same address
        third = asyncio.ensure_future(reads.read(bodies[2], "b"))
        await asyncio.sleep(0.01)
        bodies[2].arrive(b"third")
        await asyncio.sleep(0.01)
        assert not third.done()                         # both slots are taken: it waits
        bodies[0].arrive(b"first")
        assert await first == b"first"
        assert await asyncio.wait_for(third, 1) == b"third"     # ...until one is freed
        bodies[1].arrive(b"second")
        assert await second == b"second"
        assert await reads.read(Body_arrived(b"again"), "a") == b"again"   # counts released

    asyncio.run(scenario())


def Body_arrived(body: bytes) -> Body:  # noqa: N802 - reads like the class it makes
    made = Body()
    made.arrive(body)
    return made


def test_a_slow_body_loses_its_slot_and_a_waiting_read_gives_up():
    async def scenario():
        reads = BodyReads(most=1, per_address=4, timeout_s=0.2)
        slow = asyncio.ensure_future(reads.read(Body(), "slow"))    # holds the slot 0.2 s
        await asyncio.sleep(0.01)
        slower = asyncio.ensure_future(reads.read(Body(), "slow"))  # then this one, 0.2 s more
        await asyncio.sleep(0.01)
        with pytest.raises(RateLimited, match=r"max_anonymous_reads \(1\)"):
            await reads.read(Body(), "other")           # no slot within the timeout
        for call in (slow, slower):
            with pytest.raises(LimitExceeded, match=r"did not arrive within "
                                                    r"anonymous_read_timeout_s \(0.2 s\)"):
                await call
        assert await reads.read(Body_arrived(b"ok"), "other") == b"ok"  # the slot came back

    asyncio.run(scenario())
