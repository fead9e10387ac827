"""An anonymous caller that sends the server as many unread request bytes as HTTP/2 allows.

A gRPC client library waits for answers and sends what its own windows say; an attacker need
not. This one speaks HTTP/2 itself over plain sockets: on each connection it opens as many
SubmitCase calls as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows, sends each a gRPC
message header declaring `declared` bytes and then garbage DATA as fast as the server's
flow-control windows (per stream and per connection) let it, never reading an answer beyond
what keeps the connection alive (SETTINGS and PING acknowledged, WINDOW_UPDATE obeyed). A call
the server ends is replaced by a new one. What it measures: `outstanding`, the bytes sent on
calls the server has not ended, which the server holds unless it read them, and its peak.
Used by bench_memory and tests/test_memory_bound.py; nothing here is a server.
"""
import dataclasses
import selectors
import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 3, 4, 5
DEFAULT_WINDOW, DEFAULT_FRAME = 65_535, 16_384
PATH = "/hashmatch.v1.Cases/SubmitCase"


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    # HPACK "literal header field without indexing, new name", no Huffman coding (RFC 7541 6.2.2)
    name_b, value_b = name.encode(), value.encode()
    assert len(name_b) < 127 and len(value_b) < 127
    return b"\x00" + bytes([len(name_b)]) + name_b + bytes([len(value_b)]) + value_b


def _headers(authority: str, path: str) -> bytes:
    return b"".join(_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers")))


@dataclasses.dataclass
class _Stream:
    window: int
    left: int           # bytes of the declared message not sent yet
    sent: int = 0


class _Connection:
    def __init__(self, address: tuple[str, int], declared: int, path: str):
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setblocking(False)
        self.declared, self.block = declared, _headers(f"{address[0]}:{address[1]}", path)
        self.max_streams, self.initial_window, self.max_frame = 100, DEFAULT_WINDOW, DEFAULT_FRAME
        self.window = DEFAULT_WINDOW
        self.streams: dict[int, _Stream] = {}
        self.next_id, self.ended, self.closed, self.settled = 1, 0, False, False
        self.sent = 0
        self.inbox, self.outbox = b"", bytearray(PREFACE + _frame(SETTINGS, 0, 0))

    def outstanding(self) -> int:
        return sum(s.sent for s in self.streams.values())

    def read(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.inbox += chunk
        while len(self.inbox) >= 9:
            length = int.from_bytes(self.inbox[:3], "big")
            if len(self.inbox) < 9 + length:
                break
            kind, flags = self.inbox[3], self.inbox[4]
            stream = int.from_bytes(self.inbox[5:9], "big") & 0x7FFF_FFFF
            payload, self.inbox = self.inbox[9:9 + length], self.inbox[9 + length:]
            self._on_frame(kind, flags, stream, payload)

    def _on_frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for k in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[k:k + 6])
                if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                    self.max_streams = value
                elif key == SETTINGS_INITIAL_WINDOW_SIZE:
                    for s in self.streams.values():
                        s.window += value - self.initial_window
                    self.initial_window = value
                elif key == SETTINGS_MAX_FRAME_SIZE:
                    self.max_frame = value
            self.outbox += _frame(SETTINGS, ACK, 0)
            self.settled = True
        elif kind == PING and not flags & ACK:
            self.outbox += _frame(PING, ACK, 0, payload)
        elif kind == WINDOW_UPDATE:
            grant = int.from_bytes(payload, "big") & 0x7FFF_FFFF
            if stream == 0:
                self.window += grant
            elif stream in self.streams:
                self.streams[stream].window += grant
        elif kind == RST_STREAM or (kind == HEADERS and flags & END_STREAM):
            if self.streams.pop(stream, None) is not None:
                self.ended += 1
        elif kind == GOAWAY:
            self.closed = True

    def fill(self) -> None:
        """Opens calls up to the server's stream limit and queues every byte its windows allow."""
        if not self.settled:
            return
        while len(self.streams) < self.max_streams:
            self.outbox += _frame(HEADERS, END_HEADERS, self.next_id, self.block)
            self.streams[self.next_id] = _Stream(self.initial_window, 5 + self.declared)
            self.next_id += 2
        for stream_id, s in self.streams.items():
            while s.left and s.window > 0 and self.window > 0:
                n = min(s.left, s.window, self.window, self.max_frame)
                body = b"\x00" * n
                if s.sent == 0:     # gRPC message header: not compressed, declared length
                    body = b"\x00" + struct.pack(">I", self.declared) + body[5:]
                self.outbox += _frame(DATA, 0, stream_id, body)
                s.left, s.sent, s.window, self.window = s.left - n, s.sent + n, s.window - n, \
                    self.window - n
                self.sent += n

    def write(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            return
        except OSError:
            self.closed = True
            return
        del self.outbox[:sent]


@dataclasses.dataclass
class FloodResult:
    connections: int
    streams_per_connection: int
    peak_outstanding: int       # most bytes at once sent on calls the server had not ended
    sent: int                   # DATA bytes sent in all
    ended: int                  # calls the server ended (answered or reset)
    closed: int                 # connections the server closed


def flood(target: str, connections: int, seconds: float, declared: int = 8 << 20,
          path: str = PATH, on_tick=None) -> FloodResult:
    """Floods `target` (host:port) from `connections` connections for `seconds`; `on_tick()` is
    called about every 20 ms (to sample the server's memory)."""
    host, _, port = target.rpartition(":")
    conns = [_Connection((host, int(port)), declared, path) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    for c in conns:
        selector.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    peak = 0
    stop_at, tick_at = time.monotonic() + seconds, 0.0
    try:
        while time.monotonic() < stop_at:
            for key, events in selector.select(0.02):
                c = key.data
                if c.closed:
                    continue
                if events & selectors.EVENT_READ:
                    c.read()
                c.fill()
                if events & selectors.EVENT_WRITE and c.outbox:
                    c.write()
                if c.closed:
                    selector.unregister(c.sock)
            peak = max(peak, sum(c.outstanding() for c in conns if not c.closed))
            if on_tick is not None and time.monotonic() >= tick_at:
                on_tick()
                tick_at = time.monotonic() + 0.02
    finally:
        selector.close()
        for c in conns:
            c.sock.close()
    return FloodResult(connections, max(c.max_streams for c in conns), peak,
                       sum(c.sent for c in conns), sum(c.ended for c in conns),
                       sum(c.closed for c in conns))
