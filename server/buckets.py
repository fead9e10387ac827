"""Token buckets, and one bucket per caller as far as a caller can be told apart: its address.

gRPC gives the peer as "ipv4:1.2.3.4:5678", "ipv6:%5B::1%5D:5678" (percent-encoded) or
"unix:/path"; `_host` decodes it, once, for every caller. Limits, logs and the audit log key on
the IP without the port; an IPv6 address is cut to its /64, because one host is routinely handed a
whole /64 and could otherwise take a fresh address for every call.
"""
import collections
import ipaddress
import time
import urllib.parse

MAX_PEERS = 50_000  # buckets kept; the least recently seen go first


class TokenBucket:
    """`rate` tokens per second up to `capacity`; take(n) never blocks."""

    __slots__ = ("rate", "capacity", "_tokens", "_at")

    def __init__(self, rate: float, capacity: float):
        self.rate, self.capacity = rate, capacity
        self._tokens, self._at = capacity, time.monotonic()

    def wait_s(self, n: float) -> float:
        """Seconds until `n` tokens are there (0.0: now); takes nothing."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return 0.0 if self._tokens >= n else (n - self._tokens) / self.rate

    def take(self, n: float) -> bool:
        if self.wait_s(n):
            return False
        self._tokens -= n
        return True


def _host(peer: str | None) -> tuple[str, str]:
    """(kind, IP) of a `context.peer()` string: ("ipv6", "::1") for "ipv6:%5B::1%5D:5678" (or
    its decoded form), ("ipv4", "1.2.3.4"), ("unix", ""); the IP loses port, brackets and
    zone."""
    kind, _, rest = urllib.parse.unquote(peer or "").partition(":")
    if kind == "ipv4":
        return kind, rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]") if rest.startswith("[") else rest
        return kind, host.split("%")[0]
    return kind, ""


def peer_address(peer: str | None) -> str:
    """The limit key for a `context.peer()` string: "1.2.3.4", "2001:db8:1:2::/64", "unix"."""
    kind, host = _host(peer)
    if kind == "ipv6":
        try:
            return str(ipaddress.ip_network(f"{host}/64", strict=False))
        except ValueError:
            return host
    return host or kind or "unknown"


# Set by the web page's bridge (web.py) to the browser's address; believed only from loopback.
FORWARDED_PEER_HEADER = "x-hashmatch-forwarded-for"


def caller_address(peer: str | None, metadata=()) -> str:
    """The limit key of a call: its peer's, or for a loopback peer (the web bridge) the address
    the bridge forwarded, so that people using the page are limited one by one."""
    _, host = _host(peer)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        for key, value in metadata or ():
            if key == FORWARDED_PEER_HEADER and value:
                forwarded = value if isinstance(value, str) else value.decode(errors="replace")
                return peer_address(("ipv6:[%s]:0" if ":" in forwarded else "ipv4:%s:0")
                                    % forwarded)
    return peer_address(peer)


class PeerBuckets:
    """One token bucket per peer, at most MAX_PEERS of them (least recently used dropped).

    A dropped peer starts again with a full bucket; the global limits still hold it.
    """

    def __init__(self, rate: float, burst: int, max_peers: int = MAX_PEERS):
        self.rate, self.burst, self._max = rate, burst, max_peers
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def __call__(self, peer: str) -> TokenBucket:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(peer)
        return bucket
