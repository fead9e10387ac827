"""Counters in Prometheus text format, served over plain HTTP when `metrics_listen` is set.

Deliberately tiny (no client library): a handful of counters and gauges, one text page at any
path. Values are updated from worker threads under a lock.
"""
import asyncio
import threading

from hashmatch.server.abuse import cause_label, resident_bytes


def list_hashes(state) -> int:
    """Hashes the list holds, the unit of the max_list_hashes budget: photo PDQs, MD5s, frames."""
    counts = state.counts()
    return counts["pdq"] + counts["md5"] + counts["video_frames"]


class Metrics:
    """`memory_bound(list_hashes) -> {cause: bytes}`: what anonymous callers can still make the
    server hold (abuse.memory_bound), shown beside its resident memory."""

    def __init__(self, state, follower, max_list_hashes: int = 0, memory_bound=None):
        self._state, self._follower = state, follower
        self._max_list_hashes = max_list_hashes
        self._memory_bound = memory_bound
        self._lock = threading.Lock()
        self.batches = self.hashes = self.matches = self.auth_failures = 0
        self.errors: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.flood_holds = 0

    def count_refused(self, limit: str) -> None:
        """An anonymous call refused by `limit` (rate, hash_rate, queue, budget)."""
        with self._lock:
            self.refused[limit] = self.refused.get(limit, 0) + 1

    def count_auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def count_batch(self, hashes: int, matches: int) -> None:
        with self._lock:
            self.batches += 1
            self.hashes += hashes
            self.matches += matches

    def count_flood_hold(self) -> None:
        with self._lock:
            self.flood_holds += 1

    def count_error(self, code) -> None:
        with self._lock:
            self.errors[code.name] = self.errors.get(code.name, 0) + 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# TYPE hashmatch_batches_total counter", f"hashmatch_batches_total {self.batches}",
                "# TYPE hashmatch_hashes_total counter", f"hashmatch_hashes_total {self.hashes}",
                "# TYPE hashmatch_matches_total counter", f"hashmatch_matches_total {self.matches}",
                "# TYPE hashmatch_errors_total counter",
                *(f'hashmatch_errors_total{{code="{code}"}} {n}'
                  for code, n in sorted(self.errors.items())),
                "# TYPE hashmatch_case_refused_total counter",
                *(f'hashmatch_case_refused_total{{limit="{limit}"}} {n}'
                  for limit, n in sorted(self.refused.items())),
                "# TYPE hashmatch_auth_failures_total counter",
                f"hashmatch_auth_failures_total {self.auth_failures}",
                "# TYPE hashmatch_flood_holds_total counter",
                f"hashmatch_flood_holds_total {self.flood_holds}",
            ]
        listed = list_hashes(self._state)
        if self._memory_bound is not None:
            lines += ["# TYPE hashmatch_memory_bound_bytes gauge",
                      *(f'hashmatch_memory_bound_bytes{{cause="{cause_label(cause)}"}} {n}'
                        for cause, n in self._memory_bound(listed).items()),
                      "# TYPE hashmatch_resident_bytes gauge",
                      f"hashmatch_resident_bytes {resident_bytes()}"]
        lines += ["# TYPE hashmatch_list_size gauge",
                  *(f'hashmatch_list_size{{kind="{kind}"}} {n}'
                    for kind, n in self._state.counts().items()),
                  "# TYPE hashmatch_list_hashes gauge",
                  f"hashmatch_list_hashes {listed}",
                  "# TYPE hashmatch_list_hashes_budget gauge",
                  f"hashmatch_list_hashes_budget {self._max_list_hashes}",
                  "# TYPE hashmatch_list_sequence gauge",
                  f"hashmatch_list_sequence {self._state.sequence}",
                  "# TYPE hashmatch_log_head_sequence gauge",
                  f"hashmatch_log_head_sequence {self._follower.head}",
                  "# TYPE hashmatch_log_lag_changes gauge",
                  f"hashmatch_log_lag_changes {max(0, self._follower.head - self._state.sequence)}",
                  "# TYPE hashmatch_log_lag_seconds gauge",
                  f"hashmatch_log_lag_seconds {self._follower.lag_s():.3f}"]
        return "\n".join(lines) + "\n"

    async def serve_http(self, host: str, port: int) -> asyncio.AbstractServer:
        async def handle(reader, writer):
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                body = self.render().encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
                await writer.drain()
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
        return await asyncio.start_server(handle, host, port)
