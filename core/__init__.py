"""hashmatch.core: the matching library (NumPy in, NumPy out). Imports no gRPC, Pillow or PyAV."""
from hashmatch.core.index import DEFAULT_THRESHOLD, HashIndex

__all__ = ["HashIndex", "DEFAULT_THRESHOLD"]

from hashmatch.core.pdq import pdq_hash  # noqa: E402  (PDQ hashing, appended by the pdq area)

__all__ += ["pdq_hash"]
