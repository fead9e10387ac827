"""Server settings: one dataclass, and the command-line flags that mirror its fields.

`python -m hashmatch.server` and the `hashmatch serve` CLI both end in `ServerConfig`; every
limit the server enforces lives here so an operator can see them in one place.
"""
import argparse
import dataclasses
import os

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    db_path: str = "hashmatch.db"
    listen: str = "localhost:50051"
    # Written with the bound port once the list is loaded and health says SERVING.
    port_file: str | None = None
    default_threshold: int = 31
    max_threshold: int = 64
    max_batch_hashes: int = 16384
    # Hits one answer may hold; a batch that finds more is refused (its answer would be huge).
    max_matches_per_batch: int = 200_000
    # Unanswered batches one stream may have; the server stops reading the stream beyond it.
    max_in_flight: int = 8
    max_streams_per_platform: int = 16
    # Token bucket per platform, in hashes per second; 0 turns the limit off.
    rate_limit_hashes_per_s: float = 0.0
    max_case_items: int = 1000
    max_video_frames: int = 65536
    max_message_bytes: int = 8 * MIB
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    # Threads that run matching and store work (the kernels release the GIL).
    worker_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 2)
    # Threads one search may use; 0 = every core. 0 gives the lowest latency at light load;
    # 1 gives about 10% more throughput at full load, when worker_threads searches already
    # cover the cores (bench/README.md, load generator).
    search_threads: int = 0
    shutdown_grace_s: float = 5.0
    log_level: str = "INFO"
    # host:port for a Prometheus text endpoint over HTTP; None: no endpoint.
    metrics_listen: str | None = None
    # Seconds between reads of the change log when no wake-up came (writes by this server and,
    # on PostgreSQL, NOTIFY wake the follower at once).
    follow_interval_s: float = 0.25
    # Health says NOT_SERVING while the applied sequence has trailed the log's head this long.
    max_lag_s: float = 5.0
    # Replication. A server that follows another (host:port) serves its list read-only, with
    # the API key of a platform there that has the 'replicate' role (or $HASHMATCH_API_KEY).
    follow: str | None = None
    follow_api_key: str | None = None
    # Change-log rows (tombstones included) older than this are pruned; copies further behind
    # take a snapshot again.
    change_retention_s: float = 90 * 86400.0
    # A Sync stream with nothing to send sends a heartbeat this often.
    sync_heartbeat_s: float = 5.0
    # A Sync reader whose stream cannot take one message for this long is disconnected.
    sync_stall_s: float = 30.0
    # Feedback and false positives (docs/FEEDBACK.md). An entry that this many distinct
    # platforms report NOT_VIOLATING is disputed; disputed entries keep matching with
    # Match.disputed set ("flag") or stop matching until reviewed ("hold").
    dispute_platforms: int = 3
    disputed_entries: str = "flag"
    # Flood breaker: an entry matching more distinct uploads than flood_limit within
    # flood_window_s seconds is held back on every server until reviewed (0: off).
    flood_limit: int = 1000
    flood_window_s: float = 60.0
    # A submitted photo within this distance of a suppression-list hash is refused, and the
    # Review service holds listed entries within it.
    suppression_threshold: int = 31

    def __post_init__(self):
        if not 0 <= self.default_threshold <= self.max_threshold <= 256:
            raise ValueError("need 0 <= default_threshold <= max_threshold <= 256, got "
                             f"{self.default_threshold} and {self.max_threshold}")
        for name in ("max_batch_hashes", "max_matches_per_batch", "max_in_flight",
                     "max_streams_per_platform", "max_case_items", "max_video_frames",
                     "worker_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.follow_interval_s <= 60:
            raise ValueError(f"follow_interval_s must be in (0, 60], got {self.follow_interval_s}")
        if self.max_lag_s < 0:
            raise ValueError(f"max_lag_s must be >= 0, got {self.max_lag_s}")
        for name in ("change_retention_s", "sync_heartbeat_s", "sync_stall_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.search_threads < 0:
            raise ValueError(f"search_threads must be >= 0, got {self.search_threads}")
        if self.dispute_platforms < 1:
            raise ValueError(f"dispute_platforms must be >= 1, got {self.dispute_platforms}")
        if self.disputed_entries not in ("flag", "hold"):
            raise ValueError("disputed_entries must be 'flag' (keep matching, marked disputed) "
                             f"or 'hold' (stop matching until reviewed), got "
                             f"{self.disputed_entries!r}")
        if self.flood_limit < 0 or self.flood_window_s <= 0:
            raise ValueError(f"need flood_limit >= 0 and flood_window_s > 0, got "
                             f"{self.flood_limit} and {self.flood_window_s}")
        if not 0 <= self.suppression_threshold <= 256:
            raise ValueError("suppression_threshold must be in 0..256, got "
                             f"{self.suppression_threshold}")
        if self.max_video_frames >= 1 << 24:
            raise ValueError(f"max_video_frames must be < 2**24, got {self.max_video_frames}")


HELP = {
    "db_path": "SQLite file of the list (created if missing), or a postgresql:// URL that "
               "several servers share",
    "listen": "HOST:PORT to serve gRPC on; port 0 picks a free one",
    "port_file": "write the bound port here once SERVING",
    "default_threshold": "PDQ threshold when a request sets none (inclusive)",
    "max_threshold": "highest threshold a request may ask for",
    "max_batch_hashes": "most hashes in one match batch",
    "max_matches_per_batch": "most matches one answer may hold",
    "max_in_flight": "unanswered batches the server reads from one stream",
    "max_streams_per_platform": "open MatchStream calls per platform",
    "rate_limit_hashes_per_s": "per-platform matching rate (0 = off)",
    "max_case_items": "most photos and videos in one case",
    "max_video_frames": "most frame hashes in one submitted video",
    "max_message_bytes": "largest request or answer message",
    "keepalive_time_s": "seconds between keepalive pings",
    "keepalive_timeout_s": "seconds to wait for a keepalive answer",
    "worker_threads": "threads for matching and store work",
    "search_threads": "threads one search may use (0 = all cores: lowest latency; 1 = most "
                      "throughput at full load)",
    "shutdown_grace_s": "seconds calls in progress get on SIGTERM",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "metrics_listen": "HOST:PORT for a Prometheus text endpoint (off if unset)",
    "follow_interval_s": "seconds between change-log reads when nothing woke the server",
    "max_lag_s": "health says NOT_SERVING while the list trails the log's head this long",
    "follow": "HOST:PORT of a server whose list this one copies and serves read-only",
    "follow_api_key": "API key (role 'replicate') for --follow (default: $HASHMATCH_API_KEY)",
    "change_retention_s": "seconds the change log (and removal tombstones) is kept for copies",
    "sync_heartbeat_s": "seconds between heartbeats on an idle Sync stream",
    "sync_stall_s": "seconds a Sync reader may leave a message unread before it is cut off",
    "dispute_platforms": "distinct platforms reporting NOT_VIOLATING that dispute an entry",
    "disputed_entries": "'flag': disputed entries match with disputed=true; 'hold': they stop "
                        "matching until reviewed",
    "flood_limit": "distinct uploads an entry may match per flood window before it is held "
                   "for review (0 = off)",
    "flood_window_s": "the flood breaker's sliding window, in seconds",
    "suppression_threshold": "PDQ distance to a suppression-list hash that refuses a "
                             "submission and holds a listed entry",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    """One --flag per ServerConfig field (--db for db_path), defaults taken from the dataclass."""
    p = argparse.ArgumentParser(prog="python -m hashmatch.server",
                                description="Run the hashmatch gRPC server.")
    for field in dataclasses.fields(ServerConfig):
        default = (field.default_factory() if field.default is dataclasses.MISSING
                   else field.default)
        flags = [_flag(field.name)] + (["--db"] if field.name == "db_path" else [])
        kind = str if default is None else type(default)
        p.add_argument(*flags, dest=field.name, type=kind, default=default,
                       help=f"{HELP[field.name]} (default: {default})")
    return p


def from_args(argv=None) -> ServerConfig:
    return ServerConfig(**vars(parser().parse_args(argv)))
