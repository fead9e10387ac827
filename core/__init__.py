"""hashmatch.core: the matching library (NumPy in, NumPy out). Imports no gRPC, Pillow or PyAV.

Names load on first use, so `hashmatch.core.signals` (sizes and kinds, pure Python) can be
imported by clients without loading the compiled kernels or Numba.
"""
import importlib

_EXPORTS = {
    "HashIndex": "hashmatch.core.index", "DEFAULT_THRESHOLD": "hashmatch.core.index",
    "Md5Index": "hashmatch.core.md5index", "Hits": "hashmatch.core.hits",
    "backend_name": "hashmatch.core.kernels", "pdq_hash": "hashmatch.core.pdq",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hashmatch.core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
