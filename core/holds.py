"""Entries held back from matching and disputed entries: what the change log's state ops say.

One small table kept beside each copy of the list (a server's ListState, a ListMirror), fed
only by the change log, so every copy screens matches alike. The log ops (store.py):
OP_DISPUTE marks an entry disputed, OP_HOLD holds it back (quarantine: a flood or a suppression
hit), OP_REINSTATE clears both, OP_REMOVE forgets it. Writers publish new sorted arrays with one
attribute store; `screen` reads them once, so a search never sees half of a change and never
takes a lock. With nothing held or disputed it costs two length checks.
"""
import numpy as np

OP_REMOVE, OP_DISPUTE, OP_HOLD, OP_REINSTATE = 2, 3, 4, 5
STATE_OPS = (OP_DISPUTE, OP_HOLD, OP_REINSTATE)
_EMPTY = np.zeros(0, np.uint64)


class EntryHolds:
    def __init__(self, hold_disputed: bool = False):
        """hold_disputed: disputed entries stop matching too (else they match, flagged)."""
        self.hold_disputed = hold_disputed
        self.held: frozenset[int] = frozenset()
        self.disputed: frozenset[int] = frozenset()
        self._blocked, self._flagged = _EMPTY, _EMPTY

    def load(self, held, disputed) -> None:
        """Replaces both sets (a snapshot)."""
        self._publish({int(e) for e in held}, {int(e) for e in disputed})

    def apply(self, changes) -> None:
        """Applies change-log rows (seq, count, op, first_entry) in order; other ops are
        ignored here (they change the indexes)."""
        held, disputed = set(self.held), set(self.disputed)
        changed = False
        for _seq, count, op, first in changes:
            if op not in STATE_OPS and op != OP_REMOVE:
                continue
            for entry in range(int(first), int(first) + int(count)):
                if op == OP_DISPUTE:
                    disputed.add(entry)
                elif op == OP_HOLD:
                    held.add(entry)
                elif entry in held or entry in disputed:  # reinstated or removed
                    held.discard(entry)
                    disputed.discard(entry)
                else:
                    continue
                changed = True
        if changed:
            self._publish(held, disputed)

    def _publish(self, held: set, disputed: set) -> None:
        blocked = held | disputed if self.hold_disputed else held
        flagged = set() if self.hold_disputed else disputed - held
        self.held, self.disputed = frozenset(held), frozenset(disputed)
        self._blocked, self._flagged = _sorted(blocked), _sorted(flagged)

    def screen(self, entry_ids: np.ndarray):
        """(keep, disputed): boolean masks over `entry_ids`, or (None, None) when nothing is
        held or disputed."""
        blocked, flagged = self._blocked, self._flagged
        if not len(blocked) and not len(flagged):
            return None, None
        ids = np.asarray(entry_ids, np.uint64)
        keep = ~np.isin(ids, blocked) if len(blocked) else np.ones(len(ids), bool)
        disputed = np.isin(ids, flagged) if len(flagged) else np.zeros(len(ids), bool)
        return keep, disputed


def _sorted(entries: set) -> np.ndarray:
    return np.asarray(sorted(entries), np.uint64) if entries else _EMPTY
