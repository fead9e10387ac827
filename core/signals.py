"""Hash sizes and signal kinds, defined once for the core, the server and the clients.

A signal is what a hash was made from: a photo's PDQ hash, a file's MD5, or the PDQ hashes of
a video's frames (vPDQ). The numbers are those of hashmatch.v1.SignalType on the wire, so
convert.py and the clients map them one to one.
"""
PDQ_BYTES = 32   # a PDQ hash: 256 bits
MD5_BYTES = 16   # an MD5 digest: 128 bits

SIGNAL_PDQ, SIGNAL_MD5, SIGNAL_VPDQ = 1, 2, 3
SIGNAL_NAMES = {SIGNAL_PDQ: "pdq", SIGNAL_MD5: "md5", SIGNAL_VPDQ: "vpdq"}
HASH_BYTES = {SIGNAL_PDQ: PDQ_BYTES, SIGNAL_MD5: MD5_BYTES, SIGNAL_VPDQ: PDQ_BYTES}
