"""MatchStream's flow control: at most `max_in_flight` unanswered batches per stream.

A reader task takes a slot before it reads the next request, and a slot comes back only when an
answer has been written to the transport. A client that stops reading answers therefore stops
being read: its requests wait in HTTP/2 flow control, not in server memory, and the worker
threads stay free for other streams. A bad batch is answered with `error` and the stream goes on.
"""
import asyncio
import logging

import grpc

from hashmatch.server import convert
from hashmatch.server.errors import status_for

log = logging.getLogger("hashmatch.server")


async def match_stream(run, answer, platform: str, context, max_in_flight: int,
                       count_error) -> None:
    """Runs one stream to its end; `answer(platform, request)` is called on a worker thread
    through `await run(answer, platform, request)`; `count_error(code)` counts a failed batch."""
    slots = asyncio.Semaphore(max_in_flight)
    answers: asyncio.Queue = asyncio.Queue()
    running: set[asyncio.Task] = set()

    async def answer_one(request):
        try:
            response = await run(answer, platform, request)
        except Exception as exc:  # noqa: BLE001 - a bad batch must not end the stream
            code, message = status_for(exc) or (grpc.StatusCode.INTERNAL, "internal error")
            if code == grpc.StatusCode.INTERNAL:
                log.exception("internal error in stream batch")
            count_error(code)
            response = convert.error_response(request.sequence, code, message)
        await answers.put(response)

    async def read_all():
        try:
            while True:
                await slots.acquire()
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                task = asyncio.create_task(answer_one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)
        finally:
            await answers.put(None)

    reader = asyncio.create_task(read_all())
    answered = 0
    try:
        while (response := await answers.get()) is not None:
            try:
                await context.write(response)
            except Exception:  # noqa: BLE001 - a failed write means the client went away
                log.debug("stream ended by the client", extra={"fields": {"platform": platform}})
                return
            slots.release()
            answered += 1
        await reader
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()
        log.info("stream closed", extra={"fields": {"platform": platform, "answered": answered}})
