"""Case writes: commit to the store, then catch the follower up to the commit before answering.

The store's transaction orders the write in the change log; the follower (the one feed of the
in-memory list) applies it, so a withdrawn case stops matching before WithdrawCase returns.
PINs are hashed and checked (scrypt, slow on purpose) before any transaction or lock, so case
writes do not queue behind each other's PIN work.
"""
import logging

from hashmatch.server import credentials
from hashmatch.server.audit import case_ref
from hashmatch.server.errors import StoreUnavailable
from hashmatch.server.follower import Follower
from hashmatch.server.listing import ListState
from hashmatch.server.media import Image, Video
from hashmatch.server.store import CaseStatus, Store, SubmittedCase

log = logging.getLogger("hashmatch.server")


class ListKeeper:
    def __init__(self, store: Store, state: ListState, follower: Follower | None = None):
        self.store, self.state = store, state
        self.follower = follower or Follower(store, state)

    def load(self) -> int:
        """Loads the whole list from the store; returns the number of PDQ hashes loaded."""
        return self.follower.load()

    def submit_case(self, media: list[Image | Video]) -> SubmittedCase:
        case = self.store.submit_case(media, credentials.new_case())
        try:
            self.follower.catch_up(case.sequence)
        except StoreUnavailable:
            # Committed, so the caller must get its PIN; the follower's timer applies it later.
            log.warning("case committed but not applied yet", extra={"fields": {
                "sequence": case.sequence}})
        return case

    def withdraw_case(self, case_id: str, pin: str) -> int:
        case_id, pin = _typed(case_id, pin)
        self.store.check_pin(case_id, pin)
        sequence = self.store.remove_case(case_id)
        self.follower.catch_up(sequence)
        # Named as the audit log names it: the log must not list live case ids.
        log.info("case withdrawn", extra={"fields": {"case": case_ref(case_id),
                                                     "sequence": sequence}})
        return sequence

    def case_status(self, case_id: str, pin: str) -> CaseStatus:
        return self.store.case_status(*_typed(case_id, pin))


def _typed(case_id: str, pin: str) -> tuple[str, str]:
    """A case id and PIN as the person typed them, in the form they were issued."""
    return credentials.normalise_case_id(case_id), credentials.normalise_pin(pin)
