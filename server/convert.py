"""The one place that turns protobuf messages into the server's plain types and back.

Validation of request shapes lives here too, because only here are the raw fields visible; each
rule raises `InvalidRequest` with a message that names the item and the rule.
"""
import numpy as np
from google.rpc import status_pb2

from hashmatch.core import signals
from hashmatch.core import video as vpdq
from hashmatch.server import wire
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import InvalidRequest
from hashmatch.core.signals import MD5_BYTES, PDQ_BYTES, SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.server.listing import Matches
from hashmatch.server.media import Image, Query, Video, hash_count
from hashmatch.server.outcomes import (ACTIONS, REINSTATE, REMOVE, Ack, Held, Outcome, Report,
                                       case_total, summary)
from hashmatch.server.store import CaseStatus, SubmittedCase
from hashmatch.v1 import hashmatch_pb2 as pb

class Undecodable:
    """Stands in for a request whose bytes are not the expected message, so the servicer can
    answer INVALID_ARGUMENT (on a stream: one error answer) instead of gRPC's bare UNKNOWN.

    It keeps the parse error's text only: the exception's traceback holds the frame that holds
    the request bytes (up to max_request_bytes), in a reference cycle that lives until Python's
    cycle collector runs, so a flood of garbage bodies would pile them up in memory."""

    def __init__(self, error: Exception):
        self.error = str(error)
        self.sequence = 0


def tolerant(deserializer):
    """Wraps a generated request deserializer so that corrupt bytes become `Undecodable`."""
    def decode(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bad input
            return Undecodable(exc)
    return decode


def check_decoded(request) -> None:
    if isinstance(request, Undecodable):
        raise InvalidRequest(f"request bytes are not a valid message ({request.error})")


MIN_QUALITY = vpdq.MIN_QUALITY  # PDQ hashes below this quality match unrelated images
# core.signals numbers the kinds as the wire does; these maps are the one place that says so.
SIGNAL_FROM_PB = {pb.SIGNAL_TYPE_PDQ: SIGNAL_PDQ, pb.SIGNAL_TYPE_MD5: SIGNAL_MD5,
                  pb.SIGNAL_TYPE_VPDQ: SIGNAL_VPDQ}
SIGNAL_TO_PB = {signal: wire for wire, signal in SIGNAL_FROM_PB.items()}
HASH_BYTES = {wire: signals.HASH_BYTES[signal] for wire, signal in SIGNAL_FROM_PB.items()}


def _packed_count(data: bytes, size: int, field: str, items: str, limit: int,
                  limit_name: str) -> int:
    """How many size-byte hashes `data` packs; rejects a ragged length or more than `limit`."""
    if len(data) % size:
        raise InvalidRequest(f"{field} length {len(data)} is not a multiple of {size}")
    n = len(data) // size
    if n > limit:
        raise InvalidRequest(f"{n} {items} is over {limit_name} ({limit})")
    return n


def _md5(raw: bytes, where: str) -> bytes | None:
    if raw and len(raw) != MD5_BYTES:
        raise InvalidRequest(f"{where}: md5 must be {MD5_BYTES} bytes, got {len(raw)}")
    return raw or None


MIN_SET_BITS = 16     # a real PDQ hash sets about half its 256 bits (median threshold)
REPEAT_BYTES = 8      # a hash that repeats an 8-byte (or shorter) pattern is made, not hashed


def _refuse_degenerate(hashes: np.ndarray, where: str, what: str) -> None:
    """Refuses constant or near-constant PDQ hashes (uint8[n, 32]), as poison for the list.

    PDQ thresholds each bit at the median, so a real image's hash has about 128 bits set and
    no short repeating pattern; these would match far too much, or nothing real at all.
    """
    ones = np.unpackbits(hashes, axis=1).sum(axis=1)
    sparse = (ones < MIN_SET_BITS) | (ones > 256 - MIN_SET_BITS)
    repeated = (hashes[:, REPEAT_BYTES:] == hashes[:, :-REPEAT_BYTES]).all(axis=1)
    bad = np.flatnonzero(sparse | repeated)
    if len(bad):
        i = int(bad[0])
        reason = (f"has {ones[i]} of 256 bits set (a real hash has {MIN_SET_BITS}..."
                  f"{256 - MIN_SET_BITS})" if sparse[i] else
                  f"repeats a pattern of {REPEAT_BYTES} bytes or fewer")
        raise InvalidRequest(f"{where}: {what.format(i)} {reason}: degenerate hashes are refused")


def _image(msg: pb.ImageHashes, where: str) -> Image:
    md5 = _md5(msg.md5, where)
    if msg.pdq and len(msg.pdq) != PDQ_BYTES:
        raise InvalidRequest(f"{where}: pdq must be {PDQ_BYTES} bytes, got {len(msg.pdq)}")
    if msg.quality > 100:
        raise InvalidRequest(f"{where}: quality must be 0..100, got {msg.quality}")
    if msg.pdq and msg.quality < MIN_QUALITY:
        raise InvalidRequest(f"{where}: PDQ quality {msg.quality} is below {MIN_QUALITY}; "
                             "such hashes match unrelated images")
    if not msg.pdq and not md5:
        raise InvalidRequest(f"{where}: an image needs a pdq hash or an md5")
    if msg.pdq:
        _refuse_degenerate(np.frombuffer(msg.pdq, np.uint8).reshape(1, PDQ_BYTES), where,
                           "PDQ hash")
    return Image(md5=md5, pdq=msg.pdq or None, quality=msg.quality)


def _video(msg: pb.VideoHashes, where: str, config: ServerConfig) -> Video:
    md5 = _md5(msg.md5, where)
    n = _packed_count(msg.frame_pdqs, PDQ_BYTES, f"{where}: frame_pdqs", "frames",
                      config.max_video_frames, "max_video_frames")
    if len(msg.frame_qualities) != n:
        raise InvalidRequest(f"{where}: got {len(msg.frame_qualities)} frame_qualities for "
                             f"{n} frames")
    qualities = np.asarray(msg.frame_qualities, np.int64)
    if n and qualities.max() > 100:
        raise InvalidRequest(f"{where}: frame quality must be 0..100, got {qualities.max()}")
    frames, kept = vpdq.prepare_frames(
        np.frombuffer(msg.frame_pdqs, np.uint8).reshape(n, PDQ_BYTES), qualities)
    if not len(frames) and not md5:
        raise InvalidRequest(f"{where}: no frame has quality >= {MIN_QUALITY} and no md5 given")
    _refuse_degenerate(frames, where, "kept frame {}")
    return Video(md5=md5, frames=frames, qualities=kept)


def media_from_request(req: pb.SubmitCaseRequest, config: ServerConfig) -> list[Image | Video]:
    check_decoded(req)
    if not req.media:
        raise InvalidRequest("a case needs at least one photo or video")
    if len(req.media) > config.max_case_items:
        raise InvalidRequest(f"{len(req.media)} media items is over max_case_items "
                             f"({config.max_case_items})")
    media = []
    for i, item in enumerate(req.media):
        where, kind = f"media[{i}]", item.WhichOneof("media")
        if kind == "image":
            media.append(_image(item.image, where))
        elif kind == "video":
            media.append(_video(item.video, where, config))
        else:
            raise InvalidRequest(f"{where}: neither image nor video is set")
    hashes = hash_count(media)
    if hashes > config.max_case_hashes:
        raise InvalidRequest(f"case holds {hashes} hashes (PDQ, MD5 and video frames), over "
                             f"max_case_hashes ({config.max_case_hashes})")
    return media


def submit_response(case: SubmittedCase) -> pb.SubmitCaseResponse:
    """Leaves `sequence` 0: an anonymous caller has no use for the list's change-log position,
    and it would tell anyone how many changes the list has seen and when."""
    return pb.SubmitCaseResponse(case_id=case.case_id, pin=case.pin, entry_ids=case.entry_ids)


def status_response(status: CaseStatus) -> pb.GetCaseStatusResponse:
    return pb.GetCaseStatusResponse(
        case_id=status.case_id,
        state=pb.CASE_STATE_WITHDRAWN if status.withdrawn else pb.CASE_STATE_ACTIVE,
        image_count=status.image_count, video_count=status.video_count,
        created_unix=status.created_unix, withdrawn_unix=status.withdrawn_unix)


def _percent(value: float, name: str) -> float:
    if not 0.0 <= value <= 100.0:
        raise InvalidRequest(f"{name} must be 0..100, got {value}")
    return value


def query_from_request(req: pb.MatchRequest, config: ServerConfig) -> Query:
    check_decoded(req)
    size = HASH_BYTES.get(req.signal_type)
    if size is None:
        raise InvalidRequest(f"unknown signal_type {req.signal_type}; use PDQ, MD5 or VPDQ")
    name = pb.SignalType.Name(req.signal_type).removeprefix("SIGNAL_TYPE_")
    if not req.hashes:
        raise InvalidRequest("batch has no hashes")
    n = _packed_count(req.hashes, size, "hashes", f"{name} hashes in the batch",
                      config.max_batch_hashes, "max_batch_hashes")
    threshold = req.threshold if req.HasField("threshold") else config.default_threshold
    if threshold > config.max_threshold:
        raise InvalidRequest(f"threshold {threshold} is over the server maximum "
                             f"({config.max_threshold})")
    hashes = np.frombuffer(req.hashes, np.uint8).reshape(n, size)
    signal = SIGNAL_FROM_PB[req.signal_type]
    caps = dict(max_per_hash=config.max_matches_per_hash,
                max_per_batch=config.max_matches_per_batch)
    if signal != SIGNAL_VPDQ:
        return Query(signal, hashes, threshold, req.include_video_frames, **caps)
    opts = req.video
    qualities = None
    if opts.frame_qualities:
        if len(opts.frame_qualities) != n:
            raise InvalidRequest(f"got {len(opts.frame_qualities)} frame_qualities for {n} frames")
        qualities = np.asarray(opts.frame_qualities, np.int64)
        if not (qualities >= MIN_QUALITY).any():
            raise InvalidRequest(f"no query frame has quality >= {MIN_QUALITY}")
    return Query(signal, hashes, threshold, frame_qualities=qualities,
                 min_query_percent=_percent(opts.min_query_match_percent if opts.HasField(
                     "min_query_match_percent") else vpdq.DEFAULT_MIN_QUERY_PERCENT,
                     "min_query_match_percent"),
                 min_compared_percent=_percent(opts.min_compared_match_percent if opts.HasField(
                     "min_compared_match_percent") else vpdq.DEFAULT_MIN_COMPARED_PERCENT,
                     "min_compared_match_percent"), **caps)


_MATCH_FIELD = {name: f.number for name, f in pb.Match.DESCRIPTOR.fields_by_name.items()}
_MATCHES_FIELD = pb.MatchResponse.DESCRIPTOR.fields_by_name["matches"].number
_WIRE_SIGNAL = np.zeros(max(SIGNAL_TO_PB) + 1, np.int64)
_WIRE_SIGNAL[list(SIGNAL_TO_PB)] = list(SIGNAL_TO_PB.values())


def match_response(sequence: int, matches: Matches, list_sequence: int) -> pb.MatchResponse:
    """The answer to one batch. Photo and MD5 hits (there may be thousands) are encoded all at
    once by wire.py and parsed by upb, never made one pb.Match at a time in Python."""
    response = pb.MatchResponse(sequence=sequence, list_sequence=list_sequence,
                                truncated_positions=np.flatnonzero(matches.truncated).tolist())
    if matches.query_percent is not None:
        response.matches.extend(_video_matches(matches))
    if matches.query_percent is not None or not len(matches):
        return response
    disputed = matches.disputed if matches.disputed is not None else np.zeros(len(matches), bool)
    response.MergeFromString(wire.repeated_message(_MATCHES_FIELD, [
        (_MATCH_FIELD["position"], matches.positions),
        (_MATCH_FIELD["entry_id"], matches.entry_ids),
        (_MATCH_FIELD["distance"], matches.distances),
        (_MATCH_FIELD["signal_type"], _WIRE_SIGNAL[matches.signal_types]),
        (_MATCH_FIELD["video_frame"], matches.signal_types == SIGNAL_VPDQ),
        (_MATCH_FIELD["disputed"], disputed),
        (_MATCH_FIELD["same_hash_entries"],
         np.ones(len(matches), np.int64) if matches.holders is None else matches.holders)]))
    return response


def _video_matches(matches: Matches) -> list[pb.Match]:
    """A video query's hits: at most max_matches_per_hash videos, with their percentages."""
    return [pb.Match(position=p, entry_id=e, distance=d, signal_type=SIGNAL_TO_PB[s],
                     query_match_percent=matches.query_percent[i],
                     compared_match_percent=matches.compared_percent[i],
                     disputed=matches.disputed is not None and bool(matches.disputed[i]),
                     same_hash_entries=1)
            for i, (p, e, d, s) in enumerate(zip(matches.positions.tolist(),
                                                 matches.entry_ids.tolist(),
                                                 matches.distances.tolist(),
                                                 matches.signal_types.tolist()))]


def error_response(sequence: int, code, message: str) -> pb.MatchResponse:
    """A stream answer for a rejected batch; `code` is a grpc.StatusCode."""
    return pb.MatchResponse(sequence=sequence,
                            error=status_pb2.Status(code=code.value[0], message=message))


def list_info_response(counts: dict[str, int], sequence: int, head: int, config: ServerConfig,
                       backend: str, digest: tuple[int, int, str] | None = None
                       ) -> pb.GetListInfoResponse:
    """digest: (sequence, rows, sha256 hex) from Follower.digest(); it sets the sequences."""
    if digest is not None:
        sequence = digest[0]
    answer = pb.GetListInfoResponse(
        counts=[pb.SignalCount(signal_type=pb.SIGNAL_TYPE_PDQ, count=counts["pdq"]),
                pb.SignalCount(signal_type=pb.SIGNAL_TYPE_MD5, count=counts["md5"]),
                pb.SignalCount(signal_type=pb.SIGNAL_TYPE_VPDQ, count=counts["vpdq"])],
        last_sequence=sequence, applied_sequence=sequence, head_sequence=max(head, sequence),
        default_threshold=config.default_threshold,
        max_threshold=config.max_threshold, max_batch_hashes=config.max_batch_hashes,
        max_in_flight=config.max_in_flight, kernel_backend=backend,
        video_frame_count=counts["video_frames"])
    if digest is not None:
        answer.digest_rows, answer.list_digest = digest[1], digest[2]
    return answer


# ---------------------------------------------------------------- feedback and review

MAX_REPORT_ID, MAX_REASON, MAX_TAGS, MAX_TAG = 128, 64, 16, 64


def report_from_request(req: pb.ActionReport) -> Report:
    check_decoded(req)
    if not 0 < len(req.report_id) <= MAX_REPORT_ID:
        raise InvalidRequest(f"report_id must have 1..{MAX_REPORT_ID} characters, got "
                             f"{len(req.report_id)}")
    where = f"report {req.report_id!r}"
    if req.action not in ACTIONS:
        raise InvalidRequest(f"{where}: action must be REMOVED, NOT_VIOLATING, NEEDS_REVIEW or "
                             f"QUALITY_UNKNOWN, got {req.action}")
    if req.signal_type not in HASH_BYTES:
        raise InvalidRequest(f"{where}: signal_type must be PDQ, MD5 or VPDQ, got "
                             f"{req.signal_type}")
    if req.hash and len(req.hash) != HASH_BYTES[req.signal_type]:
        raise InvalidRequest(f"{where}: hash must be {HASH_BYTES[req.signal_type]} bytes for "
                             f"{pb.SignalType.Name(req.signal_type)}, got {len(req.hash)}")
    if len(req.reason_code) > MAX_REASON:
        raise InvalidRequest(f"{where}: reason_code has {len(req.reason_code)} characters; at "
                             f"most {MAX_REASON}")
    if len(req.tags) > MAX_TAGS or any(not 0 < len(t) <= MAX_TAG or "," in t for t in req.tags):
        raise InvalidRequest(f"{where}: at most {MAX_TAGS} tags of 1..{MAX_TAG} characters "
                             "without commas")
    if req.occurred_unix < 0:
        raise InvalidRequest(f"{where}: occurred_unix must be >= 0, got {req.occurred_unix}")
    return Report(req.report_id, req.entry_id, SIGNAL_FROM_PB[req.signal_type], req.hash,
                  req.action, req.reason_code, tuple(req.tags), req.occurred_unix)


def ack_response(ack: Ack) -> pb.ReportAck:
    return pb.ReportAck(report_id=ack.report_id, duplicate=ack.duplicate,
                        disputed=ack.disputed, sequence=ack.sequence)


def _item_outcome(o: Outcome) -> pb.ItemOutcome:
    return pb.ItemOutcome(entry_id=o.entry, copies_found=o.found, copies_removed=o.removed,
                          last_found_unix=o.last_found, last_removed_unix=o.last_removed,
                          under_review=o.under_review)


def outcome_status_response(status: CaseStatus, outcomes: list[Outcome]
                            ) -> pb.GetCaseStatusResponse:
    """status_response with what became of each item, and a summary for the person."""
    response = status_response(status)
    response.items.extend(_item_outcome(o) for o in outcomes)
    response.total.CopyFrom(_item_outcome(case_total(outcomes)))
    response.summary = summary(outcomes)
    return response


def held_response(held: list[Held]) -> pb.ListHeldResponse:
    return pb.ListHeldResponse(entries=[pb.HeldEntry(
        entry_id=h.entry, reason=h.reason, matching=not h.held, sequence=h.sequence,
        held_unix=h.at, not_violating_platforms=h.not_violating, detail=h.detail)
        for h in held])


def decision_from_request(req: pb.DecideRequest) -> str:
    check_decoded(req)
    decisions = {pb.DECISION_REINSTATE: REINSTATE, pb.DECISION_REMOVE: REMOVE}
    if req.decision not in decisions:
        raise InvalidRequest(f"decision must be REINSTATE or REMOVE, got {req.decision}")
    return decisions[req.decision]


def history_response(decisions) -> pb.HistoryResponse:
    wire = {REINSTATE: pb.DECISION_REINSTATE, REMOVE: pb.DECISION_REMOVE}
    return pb.HistoryResponse(decisions=[pb.DecisionRecord(
        sequence=seq, decision=wire[decision], decided_by=by, decided_unix=at, note=note)
        for seq, decision, by, at, note in decisions])


def suppressed_from_request(req: pb.SuppressRequest, config: ServerConfig) -> np.ndarray:
    check_decoded(req)
    n = _packed_count(req.pdq_hashes, PDQ_BYTES, "pdq_hashes", "hashes", config.max_batch_hashes,
                      "max_batch_hashes")
    if not n:
        raise InvalidRequest("pdq_hashes is empty: send n x 32 bytes")
    if len(req.note) > 500:
        raise InvalidRequest(f"note has {len(req.note)} characters; at most 500")
    return np.frombuffer(req.pdq_hashes, np.uint8).reshape(n, PDQ_BYTES)
