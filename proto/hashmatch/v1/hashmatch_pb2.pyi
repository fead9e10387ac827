from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignalType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNAL_TYPE_UNSPECIFIED: _ClassVar[SignalType]
    SIGNAL_TYPE_PDQ: _ClassVar[SignalType]
    SIGNAL_TYPE_MD5: _ClassVar[SignalType]
    SIGNAL_TYPE_VPDQ: _ClassVar[SignalType]

class CaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CASE_STATE_UNSPECIFIED: _ClassVar[CaseState]
    CASE_STATE_ACTIVE: _ClassVar[CaseState]
    CASE_STATE_WITHDRAWN: _ClassVar[CaseState]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_REMOVED: _ClassVar[Action]
    ACTION_NOT_VIOLATING: _ClassVar[Action]
    ACTION_NEEDS_REVIEW: _ClassVar[Action]
    ACTION_QUALITY_UNKNOWN: _ClassVar[Action]

class HeldReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HELD_REASON_UNSPECIFIED: _ClassVar[HeldReason]
    HELD_REASON_DISPUTED: _ClassVar[HeldReason]
    HELD_REASON_FLOOD: _ClassVar[HeldReason]
    HELD_REASON_SUPPRESSED: _ClassVar[HeldReason]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_REINSTATE: _ClassVar[Decision]
    DECISION_REMOVE: _ClassVar[Decision]
SIGNAL_TYPE_UNSPECIFIED: SignalType
SIGNAL_TYPE_PDQ: SignalType
SIGNAL_TYPE_MD5: SignalType
SIGNAL_TYPE_VPDQ: SignalType
CASE_STATE_UNSPECIFIED: CaseState
CASE_STATE_ACTIVE: CaseState
CASE_STATE_WITHDRAWN: CaseState
ACTION_UNSPECIFIED: Action
ACTION_REMOVED: Action
ACTION_NOT_VIOLATING: Action
ACTION_NEEDS_REVIEW: Action
ACTION_QUALITY_UNKNOWN: Action
HELD_REASON_UNSPECIFIED: HeldReason
HELD_REASON_DISPUTED: HeldReason
HELD_REASON_FLOOD: HeldReason
HELD_REASON_SUPPRESSED: HeldReason
DECISION_UNSPECIFIED: Decision
DECISION_REINSTATE: Decision
DECISION_REMOVE: Decision

class ImageHashes(_message.Message):
    __slots__ = ("md5", "pdq", "quality")
    MD5_FIELD_NUMBER: _ClassVar[int]
    PDQ_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    md5: bytes
    pdq: bytes
    quality: int
    def __init__(self, md5: _Optional[bytes] = ..., pdq: _Optional[bytes] = ..., quality: _Optional[int] = ...) -> None: ...

class VideoHashes(_message.Message):
    __slots__ = ("md5", "frame_pdqs", "frame_qualities")
    MD5_FIELD_NUMBER: _ClassVar[int]
    FRAME_PDQS_FIELD_NUMBER: _ClassVar[int]
    FRAME_QUALITIES_FIELD_NUMBER: _ClassVar[int]
    md5: bytes
    frame_pdqs: bytes
    frame_qualities: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, md5: _Optional[bytes] = ..., frame_pdqs: _Optional[bytes] = ..., frame_qualities: _Optional[_Iterable[int]] = ...) -> None: ...

class MediaHashes(_message.Message):
    __slots__ = ("image", "video")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    image: ImageHashes
    video: VideoHashes
    def __init__(self, image: _Optional[_Union[ImageHashes, _Mapping]] = ..., video: _Optional[_Union[VideoHashes, _Mapping]] = ...) -> None: ...

class SubmitCaseRequest(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _containers.RepeatedCompositeFieldContainer[MediaHashes]
    def __init__(self, media: _Optional[_Iterable[_Union[MediaHashes, _Mapping]]] = ...) -> None: ...

class SubmitCaseResponse(_message.Message):
    __slots__ = ("case_id", "pin", "entry_ids", "sequence")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    pin: str
    entry_ids: _containers.RepeatedScalarFieldContainer[int]
    sequence: int
    def __init__(self, case_id: _Optional[str] = ..., pin: _Optional[str] = ..., entry_ids: _Optional[_Iterable[int]] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetCaseStatusRequest(_message.Message):
    __slots__ = ("case_id", "pin")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    pin: str
    def __init__(self, case_id: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class GetCaseStatusResponse(_message.Message):
    __slots__ = ("case_id", "state", "image_count", "video_count", "created_unix", "withdrawn_unix", "items", "total", "summary")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_UNIX_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    state: CaseState
    image_count: int
    video_count: int
    created_unix: int
    withdrawn_unix: int
    items: _containers.RepeatedCompositeFieldContainer[ItemOutcome]
    total: ItemOutcome
    summary: str
    def __init__(self, case_id: _Optional[str] = ..., state: _Optional[_Union[CaseState, str]] = ..., image_count: _Optional[int] = ..., video_count: _Optional[int] = ..., created_unix: _Optional[int] = ..., withdrawn_unix: _Optional[int] = ..., items: _Optional[_Iterable[_Union[ItemOutcome, _Mapping]]] = ..., total: _Optional[_Union[ItemOutcome, _Mapping]] = ..., summary: _Optional[str] = ...) -> None: ...

class ItemOutcome(_message.Message):
    __slots__ = ("entry_id", "copies_found", "copies_removed", "last_found_unix", "last_removed_unix", "under_review")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    COPIES_FOUND_FIELD_NUMBER: _ClassVar[int]
    COPIES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LAST_FOUND_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_REMOVED_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNDER_REVIEW_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    copies_found: int
    copies_removed: int
    last_found_unix: int
    last_removed_unix: int
    under_review: bool
    def __init__(self, entry_id: _Optional[int] = ..., copies_found: _Optional[int] = ..., copies_removed: _Optional[int] = ..., last_found_unix: _Optional[int] = ..., last_removed_unix: _Optional[int] = ..., under_review: _Optional[bool] = ...) -> None: ...

class WithdrawCaseRequest(_message.Message):
    __slots__ = ("case_id", "pin")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    pin: str
    def __init__(self, case_id: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class WithdrawCaseResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class VideoMatchOptions(_message.Message):
    __slots__ = ("min_query_match_percent", "min_compared_match_percent", "frame_qualities")
    MIN_QUERY_MATCH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MIN_COMPARED_MATCH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FRAME_QUALITIES_FIELD_NUMBER: _ClassVar[int]
    min_query_match_percent: float
    min_compared_match_percent: float
    frame_qualities: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, min_query_match_percent: _Optional[float] = ..., min_compared_match_percent: _Optional[float] = ..., frame_qualities: _Optional[_Iterable[int]] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("sequence", "signal_type", "hashes", "threshold", "video", "include_video_frames")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VIDEO_FRAMES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    signal_type: SignalType
    hashes: bytes
    threshold: int
    video: VideoMatchOptions
    include_video_frames: bool
    def __init__(self, sequence: _Optional[int] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., hashes: _Optional[bytes] = ..., threshold: _Optional[int] = ..., video: _Optional[_Union[VideoMatchOptions, _Mapping]] = ..., include_video_frames: _Optional[bool] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("position", "entry_id", "distance", "signal_type", "query_match_percent", "compared_match_percent", "video_frame", "disputed", "same_hash_entries")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUERY_MATCH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    COMPARED_MATCH_PERCENT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FRAME_FIELD_NUMBER: _ClassVar[int]
    DISPUTED_FIELD_NUMBER: _ClassVar[int]
    SAME_HASH_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    position: int
    entry_id: int
    distance: int
    signal_type: SignalType
    query_match_percent: float
    compared_match_percent: float
    video_frame: bool
    disputed: bool
    same_hash_entries: int
    def __init__(self, position: _Optional[int] = ..., entry_id: _Optional[int] = ..., distance: _Optional[int] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., query_match_percent: _Optional[float] = ..., compared_match_percent: _Optional[float] = ..., video_frame: _Optional[bool] = ..., disputed: _Optional[bool] = ..., same_hash_entries: _Optional[int] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("sequence", "matches", "error", "list_sequence", "truncated_positions")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LIST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    error: _status_pb2.Status
    list_sequence: int
    truncated_positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence: _Optional[int] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., list_sequence: _Optional[int] = ..., truncated_positions: _Optional[_Iterable[int]] = ...) -> None: ...

class GetListInfoRequest(_message.Message):
    __slots__ = ("include_digest",)
    INCLUDE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    include_digest: bool
    def __init__(self, include_digest: _Optional[bool] = ...) -> None: ...

class SignalCount(_message.Message):
    __slots__ = ("signal_type", "count")
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    signal_type: SignalType
    count: int
    def __init__(self, signal_type: _Optional[_Union[SignalType, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetListInfoResponse(_message.Message):
    __slots__ = ("counts", "last_sequence", "default_threshold", "max_threshold", "max_batch_hashes", "max_in_flight", "kernel_backend", "video_frame_count", "applied_sequence", "head_sequence", "list_digest", "digest_rows", "resume_floor_sequence", "list_epoch")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_HASHES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    KERNEL_BACKEND_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FLOOR_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[SignalCount]
    last_sequence: int
    default_threshold: int
    max_threshold: int
    max_batch_hashes: int
    max_in_flight: int
    kernel_backend: str
    video_frame_count: int
    applied_sequence: int
    head_sequence: int
    list_digest: str
    digest_rows: int
    resume_floor_sequence: int
    list_epoch: int
    def __init__(self, counts: _Optional[_Iterable[_Union[SignalCount, _Mapping]]] = ..., last_sequence: _Optional[int] = ..., default_threshold: _Optional[int] = ..., max_threshold: _Optional[int] = ..., max_batch_hashes: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., kernel_backend: _Optional[str] = ..., video_frame_count: _Optional[int] = ..., applied_sequence: _Optional[int] = ..., head_sequence: _Optional[int] = ..., list_digest: _Optional[str] = ..., digest_rows: _Optional[int] = ..., resume_floor_sequence: _Optional[int] = ..., list_epoch: _Optional[int] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("resume_token", "signal_types")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPES_FIELD_NUMBER: _ClassVar[int]
    resume_token: bytes
    signal_types: _containers.RepeatedScalarFieldContainer[SignalType]
    def __init__(self, resume_token: _Optional[bytes] = ..., signal_types: _Optional[_Iterable[_Union[SignalType, str]]] = ...) -> None: ...

class ListRows(_message.Message):
    __slots__ = ("image_ids", "image_hashes", "video_entries", "video_frame_counts", "frame_hashes", "md5_ids", "md5s")
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HASHES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FRAME_COUNTS_FIELD_NUMBER: _ClassVar[int]
    FRAME_HASHES_FIELD_NUMBER: _ClassVar[int]
    MD5_IDS_FIELD_NUMBER: _ClassVar[int]
    MD5S_FIELD_NUMBER: _ClassVar[int]
    image_ids: bytes
    image_hashes: bytes
    video_entries: bytes
    video_frame_counts: bytes
    frame_hashes: bytes
    md5_ids: bytes
    md5s: bytes
    def __init__(self, image_ids: _Optional[bytes] = ..., image_hashes: _Optional[bytes] = ..., video_entries: _Optional[bytes] = ..., video_frame_counts: _Optional[bytes] = ..., frame_hashes: _Optional[bytes] = ..., md5_ids: _Optional[bytes] = ..., md5s: _Optional[bytes] = ...) -> None: ...

class SnapshotBegin(_message.Message):
    __slots__ = ("sequence", "rows")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    rows: int
    def __init__(self, sequence: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: ListRows
    def __init__(self, rows: _Optional[_Union[ListRows, _Mapping]] = ...) -> None: ...

class SnapshotEnd(_message.Message):
    __slots__ = ("sequence", "digest_rows", "list_digest", "resume_token", "held_entries", "disputed_entries")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    LIST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HELD_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DISPUTED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    digest_rows: int
    list_digest: str
    resume_token: bytes
    held_entries: bytes
    disputed_entries: bytes
    def __init__(self, sequence: _Optional[int] = ..., digest_rows: _Optional[int] = ..., list_digest: _Optional[str] = ..., resume_token: _Optional[bytes] = ..., held_entries: _Optional[bytes] = ..., disputed_entries: _Optional[bytes] = ...) -> None: ...

class ChangeBatch(_message.Message):
    __slots__ = ("first_sequence", "last_sequence", "added", "removed_entries", "resume_token", "log")
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    first_sequence: int
    last_sequence: int
    added: ListRows
    removed_entries: bytes
    resume_token: bytes
    log: bytes
    def __init__(self, first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ..., added: _Optional[_Union[ListRows, _Mapping]] = ..., removed_entries: _Optional[bytes] = ..., resume_token: _Optional[bytes] = ..., log: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sequence", "head_sequence", "resume_token")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    head_sequence: int
    resume_token: bytes
    def __init__(self, sequence: _Optional[int] = ..., head_sequence: _Optional[int] = ..., resume_token: _Optional[bytes] = ...) -> None: ...

class SyncResponse(_message.Message):
    __slots__ = ("snapshot_begin", "snapshot_chunk", "snapshot_end", "changes", "heartbeat")
    SNAPSHOT_BEGIN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot_begin: SnapshotBegin
    snapshot_chunk: SnapshotChunk
    snapshot_end: SnapshotEnd
    changes: ChangeBatch
    heartbeat: Heartbeat
    def __init__(self, snapshot_begin: _Optional[_Union[SnapshotBegin, _Mapping]] = ..., snapshot_chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., snapshot_end: _Optional[_Union[SnapshotEnd, _Mapping]] = ..., changes: _Optional[_Union[ChangeBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class VerifyCopyRequest(_message.Message):
    __slots__ = ("resume_token", "list_digest", "digest_rows")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LIST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    resume_token: bytes
    list_digest: str
    digest_rows: int
    def __init__(self, resume_token: _Optional[bytes] = ..., list_digest: _Optional[str] = ..., digest_rows: _Optional[int] = ...) -> None: ...

class VerifyCopyResponse(_message.Message):
    __slots__ = ("exact", "sequence", "list_digest", "digest_rows", "same_sequence")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    SAME_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    sequence: int
    list_digest: str
    digest_rows: int
    same_sequence: bool
    def __init__(self, exact: _Optional[bool] = ..., sequence: _Optional[int] = ..., list_digest: _Optional[str] = ..., digest_rows: _Optional[int] = ..., same_sequence: _Optional[bool] = ...) -> None: ...

class ActionReport(_message.Message):
    __slots__ = ("report_id", "entry_id", "signal_type", "hash", "action", "reason_code", "tags", "occurred_unix")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_UNIX_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    entry_id: int
    signal_type: SignalType
    hash: bytes
    action: Action
    reason_code: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    occurred_unix: int
    def __init__(self, report_id: _Optional[str] = ..., entry_id: _Optional[int] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., hash: _Optional[bytes] = ..., action: _Optional[_Union[Action, str]] = ..., reason_code: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., occurred_unix: _Optional[int] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("report_id", "duplicate", "disputed", "sequence")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    DISPUTED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    duplicate: bool
    disputed: bool
    sequence: int
    def __init__(self, report_id: _Optional[str] = ..., duplicate: _Optional[bool] = ..., disputed: _Optional[bool] = ..., sequence: _Optional[int] = ...) -> None: ...

class HeldEntry(_message.Message):
    __slots__ = ("entry_id", "reason", "matching", "sequence", "held_unix", "not_violating_platforms", "detail")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HELD_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_VIOLATING_PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    reason: HeldReason
    matching: bool
    sequence: int
    held_unix: int
    not_violating_platforms: int
    detail: str
    def __init__(self, entry_id: _Optional[int] = ..., reason: _Optional[_Union[HeldReason, str]] = ..., matching: _Optional[bool] = ..., sequence: _Optional[int] = ..., held_unix: _Optional[int] = ..., not_violating_platforms: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class ListHeldRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHeldResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HeldEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HeldEntry, _Mapping]]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("entry_id", "decision", "note")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    decision: Decision
    note: str
    def __init__(self, entry_id: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ..., note: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class SuppressRequest(_message.Message):
    __slots__ = ("pdq_hashes", "note")
    PDQ_HASHES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    pdq_hashes: bytes
    note: str
    def __init__(self, pdq_hashes: _Optional[bytes] = ..., note: _Optional[str] = ...) -> None: ...

class SuppressResponse(_message.Message):
    __slots__ = ("added", "held_entries", "sequence")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    HELD_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    added: int
    held_entries: _containers.RepeatedScalarFieldContainer[int]
    sequence: int
    def __init__(self, added: _Optional[int] = ..., held_entries: _Optional[_Iterable[int]] = ..., sequence: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("entry_id",)
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    def __init__(self, entry_id: _Optional[int] = ...) -> None: ...

class DecisionRecord(_message.Message):
    __slots__ = ("sequence", "decision", "decided_by", "decided_unix", "note")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    decision: Decision
    decided_by: str
    decided_unix: int
    note: str
    def __init__(self, sequence: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ..., decided_by: _Optional[str] = ..., decided_unix: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionRecord]
    def __init__(self, decisions: _Optional[_Iterable[_Union[DecisionRecord, _Mapping]]] = ...) -> None: ...

class PlatformKey(_message.Message):
    __slots__ = ("key_id", "created_unix", "expires_unix", "revoked_unix", "state")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    key_id: int
    created_unix: int
    expires_unix: int
    revoked_unix: int
    state: str
    def __init__(self, key_id: _Optional[int] = ..., created_unix: _Optional[int] = ..., expires_unix: _Optional[int] = ..., revoked_unix: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class PlatformInfo(_message.Message):
    __slots__ = ("name", "roles", "created_unix", "keys")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    created_unix: int
    keys: _containers.RepeatedCompositeFieldContainer[PlatformKey]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., created_unix: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[PlatformKey, _Mapping]]] = ...) -> None: ...

class ListPlatformsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPlatformsResponse(_message.Message):
    __slots__ = ("platforms",)
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    platforms: _containers.RepeatedCompositeFieldContainer[PlatformInfo]
    def __init__(self, platforms: _Optional[_Iterable[_Union[PlatformInfo, _Mapping]]] = ...) -> None: ...

class AddPlatformRequest(_message.Message):
    __slots__ = ("name", "roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class AddPlatformResponse(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("name", "grace_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    grace_s: float
    def __init__(self, name: _Optional[str] = ..., grace_s: _Optional[float] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("api_key", "key_id", "sequence")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    key_id: int
    sequence: int
    def __init__(self, api_key: _Optional[str] = ..., key_id: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("name", "key_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    key_id: int
    def __init__(self, name: _Optional[str] = ..., key_id: _Optional[int] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("revoked", "sequence")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    sequence: int
    def __init__(self, revoked: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class SetRolesRequest(_message.Message):
    __slots__ = ("name", "roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class SetRolesResponse(_message.Message):
    __slots__ = ("roles", "sequence")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    def __init__(self, roles: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since_unix", "after_id", "limit")
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix: int
    after_id: int
    limit: int
    def __init__(self, since_unix: _Optional[int] = ..., after_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("id", "at_unix", "actor", "action", "subject", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    at_unix: int
    actor: str
    action: str
    subject: str
    detail: str
    def __init__(self, id: _Optional[int] = ..., at_unix: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...
