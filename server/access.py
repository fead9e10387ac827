"""Who may call Matching and ListInfo, and how much: API keys and per-platform limits.

Keys arrive as `x-api-key` metadata and are looked up by SHA-256 (a small cache in front of the
store, so a platform registered while the server runs is accepted without a restart). Limits are
a token bucket of hashes per second and a count of open streams, both per platform. Neither a key
nor its digest is ever logged.
"""
import contextlib
import dataclasses
import threading
import time

from hashmatch.server import credentials
from hashmatch.server.errors import LimitExceeded, PermissionDenied, Unauthenticated
from hashmatch.server.store import Store

API_KEY_HEADER = "x-api-key"


def api_key_of(metadata) -> str | None:
    for key, value in metadata or ():
        if key == API_KEY_HEADER:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


@dataclasses.dataclass(frozen=True)
class Caller:
    """The platform behind a call's API key and what its key may do (store.ROLES)."""
    name: str
    roles: frozenset[str]


def require_role(caller: Caller, role: str) -> None:
    """PermissionDenied unless the caller's key has `role`; servicers call it first thing."""
    if role not in caller.roles:
        raise PermissionDenied(f"this API key lacks the {role!r} role (platform "
                               f"{caller.name!r} has: {', '.join(sorted(caller.roles))})")


class Authenticator:
    def __init__(self, store: Store):
        self._store = store
        self._known: dict[bytes, Caller] = {}

    def caller(self, metadata) -> Caller:
        """The platform and roles for the call's API key; Unauthenticated when missing or
        unknown.

        May touch the store on a cache miss: call it from a worker thread.
        """
        key = api_key_of(metadata)
        if not key:
            raise Unauthenticated(f"missing {API_KEY_HEADER} metadata: Matching, ListInfo and "
                                  "Replication need a platform API key")
        digest = credentials.key_digest(key)
        caller = self._known.get(digest)
        if caller is None:
            found = self._store.platform_roles_for_key(key)
            if found is None:
                raise Unauthenticated("unknown API key")
            caller = self._known[digest] = Caller(*found)
        return caller

    def platform(self, metadata, role: str = "match") -> str:
        """The platform name for the call's API key, once `role` is checked."""
        caller = self.caller(metadata)
        require_role(caller, role)
        return caller.name


class TokenBucket:
    """`rate` tokens per second up to `capacity`; take(n) never blocks."""

    def __init__(self, rate: float, capacity: float):
        self.rate, self.capacity = rate, capacity
        self._tokens, self._at = capacity, time.monotonic()

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True


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
            bucket = self._buckets.setdefault(
                platform, TokenBucket(self._rate, max(self._rate, self._burst)))
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
