"""A scaled-out Vigil for tests and the scale benchmark: a server publishing to JetStream, `vigil worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nats

from tests.support import VigilServer


def scaled_server(data_dir: Path, pg_url: str, nats_url: str, **settings: object) -> VigilServer:
    """A set-up server on ``pg_url`` whose agent API publishes to a stream of its own on ``nats_url``."""
    srv = VigilServer.create(data_dir, pg_url)
    stream = f"VIGIL_T{uuid.uuid4().hex[:10].upper()}"
    values = {"bus_url": nats_url, "bus_stream": stream, **settings}
    toml = data_dir / "vigil.toml"
    lines = [ln for ln in toml.read_text().splitlines() if ln.split(" = ")[0] not in values]
    lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    toml.write_text("\n".join(lines) + "\n")
    return srv


def _toml(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def stream_of(srv: VigilServer) -> str:
    for line in (srv.data_dir / "vigil.toml").read_text().splitlines():
        if line.startswith("bus_stream = "):
            return line.split(" = ")[1].strip('"')
    raise LookupError("no bus_stream in vigil.toml")


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@dataclass
class WorkerProcess:
    """`vigil worker` as a child process, to be stopped, or killed mid-batch like a crashed host."""

    data_dir: Path
    name: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir / f"{self.name}.log"

    def start(self) -> None:
        env = {**os.environ, "VIGIL_DATA_DIR": str(self.data_dir)}
        env.pop("VIGIL_DATABASE_URL", None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "vigil", "worker", "--data-dir", str(self.data_dir)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
