"""The built wheel, not only the source tree, must work: names under hashmatch.*, the compiled
modules and the generated API inside it, and the `hashmatch` console script declared."""
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("hashmatch-*.whl")
    return path


def test_wheel_holds_only_namespaced_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("hashmatch-")}
    assert top == {"hashmatch"}, top
    assert any(n.startswith("hashmatch/core/_kernels.") and n.endswith(".so") for n in names)
    assert any(n.startswith("hashmatch/core/_pdq.") and n.endswith(".so") for n in names)
    assert "hashmatch/v1/hashmatch.proto" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hashmatch = hashmatch.clients.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


def test_installed_wheel_imports_and_matches(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True)
    probe = (
        "import numpy as np, hashmatch.core as core, hashmatch.v1.hashmatch_pb2 as pb;"
        "import hashmatch.server, hashmatch.clients.cli;"
        "assert core.__file__.startswith(%r), core.__file__;"
        "i = core.HashIndex(); h = np.arange(64, dtype=np.uint8).reshape(2, 32);"
        "i.add(np.array([7, 9], np.uint64), h);"
        "print(i.search(h[:1], 0).ids.tolist())" % str(target)
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[7]"
