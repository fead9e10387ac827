"""scripts/connlimit.sh: the per-address connection limit grpcio cannot enforce, in the kernel.

In a network namespace of its own (needs root), a server with max_connections 30 is flooded with
40 idle connections from 127.0.0.1 while another caller (127.0.0.2) asks for HTTP/2. Without the
limit the flood holds every slot and the other caller is closed at accept; with
`connlimit.sh PORT 10` the kernel resets 127.0.0.1's connections beyond 10 and the other caller
is served. This file is also the client half, run inside the namespace.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT, MAX_CONNECTIONS, FLOOD, PER_ADDRESS = 50051, 30, 40, 10
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + SETTINGS


def _flood(family: int, address: str) -> tuple[list[socket.socket], int]:
    """FLOOD idle connections to `address`: (those connected, how many the kernel reset)."""
    flood, refused = [], 0
    for _ in range(FLOOD):
        sock = socket.socket(family)
        try:
            sock.connect((address, PORT))
            flood.append(sock)
        except ConnectionRefusedError:      # the kernel's reset for connections over the limit
            refused += 1
    return flood, refused


def client() -> dict:
    """Inside the namespace: the flood from 127.0.0.1 (and from ::1, the limit's IPv6 rule),
    then whether 127.0.0.2 gets the server's SETTINGS frame (served) or a closed socket
    (refused at accept)."""
    flood, refused = _flood(socket.AF_INET, "127.0.0.1")
    time.sleep(0.5)     # let gRPC accept the flood
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.settimeout(3)
    served = False
    try:
        other.connect(("127.0.0.1", PORT))
        other.sendall(PREFACE)
        header = other.recv(9)
        served = len(header) == 9 and header[3] == 4     # a SETTINGS frame
    except OSError:
        pass
    flood6, refused6 = _flood(socket.AF_INET6, "::1")
    return {"flood_connected": len(flood), "flood_refused": refused, "other_served": served,
            "flood6_connected": len(flood6), "flood6_refused": refused6}


def _run_in(namespace: str, *command: str, **kwargs):
    return subprocess.run(["ip", "netns", "exec", namespace, *command], **kwargs)


@pytest.fixture
def namespace():
    if os.geteuid() != 0:
        pytest.skip("a network namespace and nftables need root (CI runs as root)")
    name = f"hashmatch-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _run_in(name, "ip", "link", "set", "lo", "up", check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _flood_and_ask(namespace: str, tmp_path: Path) -> dict:
    port_file = tmp_path / "port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "hashmatch.server",
         "--db", str(tmp_path / "list.db"), "--listen", f"[::]:{PORT}",
         "--port-file", str(port_file), "--max-connections", str(MAX_CONNECTIONS),
         "--handshake-timeout-s", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        done = _run_in(namespace, sys.executable, __file__, "client", capture_output=True,
                       text=True, timeout=60, check=True)
        return json.loads(done.stdout)
    finally:
        server.kill()
        server.wait()


def test_without_the_limit_one_address_fills_the_server(namespace, tmp_path):
    seen = _flood_and_ask(namespace, tmp_path)
    assert seen["flood_refused"] == seen["flood6_refused"] == 0, seen
    assert not seen["other_served"], seen


def test_the_connection_limit_keeps_the_server_open_to_others(namespace, tmp_path):
    load = _run_in(namespace, "bash", str(ROOT / "scripts" / "connlimit.sh"), str(PORT),
                   str(PER_ADDRESS), capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    assert f"at most {PER_ADDRESS} open connections per address" in load.stdout
    seen = _flood_and_ask(namespace, tmp_path)
    assert seen == {"flood_connected": PER_ADDRESS, "flood_refused": FLOOD - PER_ADDRESS,
                    "other_served": True, "flood6_connected": PER_ADDRESS,
                    "flood6_refused": FLOOD - PER_ADDRESS}, seen
    assert _run_in(namespace, "bash", str(ROOT / "scripts" / "connlimit.sh"),
                   "--remove").returncode == 0
    assert _run_in(namespace, "nft", "list", "tables", capture_output=True,
                   text=True).stdout.strip() == ""


def test_bad_arguments_are_refused_before_touching_the_firewall():
    for args, message in ((["x"], "PORT must be 1..65535"), (["50051", "0"], "PER_ADDRESS")):
        done = subprocess.run(["bash", str(ROOT / "scripts" / "connlimit.sh"), *args],
                              capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr, done


if __name__ == "__main__" and sys.argv[1:] == ["client"]:
    print(json.dumps(client()))
