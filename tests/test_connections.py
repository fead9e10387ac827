"""Connection floods: idle TCP connections must not starve the server of file descriptors.

gRPC bounds the connections it keeps (`max_connections`, closed at accept beyond it) and closes
those that never start HTTP/2 (`handshake_timeout_s`); it has no per-address bound.
"""
import select
import socket
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

IDLE_CONNECTIONS = 2000   # twice the server's file limit below


def test_health_answers_while_thousands_of_idle_connections_are_open(server_process):
    server = server_process("--max-connections", "400", "--handshake-timeout-s", "1",
                            nofile=1024)
    host, port = server.target.rsplit(":", 1)
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=20,
                                      wait_for_ready=True)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for sock in idle:
            sock.close()
    assert len(idle) == IDLE_CONNECTIONS and server.process.poll() is None
    assert server.stop() == 0


def test_connections_over_max_connections_are_closed_at_once(start_server):
    server = start_server(max_connections=20, handshake_timeout_s=60)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
    try:
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + 10
        while len(closed) < 30 and time.monotonic() < deadline:
            readable, _, _ = select.select([s for s in idle if s not in closed], [], [], 0.5)
            closed.update(s for s in readable if _at_eof(s))
        assert 30 <= len(closed) <= 50 - 20 + 2   # the server's own channel may hold a slot
    finally:
        for sock in idle:
            sock.close()


def _at_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_a_connection_that_never_makes_a_call_is_closed_when_idle(start_server):
    """Past the HTTP/2 preface (so the handshake timeout no longer applies), a connection with
    no call is sent GOAWAY and closed after max_connection_idle_s."""
    server = start_server(max_connection_idle_s=1, handshake_timeout_s=60)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        started, kinds, data = time.monotonic(), [], b""
        while time.monotonic() - started < 8:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                kinds.append(data[3])
                data = data[9 + int.from_bytes(data[:3], "big"):]
        assert 7 in kinds, kinds                    # GOAWAY
        assert 0.9 < time.monotonic() - started < 8
    finally:
        sock.close()
