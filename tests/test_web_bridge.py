"""The web port without a browser: static files with a strict CSP, the gRPC-Web bridge to the
Cases service (and nothing else), its errors, and the page's own building blocks (the committed
pdq.wasm is what scripts/build_web.sh makes; md5.js and grpcweb.js agree with Python and the
.proto). Real server, real HTTP over a real socket.
"""
from __future__ import annotations

import hashlib
import http.client as http_client
import json
import pathlib
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from test_server import SMALL_REQUESTS

from hashmatch.server import web
from hashmatch.server.web import CSP, grpc_web_frame
from hashmatch.v1 import hashmatch_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATIC = ROOT / "web" / "static"


@pytest.fixture
def site(start_server):
    server = start_server(web_listen="127.0.0.1:0", **SMALL_REQUESTS)
    return server, f"http://127.0.0.1:{server.app.web.port}"


def http(url: str, body: bytes | None = None, content_type="application/grpc-web+proto"):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": content_type} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def call(base: str, method: str, message: bytes) -> tuple[bytes | None, int, str]:
    """(answer message or None, grpc-status, grpc-message) of one gRPC-Web call."""
    status, headers, body = http(f"{base}/hashmatch.v1.Cases/{method}", grpc_web_frame(0, message))
    assert status == 200 and headers["Content-Type"] == "application/grpc-web+proto"
    answer, trailers, at = None, {}, 0
    while at < len(body):
        flags, length = body[at], int.from_bytes(body[at + 1:at + 5], "big")
        payload = body[at + 5:at + 5 + length]
        at += 5 + length
        if flags & 0x80:
            trailers = dict(line.split(":", 1) for line in payload.decode().split("\r\n") if line)
        else:
            answer = payload
    message = urllib.parse.unquote(trailers.get("grpc-message", ""))
    return answer, int(trailers["grpc-status"]), message


def an_image() -> pb.SubmitCaseRequest:
    return pb.SubmitCaseRequest(media=[pb.MediaHashes(image=pb.ImageHashes(
        md5=bytes(range(16)), pdq=bytes(range(100, 132)), quality=90))])


def test_pages_are_served_with_a_strict_csp_and_nothing_outside_static(site):
    _, base = site
    status, headers, body = http(base + "/")
    assert status == 200 and b'<script type="module" src="submit.js">' in body
    assert headers["Content-Security-Policy"] == CSP
    assert "default-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    assert http(base + "/pdq.wasm")[1]["Content-Type"] == "application/wasm"
    for name in ("/case.html", "/style.css", "/i18n.js", "/index.html"):
        assert http(base + name)[0] == 200, name
    for name in ("/nope.js", "/%2e%2e/setup.py", "/..%2fsetup.py", "/web/static/index.html"):
        status, headers, _ = http(base + name)
        assert status in (404, 405), name  # 405: a GET on the bridge's POST-only path
        assert headers["Content-Security-Policy"] == CSP
    for html in STATIC.glob("*.html"):  # no inline script or style that the CSP would block
        text = html.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), html
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text), html


def test_bridge_reaches_the_same_cases_servicer(site, connect):
    server, base = site
    answer, code, _ = call(base, "SubmitCase", an_image().SerializeToString())
    assert code == 0
    case = pb.SubmitCaseResponse.FromString(answer)
    stubs = connect(server)  # the same case, seen over plain gRPC
    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
    assert status.state == pb.CASE_STATE_ACTIVE and status.image_count == 1

    answer, code, message = call(base, "GetCaseStatus", pb.GetCaseStatusRequest(
        case_id=case.case_id, pin="0" * len(case.pin) if case.pin != "0" * len(case.pin)
        else "1" * len(case.pin)).SerializeToString())
    assert (answer, code) == (None, grpc.StatusCode.PERMISSION_DENIED.value[0])
    assert "wrong PIN" in message

    answer, code, message = call(base, "SubmitCase", pb.SubmitCaseRequest(media=[pb.MediaHashes(
        image=pb.ImageHashes(md5=b"short"))]).SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "16" in message

    answer, code, _ = call(base, "WithdrawCase", pb.WithdrawCaseRequest(
        case_id=case.case_id, pin=case.pin).SerializeToString())
    assert code == 0 and pb.WithdrawCaseResponse.FromString(answer).sequence == 0  # anonymous
    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
    assert status.state == pb.CASE_STATE_WITHDRAWN


def test_bridge_refuses_other_services_and_bad_requests_and_keeps_serving(site):
    server, base = site
    status, _, body = http(base + "/hashmatch.v1.Matching/MatchBatch", grpc_web_frame(0, b""))
    assert status == 404 and b"only the Cases service" in body
    status, _, body = http(base + "/hashmatch.v1.Cases/SubmitCase", grpc_web_frame(0, b""),
                           content_type="application/json")
    assert status == 415 and b"application/grpc-web+proto" in body
    for bad, rule in ((b"\x00\x00", "5-byte frame header"), (b"\x01\x00\x00\x00\x00", "flags 0x1"),
                      (grpc_web_frame(0, b"abc")[:-1], "says 3 bytes")):
        status, _, body = http(base + "/hashmatch.v1.Cases/SubmitCase", bad)
        invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert status == 200 and f"grpc-status:{invalid}".encode() in body
        assert urllib.parse.quote(rule, safe=" ").encode() in body, (bad, body)
    status, _, _ = http(base + "/hashmatch.v1.Cases/SubmitCase", grpc_web_frame(0, bytes(70_000)))
    assert status == 413  # over max_request_bytes: refused before it reaches the servicer
    assert call(base, "SubmitCase", an_image().SerializeToString())[1] == 0


def test_connections_to_the_page_beyond_max_connections_are_closed(start_server):
    """aiohttp would keep every connection it is offered (each up to its read buffer): past
    max_connections the page closes new ones at once, and serves again once some close."""
    server = start_server(web_listen="127.0.0.1:0", max_connections=8)
    port = server.app.web.port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        closed = _closed_within(idle, 2.0)
        assert 20 - 8 - 4 <= len(closed) <= 20 - 8, len(closed)  # a burst may let a few in
        status, _, _ = _get_with(idle, f"http://127.0.0.1:{port}/")
        assert status is None                                    # full: closed at once
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10      # room again once the server has seen them close
    while (answer := _get_with(idle, f"http://127.0.0.1:{port}/"))[0] is None:
        assert time.monotonic() < deadline, "the page never served again"
        time.sleep(0.1)
    assert answer[0] == 200 and b"<html" in answer[2].lower()


def _closed_within(socks: list[socket.socket], seconds: float) -> set[socket.socket]:
    """The sockets the other end closed within `seconds`."""
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], left)
        for sock in readable:
            try:
                if sock.recv(1) == b"":
                    closed.add(sock)
            except ConnectionResetError:
                closed.add(sock)
    return closed


def _get_with(idle, url):
    try:
        return http(url)
    except (urllib.error.URLError, ConnectionError, http_client.RemoteDisconnected):
        return None, None, None


def test_local_target_reaches_the_grpc_port_on_loopback_when_it_binds_everything():
    assert web.local_target("0.0.0.0:50051", 50051) == "127.0.0.1:50051"
    assert web.local_target("[::]:0", 4242) == "127.0.0.1:4242"
    assert web.local_target("10.1.2.3:0", 9) == "10.1.2.3:9"
    assert web.local_target("[::1]:0", 9) == "[::1]:9"


def test_grpcweb_js_field_numbers_are_the_protos():
    source = (STATIC / "grpcweb.js").read_text()
    table = source.split("const FIELDS = {")[1].split("\n};")[0]
    messages = dict(re.findall(r"(\w+): \{([^}]*)\}", table))
    assert len(messages) == 9
    for name, fields in messages.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[name]
        numbers = dict(re.findall(r"(\w+): (\d+)", fields))
        assert {f: int(n) for f, n in numbers.items()} == {
            f.name: f.number for f in descriptor.fields}, name


def test_md5_js_equals_hashlib_across_block_and_chunk_edges():
    node = shutil.which("node")
    assert node, "node is needed (the Node client test uses it too)"
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 4096, 100_003]
    script = ("import { Md5 } from './md5.js';"
              "const out = [];"
              f"for (const n of {json.dumps(sizes)}) {{"
              "  const b = Uint8Array.from({length: n}, (_, i) => (i * 7 + (i >> 8)) & 255);"
              "  const m = new Md5();"
              "  m.update(b.subarray(0, n >> 1)); m.update(b.subarray(n >> 1));"
              "  out.push(Buffer.from(m.digest()).toString('hex'));"
              "}"
              "console.log(JSON.stringify(out));")
    result = subprocess.run([node, "--input-type=module", "-e", script], cwd=STATIC,
                            capture_output=True, text=True, timeout=60, check=True)
    want = [hashlib.md5(bytes((i * 7 + (i >> 8)) & 255 for i in range(n))).hexdigest()
            for n in sizes]
    assert json.loads(result.stdout) == want


@pytest.mark.skipif(shutil.which("emcc") is None,
                    reason="emcc absent (scripts/test.sh installs Debian's emscripten)")
def test_committed_pdq_wasm_is_what_build_web_makes(tmp_path):
    out = tmp_path / "pdq.wasm"
    subprocess.run(["bash", str(ROOT / "scripts" / "build_web.sh"), str(out)], check=True,
                   capture_output=True, timeout=300)
    assert out.read_bytes() == (STATIC / "pdq.wasm").read_bytes(), \
        "web/static/pdq.wasm is stale: run scripts/build_web.sh and commit it"
