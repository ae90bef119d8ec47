"""The uploader thread: sends spooled batches and heartbeats, backs off while the server is away."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable

from vigil import __version__
from vigil.agent.clock import Clock, iso
from vigil.agent.config import AgentConfig
from vigil.agent.errors import AgentError, ServerRejected
from vigil.agent.identity import Identity
from vigil.agent.sensors.device_info import ip_addresses
from vigil.agent.spool import Batch, Spool
from vigil.agent.transport import AgentTransport, CredentialRevoked, ServerUnavailable
from vigil.wire import Heartbeat, SignedCommand

log = logging.getLogger(__name__)

META_REVOKED = "revoked"
META_LAST_ERROR = "last_error"
META_LAST_HEARTBEAT = "last_heartbeat_at"


class Backoff:
    """Capped exponential backoff with jitter, so a fleet does not return in lockstep."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = cap
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2 ** min(self.failures, 30))
        self.failures += 1
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.failures = 0




class Uploader:
    def __init__(
        self,
        spool: Spool,
        transport: AgentTransport,
        identity: Identity,
        config: AgentConfig,
        clock: Clock,
        sensor_health: Callable[[], dict[str, str]],
        device_name: str | None = None,
        rng: random.Random | None = None,
        on_commands: Callable[[list[SignedCommand]], None] | None = None,
    ) -> None:
        self._on_commands = on_commands
        self._spool = spool
        self._transport = transport
        self._identity = identity
        self._config = config
        self._clock = clock
        self._sensor_health = sensor_health
        self._device_name = device_name
        self._backoff = Backoff(config.backoff_initial_seconds, config.backoff_max_seconds, rng)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._unavailable_logged = False
        # Server errors (5xx) per batch id in a row, with when the first came; and when the server last
        # answered anything but a 5xx. A batch fails alone only if the server has answered since it began failing.
        self._server_errors: dict[str, tuple[int, float]] = {}
        self._last_answer = float("-inf")
        # Revocation sticks to the credential it was seen with; a new enrollment starts afresh.
        self._credential_tag = hashlib.sha256(identity.credential.encode()).hexdigest()[:16]
        self.revoked = (spool.get_meta(META_REVOKED) or "").startswith(self._credential_tag)
        if self.revoked:
            log.error("this device's credential was revoked earlier; uploads stay off until it re-enrolls")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-uploader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, then try to flush what is spooled until the shutdown deadline."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._config.shutdown_flush_seconds + self._config.request_timeout_seconds + 1)
            self._thread = None

    # -- loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self._config.batch_seconds
            if not self.revoked:
                try:
                    self._heartbeat_if_due()
                    self._drain(deadline=None)
                    self._recovered()
                except ServerUnavailable as e:
                    delay = e.retry_after or self._backoff.next_delay()
                    self._unavailable(e, delay)
                except CredentialRevoked as e:
                    self._revoke(e)
                except AgentError as e:  # a bug or a contract mismatch: visible, then retried slowly
                    delay = self._backoff.next_delay()
                    log.error("upload failed: %s; retrying in %.1f s", e, delay)
                    self._spool.set_meta(META_LAST_ERROR, f"{iso(self._clock.now())} {e}")
            self._stop.wait(delay)
        self._final_flush()

    def _final_flush(self) -> None:
        if self.revoked:
            return
        deadline = self._clock.monotonic() + self._config.shutdown_flush_seconds
        try:
            self._drain(deadline=deadline)
        except (ServerUnavailable, ServerRejected) as e:
            log.warning("could not flush before shutdown (%s); %d events stay spooled", e, self._spool.depth())
            return
        log.info("flushed before shutdown; %d events stay spooled", self._spool.depth())

    def _drain(self, deadline: float | None) -> None:
        """Send batches while there is something to send (and time left when shutting down)."""
        while True:
            timeout = None
            if deadline is not None:
                timeout = deadline - self._clock.monotonic()
                if timeout <= 0.05:
                    return
                timeout = min(timeout, self._config.request_timeout_seconds)
            elif self._stop.is_set():
                return
            batch = self._spool.next_batch(self._config.batch_max_events)
            if batch is None:
                return
            self._send(batch, timeout)
            if len(batch) < self._config.batch_max_events and deadline is None:
                return  # a partial batch: let more accumulate for batch_seconds

    def _send(self, batch: Batch, timeout: float | None) -> None:
        self._spool.mark_sending(batch)
        body = batch.encode(self._identity.device_id, self._device_name)
        try:
            ack = self._transport.send_batch(body, timeout)
        except CredentialRevoked:
            raise
        except ServerRejected as e:
            self._server_errors.pop(batch.batch_id, None)
            self._last_answer = self._clock.monotonic()
            n = self._spool.dead_letter(batch, e.status, e.error, e.detail, e.field)
            log.error("server rejected batch %s (%d events moved to dead letter): %s", batch.batch_id, n, e)
            self._spool.set_meta(META_LAST_ERROR, f"{iso(self._clock.now())} {e}")
            return
        except ServerUnavailable as e:
            if e.status is not None and e.status >= 500 and self._failing_alone(batch, e):
                return  # set aside: the batches behind it go on
            raise
        self._server_errors.pop(batch.batch_id, None)
        self._last_answer = self._clock.monotonic()
        released = self._spool.acknowledge(batch, ack)
        if ack.rejected:
            first = ack.rejections[0] if ack.rejections else None
            log.warning("server stored batch %s without %d invalid events%s", batch.batch_id, ack.rejected,
                        f" (first: events[{first.index}].{first.field}: {first.reason})" if first else "")
        log.debug("batch %s acknowledged: %d events (duplicate=%s)", batch.batch_id, released, ack.duplicate)

    def _failing_alone(self, batch: Batch, e: ServerUnavailable) -> bool:
        """Count a 5xx for ``batch``; hold it once it has had ``hold_after_server_errors`` of them while the
        server kept answering other requests (a fault this batch triggers, not an outage). Returns whether held."""
        now = self._clock.monotonic()
        count, since = self._server_errors.get(batch.batch_id, (0, now))
        count += 1
        limit = self._config.hold_after_server_errors
        if count >= limit and self._last_answer > since:
            self._server_errors.pop(batch.batch_id, None)
            self._spool.hold(batch, e.status, str(e))
            log.error("batch %s (%d events) failed %d times with a server error while the server answered other"
                      " requests; held, so the queue moves on. Send it again with `vigil agent resend-held`"
                      " once the server is fixed. Last error: %s", batch.batch_id, len(batch), count, e)
            self._spool.set_meta(META_LAST_ERROR, f"{iso(self._clock.now())} batch {batch.batch_id} held: {e}")
            return True
        self._server_errors[batch.batch_id] = (count, since)
        if count >= limit:
            self._next_heartbeat = 0.0  # is the server up for anything else? the next pass asks at once
        return False

    def _heartbeat_if_due(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_heartbeat:
            return
        beat = Heartbeat(
            agent_version=__version__,
            ip_addresses=ip_addresses(),
            counters=self._spool.counters(),
            sensors=self._sensor_health(),
        )
        try:
            answer = self._transport.heartbeat(beat)
        except (ServerUnavailable, CredentialRevoked):
            raise
        except ServerRejected as e:  # telemetry still flows; the mismatch is logged and kept in health
            self._last_answer = self._clock.monotonic()
            log.error("heartbeat refused: %s", e)
            self._spool.set_meta(META_LAST_ERROR, f"{iso(self._clock.now())} {e}")
        else:
            self._last_answer = self._clock.monotonic()
            self._spool.set_meta(META_LAST_HEARTBEAT, iso(self._clock.now()))
            if answer.commands and self._on_commands is not None:
                self._on_commands(answer.commands)
        self._next_heartbeat = now + self._config.heartbeat_seconds

    # -- state changes ------------------------------------------------------------------------

    def _unavailable(self, e: ServerUnavailable, delay: float) -> None:
        if not self._unavailable_logged:
            log.warning("server unavailable (%s); spooling, retrying with backoff", e)
            self._unavailable_logged = True
        else:
            log.debug("still unavailable (%s); next try in %.1f s", e, delay)
        self._spool.set_meta(META_LAST_ERROR, f"{iso(self._clock.now())} {e}")

    def _recovered(self) -> None:
        if self._unavailable_logged:
            log.info("server reachable again; %d events still spooled", self._spool.depth())
            self._unavailable_logged = False
        self._backoff.reset()

    def _revoke(self, e: CredentialRevoked) -> None:
        self.revoked = True
        self._spool.set_meta(META_REVOKED, f"{self._credential_tag} {iso(self._clock.now())} {e}")
        log.error(
            "the server refused this device's credential (%s): the device was offboarded or its credential"
            " revoked. Uploads stop; events keep spooling until the device is enrolled again.",
            e,
        )
