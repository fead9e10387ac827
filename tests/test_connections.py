"""Connection floods: idle TCP connections must not starve the server of file descriptors.

gRPC bounds the connections it keeps (`max_connections`, closed at accept beyond it) and closes
those that never start HTTP/2 (`handshake_timeout_s`); it has no per-address bound.
"""
import socket

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
