"""Keeps the in-memory list in step with the store: commit first, then apply, in log order.

Every change goes through here: the store commits it (durable, sequence numbers assigned) and the
same rows are applied to `ListState` before the caller is answered, under one lock so the index
applies the change log in order. Withdrawn hashes stop matching before WithdrawCase returns.
PINs are hashed and checked (scrypt, slow on purpose) before that lock is taken, so case writes
do not queue behind each other's PIN work.
"""
import threading

from hashmatch.server import credentials

from hashmatch.server.listing import ListState
from hashmatch.server.media import Image, Video
from hashmatch.server.store import CaseStatus, Store, SubmittedCase


class ListKeeper:
    def __init__(self, store: Store, state: ListState):
        self.store, self.state = store, state
        self._order = threading.Lock()

    def load(self) -> int:
        """Loads the whole list from the store; returns the number of PDQ hashes loaded."""
        with self._order:
            rows = self.store.load_all()
            self.state.load(rows)
        return len(rows.image_ids) + len(rows.frame_ids)

    def submit_case(self, media: list[Image | Video]) -> SubmittedCase:
        new_case = credentials.new_case()
        with self._order:
            case = self.store.submit_case(media, new_case)
            self.state.apply_added(case.added)
        return case

    def withdraw_case(self, case_id: str, pin: str) -> int:
        self.store.check_pin(case_id, pin)
        with self._order:
            sequence, removed = self.store.remove_case(case_id)
            self.state.apply_removed(removed)
        return sequence

    def case_status(self, case_id: str, pin: str) -> CaseStatus:
        return self.store.case_status(case_id, pin)
