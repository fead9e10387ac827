"""hashmatch.core: the matching library (NumPy in, NumPy out). Imports no gRPC, Pillow or PyAV."""
from hashmatch.core.index import DEFAULT_THRESHOLD, HashIndex

__all__ = ["HashIndex", "DEFAULT_THRESHOLD"]
