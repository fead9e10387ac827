"""The whole story through the real `hashmatch` command, each step a separate process.

An operator starts the server and registers a platform; a person submits three photos and
gets a case id and PIN; the platform's re-encoded and resized copies match while unrelated
photos do not; the case survives `kill -9` of the server; withdrawing stops the matches at
once; and bad inputs (missing file, a text file named .jpg, a wrong API key, a wrong PIN) each
give a clear message and a non-zero exit.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import natural_photo

CLI = [sys.executable, "-m", "hashmatch.clients.cli"]
CONSOLE_SCRIPT = Path(sys.executable).with_name("hashmatch")


def hashmatch(*argv, env=None, command=CLI, check_code=None):
    """Runs the command; returns (exit code, JSON lines if --json else stdout, stderr)."""
    result = subprocess.run([*command, *map(str, argv)], capture_output=True, text=True,
                            timeout=120, env=env)
    out = result.stdout
    if "--json" in argv:
        out = [json.loads(line) for line in out.splitlines()]
    if check_code is not None:
        assert result.returncode == check_code, result.stderr
    return result.returncode, out, result.stderr


class ServerProcess:
    """`hashmatch serve` in a subprocess on a free port, on the given SQLite file."""

    def __init__(self, db: Path, workdir: Path):
        self.port_file = workdir / f"port-{time.monotonic_ns()}"
        self.log = open(workdir / "server.log", "a")
        self.process = subprocess.Popen(
            [*CLI, "serve", "--db", db, "--listen", "127.0.0.1:0", "--port-file",
             self.port_file], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            assert self.process.poll() is None, "server exited; see server.log"
            assert time.monotonic() < deadline, "server did not start within 60 s"
            time.sleep(0.05)
        self.target = f"127.0.0.1:{self.port_file.read_text().strip()}"

    def kill(self, sig=signal.SIGKILL) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "phone").mkdir()
    (tmp_path / "uploads").mkdir()
    for seed in range(3):
        natural_photo(seed).save(tmp_path / "phone" / f"IMG_{seed}.png")
    original = natural_photo(0)
    original.save(tmp_path / "uploads" / "reencoded.jpg", quality=60)
    resized = natural_photo(1)
    resized.resize((resized.width // 2, resized.height // 2)).save(
        tmp_path / "uploads" / "resized.jpg", quality=90)
    for seed in (10, 11):
        natural_photo(seed).save(tmp_path / "uploads" / f"holiday{seed}.jpg", quality=85)
    (tmp_path / "uploads" / "notes.jpg").write_text("shopping list: milk, bread")
    return tmp_path


def test_protect_match_survive_crash_and_withdraw(workdir):
    db = workdir / "hashmatch.db"
    server = ServerProcess(db, workdir)
    try:
        _story(workdir, db, server)
    finally:
        if server.process.poll() is None:
            server.kill()


def _story(workdir, db, server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHMATCH_")}
    env["HASHMATCH_SERVER"] = server.target

    _, added, _ = hashmatch("platform", "add", "videosite", "--db", db, "--json", check_code=0)
    api_key = added[0]["api_key"]

    phone = sorted((workdir / "phone").iterdir())
    _, submitted, _ = hashmatch("submit", "--json", *phone, env=env, check_code=0)
    case_id, pin, entries = (submitted[0]["case_id"], submitted[0]["pin"],
                             submitted[0]["entry_ids"])
    assert len(entries) == 3

    uploads = workdir / "uploads"
    platform = ["--api-key", api_key]
    checked = [uploads / "reencoded.jpg", uploads / "resized.jpg", uploads / "holiday10.jpg",
               uploads / "holiday11.jpg"]

    def matched_entries():
        _, lines, _ = hashmatch("match", "--json", *platform, *checked, env=env, check_code=0)
        assert [line["path"] for line in lines] == [str(p) for p in checked]
        return [sorted({m["entry_id"] for m in line["matches"]}) for line in lines]

    assert matched_entries() == [[entries[0]], [entries[1]], [], []]

    # The command installed as a console script says the same, for people.
    if CONSOLE_SCRIPT.exists():
        _, text, _ = hashmatch("match", *platform, checked[0], checked[2], env=env,
                               command=[str(CONSOLE_SCRIPT)], check_code=0)
        lines = text.splitlines()
        assert lines[0].startswith(f"{checked[0]}: MATCH entry {entries[0]} (pdq distance ")
        assert lines[1] == f"{checked[2]}: no match"

    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    server = ServerProcess(db, workdir)
    env["HASHMATCH_SERVER"] = server.target
    try:
        _, status, _ = hashmatch("status", "--json", case_id, "--pin", pin, env=env,
                                 check_code=0)
        assert (status[0]["state"], status[0]["image_count"]) == ("active", 3)
        assert matched_entries() == [[entries[0]], [entries[1]], [], []]

        _bad_inputs(env, uploads, platform, case_id, pin)

        env_with_pin = {**env, "HASHMATCH_PIN": pin}
        _, out, _ = hashmatch("withdraw", case_id, env=env_with_pin, check_code=0)
        assert "withdrawn" in out and pin not in out
        assert matched_entries() == [[], [], [], []]
        _, status, _ = hashmatch("status", "--json", case_id, env=env_with_pin, check_code=0)
        assert status[0]["state"] == "withdrawn"
    finally:
        assert server.kill(signal.SIGTERM) == 0, "SIGTERM should stop the server cleanly"


def _bad_inputs(env, uploads, platform, case_id, pin):
    code, lines, err = hashmatch("match", "--json", *platform, uploads / "missing.jpg",
                                 uploads / "notes.jpg", uploads / "reencoded.jpg", env=env)
    assert code == 1
    assert f"{uploads / 'missing.jpg'}: no such file" in err
    assert f"{uploads / 'notes.jpg'}:" in err
    assert [line.get("matched") for line in lines] == [None, None, True]

    code, _, err = hashmatch("match", "--api-key", "hm_not-a-real-key", uploads / "resized.jpg",
                             env=env)
    assert code == 1 and "UNAUTHENTICATED" in err and "API key" in err

    wrong_pin = "0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin)
    code, out, err = hashmatch("status", case_id, "--pin", wrong_pin, env=env)
    assert code == 1 and "PERMISSION_DENIED" in err and out == ""
    assert wrong_pin not in err and pin not in err

    code, _, err = hashmatch("status", case_id, env=env)  # no PIN and no terminal to ask in
    assert code == 2 and "PIN" in err
