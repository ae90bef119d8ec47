"""`vigil worker`: stores and matches the telemetry batches the agent API published to NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from vigil.bus import Bus, BusUnavailable
from vigil.commands._common import CommandError, DataDir, settings_for
from vigil.config import Settings
from vigil.server.app import create_app
from vigil.server.ingest import IngestPipeline
from vigil.server.telemetry_bus import IngestWorker, connect

console = Console(stderr=True)
log = logging.getLogger("vigil.worker")


class Role(StrEnum):
    # Store and detect run as one step, in one transaction per batch (IngestPipeline): a batch and its alerts
    # are stored together or not at all, which is what makes a redelivered batch raise no second alert.
    ALL = "all"


def worker(
    data_dir: DataDir = None,
    role: Annotated[Role, typer.Option(help="what this worker does: all = store each batch and run detection")]
    = Role.ALL,
) -> None:
    """Consume telemetry batches from NATS JetStream: validate, store, detect, ack (docs/scale-out.md)."""
    settings = settings_for(data_dir)
    if not settings.bus_url:
        raise CommandError(f"{settings.data_dir / 'vigil.toml'}: bus_url is not set (e.g. bus_url = "
                           '"nats://127.0.0.1:4222", or VIGIL_BUS_URL): without a bus, `vigil server` stores '
                           "batches itself and needs no worker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pipeline: IngestPipeline = create_app(settings).state.services.ingest  # the server's pipeline, hooks and all
    console.print(f"vigil worker ({role.value}) on {settings.bus_url}, stream {settings.bus_stream}")
    asyncio.run(_run(settings, pipeline))


async def _connect_until_up(settings: Settings, stop: asyncio.Event) -> Bus | None:
    while not stop.is_set():
        try:
            return await connect(settings)
        except BusUnavailable as e:
            log.warning("%s; trying again in 2 s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    return None


async def _run(settings: Settings, pipeline: IngestPipeline) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = await _connect_until_up(settings, stop)
    if bus is None:
        return
    worker = IngestWorker(bus, pipeline, ack_wait=settings.bus_ack_wait_seconds)
    task = asyncio.create_task(worker.run())
    await stop.wait()
    worker.stop()  # the batch in hand is finished and acked; the next fetch does not start
    await task
    await bus.close()
    s = worker.stats
    console.print(f"vigil worker stopped: {s.stored} batches ({s.rows} rows) stored, {s.duplicates} duplicates, "
                  f"{s.failed} failed attempts, {s.unreadable} unreadable")
