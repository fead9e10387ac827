"""The light client: a platform that only streams hashes installs `hashmatch-client` (built with
HASHMATCH_DIST=client): the client library and the API, needing grpcio, protobuf and numpy, with
no C++ build, Numba, Pillow or PyAV. Built and installed into a fresh virtual environment here,
then used against a real server."""
import pathlib
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROBE = """
import importlib.util, sys
import numpy as np
from hashmatch.clients.client import HashmatchClient, HashmatchError
from hashmatch.clients.streaming import StreamingMatcher
present = [m for m in ("numba", "av", "PIL", "hashmatch.core._kernels", "hashmatch.core.index",
                       "hashmatch.server", "pybind11")
           if importlib.util.find_spec(m)]
print("present:", present)
target, key, listed = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
with HashmatchClient(target, api_key=key) as client:
    with StreamingMatcher(client, "pdq") as matcher:
        found = [(item, hit.distance) for outcome in matcher.match([("a", listed), ("b", bytes(32))])
                 for item, hit in outcome.matches]
print("found:", found)
"""


@pytest.fixture(scope="module")
def light_wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("clients", "core", "proto"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "cpp"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)], check=True,
                   env={"HASHMATCH_DIST": "client", "PATH": "/usr/bin:/bin"}, cwd=out)
    (wheel,) = out.glob("hashmatch_client-*.whl")
    return wheel


def test_light_wheel_is_pure_python_and_small(light_wheel):
    names = zipfile.ZipFile(light_wheel).namelist()
    assert light_wheel.name.endswith("-py3-none-any.whl")
    modules = sorted(n for n in names if n.endswith(".py"))
    assert modules == ["hashmatch/clients/__init__.py", "hashmatch/clients/client.py",
                       "hashmatch/clients/streaming.py", "hashmatch/core/__init__.py",
                       "hashmatch/core/signals.py", "hashmatch/v1/__init__.py",
                       "hashmatch/v1/hashmatch_pb2.py", "hashmatch/v1/hashmatch_pb2_grpc.py"]
    metadata = zipfile.ZipFile(light_wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode()
    requires = sorted(line.split(":", 1)[1].split(">")[0].strip()
                      for line in metadata.splitlines() if line.startswith("Requires-Dist"))
    assert requires == ["googleapis-common-protos", "grpcio", "numpy", "protobuf"]


def test_light_client_installs_alone_and_streams(light_wheel, live_server, tmp_path,
                                                  random_hashes):
    from hashmatch.v1 import hashmatch_pb2 as pb

    listed = random_hashes(1, seed=5)[0].tobytes()
    with live_server.channel() as channel:
        from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
        pb_grpc.CasesStub(channel).SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(
            image=pb.ImageHashes(pdq=listed, quality=90))]))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(light_wheel)], check=True)
    done = subprocess.run([python, "-c", PROBE, live_server.target, live_server.api_key,
                           listed.hex()], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["present: []", "found: [('a', 0)]"]
