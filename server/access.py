"""Who may call Matching and ListInfo, and how much: API keys and per-platform limits.

Keys arrive as `x-api-key` metadata and are looked up by SHA-256 (a small cache in front of the
store, so a platform registered while the server runs is accepted without a restart). The
follower empties the cache when it applies a key change from the log (platforms.OP_KEYS), and a
cached key is dropped when it expires, so a revoked or expired key is refused. The gate
(gate.py) checks them before a request body is read and leaves the platform name in `PLATFORM`.
Limits are a token bucket of hashes per second and a count of open streams, both per platform.
Neither a key nor its digest is ever logged.
"""
import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import logging
import threading
import time

from hashmatch.server import credentials
from hashmatch.server.audit import SLOWED, FailureDigest
from hashmatch.server.buckets import PeerBuckets, TokenBucket, peer_address
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import (LimitExceeded, PermissionDenied, RateLimited,
                                     Unauthenticated)
from hashmatch.server.store import Store

log = logging.getLogger("hashmatch.server")
API_KEY_HEADER = "x-api-key"
MAX_PENDING_LOOKUPS = 64
# Set by the gate for Matching and ListInfo calls once the key is checked.
PLATFORM: contextvars.ContextVar[str] = contextvars.ContextVar("hashmatch_platform")


def api_key_of(metadata) -> str | None:
    for key, value in metadata or ():
        if key == API_KEY_HEADER:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


@dataclasses.dataclass(frozen=True)
class Caller:
    """The platform behind a call's API key and what its key may do (platforms.ROLES)."""
    name: str
    roles: frozenset[str]
    expires: int | None = None      # unix seconds when the key ends (a rotated key); None: never


def require_role(caller: Caller, role: str) -> None:
    """PermissionDenied unless the caller's key has `role`; servicers call it first thing."""
    if role not in caller.roles:
        raise PermissionDenied(f"this API key lacks the {role!r} role (platform "
                               f"{caller.name!r} has: {', '.join(sorted(caller.roles))})")


class Authenticator:
    """Looks keys up on the event loop: a hit in the cache costs a SHA-256; a miss goes to the
    store on one dedicated thread (never a matching worker), at most MAX_PENDING_LOOKUPS at once.

    Failed attempts are counted per peer (a token bucket of `auth_failure_burst`, refilled at
    `auth_failure_rate_per_s`); a peer that has spent it gets RESOURCE_EXHAUSTED without a
    lookup until it refills. A key already known is never slowed, whoever else fails. Refused
    keys and the slow-down's refusals go to the audit log, aggregated per peer
    (audit.FailureDigest), flushed while any are counted and at `close`.
    """

    def __init__(self, store: Store, config: ServerConfig, metrics):
        self._store, self._metrics = store, metrics
        self._known: dict[bytes, Caller] = {}
        # `forget` runs on the follower's thread: the lock and the generation keep a lookup that
        # began before a revocation from putting the key back into the emptied cache.
        self._known_lock, self._generation = threading.Lock(), 0
        self._audit = FailureDigest()
        self._flush_at: asyncio.TimerHandle | None = None
        self._unwritten: collections.deque[tuple] = collections.deque()    # audit rows
        rate, self._burst = config.auth_failure_rate_per_s, config.auth_failure_burst
        self._failures = PeerBuckets(rate, self._burst) if rate else None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hashmatch-auth")
        self._pending = 0

    async def caller(self, metadata, peer: str, method: str) -> Caller:
        """The platform and roles of the call's API key; Unauthenticated when missing or
        unknown. Runs on the event loop (servicers check the role with `require_role`)."""
        key = api_key_of(metadata)
        digest = credentials.key_digest(key) if key else b""
        caller = self._known.get(digest)
        if caller is not None and (caller.expires is None or caller.expires > time.time()):
            return caller
        failures = self._failures(peer) if self._failures is not None else None
        if failures is not None and (wait := failures.wait_s(1)):
            self._audit_refusal(peer, method, SLOWED)
            raise RateLimited(f"too many failed API keys from this address (auth_failure_burst "
                              f"{self._burst}); keys from it are not checked for now", wait)
        if not key:
            self._failed(failures, peer, method, "missing key")
            raise Unauthenticated(f"missing {API_KEY_HEADER} metadata: platform calls need a "
                                  "platform API key")
        if self._pending >= MAX_PENDING_LOOKUPS:
            raise RateLimited("server busy checking API keys", 1)
        self._pending += 1
        generation = self._generation
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._store.key_check, key)
        finally:
            self._pending -= 1
        if found.refused:
            self._failed(failures, peer, method, found.refused)
            raise Unauthenticated(found.refused + (
                "; rotated keys end after their grace period, `hashmatch platform list` shows "
                "each key's state" if found.name else ""))
        caller = Caller(found.name, found.roles, found.expires)
        with self._known_lock:
            if generation == self._generation:
                self._known[digest] = caller
        return caller

    def forget(self) -> None:
        """Empties the key cache (a key or role changed in the log): the next call of each key
        is looked up again. Thread-safe."""
        with self._known_lock:
            self._generation += 1
            self._known = {}

    async def watch_store(self, interval_s: float) -> None:
        """For a server whose list comes from another server (`serve --follow`): nothing
        follows its own store's change log, so this empties the cache whenever that log's head
        moves (a key or role changed there), checked every `interval_s`. Runs until cancelled."""
        loop = asyncio.get_running_loop()
        head = failed = None
        while True:
            try:
                now = await loop.run_in_executor(self._pool, self._store.head_sequence)
            except Exception as exc:  # noqa: BLE001 - keep the cache; try again next time
                if not failed:
                    log.warning("cannot read the store's change log for key changes",
                                extra={"fields": {"error": str(exc)}})
                failed = True
            else:
                failed = False
                if head is not None and now != head:
                    self.forget()
                head = now
            await asyncio.sleep(interval_s)

    async def require(self, context, role: str) -> Caller:
        """The caller of a servicer's call (a grpc.aio context), refused unless its key has
        `role`: for the services the gate does not check (Replication, Feedback, Review)."""
        caller = await self.caller(context.invocation_metadata(), peer_address(context.peer()),
                                   role)
        require_role(caller, role)
        return caller

    def _failed(self, failures, peer: str, method: str, reason: str) -> None:
        self._metrics.count_auth_failure()
        self._audit_refusal(peer, method, reason)
        fields = {"peer": peer, "method": method, "reason": reason}
        if failures is None:
            log.info("API key refused", extra={"fields": fields})
        elif failures.take(1):
            slowed = failures.wait_s(1) > 0
            log.log(logging.WARNING if slowed else logging.INFO,
                    "API key refused; peer slowed" if slowed else "API key refused",
                    extra={"fields": fields})

    def _audit_refusal(self, peer: str, method: str, reason: str) -> None:
        """Counts a refusal into the audit digest; writes a row it hands out at once and has
        the rest flushed every `window_s / 12` while any are counted (on the event loop)."""
        row = self._audit.note(peer, method, reason, time.monotonic())
        if row is not None:
            self._write_audit([row])
        if self._flush_at is None:
            self._flush_audit(later=True)

    def _flush_audit(self, later: bool = False) -> None:
        """Writes the digest's rows that are due (`later`: only schedules), then calls itself
        again while refusals remain counted."""
        self._flush_at = None
        if not later:
            self._write_audit(self._audit.flush(time.monotonic()))
        if self._audit.pending:
            self._flush_at = asyncio.get_running_loop().call_later(self._audit.window_s / 12,
                                                                   self._flush_audit)

    def _write_audit(self, rows: list[tuple]) -> None:
        if rows:
            self._unwritten.extend(rows)
            self._pool.submit(self._drain_audit)

    def _drain_audit(self) -> None:
        """Writes the audit rows queued so far in one transaction (on the key thread; at close,
        on the caller's). Each row is taken from the queue once, whoever drains it."""
        rows = []
        with contextlib.suppress(IndexError):
            while True:
                rows.append(self._unwritten.popleft())
        if not rows:
            return
        try:
            self._store.record_audits(rows)
        except Exception as exc:  # noqa: BLE001 - the refusals stand; the log line says why
            log.warning("could not write refused keys to the audit log",
                        extra={"fields": {"rows": len(rows), "error": str(exc)}})

    def close(self) -> None:
        """Stops the key thread; first queues every refusal the digest still counts, and writes
        what the thread had not written yet (before the store closes)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._unwritten.extend(self._audit.flush(time.monotonic(), final=True))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._drain_audit()


class PlatformLimits:
    def __init__(self, rate_hashes_per_s: float, burst_hashes: int, max_streams: int):
        self._rate, self._burst, self._max_streams = rate_hashes_per_s, burst_hashes, max_streams
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def charge(self, platform: str, hashes: int) -> None:
        if self._rate <= 0:
            return
        with self._lock:
            bucket = self._buckets.get(platform)
            if bucket is None:  # made once per platform, not once per batch
                bucket = self._buckets[platform] = TokenBucket(self._rate,
                                                               max(self._rate, self._burst))
            if not bucket.take(hashes):
                raise LimitExceeded(f"rate limit: rate_limit_hashes_per_s is {self._rate:g} per "
                                    "platform; slow down and retry")

    @contextlib.contextmanager
    def stream(self, platform: str):
        with self._lock:
            if self._streams.get(platform, 0) >= self._max_streams:
                raise LimitExceeded(f"max_streams_per_platform ({self._max_streams}) streams "
                                    "are already open for this platform")
            self._streams[platform] = self._streams.get(platform, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._streams[platform] -= 1
