"""The index tests can fail: with the compiled tables rigged to drop every hit, each test that
names the tables fails; and an exception inside a search's worker thread reaches Python as an
exception instead of ending the process.

Both run in a subprocess with HASHMATCH_TEST_FAULT set (core/kernels.py reads it at import),
so the fault never touches this process.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]  # the suite's root: conftest imports bench.pgcluster from it


def run(args, fault: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HASHMATCH_TEST_FAULT=fault)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)


def test_every_tables_test_fails_when_the_tables_drop_their_hits():
    done = run(["-m", "pytest", "tests/test_index.py", "-k", "tables", "-q", "-rfEp",
                "-p", "no:cacheprovider"], "drop_hits")
    failed = {line.split()[1].split(" ")[0] for line in done.stdout.splitlines()
              if line.startswith("FAILED")}
    passed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("PASSED")}
    # Thresholds above 63 are scanned by design (the 16 slots serve at most 63).
    scanned = {f"tests/test_index.py::test_matches_oracle_at_every_threshold[{t}-tables]"
               for t in (64, 100, 256)}
    assert passed == scanned, done.stdout[-3000:]
    assert len(failed) >= 9 and all("tables" in name for name in failed), done.stdout[-3000:]


def test_an_exception_in_a_worker_thread_reaches_the_caller():
    script = """
import numpy as np
from hashmatch.core import HashIndex, _kernels, kernels
rng = np.random.default_rng(0)
words = rng.integers(0, 2**63, size=(40000, 4), dtype=np.uint64)
index = HashIndex(threads=0)
index.add(np.arange(len(words)), words)
for search in (lambda: index.search(words[:512], 31),
               lambda: kernels.range_search(words[:512], words, 31, threads=0)):
    try:
        search()
    except MemoryError as exc:
        print("raised", exc)
_kernels.set_test_fault("none")
print("still serving", len(index.search(words[:512], 31)))
"""
    done = run(["-c", script], "throw_in_worker")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["raised std::bad_alloc"] * 2 + ["still serving 512"]


def test_searches_share_one_pool_of_threads():
    """However many callers search at once with threads=0, the kernels add one pool of
    hardware_threads() - 1 threads, started once and kept (not threads per call)."""
    script = """
import os, threading, time
import numpy as np
from hashmatch.core import HashIndex, _kernels
count = lambda: len(os.listdir("/proc/self/task"))
before = count()
words = np.random.default_rng(0).integers(0, 2**63, size=(40000, 4), dtype=np.uint64)
index = HashIndex(threads=0)
index.add(np.arange(len(words)), words)  # builds the tables on the pool
peak, done = [0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], count())
def search():
    for _ in range(10):
        index.search(words[:256], 31)
callers = [threading.Thread(target=search) for _ in range(6)]
watcher = threading.Thread(target=watch)
watcher.start()
for t in callers:
    t.start()
for t in callers:
    t.join()
done.set()
watcher.join()
for _ in range(300):  # a joined thread may linger a moment before the OS removes it
    if count() - before < _kernels.hardware_threads():
        break
    time.sleep(0.01)
print(count() - before, peak[0] - before, _kernels.hardware_threads())
"""
    done = run(["-c", script], "")
    assert done.returncode == 0, done.stderr[-2000:]
    kept, peak, hardware = map(int, done.stdout.split())
    assert kept == hardware - 1
    assert peak <= (hardware - 1) + 6 + 1  # the pool, the callers, the watcher
