"""Platforms, their roles and their API keys over time: add, rotate, revoke, change roles.

A platform may hold several keys (`platform_keys`): rotation issues a new one and lets the old
ones run until the end of a grace period; revocation ends keys at once. Keys are stored only as
SHA-256. Every change to a key or a role is a change-log row (OP_KEYS, which carries the
platform's id, never key material) written in the same transaction as the change and its audit
row: every server's follower applies it by dropping its key cache (access.Authenticator), so a
revoked key is refused everywhere within the follower's poll interval. Adding a platform logs
nothing: a key no server has seen is not in any cache.

A mixin of Store (store.py): it uses the store's `_db` and `_take`.
"""
import dataclasses
import time

from hashmatch.server import audit, credentials
from hashmatch.server.errors import InvalidRequest, NotFound

# A change-log op (beside store.OP_ADD/OP_REMOVE = 1/2 and core.holds' 3..5): keys or roles of
# the platform whose id is the row's first_entry changed. Lists and mirrors ignore it.
OP_KEYS = 6
DEFAULT_GRACE_S = 86400     # how long the keys a rotation replaces stay valid (24 h)
MAX_GRACE_S = 90 * 86400
MAX_NAME_CHARS = 100
# What a platform API key may do. 'match': Matching and ListInfo; 'replicate': Replication
# (Sync, VerifyCopy); 'feedback': Feedback; 'admin': Review and Admin.
ROLES = ("match", "feedback", "replicate", "admin")
DEFAULT_ROLES = ("match",)
UNKNOWN, EXPIRED, REVOKED = "unknown API key", "expired API key", "revoked API key"


@dataclasses.dataclass(frozen=True)
class KeyCheck:
    """What the store says about a key: the platform and roles, or why it is refused."""
    name: str = ""
    roles: frozenset[str] = frozenset()
    expires: int | None = None     # unix seconds; None: never
    refused: str = ""              # UNKNOWN, EXPIRED, REVOKED; "" when the key is good


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """One key, without its material: `id` names it to `revoke_keys`."""
    id: int
    created: int
    expires: int | None
    revoked: int | None

    def state(self, now: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "valid"


@dataclasses.dataclass(frozen=True)
class PlatformInfo:
    name: str
    roles: tuple[str, ...]
    created: int
    keys: tuple[KeyInfo, ...]


def check_roles(roles) -> tuple[str, ...]:
    """The roles in ROLES order; InvalidRequest naming any role that is not one of ROLES."""
    roles = {r.strip() for r in roles if r.strip()}
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        raise InvalidRequest(f"roles must be a non-empty subset of {', '.join(ROLES)}; got "
                             f"{', '.join(unknown) or 'none'}")
    return tuple(r for r in ROLES if r in roles)


def check_grace(grace_s: float) -> int:
    """Whole seconds of grace; InvalidRequest outside 0..MAX_GRACE_S."""
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise InvalidRequest(f"grace must be 0..{MAX_GRACE_S} seconds (90 days), got {grace_s:g}")
    return int(grace_s)


class PlatformKeys:
    """The store's platform methods. `actor` names who asks, for the audit log."""

    def add_platform(self, name: str, roles=DEFAULT_ROLES, actor: str = "operator") -> str:
        """Registers a platform with `roles` (from ROLES); returns its API key, which is stored
        only as SHA-256."""
        if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise InvalidRequest(f"platform name must be 1..{MAX_NAME_CHARS} printable "
                                 f"characters, not blank; got {name[:MAX_NAME_CHARS + 1]!r}")
        roles = check_roles(roles)
        key, now = credentials.new_api_key(), int(time.time())
        digest = credentials.key_digest(key)
        try:
            with self._db.transaction(write=True) as tx:
                tx.execute("INSERT INTO platforms (name, key_sha256, created, roles) "
                           "VALUES (?,?,?,?)", (name, digest, now, ",".join(roles)))
                tx.execute("INSERT INTO platform_keys (platform, key_sha256, created) "
                           "VALUES (?,?,?)", (name, digest, now))
                audit.write(tx, actor, "platform.add", name, f"roles {','.join(roles)}", now)
        except self._db.duplicate:
            raise InvalidRequest(f"platform {name!r} already exists") from None
        return key

    def key_check(self, api_key: str) -> KeyCheck:
        """The platform and roles of a key, or why it is refused (unknown, expired, revoked)."""
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT p.name, p.roles, k.expires, k.revoked FROM platform_keys k "
                             "JOIN platforms p ON p.name = k.platform WHERE k.key_sha256=?",
                             (credentials.key_digest(api_key),)).fetchone()
        if not row:
            return KeyCheck(refused=UNKNOWN)
        name, roles, expires, revoked = row
        if revoked is not None:
            return KeyCheck(name, refused=REVOKED)
        if expires is not None and expires <= time.time():
            return KeyCheck(name, refused=EXPIRED)
        return KeyCheck(name, frozenset(filter(None, roles.split(","))), expires)

    def platforms(self) -> list[PlatformInfo]:
        """Every platform with its roles and keys (oldest first), by name."""
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT name, roles, created FROM platforms ORDER BY name").fetchall()
            keys = tx.execute("SELECT platform, id, created, expires, revoked FROM platform_keys "
                              "ORDER BY id").fetchall()
        held: dict[str, list[KeyInfo]] = {}
        for platform, *key in keys:
            held.setdefault(platform, []).append(KeyInfo(*key))
        return [PlatformInfo(name, tuple(filter(None, roles.split(","))), created,
                             tuple(held.get(name, ()))) for name, roles, created in rows]

    def rotate_key(self, name: str, grace_s: float = DEFAULT_GRACE_S,
                   actor: str = "operator") -> tuple[str, int, int]:
        """Issues a new key; the platform's keys valid now stay valid `grace_s` seconds more
        (0: they end now; a key that would expire sooner keeps its expiry). Returns (the new
        key, its id, the sequence of the change)."""
        grace = check_grace(grace_s)
        key, now = credentials.new_api_key(), int(time.time())
        digest = credentials.key_digest(key)
        with self._db.transaction(write=True) as tx:
            platform = self._platform_id(tx, name)
            ended = tx.execute(
                "UPDATE platform_keys SET expires = ? WHERE platform = ? AND revoked IS NULL "
                "AND (expires IS NULL OR expires > ?) RETURNING id",
                (now + grace, name, now + grace)).fetchall()
            (key_id,) = tx.execute("INSERT INTO platform_keys (platform, key_sha256, created) "
                                   "VALUES (?,?,?) RETURNING id", (name, digest, now)).fetchone()
            tx.execute("UPDATE platforms SET key_sha256=? WHERE name=?", (digest, name))
            audit.write(tx, actor, "platform.rotate", name,
                        f"new key {key_id}; key(s) {_ids(ended)} end after {grace} s", now)
            sequence = self._log_keys(tx, platform, now)
        return key, key_id, sequence

    def revoke_keys(self, name: str, key_id: int | None = None,
                    actor: str = "operator") -> tuple[int, int]:
        """Ends the platform's key `key_id` (None: all its keys) now. Returns (keys revoked,
        the sequence of the change): keys already revoked or expired are left as they are, and
        (0, 0) means none was left to revoke."""
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            platform = self._platform_id(tx, name)
            if key_id is not None and not tx.execute(
                    "SELECT 1 FROM platform_keys WHERE id=? AND platform=?",
                    (key_id, name)).fetchone():
                raise NotFound(f"platform {name!r} has no key {key_id}; `hashmatch platform "
                               "list` shows its key ids")
            which, params = ("", ()) if key_id is None else (" AND id=?", (key_id,))
            revoked = tx.execute("UPDATE platform_keys SET revoked=? WHERE platform=? AND "
                                 "revoked IS NULL AND (expires IS NULL OR expires > ?)"
                                 + which + " RETURNING id", (now, name, now, *params)).fetchall()
            if not revoked:
                return 0, 0
            audit.write(tx, actor, "platform.revoke", name, f"key(s) {_ids(revoked)}", now)
            return len(revoked), self._log_keys(tx, platform, now)

    def set_roles(self, name: str, roles, actor: str = "operator") -> tuple[tuple[str, ...], int]:
        """Replaces the platform's roles; returns (roles, the sequence of the change)."""
        roles, now = check_roles(roles), int(time.time())
        with self._db.transaction(write=True) as tx:
            platform = self._platform_id(tx, name)
            tx.execute("UPDATE platforms SET roles=? WHERE name=?", (",".join(roles), name))
            audit.write(tx, actor, "platform.roles", name, f"roles {','.join(roles)}", now)
            return roles, self._log_keys(tx, platform, now)

    @staticmethod
    def _platform_id(tx, name: str) -> int:
        row = tx.execute("SELECT id FROM platforms WHERE name=? {for_update}", (name,)).fetchone()
        if not row:
            raise NotFound(f"no platform {name!r}")
        return row[0]

    def _log_keys(self, tx, platform: int, now: int) -> int:
        seq = self._take(tx, "next_seq", 1)
        tx.execute("INSERT INTO changes VALUES (?,1,?,?,?)", (seq, OP_KEYS, platform, now))
        return seq


def _ids(rows) -> str:
    return ",".join(str(r[0]) for r in rows) or "none"
