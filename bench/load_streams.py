"""Drives the server the way platforms do: many concurrent bidirectional MatchStream calls over
raw gRPC (not the client library, so the number measures the server), each keeping a window of
packed batches in flight, optionally paced to a target rate, and checks every answer."""
import asyncio
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from bench.load_queries import Batch, QueryMaker, Verdict, check_answer
from bench.load_server import QUERY_STREAM
from hashmatch.clients import client
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


@dataclass
class Plan:
    """What to send: `count` hashes at most, for `duration` s at most, over `streams` streams of
    `batch_size`-hash batches with `window` unanswered batches each; `rate` hashes/s in total
    (None: as fast as answers allow)."""
    streams: int
    batch_size: int
    window: int
    count: int
    duration: float
    threshold: int
    rate: float | None = None
    seed: int = 0
    retain: int = 262_144   # hashes of the first batches kept for the core baseline


@dataclass
class Outcome:
    started: float = 0.0                 # perf_counter at the first send
    finished: float = 0.0                # perf_counter at the last answer
    sent_hashes: int = 0
    answered_hashes: int = 0
    batches: int = 0
    expected_matches: int = 0
    checked: Verdict = field(default_factory=Verdict)
    batch_errors: int = 0                # answers with `error` set, or never answered
    stream_errors: list = field(default_factory=list)
    samples: list = field(default_factory=list)   # (answer time, latency s, hashes) per batch
    retained: list = field(default_factory=list)  # uint8[n, 32] query batches, in send order

    @property
    def errors(self) -> int:
        return (self.checked.missed + self.checked.unexpected + self.batch_errors
                + len(self.stream_errors))


def open_channel(target: str, tls=None) -> grpc.aio.Channel:
    """`tls`: a hashmatch.clients.client.TlsFiles, or None for plaintext."""
    return client.open_channel(target, CHANNEL_OPTIONS, tls, aio=True)


async def list_info(channel, metadata) -> pb.GetListInfoResponse:
    return await pb_grpc.ListInfoStub(channel).GetListInfo(
        pb.GetListInfoRequest(), metadata=metadata, timeout=30)


async def discover_ids(channel, metadata, hashes: np.ndarray, chunk: int) -> np.ndarray:
    """The entry id of each listed hash (uint8[s, 32]), found by matching it at threshold 0.

    Raises RuntimeError unless every hash matches exactly one entry at distance 0, because the
    load run's expected answers would otherwise be wrong."""
    stub = pb_grpc.MatchingStub(channel)
    ids = np.zeros(len(hashes), np.uint64)
    for lo in range(0, len(hashes), chunk):
        part = hashes[lo:lo + chunk]
        answer = await stub.MatchBatch(pb.MatchRequest(
            sequence=lo, signal_type=pb.SIGNAL_TYPE_PDQ, hashes=part.tobytes(), threshold=0),
            metadata=metadata, timeout=60)
        hits = [(m.position, m.entry_id) for m in answer.matches if m.distance == 0]
        positions = sorted(p for p, _ in hits)
        if len(answer.matches) != len(part) or positions != list(range(len(part))):
            raise RuntimeError(f"listed hashes {lo}..{lo + len(part) - 1} gave "
                               f"{len(answer.matches)} matches at threshold 0, expected exactly "
                               f"one each ({len(hits)} at distance 0)")
        for position, entry_id in hits:
            ids[lo + position] = entry_id
    return ids


async def _submit_politely(stub, request, tries: int = 40):
    """SubmitCase, waiting out the server's anonymous rate limit ("retry-after-s") when hit."""
    for _ in range(tries - 1):
        try:
            return await stub.SubmitCase(request, timeout=60)
        except grpc.aio.AioRpcError as err:
            retry = dict(err.trailing_metadata() or ()).get(client.RETRY_AFTER_KEY)
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or retry is None:
                raise
            await asyncio.sleep(int(retry))
    return await stub.SubmitCase(request, timeout=60)


async def submit_sources(channel, hashes: np.ndarray, per_case: int = 100):
    """Lists `hashes` (uint8[s, 32]) as image cases through Cases.SubmitCase (used against a
    --target server whose list is unknown). Returns (entry ids uint64[s], [(case_id, pin)])."""
    stub = pb_grpc.CasesStub(channel)
    ids, cases = [], []
    for lo in range(0, len(hashes), per_case):
        media = [pb.MediaHashes(image=pb.ImageHashes(pdq=h.tobytes(), quality=100))
                 for h in hashes[lo:lo + per_case]]
        reply = await _submit_politely(stub, pb.SubmitCaseRequest(media=media))
        if len(reply.entry_ids) != len(media):
            raise RuntimeError(f"SubmitCase returned {len(reply.entry_ids)} entry ids for "
                               f"{len(media)} images")
        ids.extend(reply.entry_ids)
        cases.append((reply.case_id, reply.pin))
    return np.array(ids, np.uint64), cases


async def withdraw_cases(channel, cases):
    stub = pb_grpc.CasesStub(channel)
    for case_id, pin in cases:
        await stub.WithdrawCase(pb.WithdrawCaseRequest(case_id=case_id, pin=pin), timeout=60)


class LoadRun:
    """One measured run of `plan` against `channel`; `on_answer(hashes)` is called per answer."""

    def __init__(self, channel, metadata, maker: QueryMaker, plan: Plan, on_answer=None):
        self.stub = pb_grpc.MatchingStub(channel)
        self.metadata = metadata
        self.maker = maker
        self.plan = plan
        self.on_answer = on_answer or (lambda n: None)
        self.out = Outcome()
        self._remaining = plan.count
        self._deadline = 0.0
        self._retained = 0

    async def run(self) -> Outcome:
        self.out.started = time.perf_counter()
        self._deadline = self.out.started + self.plan.duration
        await asyncio.gather(*(self._stream(i) for i in range(self.plan.streams)))
        return self.out

    def _next_batch(self, rng) -> Batch | None:
        n = min(self.plan.batch_size, self._remaining)
        if n <= 0 or time.perf_counter() >= self._deadline:
            return None
        self._remaining -= n
        return self.maker.make(n, rng)

    async def _stream(self, index: int):
        plan, out = self.plan, self.out
        rng = np.random.default_rng([plan.seed, QUERY_STREAM, index])
        per_stream_rate = plan.rate / plan.streams if plan.rate else None
        call = self.stub.MatchStream(metadata=self.metadata)
        slots = asyncio.Semaphore(plan.window)
        pending: dict[int, tuple[float, Batch]] = {}
        reader = asyncio.create_task(self._read(call, pending, slots))
        sent = sequence = 0
        try:
            while (batch := self._next_batch(rng)) is not None:
                await slots.acquire()
                if per_stream_rate:
                    # Streams are spread evenly over one batch interval rather than all
                    # sending at once, as independent platforms would.
                    phase = plan.batch_size * index / plan.streams
                    delay = out.started + (sent + phase) / per_stream_rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if time.perf_counter() >= self._deadline or reader.done():
                    slots.release()
                    break
                sequence += 1
                n = len(batch.hashes)
                if self._retained < plan.retain:
                    out.retained.append(batch.hashes)
                    self._retained += n
                pending[sequence] = (time.perf_counter(), batch)
                await call.write(pb.MatchRequest(
                    sequence=sequence, signal_type=pb.SIGNAL_TYPE_PDQ,
                    hashes=batch.hashes.tobytes(), threshold=plan.threshold))
                sent += n
                out.sent_hashes += n
                out.expected_matches += len(batch.positions)
            await call.done_writing()
            await reader
        except grpc.aio.AioRpcError as err:
            out.stream_errors.append(f"stream {index}: {err.code().name}: {err.details()}")
            reader.cancel()
        for _, batch in pending.values():
            out.batch_errors += 1
            out.checked.missed += len(batch.positions)
        pending.clear()

    async def _read(self, call, pending, slots):
        try:
            await self._read_answers(call, pending, slots)
        finally:
            # Wake a writer waiting for a slot so it sees that the stream is over.
            for _ in range(self.plan.window):
                slots.release()

    async def _read_answers(self, call, pending, slots):
        out = self.out
        async for answer in call:
            now = time.perf_counter()
            if answer.sequence not in pending:
                out.stream_errors.append(f"answer for unknown sequence {answer.sequence}")
                continue
            sent_at, batch = pending.pop(answer.sequence)
            slots.release()
            n = len(batch.hashes)
            if answer.HasField("error"):
                out.batch_errors += 1
                out.checked.missed += len(batch.positions)
                if len(out.checked.examples) < 6:
                    out.checked.examples.append(
                        ("batch error", answer.error.code, answer.error.message))
            else:
                self._tally(check_answer(batch, answer.matches))
            out.samples.append((now, now - sent_at, n))
            out.answered_hashes += n
            out.batches += 1
            out.finished = now
            self.on_answer(n)

    def _tally(self, verdict: Verdict):
        total = self.out.checked
        total.found += verdict.found
        total.missed += verdict.missed
        total.unexpected += verdict.unexpected
        total.examples.extend(verdict.examples[:max(0, 6 - len(total.examples))])
