"""Hash sizes and signal kinds are defined once (hashmatch.core.signals) and agree with the wire
and the compiled modules; the client gets them without loading the compiled core."""
import subprocess
import sys

from hashmatch.core import _pdq, kernels, signals
from hashmatch.v1 import hashmatch_pb2 as pb


def test_signal_numbers_are_the_wire_numbers():
    for kind, name in signals.SIGNAL_NAMES.items():
        assert pb.SignalType.Value(f"SIGNAL_TYPE_{name.upper()}") == kind
    assert set(signals.HASH_BYTES) == set(signals.SIGNAL_NAMES)


def test_sizes_agree_with_the_compiled_modules():
    assert _pdq.HASH_BYTES == signals.PDQ_BYTES == kernels.HASH_WORDS * 8
    assert signals.MD5_BYTES == 16


def test_client_imports_no_compiled_core():
    probe = ("import sys, hashmatch.clients.client as c; "
             "print(sorted(m for m in sys.modules if m.startswith('hashmatch.core')), "
             "'numba' in sys.modules, c.HASH_BYTES[c.SIGNAL_TYPES['md5']])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['hashmatch.core',", "'hashmatch.core.signals']", "False",
                                   "16"]
