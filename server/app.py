"""Builds and runs the server: store, in-memory list, gate, services, health, metrics, TLS.

`create_server(config)` (a coroutine) binds, starts answering with health NOT_SERVING, loads the
list from the store in the background, starts the change-log follower and then flips health to
SERVING and writes the port file. Health goes back to NOT_SERVING while the applied sequence
trails the log's head for more than `max_lag_s` (and SERVING once caught up).
`serve(config)` runs that until SIGTERM/SIGINT and shuts down gracefully. `ServerThread` runs the
same server on a private event loop in a thread, for tests and for embedding.
"""
import asyncio
import concurrent.futures
import functools
import logging
import os
import resource
import signal
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from hashmatch.server import logs, tls
from hashmatch.server.abuse import CaseLimits, case_pool, memory_bound, report_memory_bound
from hashmatch.server.access import Authenticator, PlatformLimits, require_role
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import ShuttingDown
from hashmatch.server.gate import BodyReads, Gate, anyone
from hashmatch.server.flood import FloodBreaker
from hashmatch.server.follower import Follower
from hashmatch.server.keeper import ListKeeper
from hashmatch.server.listing import ListState, kernel_backend
from hashmatch.server.metrics import Metrics, list_hashes
from hashmatch.server.outcomes import open_outcome_store
from hashmatch.server.services import CasesService, ListInfoService, MatchingService
from hashmatch.server.services_admin import AdminService
from hashmatch.server.services_feedback import FeedbackService, ReviewService, flood_tripped
from hashmatch.server.services_replication import MirrorCasesService, ReplicationService
from hashmatch.server.sync_follower import SyncFollower
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")
CASE_THREADS = 2
FILES_SPARE = 256
SERVICES = [d.full_name for d in pb.DESCRIPTOR.services_by_name.values()]
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
CASES = "hashmatch.v1.Cases"
# The role a key needs for each keyed service (Cases needs none).
SERVICE_ROLES = {"Matching": "match", "ListInfo": "match", "Replication": "replicate",
                 "Feedback": "feedback", "Review": "admin", "Admin": "admin"}


def _grpc_options(config: ServerConfig, bdp_probe: bool | None = None) -> list[tuple[str, int]]:
    """The server's channel arguments; `bdp_probe` overrides http2_bdp_probe (the platform
    port's)."""
    bdp_probe = config.http2_bdp_probe if bdp_probe is None else bdp_probe
    age = []
    if config.max_connection_age_s:
        age.append(("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)))
        if config.max_connection_age_grace_s:
            age.append(("grpc.max_connection_age_grace_ms",
                        int(config.max_connection_age_grace_s * 1000)))
    return age + [
        ("grpc.max_receive_message_length", config.max_request_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC closes connections past this at accept; it has no per-address bound.
        ("grpc.max_allowed_incoming_connections", config.max_connections),
        ("grpc.max_concurrent_streams", config.max_concurrent_streams),
        ("grpc.http2.bdp_probe", int(bdp_probe)),
        # Without BDP probing, a stream's window until the server reads a message (then grown
        # to the message's size): what an unread call can make the server buffer.
        ("grpc.http2.lookahead_bytes", config.http2_stream_window_bytes),
        # A connection that never sends the HTTP/2 preface (or finishes TLS) is closed after it.
        ("grpc.server_handshake_timeout_ms", int(config.handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(config.max_connection_idle_s * 1000)),
    ]


def _raise_file_limit(max_connections: int) -> None:
    """Lifts this process's soft open-file limit to the hard one (in `serve`, which owns the
    process); warns when connections could exceed it (each connection is a descriptor; the
    store, logs and metrics need a few hundred more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and max_connections + FILES_SPARE > soft:
        log.warning("max_connections is close to the open-file limit; a connection flood can "
                    "exhaust descriptors", extra={"fields": {
                        "max_connections": max_connections, "nofile": soft}})


class App:
    """One running server and what it owns; made by `create_server`."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store = open_outcome_store(config.db_path)
        self.state = ListState(search_threads=config.search_threads,
                               hold_disputed=config.disputed_entries == "hold",
                               layout=config.index_layout)
        if config.follow:   # a read-only copy of another server's list; --db keeps platforms
            self.follower = SyncFollower(config.follow, config.follow_api_key
                                         or os.environ.get("HASHMATCH_API_KEY"), self.state,
                                         config.follow_tls_files())
        else:
            self.follower = Follower(self.store, self.state, config.follow_interval_s)
        self.keeper = ListKeeper(self.store, self.state, self.follower)
        self.metrics = Metrics(self.state, self.follower, config.max_list_hashes,
                               functools.partial(memory_bound, config))
        # A read-only copy never writes the log: its breaker stays off.
        self.flood = FloodBreaker(0 if config.follow else config.flood_limit,
                                  config.flood_window_s,
                                  functools.partial(flood_tripped, config, self.store, self.state,
                                                    self.follower, self.metrics))
        self.auth = Authenticator(self.store, config, self.metrics)
        self.follower.on_keys = self.auth.forget
        self.limits = PlatformLimits(config.rate_limit_hashes_per_s, config.max_batch_hashes,
                                     config.max_streams_per_platform)
        self.case_limits = CaseLimits(config, self.metrics)
        self.pool = concurrent.futures.ThreadPoolExecutor(config.worker_threads,
                                                          thread_name_prefix="hashmatch")
        # Case calls (scrypt, fsync) get their own threads so a burst of anonymous submissions
        # cannot hold up platform matching.
        self.case_pool = case_pool(CASE_THREADS)
        self.health = HealthServicer()
        # Every call's key (or, for Cases, its address's limits) is checked before its body is
        # read; the servicers of keyed services check the role again themselves.
        checks = {f"hashmatch.v1.{service}": self._key_with(role)
                  for service, role in SERVICE_ROLES.items()}
        self.gate = Gate({**checks, CASES: self._admit_case, HEALTH: anyone},
                         self.metrics.count_error,
                         config.refusal_delay_s, config.max_delayed_refusals,
                         BodyReads(config.max_anonymous_reads, config.anonymous_reads_per_address,
                                   config.anonymous_read_timeout_s or None))
        self._servicers = self._make_servicers(config)
        self.server = self._grpc_server(config, _grpc_options(config), cases=True)
        if config.tls_cert:
            self.port = self.server.add_secure_port(config.listen, tls.server_credentials(
                config.tls_cert, config.tls_key, config.tls_client_ca))
        else:
            self.port = self.server.add_insecure_port(config.listen)
        if not self.port:
            raise OSError(f"cannot listen on {config.listen}")
        self.platform_server, self.platform_port = None, 0
        if config.platform_listen:
            self.platform_server = self._grpc_server(
                config, _grpc_options(config, bdp_probe=True), cases=False)
            self.platform_port = self.platform_server.add_secure_port(
                config.platform_listen, tls.server_credentials(
                    config.tls_cert, config.tls_key, config.platform_client_ca))
            if not self.platform_port:
                raise OSError(f"cannot listen on {config.platform_listen}")
        self.loaded: asyncio.Task | None = None
        self.stopping = False
        self._health_watch: asyncio.Task | None = None
        self._pruning: asyncio.Task | None = None
        self._key_watch: asyncio.Task | None = None
        self._metrics_server = None
        self.metrics_port = 0
        self.web = None

    def _grpc_server(self, config: ServerConfig, options, cases: bool) -> grpc.aio.Server:
        """A gRPC server behind the gate with the servicers, health and (if asked) reflection;
        `cases`: whether it serves Cases (the platform port does not)."""
        gate = self.gate if cases else self.gate.twin()
        server = grpc.aio.server(interceptors=[gate], options=options,
                                 compression=grpc.Compression.NoCompression)
        names = [name for name in self._servicers if cases or name != CASES]
        for name in names:
            add, servicer = self._servicers[name]
            add(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if config.reflection:
            reflection.enable_server_reflection([*names, HEALTH, reflection.SERVICE_NAME],
                                                server)
        return server

    def _make_servicers(self, config: ServerConfig) -> dict:
        """{service name: (add_to_server, servicer)}, each servicer made once and given the
        collaborators it uses, here and nowhere else. A follow copy serves no store-backed
        services but Matching and ListInfo, and its Cases refuses with where to go."""
        shared = dict(config=config, metrics=self.metrics)
        lists = dict(store=self.store, state=self.state, follower=self.follower)
        made = {
            "Matching": (pb_grpc.add_MatchingServicer_to_server, MatchingService(
                **shared, state=self.state, limits=self.limits, flood=self.flood,
                run=self.run)),
            "ListInfo": (pb_grpc.add_ListInfoServicer_to_server,
                         ListInfoService(**shared, **lists, run=self.run)),
        }
        if config.follow:
            made["Cases"] = (pb_grpc.add_CasesServicer_to_server,
                             MirrorCasesService(source=config.follow, metrics=self.metrics))
        else:
            made.update({
                "Cases": (pb_grpc.add_CasesServicer_to_server, CasesService(
                    **shared, store=self.store, state=self.state, keeper=self.keeper,
                    case_limits=self.case_limits, run_case=self.run_case)),
                "Replication": (pb_grpc.add_ReplicationServicer_to_server, ReplicationService(
                    **shared, **lists, auth=self.auth, limits=self.limits, run=self.run)),
                "Feedback": (pb_grpc.add_FeedbackServicer_to_server, FeedbackService(
                    **shared, store=self.store, follower=self.follower, auth=self.auth,
                    limits=self.limits, run=self.run)),
                "Review": (pb_grpc.add_ReviewServicer_to_server, ReviewService(
                    **shared, **lists, auth=self.auth, run=self.run)),
                "Admin": (pb_grpc.add_AdminServicer_to_server, AdminService(
                    store=self.store, auth=self.auth, follower=self.follower,
                    metrics=self.metrics, run=self.run)),
            })
        return {f"hashmatch.v1.{name}": pair for name, pair in made.items()}

    async def run(self, fn, *args):
        """Runs blocking matching work on a worker thread."""
        self._refuse_when_stopping()
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def run_case(self, fn, *args):
        """Runs blocking case work (store commit, scrypt) on a case thread; refused at once when
        `case_queue` calls are already waiting or running."""
        self._refuse_when_stopping()
        with self.case_limits.queued():
            return await asyncio.get_running_loop().run_in_executor(self.case_pool, fn, *args)

    def _refuse_when_stopping(self) -> None:
        # Streams still open while stop() closes the pools (a Sync follower) would otherwise
        # meet a closed executor and answer INTERNAL.
        if self.stopping:
            raise ShuttingDown("the server is shutting down; try again or another server")

    async def _admit_case(self, method: str, metadata, peer: str) -> None:
        self.case_limits.admit(method, peer)

    def _key_with(self, role: str):
        """The gate's check of a keyed service: a key with `role`; returns its platform."""
        async def check(method: str, metadata, peer: str) -> str:
            caller = await self.auth.caller(metadata, peer, method)
            require_role(caller, role)
            return caller.name
        return check

    async def _set_health(self, status) -> None:
        for name in ("", *SERVICES):
            await self.health.set(name, status)

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if self.platform_server is not None:
            await self.platform_server.start()
        if self.config.metrics_listen:
            host, _, port = self.config.metrics_listen.rpartition(":")
            self._metrics_server = await self.metrics.serve_http(host or "0.0.0.0", int(port))
            self.metrics_port = self._metrics_server.sockets[0].getsockname()[1]
        if self.config.web_listen:
            from hashmatch.server.web import start_web  # aiohttp only when the page is on
            self.web = await start_web(self.config.web_listen, self.config.listen, self.port,
                                       self.config.max_request_bytes, self.gate.reads,
                                       self.config.max_connections)
        log.info("listening", extra={"fields": {"port": self.port, "db": self.store.where,
                                                "platform_port": self.platform_port,
                                                "kernel_backend": kernel_backend()}})
        self.loaded = asyncio.create_task(self._load())

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            await self.run(self.keeper.load)
        except Exception:
            log.exception("loading the list failed; staying NOT_SERVING")
            raise
        self.follower.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._health_watch = asyncio.create_task(self._watch_lag())
        if not self.config.follow:
            self._pruning = asyncio.create_task(self._prune_changes())
        else:   # its keys live in its own store, whose log no follower reads
            self._key_watch = asyncio.create_task(
                self.auth.watch_store(self.config.follow_interval_s))
        if self.config.port_file:
            tmp = f"{self.config.port_file}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{self.port}\n")
            os.replace(tmp, self.config.port_file)
        # One count per list kind (pdq photos, md5s, vpdq videos, their frames), nothing summed.
        log.info("serving", extra={"fields": {
            "sequence": self.state.sequence,
            "load_s": round(time.monotonic() - started, 3),
            "index_bytes": self.state.index_memory_bytes(), **self.state.counts()}})
        report_memory_bound(self.config, list_hashes(self.state))

    async def _watch_lag(self) -> None:
        """NOT_SERVING while the list trails the log's head by more than max_lag_s."""
        serving = True
        while True:
            await asyncio.sleep(self.config.follow_interval_s)
            behind = self.follower.lag_s() > self.config.max_lag_s
            if behind == serving:
                serving = not behind
                log.warning("list behind the change log" if behind else "list caught up",
                            extra={"fields": {"applied": self.state.sequence,
                                              "head": self.follower.head}})
                await self._set_health(health_pb2.HealthCheckResponse.SERVING if serving
                                       else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _prune_changes(self) -> None:
        """Drops change-log rows older than change_retention_s (copies further behind take a
        snapshot again), every tenth of the retention or hour, whichever is sooner."""
        retention = self.config.change_retention_s
        while True:
            try:
                floor = await self.run(self.store.prune_changes, time.time() - retention)
                log.debug("change log pruned", extra={"fields": {"floor": floor}})
            except Exception:  # noqa: BLE001 - pruning is housekeeping: try again later
                log.exception("pruning the change log failed")
            await asyncio.sleep(min(retention / 10, 3600))

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then let calls in progress finish for `grace` seconds."""
        self.stopping = True
        if self._pruning:
            self._pruning.cancel()
        if self._key_watch:
            self._key_watch.cancel()
        if self._health_watch:
            self._health_watch.cancel()
        await self.health.enter_graceful_shutdown()
        if self.web is not None:
            await self.web.stop()
        if self.loaded and not self.loaded.done():
            self.loaded.cancel()
        grace = self.config.shutdown_grace_s if grace is None else grace
        await asyncio.gather(*(server.stop(grace) for server in (self.server, self.platform_server)
                               if server is not None))
        if self._metrics_server:
            self._metrics_server.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.case_pool.shutdown(wait=True, cancel_futures=True)
        self.auth.close()
        await asyncio.get_running_loop().run_in_executor(None, self.follower.stop)
        self.store.close()
        log.info("stopped")


    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self.server.wait_for_termination(timeout)


async def create_server(config: ServerConfig) -> tuple[App, int]:
    """Starts a server (health NOT_SERVING until the list is loaded); returns (app, port).

    `app` answers `stop(grace)` and `wait_for_termination()` like a grpc.aio.Server (which is
    `app.server`); `await app.loaded` waits for SERVING. Listening on port 0 picks a free port.
    """
    app = App(config)
    await app.start()
    return app, app.port


async def serve_async(config: ServerConfig) -> None:
    app, _ = await create_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"fields": {"grace_s": config.shutdown_grace_s}})
    await app.stop()


def serve(config: ServerConfig) -> None:
    """Runs the server until SIGTERM/SIGINT (blocking); logs JSON lines to stderr."""
    logs.setup(config.log_level)
    _raise_file_limit(config.max_connections)
    asyncio.run(serve_async(config))


class ServerThread:
    """A server on its own event loop in a daemon thread: `with ServerThread(cfg) as s: s.port`."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="hashmatch-server")
        self.app: App | None = None
        self.port = 0

    def _call(self, coro, timeout: float | None = 30):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, wait_serving: bool = True) -> "ServerThread":
        self._thread.start()
        self.app, self.port = self._call(create_server(self.config))
        if wait_serving:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 60) -> None:
        async def wait():
            await self.app.loaded
        self._call(wait(), timeout)

    def stop(self, grace: float = 0.5) -> None:
        if self.app is not None:
            self._call(self.app.stop(grace))
            self.app = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
