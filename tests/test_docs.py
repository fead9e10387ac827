"""The client-library snippet in docs/WALKTHROUGH.md runs as written against a real server."""
import os
import pathlib
import shutil
import subprocess
import sys

from fidelity_table import SHARED

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path: pathlib.Path) -> list[str]:
    text = path.read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_walkthrough_client_snippet_runs_as_written(live_server, tmp_path):
    snippet = python_blocks(ROOT / "docs" / "WALKTHROUGH.md")[0]
    assert "submit_case" in snippet and "StreamingMatcher(client" in snippet
    photo = SHARED / "conformance" / "images" / "reg-test-input" / "dih" / "bridge-1-original.jpg"
    shutil.copy(photo, tmp_path / "IMG_0001.jpg")
    env = dict(os.environ, HASHMATCH_SERVER=live_server.target,
               HASHMATCH_API_KEY=live_server.api_key)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["active", "True 0", "upload-1 True", "INVALID_ARGUMENT"]
