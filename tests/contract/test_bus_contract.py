"""The bus port's contract, run on both adapters: the in-process bus and NATS JetStream (a real server)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from vigil.bus import Bus, BusFull, PayloadTooLarge, StreamSpec
from vigil.bus.memory import InProcessBus

Opener = Callable[[StreamSpec], Awaitable[Bus]]


@pytest.fixture(params=["memory", pytest.param("jetstream", marks=pytest.mark.nats)])
def open_bus(request: pytest.FixtureRequest) -> Iterator[Opener]:
    made: list[str] = []
    if request.param == "memory":
        async def memory(spec: StreamSpec) -> Bus:
            return InProcessBus(spec)
        yield memory
        return
    url = request.getfixturevalue("nats_url")
    from vigil.bus.jetstream import JetStreamBus

    async def jetstream(spec: StreamSpec) -> Bus:
        made.append(spec.name)
        return await JetStreamBus.connect(url, spec)
    yield jetstream

    async def clean() -> None:
        import nats
        import nats.js.errors

        nc = await nats.connect(url)
        for name in made:
            with contextlib.suppress(nats.js.errors.NotFoundError):  # already gone
                await nc.jetstream().delete_stream(name)
        await nc.close()
    asyncio.run(clean())


def _spec(**limits: int) -> StreamSpec:
    name = f"TEST_{uuid.uuid4().hex[:10].upper()}"
    return StreamSpec(name=name, subject=f"test.{name.lower()}", **limits)


def test_a_published_message_is_delivered_once_and_gone_when_acked(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        first = await bus.publish(b"batch-1", "m1")
        assert not first.duplicate
        consumer = await bus.consumer("ingest", ack_wait=1)
        (got,) = await consumer.fetch(10, timeout=2)
        assert (got.data, got.msg_id, got.attempt) == (b"batch-1", "m1", 1)
        await got.ack()
        await asyncio.sleep(1.3)  # past ack_wait: an acked message does not come back
        assert await consumer.fetch(10, timeout=0.3) == []
        await bus.close()
    asyncio.run(run())


def test_the_same_message_id_is_taken_once(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        a = await bus.publish(b"x", "same")
        b = await bus.publish(b"x", "same")
        assert (a.duplicate, b.duplicate, b.sequence) == (False, True, a.sequence)
        consumer = await bus.consumer("ingest")
        got = await consumer.fetch(10, timeout=1)
        assert [m.msg_id for m in got] == ["same"]
        for m in got:
            await m.ack()
        # acked and gone, still remembered: an agent resending after the ack is not a second message
        assert (await bus.publish(b"x", "same")).duplicate
        await bus.close()
    asyncio.run(run())


def test_an_unacked_message_comes_back_to_another_consumer_of_the_same_name(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        await bus.publish(b"m", "crash-me")
        worker_a = await bus.consumer("ingest", ack_wait=1)
        (first,) = await worker_a.fetch(1, timeout=2)  # worker A takes it and dies without acking
        worker_b = await bus.consumer("ingest", ack_wait=1)
        assert await worker_b.fetch(1, timeout=0.3) == []  # held by A until its ack deadline
        (again,) = await worker_b.fetch(1, timeout=3)
        assert (again.msg_id, again.attempt) == ("crash-me", 2)
        await again.ack()
        await first.ack()  # A's late ack of a message since redelivered changes nothing
        assert await worker_b.fetch(1, timeout=1.3) == []
        await bus.close()
    asyncio.run(run())


def test_a_nak_redelivers_at_once(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        await bus.publish(b"m", "n1")
        consumer = await bus.consumer("ingest", ack_wait=30)
        (m,) = await consumer.fetch(1, timeout=2)
        await m.nak()
        (m2,) = await consumer.fetch(1, timeout=2)
        assert (m2.msg_id, m2.attempt) == ("n1", 2)
        await m2.ack()
        await bus.close()
    asyncio.run(run())


def test_consumers_of_one_name_share_the_messages(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        for i in range(20):
            await bus.publish(f"{i}".encode(), f"id-{i}")
        a, b = await bus.consumer("ingest"), await bus.consumer("ingest")
        got_a = await a.fetch(10, timeout=2)
        got_b = await b.fetch(20, timeout=2)
        ids = [m.msg_id for m in got_a + got_b]
        assert sorted(ids) == sorted(f"id-{i}" for i in range(20))  # each once, none to both
        assert got_a and got_b
        for m in got_a + got_b:
            await m.ack()
        await bus.close()
    asyncio.run(run())


def test_a_full_stream_refuses_new_messages_until_consumed(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec(max_msgs=3))
        for i in range(3):
            await bus.publish(b"x", f"f{i}")
        with pytest.raises(BusFull):
            await bus.publish(b"x", "f3")
        consumer = await bus.consumer("ingest")
        (m,) = await consumer.fetch(1, timeout=2)
        await m.ack()
        for _ in range(20):  # JetStream removes the acked message from a work queue asynchronously
            try:
                assert not (await bus.publish(b"x", "f3")).duplicate
                break
            except BusFull:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the stream stayed full after a message was acked")
        await bus.close()
    asyncio.run(run())


def test_a_message_over_the_payload_limit_is_refused(open_bus: Opener) -> None:
    async def run() -> None:
        bus = await open_bus(_spec())
        with pytest.raises(PayloadTooLarge):
            await bus.publish(b"x" * (8 * 1024 * 1024), "huge")
        await bus.close()
    asyncio.run(run())
