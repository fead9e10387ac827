"""platform_listen: a second port for the keyed services only, mTLS, with HTTP/2 BDP probing on.

BDP probing is off on the main port so that anonymous callers cannot park whole requests in
open streams (docs/SECURITY.md, "Memory"); far platforms pay for it in throughput. The platform
port gives them probing back and stays bounded because only holders of a client certificate
from platform_client_ca get past TLS.
"""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from bench.pki import CA
from hashmatch.clients.client import HashmatchClient, HashmatchError, TlsFiles
from hashmatch.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Photo:
    pdq: bytes
    md5: bytes = b""
    quality: int = 90


@pytest.fixture
def two_ports(start_server, tmp_path, monkeypatch):
    """(server, its CA, the platforms' CA); `server.options` holds each gRPC server's options,
    main port first."""
    made, make = [], grpc.aio.server

    def server_recording_options(*args, **kwargs):
        made.append(dict(kwargs["options"]))
        return make(*args, **kwargs)

    monkeypatch.setattr(grpc.aio, "server", server_recording_options)
    ca, clients = CA(tmp_path, "list-ca"), CA(tmp_path, "platform-ca")
    cert, key = ca.issue("server")
    server = start_server(tls_cert=cert, tls_key=key, platform_listen="127.0.0.1:0",
                          platform_client_ca=str(clients.pem))
    server.options = made
    return server, ca, clients


def _client(server, port: int, tls: TlsFiles, api_key=None) -> HashmatchClient:
    return HashmatchClient(f"localhost:{port}", api_key=api_key or server.api_key, timeout=5,
                           tls=tls)


def test_platforms_with_a_certificate_match_on_the_platform_port(two_ports):
    server, ca, clients = two_ports
    platform = TlsFiles(str(ca.pem), *clients.issue("platform"))
    port = server.app.platform_port
    assert port and port != server.port
    pdq = np.random.default_rng(5).integers(0, 256, 32, dtype=np.uint8).tobytes()
    with _client(server, server.port, TlsFiles(ca=str(ca.pem))) as person:   # no certificate
        case = person.submit_case([Photo(pdq)])
    with _client(server, port, platform) as client:
        assert client.list_info().max_batch_hashes == 16384
        hits = client.match_batch("pdq", [pdq])
        assert [(hit.position, hit.entry_id, hit.distance) for hit in hits] == [
            (0, case.entry_ids[0], 0)]


def test_the_platform_port_serves_no_cases_and_no_caller_without_a_certificate(two_ports):
    server, ca, clients = two_ports
    port = server.app.platform_port
    with _client(server, server.port, TlsFiles(ca=str(ca.pem))) as person:
        person.submit_case([Photo(bytes(range(1, 33)))])     # Cases served on the main port
    with pytest.raises(HashmatchError) as caught, _client(server, port, TlsFiles(ca=str(ca.pem))) \
            as stranger:
        stranger.list_info()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE      # no client certificate
    with _client(server, port, TlsFiles(str(ca.pem), *clients.issue("platform"))) as client:
        with pytest.raises(HashmatchError) as caught:
            client.submit_case([Photo(bytes(range(32)))])
    assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED     # Cases: the main port only


def test_only_the_platform_port_probes_bandwidth(two_ports):
    server, _, _ = two_ports
    main, platform = server.options
    assert main["grpc.http2.bdp_probe"] == 0 and platform["grpc.http2.bdp_probe"] == 1
    assert {k: v for k, v in main.items() if k != "grpc.http2.bdp_probe"} == \
        {k: v for k, v in platform.items() if k != "grpc.http2.bdp_probe"}


def test_the_platform_port_needs_mtls():
    with pytest.raises(ValueError, match="platform_listen .* needs mTLS"):
        ServerConfig(platform_listen="127.0.0.1:0")
    with pytest.raises(ValueError, match="platform_listen .* needs mTLS"):
        ServerConfig(tls_cert="c", tls_key="k", platform_listen="127.0.0.1:0")
    with pytest.raises(ValueError, match="platform_client_ca is for platform_listen"):
        ServerConfig(tls_cert="c", tls_key="k", platform_client_ca="ca")


def test_the_load_generator_drives_the_platform_port_with_cases_through_the_main_one(
        two_ports, tmp_path):
    """bench.load over mTLS to the platform port, its sources listed and withdrawn through the
    main port (--cases-target), every answer checked, the summary written as JSON."""
    server, ca, clients = two_ports
    cert, key = clients.issue("load")
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--target", f"127.0.0.1:{server.app.platform_port}",
         "--cases-target", f"127.0.0.1:{server.port}", "--api-key", server.api_key,
         "--ca", str(ca.pem), "--cert", cert, "--key", key, "--streams", "1", "--batch-size",
         "1024", "--count", "4096", "--sources", "100", "--core-seconds", "0.2", "--quiet",
         "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["result"]
    assert result["errors"] == 0 and result["cleanup_error"] is None
    assert result["matches_found"] == result["matches_expected"] > 0
