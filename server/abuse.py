"""Limits on the anonymous Cases service: what anyone on the internet may make the server do.

Cases needs no key, so the handles on a caller are its address and the server's own totals:
- call rates: a token bucket per peer (buckets.py) and one for everyone, for submissions and for
  lookups (GetCaseStatus, WithdrawCase), charged before the request body is read;
- submitted hashes a second, for everyone, charged once the body is decoded;
- a budget of hashes the list may hold, counted from the in-memory list;
- a bound on case calls waiting for the case threads, so excess is refused at once.
Case work runs on threads of lower scheduling priority than matching (`case_pool`).
Everything here runs on the event loop, so nothing needs a lock.
"""
import concurrent.futures
import contextlib
import logging
import os
import threading

from hashmatch.server.buckets import MAX_PEERS, PeerBuckets, TokenBucket
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import LimitExceeded, RateLimited

log = logging.getLogger("hashmatch.server")

SUBMIT, LOOKUP = "submit", "lookup"
CASE_METHODS = {"SubmitCase": SUBMIT, "GetCaseStatus": LOOKUP, "WithdrawCase": LOOKUP}
# Measured on the development VM (docs/SECURITY.md, "Memory"), rounded up: server RSS a hash
# admitted through SubmitCase adds (370 B for video frames), an address's token bucket (248 B),
# an open connection that made one call (20.4 KB), an open call beyond its body (28 KB), and
# what gRPC holds beyond the body bytes it buffers (0.3 of them); `python -m bench.bench_memory`.
LIST_BYTES_PER_HASH = 400
PEER_BUCKET_BYTES = 300
CONNECTION_BYTES = 32 * 1024
CALL_BYTES = 32 * 1024
BUFFER_OVERHEAD = 0.5
# A connection to the web page (aiohttp): measured 5.6 KB with an unfinished request; aiohttp
# stops reading a socket past its 64 KiB read buffer and caps request headers, so at most about
# 128 KiB before the bridge reads a body under BodyReads.
WEB_CONNECTION_BYTES = 128 * 1024


class _CallLimit:
    """Per-peer and global buckets for one kind of call; a rate of 0 turns a bucket off."""

    def __init__(self, name: str, config: ServerConfig):
        rate_peer, burst_peer = getattr(config, f"{name}_rate_per_peer"), getattr(
            config, f"{name}_burst_per_peer")
        rate_all, burst_all = getattr(config, f"{name}_rate_global"), getattr(
            config, f"{name}_burst_global")
        self.name = name
        self._per_peer = PeerBuckets(rate_peer, burst_peer) if rate_peer else None
        self._global = TokenBucket(rate_all, burst_all) if rate_all else None

    def charge(self, peer: str) -> None:
        checks = []
        if self._per_peer is not None:
            bucket = self._per_peer(peer)
            checks.append((bucket, f"{self.name}_rate_per_peer ({bucket.rate:g} calls/s for "
                                   f"each address, burst {bucket.capacity:g})"))
        if self._global is not None:
            checks.append((self._global, f"{self.name}_rate_global ({self._global.rate:g} "
                                         f"calls/s from everyone, burst "
                                         f"{self._global.capacity:g})"))
        _take_all(checks, 1)


def _take_all(checks, n: float) -> None:
    """Takes `n` from every bucket, or from none and raises RateLimited naming the first short."""
    for bucket, rule in checks:
        wait = bucket.wait_s(n)
        if wait:
            raise RateLimited(f"rate limit: {rule} is spent", wait)
    for bucket, _ in checks:
        bucket.take(n)


class CaseLimits:
    """The anonymous limits of one server; `metrics` counts refusals (by limit) for Prometheus."""

    def __init__(self, config: ServerConfig, metrics):
        self._config, self._metrics = config, metrics
        self._calls = {kind: _CallLimit(kind, config) for kind in (SUBMIT, LOOKUP)}
        rate = config.submit_hashes_per_s
        self._hashes = TokenBucket(rate, max(rate, config.max_case_hashes)) if rate else None
        self._queued = 0
        self._over_budget = False

    def admit(self, method: str, peer: str) -> None:
        """Charges one call of a Cases `method` to `peer`; RateLimited when a bucket is spent."""
        try:
            self._calls[CASE_METHODS[method]].charge(peer)
        except RateLimited:
            self._metrics.count_refused("rate")
            raise

    def charge_submission(self, hashes: int, list_hashes: int) -> None:
        """Checks a decoded case of `hashes` hashes against the list budget and the hash rate.

        `list_hashes`: what the list holds now. Crossing the budget logs one WARNING (and one
        INFO when it is back under), so an operator is told once, not once a call.
        """
        budget = self._config.max_list_hashes
        if list_hashes + hashes > budget:
            if not self._over_budget:
                log.warning("list hash budget reached: SubmitCase refused until "
                            "max_list_hashes is raised", extra={"fields": {
                                "list_hashes": list_hashes, "max_list_hashes": budget}})
            self._over_budget = True
            self._metrics.count_refused("budget")
            raise LimitExceeded(f"the list holds {list_hashes} hashes and this case adds "
                                f"{hashes}, over max_list_hashes ({budget}); the server takes "
                                "no new cases until its operator raises the budget")
        if self._over_budget:
            log.info("list hash budget has room again", extra={"fields": {
                "list_hashes": list_hashes, "max_list_hashes": budget}})
            self._over_budget = False
        if self._hashes is not None:
            try:
                _take_all([(self._hashes, f"submit_hashes_per_s ({self._hashes.rate:g} hashes/s "
                                          "from everyone)")], hashes)
            except RateLimited:
                self._metrics.count_refused("hash_rate")
                raise

    @contextlib.contextmanager
    def queued(self):
        """Holds one of `case_queue` places while a case call waits for or runs on a thread."""
        if self._queued >= self._config.case_queue:
            self._metrics.count_refused("queue")
            raise RateLimited(f"server busy: case_queue ({self._config.case_queue}) case calls "
                              "are already waiting", 1)
        self._queued += 1
        try:
            yield
        finally:
            self._queued -= 1


CASE_NICE = 10  # case threads yield the CPU to matching and the event loop (nice 0)


def _lower_priority() -> None:
    # On Linux a thread is a task: PRIO_PROCESS with its own id renices this thread only.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CASE_NICE)


def case_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run case work (validation, scrypt, the store commit), at nice
    CASE_NICE, so anonymous work takes only CPU that platform matching leaves."""
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="hashmatch-cases",
                                                 initializer=_lower_priority)


def memory_bound(config: ServerConfig, list_hashes: int = 0,
                 connections: int | None = None) -> dict[str, int]:
    """Bytes anonymous callers can make the server hold beyond what it holds now, by cause.

    `list_hashes`: what the list holds now; `connections`: open connections (default
    max_connections). Each connection may have max_concurrent_streams calls open, and each
    call may have its stream's window of body buffered before the server reads it
    (http2_stream_window_bytes; with http2_bdp_probe the window grows to the link, so up to a
    whole request). Bodies are read only once the gate let the call through: a key's, or for
    anonymous calls under BodyReads (max_anonymous_reads at once); the Cases calls past the gate
    also hold a decoded copy while they wait, at most as many as the global buckets' bursts and
    the case queue let through (all open calls when a global rate is off).
    """
    connections = config.max_connections if connections is None else connections
    body, calls = config.max_request_bytes, connections * config.max_concurrent_streams
    unread = body if config.http2_bdp_probe else min(body, config.http2_stream_window_bytes)
    admitted = calls
    if config.submit_rate_global and config.lookup_rate_global:
        admitted = min(calls, config.submit_burst_global + config.lookup_burst_global
                       + config.case_queue)
    reading = min(calls, config.max_anonymous_reads)
    peer_limits = (bool(config.submit_rate_per_peer) + bool(config.lookup_rate_per_peer)
                   + bool(config.auth_failure_rate_per_s))
    bodies = {
        "bodies of open calls": calls * unread,
        "bodies being read": reading * body,
        "bodies past the gate (read and decoded)": admitted * 2 * body,
    }
    return {
        "list": max(0, config.max_list_hashes - list_hashes) * LIST_BYTES_PER_HASH,
        **bodies,
        "call state and buffer overhead": calls * CALL_BYTES + int(
            BUFFER_OVERHEAD * (bodies["bodies of open calls"] + bodies["bodies being read"])),
        "address buckets": peer_limits * MAX_PEERS * PEER_BUCKET_BYTES,
        # The platform port's connections can open no call before mTLS admits them.
        "connections": connections * CONNECTION_BYTES * (2 if config.platform_listen else 1),
        "web page connections": (config.max_connections * WEB_CONNECTION_BYTES
                                 if config.web_listen else 0),
    }


def body_bytes(bound: dict[str, int]) -> int:
    """The request bytes a `memory_bound` lets callers make the server buffer (no overheads)."""
    return sum(n for cause, n in bound.items() if cause.startswith("bodies"))


def machine_memory_bytes() -> int | None:
    """The memory this process may use: its cgroup's limit (v2 memory.max) when set, else the
    machine's MemTotal; None where neither can be read (not Linux)."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            return int(limit)
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def resident_bytes() -> int:
    """This process's resident memory (RSS), 0 where /proc cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def report_memory_bound(config: ServerConfig, list_hashes: int) -> dict[str, int]:
    """Logs what anonymous callers can make the server hold on top of what it holds now, by
    cause (INFO), or a WARNING naming the settings to lower when that and the resident memory
    exceed the machine's (or cgroup's) memory. Returns the bound by cause."""
    bound = memory_bound(config, list_hashes)
    held, machine, total = resident_bytes(), machine_memory_bytes(), sum(bound.values())
    fields = {"bound_bytes": total, "resident_bytes": held, "machine_bytes": machine,
              **{cause_label(cause).replace(" ", "_") + "_bytes": n
                 for cause, n in bound.items()}}
    if machine is not None and held + total > machine:
        log.warning("anonymous callers can make this server hold more memory than the machine "
                    "has: lower max_list_hashes, max_connections, max_concurrent_streams or "
                    "max_request_bytes (docs/SECURITY.md, Memory)", extra={"fields": fields})
    else:
        log.info("memory bound", extra={"fields": fields})
    return bound


def cause_label(cause: str) -> str:
    """A memory_bound cause without its parenthesis, for log fields and metric labels."""
    return cause.split(" (")[0]
