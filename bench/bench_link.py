"""What HTTP/2 BDP probing buys a platform far away: `python -m bench.bench_link`.

`http2_bdp_probe` decides how much a caller may send before the server reads: on, gRPC grows
each stream's window to the link's bandwidth-delay product (on loopback, 64 MiB: a whole body of
garbage arrives before the gate refuses it); off, 64 KB until the server reads a message, and
then the message's size. This measures what turning it off costs the callers it is for: the
load generator's platform streams, through a proxy on loopback that delays every chunk by half
the round-trip time each way (bandwidth unlimited, order kept), for each RTT and setting in one
run, interleaved. Reports hashes/s and p50/p99 batch latency per (RTT, setting).
"""
import argparse
import asyncio
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.load_server import ManagedServer, random_hashes
from bench.machine import describe
from hashmatch.server.config import CASE_RATES_OFF

RATES_OFF = [f"--{k.replace('_', '-')}={v}" for k, v in CASE_RATES_OFF.items()]


class DelayProxy:
    """Listens on 127.0.0.1:port and forwards each connection to `target`, every chunk delayed
    by `one_way_s` in each direction, in order."""

    def __init__(self, target: str, one_way_s: float):
        self.target, self.one_way_s = target, one_way_s
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()      # one proxy per run: free its port and loop before the next
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader, writer):
        host, _, port = self.target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader, writer):
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, chunk = await queue.get()
                if chunk is None:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(1 << 16):
                queue.put_nowait((time.monotonic() + self.one_way_s, chunk))
        finally:
            queue.put_nowait((0.0, None))
            await sender


def run_load(target: str, api_key: str, args, extra_args=()) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([sys.executable, "-m", "bench.load", "--target", target,
                               "--api-key", api_key, "--streams", str(args.streams),
                               "--batch-size", str(args.batch_size), "--window",
                               str(args.window), "--duration", str(args.duration), "--count",
                               str(10**9), "--core-seconds", "0.5", "--quiet", "--json",
                               out.name, *extra_args], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"bench.load failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return json.load(open(out.name))


@dataclasses.dataclass
class Contender:
    """One way of reaching a server: its name in the table, the server, the port to drive and
    the load generator's TLS flags."""
    name: str
    server: ManagedServer
    port: int | None = None         # None: the server's main port
    tls_args: tuple = ()

    @property
    def target(self) -> str:
        return self.server.target if self.port is None else f"127.0.0.1:{self.port}"

    def load_args(self) -> list[str]:
        """bench.load's flags beside the target: TLS, and the main port for the sources' cases
        when the driven port serves no Cases (the platform port)."""
        cases = [] if self.port is None else ["--cases-target", self.server.target]
        return [*self.tls_args, *cases]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _platform_contenders(hashes, folder: str) -> list[Contender]:
    """A server with TLS on its main port (no BDP probe) and `platform_listen` (mTLS, BDP
    probe): the same list reached both ways, as a platform would."""
    from bench.pki import CA

    ca, clients = CA(Path(folder), "list-ca"), CA(Path(folder), "platform-ca")
    cert, key = ca.issue("server")
    client_cert, client_key = clients.issue("platform")
    port = _free_port()
    server = ManagedServer(hashes, RATES_OFF + [
        f"--tls-cert={cert}", f"--tls-key={key}", f"--platform-listen=127.0.0.1:{port}",
        f"--platform-client-ca={clients.pem}"])
    return [Contender("TLS, main port, no BDP probe", server, None, ("--ca", str(ca.pem))),
            Contender("mTLS, platform port, BDP probe", server, port,
                      ("--ca", str(ca.pem), "--cert", client_cert, "--key", client_key))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rtt-ms", default="0,20,80", help="round-trip times to emulate")
    parser.add_argument("--windows", default="bdp,65536,16384",
                        help="server settings to compare: 'bdp' (http2_bdp_probe on) or a "
                             "stream window in bytes (http2_bdp_probe off)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--list-size", type=int, default=100_000)
    parser.add_argument("--platform-port", action="store_true",
                        help="also a server with TLS and platform_listen: its main port and "
                             "its platform port (mTLS, BDP probing on)")
    args = parser.parse_args(argv)
    print(describe())
    rtts = [float(r) for r in args.rtt_ms.split(",")]
    results: dict[tuple[float, str], list[dict]] = {}
    hashes = random_hashes(args.list_size, 0)
    contenders = [Contender(_window_name(window),
                            ManagedServer(hashes, RATES_OFF + _window_flags(window)))
                  for window in args.windows.split(",") if window]
    with contextlib.ExitStack() as stack:
        if args.platform_port:
            contenders += _platform_contenders(hashes, stack.enter_context(
                tempfile.TemporaryDirectory(prefix="hashmatch-link-pki-")))
        for server in {id(c.server): c.server for c in contenders}.values():
            stack.enter_context(server)
        for _ in range(args.rounds):
            for rtt in rtts:
                for contender in contenders:
                    with DelayProxy(contender.target, rtt / 2000) as proxy:
                        report = run_load(f"127.0.0.1:{proxy.port}", contender.server.api_key,
                                          args, contender.load_args())
                    results.setdefault((rtt, contender.name), []).append(report)
    print(f"{args.streams} streams, batches of {args.batch_size}, {args.window} in flight; "
          f"median of {args.rounds} interleaved rounds of {args.duration:g} s")
    print("| RTT | server | hashes/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for (rtt, name), reports in results.items():
        rate = _median([r["result"]["hashes_per_s"] for r in reports])
        p50 = _median([r["latency_ms"]["p50"] for r in reports])
        p99 = _median([r["latency_ms"]["p99"] for r in reports])
        print(f"| {rtt:g} ms | {name} | {rate:,.0f} | {p50:.1f} | {p99:.1f} |")


def _window_name(window: str) -> str:
    return "BDP probe" if window == "bdp" else f"{int(window) // 1024} KiB, no BDP probe"


def _window_flags(window: str) -> list[str]:
    if window == "bdp":
        return ["--http2-bdp-probe=true"]
    return ["--http2-bdp-probe=false", f"--http2-stream-window-bytes={int(window)}"]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


if __name__ == "__main__":
    main()
