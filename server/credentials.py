"""Secrets the server hands out: random case ids, PINs and platform API keys, and how each is kept.

A PIN is stored only as a salted scrypt hash (slow on purpose: a stolen database does not give
the PINs away); an API key as SHA-256 (keys are long random strings, so a fast hash suffices and
lets every request be checked cheaply). Nothing here is ever logged.
"""
import base64
import hashlib
import hmac
import secrets
from typing import NamedTuple

CASE_ID_BYTES = 10       # 80 random bits: guessing a case id is hopeless
PIN_DIGITS = 8           # with the failed-attempt lock, a guess succeeds with p <= 1e-7
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_case_id() -> str:
    """16 characters of lower-case base32 (no padding), e.g. 'k3x9...': random, not sequential."""
    return base64.b32encode(secrets.token_bytes(CASE_ID_BYTES)).decode().lower()


def normalise_case_id(case_id: str) -> str:
    """The case id as issued, from what a person typed: spaces and dashes dropped, lower case.
    Variants of one id then count as attempts on the same case, never as other cases."""
    return "".join(case_id.split()).replace("-", "").lower()


def normalise_pin(pin: str) -> str:
    """The PIN without the spaces or dashes a person may type between its digits."""
    return "".join(pin.split()).replace("-", "")


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


class NewCase(NamedTuple):
    case_id: str
    pin: str
    pin_salt: bytes
    pin_hash: bytes


def new_case() -> NewCase:
    """A fresh case id and PIN with the PIN's salted hash (the slow part: about 50 ms)."""
    pin = new_pin()
    return NewCase(new_case_id(), pin, *hash_pin(pin))


def new_api_key() -> str:
    return "hm_" + secrets.token_urlsafe(32)


def hash_pin(pin: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """(salt, scrypt hash); a fresh 16-byte salt unless one is given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return salt, digest


def pin_matches(pin: str, salt: bytes, stored: bytes) -> bool:
    return hmac.compare_digest(hash_pin(pin, salt)[1], stored)


def key_digest(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()
