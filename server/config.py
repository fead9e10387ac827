"""Server settings: one dataclass, and the flags, environment variables and config file that
set its fields.

`python -m hashmatch.server` and the `hashmatch serve` CLI both end in `ServerConfig`; every
limit the server enforces lives here so an operator can see them in one place. A setting comes
from, first to last: its flag (`--max-batch-hashes 4096`), its environment variable
(`HASHMATCH_MAX_BATCH_HASHES=4096`), the TOML file named by `--config` (`max_batch_hashes =
4096`), the default below.
"""
import argparse
import dataclasses
import os
import tomllib

from hashmatch.clients.client import TlsFiles
from hashmatch.core.index import LAYOUTS

MIB = 1024 * 1024
MAX_AGE_S = 24 * 3600.0  # gRPC takes milliseconds as a 32-bit int


# The anonymous rate limits turned off: for benchmarks and tests that send every case from one
# address, which the defaults would (rightly) slow to a trickle.
CASE_RATES_OFF = {"submit_rate_per_peer": 0, "submit_rate_global": 0, "submit_hashes_per_s": 0,
                  "lookup_rate_per_peer": 0, "lookup_rate_global": 0}


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    db_path: str = "hashmatch.db"
    listen: str = "localhost:50051"
    # Written with the bound port once the list is loaded and health says SERVING.
    port_file: str | None = None
    default_threshold: int = 31
    max_threshold: int = 64
    max_batch_hashes: int = 16384
    # Matches one query hash gets: the closest, ties by entry id; the answer flags the hash
    # when more exist. Bounds the answer to a copied hash, however many cases list it.
    max_matches_per_hash: int = 16
    # Matches one answer may hold: each hash of a batch of n gets at most
    # max(1, max_matches_per_batch // n), enforced while the index collects hits.
    max_matches_per_batch: int = 200_000
    # Unanswered batches one stream may have; the server stops reading the stream beyond it.
    max_in_flight: int = 8
    max_streams_per_platform: int = 16
    # Token bucket per platform, in hashes per second; 0 turns the limit off.
    rate_limit_hashes_per_s: float = 0.0
    max_case_items: int = 1000
    # 2 hours at the client's 1 frame a second (a 1-hour video needs 3,600); docs/SECURITY.md.
    max_video_frames: int = 7200
    # Hashes (PDQ, MD5 and video frames together) one case may add to the list.
    max_case_hashes: int = 20_000
    # Anonymous (Cases) limits, all token buckets; a rate of 0 turns that bucket off. Per peer =
    # per IP address (IPv6: per /64). See docs/SECURITY.md for how they were sized.
    submit_rate_per_peer: float = 0.05
    submit_burst_per_peer: int = 10
    submit_rate_global: float = 10.0
    submit_burst_global: int = 50
    submit_hashes_per_s: float = 20_000.0
    lookup_rate_per_peer: float = 0.5
    lookup_burst_per_peer: int = 20
    lookup_rate_global: float = 40.0
    lookup_burst_global: int = 100
    # Case calls waiting for or running on the case threads; more are refused at once.
    case_queue: int = 16
    # A call refused by a rate limit gets its answer after this many seconds, so one
    # connection's flood runs at most max_concurrent_streams / delay calls a second; at most
    # max_delayed_refusals wait at once (more are answered at once). 0: answer at once. 10 s,
    # not 1: at 1 s one client's refusals still raised platform p99 1.7x on an idle machine, at
    # 10 s by 1.07x (median; docs/SECURITY.md); the caller is over its rate anyway and told when
    # to retry.
    refusal_delay_s: float = 10.0
    max_delayed_refusals: int = 64
    # HTTP/2 streams (calls) one connection may have open; more wait in the client. A platform
    # uses one per MatchStream (max_streams_per_platform) and a few for unary calls.
    max_concurrent_streams: int = 32
    # What a caller may send before the server reads (docs/SECURITY.md, "Memory"): with BDP
    # probing gRPC grows each stream's window to the link (64 MiB on loopback), so any caller
    # could park a whole request body in every open call. Off, a stream may send
    # http2_stream_window_bytes until the server reads a message, and then that message.
    # Off costs a far platform with few streams and small batches throughput (bench_link).
    http2_bdp_probe: bool = False
    http2_stream_window_bytes: int = 64 * 1024
    # Anonymous request bodies (Cases, health) read at once, from one address at once, and how
    # long one may take to arrive: once read, a stream's window grows to its whole request.
    max_anonymous_reads: int = 64
    anonymous_reads_per_address: int = 8
    anonymous_read_timeout_s: float = 10.0
    # Hashes the list may hold; past it SubmitCase is refused (and a WARNING logged) until an
    # operator raises it. About 64-86 bytes of index memory a hash (README, index table), and
    # about 370 bytes of server RSS a video frame submitted (docs/SECURITY.md, "Memory"): with
    # the connection limits below, anonymous callers can make a server on an empty list hold
    # about 12 GiB at the defaults (abuse.memory_bound; logged at start). Raise both with memory.
    max_list_hashes: int = 20_000_000
    # Failed API keys one peer may send in a burst, and how fast that allowance comes back;
    # past it the peer's keys are not looked up (RESOURCE_EXHAUSTED) until it refills.
    auth_failure_burst: int = 20
    auth_failure_rate_per_s: float = 0.1
    # Connections: the server's total (gRPC drops extra ones at accept), how long a connection
    # may take to send its HTTP/2 preface, and how long one with no call in progress may idle.
    # Each connection's calls can make the server buffer max_concurrent_streams stream windows.
    max_connections: int = 1_000
    handshake_timeout_s: float = 10.0
    max_connection_idle_s: float = 60.0
    # TLS: PEM files, re-read when they change. With tls_client_ca set, clients must present a
    # certificate signed by it (mTLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # A second port for the keyed services only (Matching, ListInfo, Replication, Feedback,
    # Review, Admin; not Cases), with HTTP/2 BDP probing on so platforms far away get windows
    # sized to their link. Any caller reaching it could then park a whole request in every
    # stream, so it requires mTLS: tls_cert/tls_key and platform_client_ca, the CA of the
    # platforms' client certificates. None: one port for everything.
    platform_listen: str | None = None
    platform_client_ca: str | None = None
    # gRPC server reflection lists every service and message to anyone: off unless asked for.
    reflection: bool = False
    # Largest request the server reads (an 8 MiB body would let each admitted anonymous call
    # hold 8 MiB); the largest legitimate one is about 1 MiB at the default limits (a case of
    # max_case_hashes frames), see largest_request_bytes. Answers may be up to max_message_bytes.
    max_request_bytes: int = 2 * MIB
    max_message_bytes: int = 8 * MIB
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    # A connection older than this is asked to close (GOAWAY) so clients reconnect and
    # round_robin rebalances over the servers now up; its calls get the grace to finish. 0: never.
    max_connection_age_s: float = 300.0
    max_connection_age_grace_s: float = 30.0
    # Threads that run matching and store work (the kernels release the GIL).
    worker_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 2)
    # Threads one search may use. 0: one, and a batch that finds cores idle is cut into
    # slices over them (server/cores.py): every core on one batch at light load, one core a
    # batch at full load, never more search threads than cores. N > 0: every search spreads
    # over N threads whatever else runs (bench/README.md, load generator).
    search_threads: int = 0
    # How the index trades memory for speed (core/index.py LAYOUTS): "speed" (about 118 bytes a
    # hash at 1M-10M, 132 from 2^24) unless the list does not fit the memory the server is given
    # at that size; then "compact" (86 bytes a hash at 1M, 64 at 10M; 7-17x slower searches).
    index_layout: str = "speed"
    shutdown_grace_s: float = 5.0
    log_level: str = "INFO"
    # host:port for a Prometheus text endpoint over HTTP; None: no endpoint.
    metrics_listen: str | None = None
    # host:port for the person's web page and its gRPC-Web bridge to Cases; None: no page.
    web_listen: str | None = None
    # Seconds between reads of the change log when no wake-up came (writes by this server and,
    # on PostgreSQL, NOTIFY wake the follower at once).
    follow_interval_s: float = 0.25
    # Health says NOT_SERVING while the applied sequence has trailed the log's head this long.
    max_lag_s: float = 5.0
    # Replication. A server that follows another (host:port) serves its list read-only, with
    # the API key of a platform there that has the 'replicate' role (or $HASHMATCH_API_KEY).
    follow: str | None = None
    follow_api_key: str | None = None
    # Following over TLS, as the client library connects (clients/client.py TlsFiles): the CA
    # that signed the primary's certificate (None with follow_tls: the system's CAs), and a
    # client certificate with its key for a primary that requires one (mTLS). follow_ca or
    # follow_cert implies TLS.
    follow_tls: bool = False
    follow_ca: str | None = None
    follow_cert: str | None = None
    follow_key: str | None = None
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
        for name in ("max_batch_hashes", "max_matches_per_hash", "max_matches_per_batch",
                     "max_in_flight",
                     "max_streams_per_platform", "max_case_items", "max_video_frames",
                     "worker_threads", "max_case_hashes", "submit_burst_per_peer",
                     "submit_burst_global", "lookup_burst_per_peer", "lookup_burst_global",
                     "case_queue", "max_delayed_refusals", "max_concurrent_streams",
                     "max_list_hashes", "auth_failure_burst", "max_connections",
                     "max_anonymous_reads", "anonymous_reads_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_connection_age_s", "max_connection_age_grace_s"):
            if not 0 <= getattr(self, name) <= MAX_AGE_S:
                raise ValueError(f"{name} must be 0..{MAX_AGE_S} s, got {getattr(self, name)}")
        if self.max_matches_per_batch < self.max_batch_hashes:
            raise ValueError("max_matches_per_batch must be >= max_batch_hashes (each hash of a "
                             f"full batch keeps at least 1 match), got {self.max_matches_per_batch} "
                             f"and {self.max_batch_hashes}")
        if not 0 < self.follow_interval_s <= 60:
            raise ValueError(f"follow_interval_s must be in (0, 60], got {self.follow_interval_s}")
        if self.max_lag_s < 0:
            raise ValueError(f"max_lag_s must be >= 0, got {self.max_lag_s}")
        for name in ("change_retention_s", "sync_heartbeat_s", "sync_stall_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.index_layout not in LAYOUTS:
            raise ValueError(f"index_layout must be one of {', '.join(LAYOUTS)}, got "
                             f"{self.index_layout!r}")
        if self.search_threads < 0:
            raise ValueError(f"search_threads must be >= 0, got {self.search_threads}")
        for name in ("submit_rate_per_peer", "submit_rate_global", "submit_hashes_per_s",
                     "lookup_rate_per_peer", "lookup_rate_global", "auth_failure_rate_per_s",
                     "handshake_timeout_s", "max_connection_idle_s", "refusal_delay_s",
                     "anonymous_read_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.platform_listen and not (self.tls_cert and self.platform_client_ca):
            raise ValueError("platform_listen serves platforms with BDP probing on, so only "
                             "platforms may connect to it: it needs mTLS (tls_cert, tls_key and "
                             "platform_client_ca)")
        if self.platform_client_ca and not self.platform_listen:
            raise ValueError("platform_client_ca is for platform_listen; without it use "
                             "tls_client_ca")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca needs tls_cert and tls_key (mTLS is TLS first)")
        if (self.follow_cert is None) != (self.follow_key is None):
            raise ValueError("follow_cert and follow_key go together: give both or neither")
        for name in ("follow_tls", "follow_ca", "follow_cert"):
            if getattr(self, name) and not self.follow:
                raise ValueError(f"{name} is for following a primary over TLS: it needs "
                                 "follow (HOST:PORT)")
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
        if not 1024 <= self.http2_stream_window_bytes <= 1 << 30:
            raise ValueError("http2_stream_window_bytes must be in 1024..2**30, got "
                             f"{self.http2_stream_window_bytes}")
        if self.max_request_bytes < largest_request_bytes(self):
            raise ValueError(f"max_request_bytes ({self.max_request_bytes}) is under the largest "
                             "request the limits allow (max_batch_hashes, max_case_hashes, "
                             f"max_video_frames): {largest_request_bytes(self)} bytes")
        if self.max_video_frames >= 1 << 24:
            raise ValueError(f"max_video_frames must be < 2**24, got {self.max_video_frames}")

    def follow_tls_files(self) -> TlsFiles | None:
        """How a follower connects to its primary: TLS settings, or None (plaintext)."""
        return TlsFiles.wanted(self.follow_tls, self.follow_ca, self.follow_cert,
                               self.follow_key)


def largest_request_bytes(config: ServerConfig) -> int:
    """Bytes of the largest request the limits let a caller make, rounded up: a match batch of
    max_batch_hashes PDQs (32 B each), a video query of max_video_frames frames (32 B and a
    quality), a case of max_case_hashes hashes (at most 48 B each on the wire, a photo's PDQ and
    MD5 with their tags) in max_case_items items."""
    return 4096 + max(32 * config.max_batch_hashes, 40 * config.max_video_frames,
                      48 * config.max_case_hashes + 64 * config.max_case_items)


HELP = {
    "db_path": "SQLite file of the list (created if missing), or a postgresql:// URL that "
               "several servers share",
    "listen": "HOST:PORT to serve gRPC on; port 0 picks a free one",
    "port_file": "write the bound port here once SERVING",
    "default_threshold": "PDQ threshold when a request sets none (inclusive)",
    "max_threshold": "highest threshold a request may ask for",
    "max_batch_hashes": "most hashes in one match batch",
    "max_matches_per_hash": "most matches one query hash gets (the closest; the answer "
                            "flags hashes that had more)",
    "max_matches_per_batch": "most matches one answer may hold (each of a batch's n hashes "
                             "gets at most this / n, at least 1)",
    "max_in_flight": "unanswered batches the server reads from one stream",
    "max_streams_per_platform": "open MatchStream calls per platform",
    "rate_limit_hashes_per_s": "per-platform matching rate (0 = off)",
    "max_case_items": "most photos and videos in one case",
    "max_video_frames": "most frame hashes in one submitted video",
    "max_case_hashes": "most hashes (PDQ, MD5, frames) one case may add",
    "submit_rate_per_peer": "SubmitCase calls a second from one IP (0 = off)",
    "submit_burst_per_peer": "SubmitCase calls one IP may make at once",
    "submit_rate_global": "SubmitCase calls a second from everyone (0 = off)",
    "submit_burst_global": "SubmitCase calls everyone may make at once",
    "submit_hashes_per_s": "hashes a second all submissions may add (0 = off)",
    "lookup_rate_per_peer": "GetCaseStatus/WithdrawCase calls a second from one IP (0 = off)",
    "lookup_burst_per_peer": "GetCaseStatus/WithdrawCase calls one IP may make at once",
    "lookup_rate_global": "GetCaseStatus/WithdrawCase calls a second from everyone (0 = off)",
    "lookup_burst_global": "GetCaseStatus/WithdrawCase calls everyone may make at once",
    "case_queue": "case calls waiting or running; more are refused at once",
    "refusal_delay_s": "seconds a call refused by a rate limit (Cases, failed keys) waits "
                       "for its answer (0 = answer at once)",
    "max_delayed_refusals": "refusals that may wait at once; more are answered at once",
    "max_concurrent_streams": "calls one connection may have open at once",
    "http2_bdp_probe": "grow HTTP/2 windows to the link (false: 64 KB a stream until read, so "
                       "refused bodies are not received)",
    "http2_stream_window_bytes": "with http2_bdp_probe false: bytes a call may send before "
                                 "the server reads it",
    "max_anonymous_reads": "anonymous request bodies (Cases, health) read at once",
    "anonymous_reads_per_address": "anonymous request bodies read at once from one address",
    "anonymous_read_timeout_s": "seconds an anonymous request body may take to arrive",
    "max_list_hashes": "hashes the list may hold before SubmitCase is refused",
    "auth_failure_burst": "failed API keys one IP may send before it is slowed",
    "auth_failure_rate_per_s": "failed API keys a second one IP is allowed back",
    "max_connections": "open connections the server accepts",
    "handshake_timeout_s": "seconds a new connection may take to start HTTP/2 (or TLS)",
    "max_connection_idle_s": "seconds a connection with no call in progress is kept",
    "tls_cert": "PEM certificate chain: serve TLS (re-read when the file changes)",
    "tls_key": "PEM private key for --tls-cert",
    "tls_client_ca": "PEM CA bundle: require client certificates signed by it (mTLS)",
    "platform_listen": "HOST:PORT of a second port for the keyed services only, with HTTP/2 "
                       "BDP probing on for far platforms; needs mTLS (platform_client_ca)",
    "platform_client_ca": "PEM CA bundle of the platforms' client certificates on "
                          "platform_listen",
    "reflection": "answer gRPC reflection (lists every service to anyone)",
    "max_request_bytes": "largest request message the server reads",
    "max_message_bytes": "largest answer message",
    "keepalive_time_s": "seconds between keepalive pings",
    "keepalive_timeout_s": "seconds to wait for a keepalive answer",
    "max_connection_age_s": "seconds before a client connection is asked to reconnect, so "
                            "clients rebalance over the servers up now (0 = never)",
    "max_connection_age_grace_s": "seconds the calls of such a connection get to finish "
                                  "before it is closed (0 = no limit)",
    "worker_threads": "threads for matching and store work",
    "search_threads": "threads one search may use (0 = one, a batch cut over the cores idle "
                      "when it starts; N = every search on N threads)",
    "index_layout": "speed (about 118 bytes a hash) or compact (86 at 1M, 64 at 10M, 7-17x "
                    "slower): speed unless the list does not fit the server's memory at it",
    "shutdown_grace_s": "seconds calls in progress get on SIGTERM",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "metrics_listen": "HOST:PORT for a Prometheus text endpoint (off if unset)",
    "web_listen": "HOST:PORT for the person's web page (off if unset; docs/WEB.md)",
    "follow_interval_s": "seconds between change-log reads when nothing woke the server",
    "max_lag_s": "health says NOT_SERVING while the list trails the log's head this long",
    "follow": "HOST:PORT of a server whose list this one copies and serves read-only",
    "follow_api_key": "API key (role 'replicate') for --follow (default: $HASHMATCH_API_KEY)",
    "follow_tls": "follow over TLS, trusting the system's CAs (implied by --follow-ca and "
                  "--follow-cert)",
    "follow_ca": "PEM CA bundle that signed the --follow primary's certificate (TLS)",
    "follow_cert": "PEM client certificate for a --follow primary that requires one (mTLS)",
    "follow_key": "PEM private key for --follow-cert",
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


def _yes_no(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


ENV_PREFIX = "HASHMATCH_"


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _type(field: dataclasses.Field) -> type:
    default = _default(field)
    return str if default is None else type(default)


def _parser(field: dataclasses.Field):
    """The text-to-value conversion for a flag or a variable: bools take true/false words."""
    kind = _type(field)
    return _yes_no if kind is bool else kind


def add_flags(p: argparse.ArgumentParser) -> None:
    """One --flag per ServerConfig field (--db for db_path), plus --config FILE: the one flag
    table of `python -m hashmatch.server` and `hashmatch serve`. Flags not given are left out
    of the parsed namespace, so `from_namespace` can tell them from defaults."""
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="TOML file of settings (keys are the field names below, with _)")
    for field in dataclasses.fields(ServerConfig):
        flags = [_flag(field.name)] + (["--db"] if field.name == "db_path" else [])
        p.add_argument(*flags, dest=field.name, type=_parser(field), default=argparse.SUPPRESS,
                       help=f"{HELP[field.name]} (default: {_default(field)}; "
                            f"env {ENV_PREFIX}{field.name.upper()})")


def _from_text(field: dataclasses.Field, text: str, source: str):
    try:
        return _parser(field)(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"{source}: {field.name} must be {_type(field).__name__}, "
                         f"got {text!r}") from None


def _from_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as error:
        raise ValueError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {path}: not valid TOML ({error})") from None
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    for name, value in values.items():
        field = fields.get(name)
        if field is None:
            raise ValueError(f"--config {path}: unknown setting {name!r}")
        kind = _type(field)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                values[name] = float(value)
                continue
            raise ValueError(f"--config {path}: {name} must be {kind.__name__}, got {value!r}")
    return values


def from_namespace(args: argparse.Namespace, environ=None) -> ServerConfig:
    """The settings: flags given, then HASHMATCH_* variables, then the --config file, then the
    defaults. Raises ValueError naming the source of a bad value."""
    environ = os.environ if environ is None else environ
    given = vars(args)
    values = _from_file(given["config"]) if "config" in given else {}
    for field in dataclasses.fields(ServerConfig):
        variable = ENV_PREFIX + field.name.upper()
        if variable in environ:
            values[field.name] = _from_text(field, environ[variable], variable)
        if field.name in given:
            values[field.name] = given[field.name]
    return ServerConfig(**values)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hashmatch.server",
                                description="Run the hashmatch gRPC server.")
    add_flags(p)
    return p


def from_args(argv=None) -> ServerConfig:
    return from_namespace(parser().parse_args(argv))
