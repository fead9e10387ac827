"""hashmatch.core: the matching library (NumPy in, NumPy out). Imports no gRPC, Pillow or PyAV."""
from hashmatch.core.index import DEFAULT_THRESHOLD, HashIndex
from hashmatch.core.kernels import backend_name
from hashmatch.core.md5index import Md5Index

__all__ = ["HashIndex", "DEFAULT_THRESHOLD", "Md5Index", "backend_name"]

from hashmatch.core.pdq import pdq_hash  # noqa: E402  (PDQ hashing, appended by the pdq area)

__all__ += ["pdq_hash"]
