"""Client library: the one place where callers' hashes become gRPC calls and back.

People protecting their images submit, check and withdraw cases; platforms match hashes and
read the list's limits. Everything above this module (the CLI, the streaming matcher, other
programs) works with plain Python values and one exception type, `HashmatchError`, that carries
the gRPC status code and the server's own message. Only idempotent calls are retried, and only
when the server was unreachable (UNAVAILABLE), so a retry can never create a second case.
"""
from __future__ import annotations

import copy
import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import grpc
import numpy as np

from hashmatch.core.signals import HASH_BYTES, MD5_BYTES, PDQ_BYTES, SIGNAL_NAMES  # noqa: F401
from hashmatch.v1 import RETRY_AFTER_KEY
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# The hashmatch server accepts a ping every 10 s; one a minute finds a dead connection under
# a long-lived match stream without being mistaken for abuse.
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000

_IDEMPOTENT_METHODS = [
    ("hashmatch.v1.Cases", "GetCaseStatus"),
    ("hashmatch.v1.Cases", "WithdrawCase"),
    ("hashmatch.v1.Matching", "MatchBatch"),
    ("hashmatch.v1.ListInfo", "GetListInfo"),
]

# round_robin spreads calls over every server a target names (an ipv4: list, or a dns:/// name
# with several addresses); healthCheckConfig makes grpcio watch each server's Health service
# (service "" = the whole server), so a server that says NOT_SERVING, while it loads or shuts
# down, gets no calls until it says SERVING again.
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        "name": [{"service": service, "method": method} for service, method in _IDEMPOTENT_METHODS],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.2s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})

# core.signals numbers the kinds as hashmatch.v1.SignalType does.
SIGNAL_TYPES = {name: kind for kind, name in SIGNAL_NAMES.items()}
_CASE_STATES = {pb.CASE_STATE_ACTIVE: "active", pb.CASE_STATE_WITHDRAWN: "withdrawn"}
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class HashmatchError(Exception):
    """A call the server refused or could not answer.

    `code` is the `grpc.StatusCode`; `message` is the server's explanation, unchanged;
    `retry_after_s` is the server's "retry-after-s" (a rate limit), else None.
    """

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: int | None = None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, target: str = "") -> "HashmatchError":
        """The error a failed call raised, as a HashmatchError with its code and message
        (UNAVAILABLE names `target`, the server that could not be reached)."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = error.details() if hasattr(error, "details") else str(error)
        if code == grpc.StatusCode.UNAVAILABLE and target:
            message = f"cannot reach the hashmatch server at {target} ({message})"
        trailing = dict(error.trailing_metadata() or ()) if hasattr(
            error, "trailing_metadata") else {}
        retry = trailing.get(RETRY_AFTER_KEY)
        return cls(code, message or "", int(retry) if str(retry).isdigit() else None)

    @classmethod
    def from_status(cls, status) -> "HashmatchError":
        """From a `google.rpc.Status` (a per-batch error on a match stream)."""
        return cls(_CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN), status.message)


class InvalidInput(HashmatchError, ValueError):
    """Input the library refuses before any call (a hash of the wrong length, an unknown
    signal type). Its code is INVALID_ARGUMENT, as the server's own answer would be."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


# gRPC target schemes: such a target is one gRPC name resolver's input, passed on unchanged.
_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:")


def server_addresses(servers: str | Sequence[str]) -> list[str]:
    """"a:1,b:2" or ["a:1", "b:2,c:3"] -> ["a:1", "b:2", "c:3"]: each address once, in order.

    A gRPC target with a scheme (dns:///name:port, ipv4:..., unix:...) is kept whole and must
    be the only one.
    """
    items = [servers] if isinstance(servers, str) else list(servers)
    addresses: list[str] = []
    for item in items:
        item = str(item).strip()
        parts = [item] if item.startswith(_TARGET_SCHEMES) else item.split(",")
        for address in (part.strip() for part in parts):
            if address and address not in addresses:
                addresses.append(address)
    if not addresses:
        raise InvalidInput(f"need at least one server address, got {servers!r}")
    if len(addresses) > 1 and any(a.startswith(_TARGET_SCHEMES) for a in addresses):
        raise InvalidInput("a gRPC target with a scheme (dns:///..., ipv4:..., unix:...) must be "
                         f"the only server address, got {addresses}")
    return addresses


def channel_target(addresses: Sequence[str]) -> str:
    """One gRPC target for `addresses` (from `server_addresses`).

    One address is used as it is. Several HOST:PORT addresses become one `ipv4:` (or `ipv6:`)
    list, the resolver whose addresses round_robin spreads calls over; a host name in such a
    list is looked up here, once (give a dns:///name:port target instead to follow a name
    whose addresses change).
    """
    if len(addresses) == 1:
        return addresses[0]
    resolved = [_ip_address(address) for address in addresses]
    versions = {ip.version for ip, _ in resolved}
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in resolved)
    if versions == {6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in resolved)
    raise InvalidInput("several server addresses must be all IPv4 or all IPv6, got "
                     f"{', '.join(addresses)}")


def _ip_address(address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise InvalidInput(f"server address must be HOST:PORT, got {address!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as error:
        raise HashmatchError(grpc.StatusCode.UNAVAILABLE,
                             f"cannot look up the server {address}: {error}") from None
    ips = [ipaddress.ip_address(info[4][0]) for info in found]
    return next((ip for ip in ips if ip.version == 4), ips[0]), int(port)


def signal_type_of(kind) -> int:
    """'pdq' / 'md5' / 'vpdq' (or the enum value itself) -> `SignalType` enum value."""
    if isinstance(kind, str):
        try:
            return SIGNAL_TYPES[kind.lower()]
        except KeyError:
            raise InvalidInput(f"signal type must be one of {sorted(SIGNAL_TYPES)}, got {kind!r}") from None
    if kind not in SIGNAL_NAMES:
        raise InvalidInput(f"unknown signal type {kind!r}")
    return int(kind)


def pack_hashes(hashes, hash_bytes: int) -> bytes:
    """bytes (n * hash_bytes), uint8[n, hash_bytes] or a sequence of hashes -> packed bytes."""
    if isinstance(hashes, (bytes, bytearray, memoryview)):
        packed = bytes(hashes)
    elif isinstance(hashes, np.ndarray):
        array = np.ascontiguousarray(hashes).view(np.uint8)
        if array.ndim != 2 or array.shape[1] != hash_bytes:
            raise InvalidInput(f"hashes must be uint8[n, {hash_bytes}], got shape {hashes.shape}")
        packed = array.tobytes()
    else:
        items = [bytes(h) for h in hashes]
        for position, item in enumerate(items):
            if len(item) != hash_bytes:
                raise InvalidInput(f"hash {position} must be {hash_bytes} bytes, got {len(item)}")
        packed = b"".join(items)
    if len(packed) % hash_bytes:
        raise InvalidInput(f"packed hashes must be a multiple of {hash_bytes} bytes, got {len(packed)}")
    return packed


@dataclass(frozen=True)
class TlsFiles:
    """TLS for a connection: `ca` (PEM roots to trust; None = the system's), and `cert` with
    `key` (PEM) when the server asks for a client certificate (mTLS)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self):
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key files")

    @classmethod
    def wanted(cls, tls: bool, ca: str | None, cert: str | None,
               key: str | None) -> "TlsFiles | None":
        """The settings of a `--tls --ca --cert --key` set of flags: TLS when `tls` or any file
        is given (ValueError for a cert without its key), None (plaintext) otherwise."""
        if not (tls or ca or cert or key):
            return None
        return cls(ca, cert, key)

    def stamp(self) -> tuple:
        """The files' modification times and sizes (None for one that cannot be read): when it
        changes, the files were renewed."""
        def of(path):
            try:
                info = os.stat(path)
            except OSError:
                return None
            return info.st_mtime_ns, info.st_size
        return tuple(of(path) for path in (self.ca, self.cert, self.key) if path)

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials from these files (read now; a client cert makes it mTLS)."""
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def open_channel(target: str, options: Sequence[tuple], tls: TlsFiles | None = None,
                 aio: bool = False):
    """A channel to `target`: plaintext without `tls`, else TLS (and mTLS when it has a cert).

    `aio=True` gives a grpc.aio channel (for asyncio callers such as bench.load).
    """
    grpc_ = grpc.aio if aio else grpc
    if tls is None:
        return grpc_.insecure_channel(target, options=options)
    return grpc_.secure_channel(target, tls.credentials(), options=options)


@dataclass(frozen=True)
class SubmittedCase:
    """What a submission returns. Unpacks as `case_id, pin, entry_ids = ...`.

    The PIN is left out of `repr` so that logging the result never leaks it.
    """

    case_id: str
    pin: str = field(repr=False)
    entry_ids: tuple[int, ...]
    sequence: int = 0  # 0 from servers that keep the list's sequence from anonymous callers

    def __iter__(self) -> Iterator:
        return iter((self.case_id, self.pin, self.entry_ids))


@dataclass(frozen=True)
class ItemOutcome:
    """Copies of one submitted item that platforms reported finding and removing (counts
    only). `entry_id` is 0 for a case's total."""
    entry_id: int
    copies_found: int
    copies_removed: int
    last_found_unix: int     # 0: never
    last_removed_unix: int   # 0: never
    under_review: bool

    @classmethod
    def from_proto(cls, item: pb.ItemOutcome) -> "ItemOutcome":
        """The outcome of one item as the server sent it."""
        return cls(item.entry_id, item.copies_found, item.copies_removed, item.last_found_unix,
                   item.last_removed_unix, item.under_review)


@dataclass(frozen=True)
class CaseStatus:
    """A case as `case_status` returns it: its state, what it holds and what platforms did."""

    case_id: str
    state: str  # "active" or "withdrawn"
    image_count: int
    video_count: int
    created_unix: int
    withdrawn_unix: int  # 0 while active
    items: tuple[ItemOutcome, ...] = ()   # in the order of the case's entry ids
    total: ItemOutcome | None = None
    summary: str = ""                     # the same in plain sentences, for the person


ACTIONS = {"removed": pb.ACTION_REMOVED, "not_violating": pb.ACTION_NOT_VIOLATING,
           "needs_review": pb.ACTION_NEEDS_REVIEW, "quality_unknown": pb.ACTION_QUALITY_UNKNOWN}


@dataclass(frozen=True)
class FeedbackReport:
    """What a platform did about one match. `report_id` is the platform's idempotency key:
    sending the same report again is counted once."""
    report_id: str
    entry_id: int
    hash: bytes              # the platform's hash that matched
    action: str              # a key of ACTIONS
    kind: str = "pdq"        # what matched: "pdq", "md5" or "vpdq"
    reason_code: str = ""
    tags: tuple[str, ...] = ()
    occurred_unix: int = 0   # 0: now

    def to_proto(self) -> pb.ActionReport:
        """The report as sent; ValueError when `action` is not one of ACTIONS."""
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        return pb.ActionReport(
            report_id=self.report_id, entry_id=self.entry_id,
            signal_type=signal_type_of(self.kind), hash=bytes(self.hash),
            action=ACTIONS[self.action], reason_code=self.reason_code, tags=list(self.tags),
            occurred_unix=self.occurred_unix)


@dataclass(frozen=True)
class ReportAck:
    """The server's answer to one report."""

    report_id: str
    duplicate: bool          # already stored: counted once
    disputed: bool           # the entry is disputed now


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision about an entry: what, who (the admin key's platform), when."""
    entry_id: int
    decision: str            # "reinstate" or "remove"
    decided_by: str
    decided_unix: int
    note: str
    sequence: int            # change-log sequence of the decision


@dataclass(frozen=True)
class HeldEntry:
    """An entry held back from matching or disputed, for a reviewer."""
    entry_id: int
    reason: str              # "disputed", "flood" or "suppressed"
    matching: bool           # still matches (a disputed entry on a server that flags them)
    held_unix: int
    not_violating_platforms: int
    detail: str


@dataclass(frozen=True)
class MatchHit:
    """One listed entry that a query hash (at `position` in its batch) matched."""

    position: int
    entry_id: int
    distance: int
    kind: str  # "pdq", "md5" or "vpdq": what matched
    query_match_percent: float | None = None  # vpdq only
    compared_match_percent: float | None = None  # vpdq only
    video_frame: bool = False  # a photo that matched one frame of the listed video
    # The query hash matched more listed entries than the server's max_matches_per_hash: these
    # are its closest (ties by entry id).
    more: bool = False
    disputed: bool = False  # platforms disagree about this entry: treat the match with care
    # Listed entries (not held) holding this very hash, answered as this one match: entry_id is
    # the smallest of them. 1 for a VPDQ match; 0 from a server older than the field.
    same_hash_entries: int = 1

    @classmethod
    def hits_of(cls, response: pb.MatchResponse) -> list["MatchHit"]:
        """The hits of one answer, each flagged `more` where its query hash was capped."""
        capped = set(response.truncated_positions)
        return [cls.from_proto(match, match.position in capped) for match in response.matches]

    @classmethod
    def from_proto(cls, match: pb.Match, more: bool = False) -> "MatchHit":
        """One hit as the server sent it (`more`: the server cut this query's hits short)."""
        is_video = match.signal_type == pb.SIGNAL_TYPE_VPDQ and not match.video_frame
        return cls(
            position=match.position,
            entry_id=match.entry_id,
            distance=match.distance,
            kind=SIGNAL_NAMES.get(match.signal_type, "unknown"),
            query_match_percent=match.query_match_percent if is_video else None,
            compared_match_percent=match.compared_match_percent if is_video else None,
            video_frame=match.video_frame,
            more=more,
            disputed=match.disputed,
            same_hash_entries=match.same_hash_entries,
        )


@dataclass(frozen=True)
class ListInfo:
    """What `list_info` returns: the list's size and sequence, and the server's settings."""

    counts: dict[str, int]  # "pdq" / "md5" / "vpdq" -> number listed
    last_sequence: int
    default_threshold: int
    max_threshold: int
    max_batch_hashes: int
    max_in_flight: int
    kernel_backend: str
    video_frame_count: int


def media_to_proto(item) -> pb.MediaHashes:
    """An `ImageHashes` or `VideoHashes` from `hashmatch.clients.hashing` -> `MediaHashes`.

    Duck-typed on the dataclass fields (a video has `frames`), so this module needs neither
    Pillow nor PyAV. An image whose `pdq` is None or empty is sent with its MD5 only.
    """
    md5 = bytes(item.md5 or b"")
    frames = getattr(item, "frames", None)
    if frames is not None:
        return pb.MediaHashes(video=pb.VideoHashes(
            md5=md5,
            frame_pdqs=b"".join(bytes(frame.pdq) for frame in frames),
            frame_qualities=[int(frame.quality) for frame in frames],
        ))
    pdq = bytes(item.pdq or b"")
    return pb.MediaHashes(image=pb.ImageHashes(
        md5=md5, pdq=pdq, quality=int(item.quality) if pdq else 0))


class HashmatchClient:
    """A connection to one hashmatch server, or to several that hold the same list.

    `target`: "host:port", several of them (a sequence, or one string with commas), or one gRPC
    target such as dns:///list.example:50051 (every address the name has). Unary calls are
    spread over the servers by gRPC's round_robin, skipping any whose health check is not
    SERVING; see `channel_target`. `api_key` is needed for the platform calls (matching, list
    info) and is never sent with case calls. `tls` connects with TLS (give it over the open
    internet: the key and the PIN travel in every call). `timeout` is the deadline in seconds for
    each unary call. Use as a context manager, or call `close()`.
    """

    def __init__(self, target: str | Sequence[str] = DEFAULT_TARGET, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, options: Sequence[tuple] = (),
                 tls: TlsFiles | None = None):
        self.addresses = server_addresses(target)
        self.target = channel_target(self.addresses)
        self._tls = tls
        self.timeout = timeout
        self._platform_metadata = (("x-api-key", api_key),) if api_key else ()
        self._options = list(options)
        self._connect()

    def _connect(self) -> None:
        """Opens the channel to `self.target` and the stubs on it (the one place that does)."""
        base_options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG),
        ]
        overridden = {name for name, _ in self._options}
        channel_options = [opt for opt in base_options if opt[0] not in overridden] + self._options
        self._channel = open_channel(self.target, channel_options, self._tls)
        self._cases = pb_grpc.CasesStub(self._channel)
        self._matching = pb_grpc.MatchingStub(self._channel)
        self._list_info = pb_grpc.ListInfoStub(self._channel)
        self._feedback = pb_grpc.FeedbackStub(self._channel)
        self._review = pb_grpc.ReviewStub(self._channel)
        self._admin = pb_grpc.AdminStub(self._channel)

    def for_address(self, address: str) -> "HashmatchClient":
        """A client with these settings on one `address` of this one, over its own channel.

        `StreamingMatcher` gives each server its own streams this way. The caller closes it.
        """
        single = copy.copy(self)
        single.addresses = [address]
        single.target = channel_target([address])
        single._connect()
        return single

    def wait_ready(self, timeout: float) -> bool:
        """True once some server of this client is connected and SERVING, within `timeout` s."""
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            ready.cancel()
            return False

    @property
    def servers(self) -> str:
        """The addresses as given, for messages: "127.0.0.1:50051, 127.0.0.1:50052"."""
        return ", ".join(self.addresses)

    def __enter__(self) -> "HashmatchClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection; calls in progress are cancelled."""
        self._channel.close()

    def _call(self, method, request, metadata=()):
        try:
            return method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as error:
            raise HashmatchError.from_rpc_error(error, self.servers) from None

    # ------------------------------------------------------------------ cases

    def submit_case(self, media: Iterable) -> SubmittedCase:
        """Submits the hashes of photos/videos (`ImageHashes` / `VideoHashes`) as one case.

        Returns once the server has durably stored the case. Never retried: a retry after a
        lost answer would create a second case with a second PIN.
        """
        request = pb.SubmitCaseRequest(media=[media_to_proto(item) for item in media])
        response = self._call(self._cases.SubmitCase, request)
        return SubmittedCase(response.case_id, response.pin, tuple(response.entry_ids),
                             response.sequence)

    def case_status(self, case_id: str, pin: str) -> CaseStatus:
        """The case's state and item counts. Raises HashmatchError NOT_FOUND for an unknown
        case, PERMISSION_DENIED for a wrong PIN."""
        response = self._call(self._cases.GetCaseStatus,
                              pb.GetCaseStatusRequest(case_id=case_id, pin=pin))
        return CaseStatus(
            case_id=response.case_id or case_id,
            state=_CASE_STATES.get(response.state, "unknown"),
            image_count=response.image_count,
            video_count=response.video_count,
            created_unix=response.created_unix,
            withdrawn_unix=response.withdrawn_unix,
            items=tuple(ItemOutcome.from_proto(item) for item in response.items),
            total=ItemOutcome.from_proto(response.total),
            summary=response.summary,
        )

    def withdraw(self, case_id: str, pin: str) -> int:
        """Withdraws the case; returns 0 (the server no longer tells anonymous callers the
        list's change-log sequence; kept so callers of the old return value still work)."""
        response = self._call(self._cases.WithdrawCase,
                              pb.WithdrawCaseRequest(case_id=case_id, pin=pin))
        return response.sequence

    # ------------------------------------------------------------------ matching

    def match_batch(self, signal_type, hashes, threshold: int | None = None,
                    include_video_frames: bool = False) -> list[MatchHit]:
        """Matches one batch of PDQ or MD5 hashes; returns only the hits.

        `hashes`: packed bytes (n x 32 for PDQ, n x 16 for MD5), uint8[n, 32|16], or a list
        of hashes. `threshold`: inclusive Hamming distance (PDQ); None = the server default.
        A hit's `position` is the index of its hash in `hashes`.
        """
        kind = signal_type_of(signal_type)
        request = pb.MatchRequest(
            sequence=0, signal_type=kind, hashes=pack_hashes(hashes, HASH_BYTES[kind]),
            include_video_frames=include_video_frames)
        if threshold is not None:
            request.threshold = threshold
        response = self._call(self._matching.MatchBatch, request, self._platform_metadata)
        return MatchHit.hits_of(response)

    def match_video(self, video, qualities: Sequence[int] | None = None,
                    threshold: int | None = None, min_query_percent: float | None = None,
                    min_compared_percent: float | None = None) -> list[MatchHit]:
        """Matches one video (vPDQ) against the listed videos.

        `video`: a `VideoHashes` (its frames' PDQs and qualities are used) or the frame PDQs
        packed / as uint8[n, 32] with `qualities` beside them. Percentages are 0..100; None
        leaves the server's rule (query >= 80 %, compared >= 0 %).
        """
        frames = getattr(video, "frames", None)
        if frames is not None:
            packed = b"".join(bytes(frame.pdq) for frame in frames)
            qualities = [int(frame.quality) for frame in frames]
        else:
            packed = pack_hashes(video, PDQ_BYTES)
        options = pb.VideoMatchOptions(frame_qualities=list(qualities or ()))
        if min_query_percent is not None:
            options.min_query_match_percent = min_query_percent
        if min_compared_percent is not None:
            options.min_compared_match_percent = min_compared_percent
        request = pb.MatchRequest(sequence=0, signal_type=pb.SIGNAL_TYPE_VPDQ, hashes=packed,
                                  video=options)
        if threshold is not None:
            request.threshold = threshold
        response = self._call(self._matching.MatchBatch, request, self._platform_metadata)
        return MatchHit.hits_of(response)

    def open_match_stream(self, requests: Iterator[pb.MatchRequest]):
        """Opens a MatchStream; returns the gRPC response iterator (also a call: `.cancel()`).

        No deadline: a platform's stream may live for hours. Use `StreamingMatcher` rather
        than this unless you manage batches and sequences yourself.
        """
        return self._matching.MatchStream(requests, metadata=self._platform_metadata)

    # ------------------------------------------------------------------ list information

    def list_info(self) -> ListInfo:
        """The list's sizes, change-log sequence and limits, and the server's matching kernel."""
        response = self._call(self._list_info.GetListInfo, pb.GetListInfoRequest(),
                              self._platform_metadata)
        return ListInfo(
            counts={SIGNAL_NAMES.get(count.signal_type, str(count.signal_type)): count.count
                    for count in response.counts},
            last_sequence=response.last_sequence,
            default_threshold=response.default_threshold,
            max_threshold=response.max_threshold,
            max_batch_hashes=response.max_batch_hashes,
            max_in_flight=response.max_in_flight,
            kernel_backend=response.kernel_backend,
            video_frame_count=response.video_frame_count,
        )

    # ------------------------------------------------------------------ feedback (platforms)

    def report_action(self, report: FeedbackReport) -> ReportAck:
        """Tells the list what the platform did about a match (needs the 'feedback' role).
        Safe to retry: the same report_id is counted once."""
        return _ack(self._call(self._feedback.ReportAction, report.to_proto(),
                               self._platform_metadata))

    def report_actions(self, reports: Iterable[FeedbackReport]) -> Iterator[ReportAck]:
        """Many reports on one stream; one ack per report, in order."""
        try:
            for ack in self._feedback.ReportActions((r.to_proto() for r in reports),
                                                    metadata=self._platform_metadata):
                yield _ack(ack)
        except grpc.RpcError as error:
            raise HashmatchError.from_rpc_error(error, self.servers) from None

    # ------------------------------------------------------------------ review (admins)

    def held_entries(self) -> list[HeldEntry]:
        """Entries held back from matching, and disputed ones (needs the 'admin' role)."""
        response = self._call(self._review.ListHeld, pb.ListHeldRequest(),
                              self._platform_metadata)
        return [HeldEntry(e.entry_id, _HELD_REASONS.get(e.reason, "unknown"), e.matching,
                          e.held_unix, e.not_violating_platforms, e.detail)
                for e in response.entries]

    def review(self, entry_id: int, decision: str, note: str = "") -> int:
        """Decides on a held or disputed entry: "reinstate" or "remove". Returns the
        change-log sequence of the decision (recorded with this key's platform name)."""
        decisions = {"reinstate": pb.DECISION_REINSTATE, "remove": pb.DECISION_REMOVE}
        if decision not in decisions:
            raise ValueError(f"decision must be reinstate or remove, got {decision!r}")
        return self._call(self._review.Decide, pb.DecideRequest(
            entry_id=entry_id, decision=decisions[decision], note=note),
            self._platform_metadata).sequence

    def review_history(self, entry_id: int) -> list[Decision]:
        """The review decisions about an entry, oldest first (needs the 'admin' role)."""
        response = self._call(self._review.History, pb.HistoryRequest(entry_id=entry_id),
                              self._platform_metadata)
        names = {pb.DECISION_REINSTATE: "reinstate", pb.DECISION_REMOVE: "remove"}
        return [Decision(entry_id, names.get(d.decision, "unknown"), d.decided_by,
                         d.decided_unix, d.note, d.sequence) for d in response.decisions]

    def suppress(self, pdq_hashes, note: str = "") -> list[int]:
        """Adds known benign PDQ hashes to the suppression list; returns the listed entries
        within the threshold, now held back."""
        return list(self._call(self._review.Suppress, pb.SuppressRequest(
            pdq_hashes=pack_hashes(pdq_hashes, PDQ_BYTES), note=note),
            self._platform_metadata).held_entries)


    # ------------------------------------------------------------------ admin (operators)

    def platforms(self) -> list[dict]:
        """Every platform: {platform, roles, created, keys: [{id, created, expires, revoked,
        state}]}, times in unix seconds (None: unset); never key material. Needs 'admin'."""
        response = self._call(self._admin.ListPlatforms, pb.ListPlatformsRequest(),
                              self._platform_metadata)
        return [{"platform": p.name, "roles": list(p.roles), "created": p.created_unix,
                 "keys": [{"id": k.key_id, "created": k.created_unix,
                           "expires": k.expires_unix or None, "revoked": k.revoked_unix or None,
                           "state": k.state} for k in p.keys]} for p in response.platforms]

    def add_platform(self, name: str, roles: Sequence[str] = ()) -> str:
        """Registers a platform (roles default to match); returns its API key, shown once."""
        return self._call(self._admin.AddPlatform, pb.AddPlatformRequest(
            name=name, roles=roles), self._platform_metadata).api_key

    def rotate_key(self, name: str, grace_s: float | None = None) -> tuple[str, int, int]:
        """A new key for `name`; its current keys end after `grace_s` (None: the server's 24 h;
        0: now). Returns (the new key, its id, the change-log sequence)."""
        response = self._call(self._admin.RotateKey, pb.RotateKeyRequest(
            name=name, grace_s=grace_s), self._platform_metadata)
        return response.api_key, response.key_id, response.sequence

    def revoke_key(self, name: str, key_id: int = 0) -> tuple[int, int]:
        """Ends key `key_id` of `name` (0: every key) now; returns (keys revoked, sequence)."""
        response = self._call(self._admin.RevokeKey, pb.RevokeKeyRequest(
            name=name, key_id=key_id), self._platform_metadata)
        return response.revoked, response.sequence

    def set_roles(self, name: str, roles: Sequence[str]) -> tuple[list[str], int]:
        """Replaces the platform's roles; returns (roles, sequence)."""
        response = self._call(self._admin.SetRoles, pb.SetRolesRequest(
            name=name, roles=roles), self._platform_metadata)
        return list(response.roles), response.sequence

    def audit(self, since_unix: int = 0, after_id: int = 0, limit: int = 0) -> list[dict]:
        """Audit rows {id, at, actor, action, subject, detail}, oldest first, at most 10,000:
        page on with `after_id` = the last id read."""
        response = self._call(self._admin.ListAudit, pb.ListAuditRequest(
            since_unix=since_unix, after_id=after_id, limit=limit), self._platform_metadata)
        return [{"id": r.id, "at": r.at_unix, "actor": r.actor, "action": r.action,
                 "subject": r.subject, "detail": r.detail} for r in response.records]


_HELD_REASONS = {pb.HELD_REASON_DISPUTED: "disputed", pb.HELD_REASON_FLOOD: "flood",
                 pb.HELD_REASON_SUPPRESSED: "suppressed"}


def _ack(ack: pb.ReportAck) -> ReportAck:
    return ReportAck(ack.report_id, ack.duplicate, ack.disputed)
