"""Protobuf wire bytes for many small messages at once, built with numpy (used by convert.py).

A match answer holds one `Match` a hit. Making them one pb.Match at a time cost about 2-4 us a
hit in Python, more than the rest of the server's work on a batch outside the index; encoding
all hits as numpy arrays and letting upb parse the bytes (MergeFromString) gives the same
message for a small share of that. Only what Match's PDQ and MD5 hits need is covered: varint
fields (integers, enums, bools) numbered 1..15, and messages under 128 bytes (one length byte).
"""
import numpy as np

_SHIFTS = np.arange(0, 64, 7, dtype=np.uint64)  # the 10 groups of 7 bits of a uint64
_GROUPS = np.arange(len(_SHIFTS))
_WIRE_VARINT, _WIRE_LEN = 0, 2
MAX_COLUMNS = 11      # 11 fields x (1 tag byte + at most 10 varint bytes) = 121 < 128


def repeated_message(number: int, fields: list[tuple[int, np.ndarray]]) -> bytes:
    """The wire bytes of repeated message field `number` holding n messages, message i having
    each varint field (field number, values[i]) of `fields` (arrays of n non-negative integers
    or bools). Byte for byte what protobuf writes for the same messages: fields in the order
    given, a zero left out as proto3 does."""
    if not 1 <= len(fields) <= MAX_COLUMNS or not all(1 <= f <= 15 for f, _ in fields):
        raise ValueError(f"1..{MAX_COLUMNS} fields numbered 1..15, got {[f for f, _ in fields]}")
    values = np.stack([np.asarray(v).astype(np.uint64) for _, v in fields], axis=1)  # [n, f]
    n, f = values.shape
    # Only as many 7-bit groups as the largest value needs (ids below 2**35: 5, not 10).
    g = max(1, -(-int(values.max(initial=0)).bit_length() // 7))
    groups = values[:, :, None] >> _SHIFTS[:g]                                       # [n, f, g]
    length = np.maximum(np.count_nonzero(groups, axis=2), 1)                         # [n, f]
    present = values != 0
    # One row a message: the field's tag and length byte, then 1 + g bytes a field (its tag
    # and varint groups, each with the continuation bit while more follow), and what to keep.
    body = np.empty((n, f, 1 + g), np.uint8)
    body[:, :, 0] = np.array([number << 3 | _WIRE_VARINT for number, _ in fields], np.uint8)
    body[:, :, 1:] = groups & 0x7F
    body[:, :, 1:] |= (_GROUPS[:g] < (length - 1)[:, :, None]).astype(np.uint8) << 7
    keep = np.empty(body.shape, bool)
    keep[:, :, 0] = present
    keep[:, :, 1:] = (_GROUPS[:g] < length[:, :, None]) & present[:, :, None]
    rows = np.empty((n, 2 + body[0].size), np.uint8)
    rows[:, 0] = number << 3 | _WIRE_LEN
    rows[:, 1] = np.count_nonzero(keep.reshape(n, -1), axis=1)
    rows[:, 2:] = body.reshape(n, -1)
    mask = np.ones(rows.shape, bool)
    mask[:, 2:] = keep.reshape(n, -1)
    return rows[mask].tobytes()
