"""Issue 3's story for videos, through the installed `hashmatch` command and a server subprocess.

A person submits a sample video (frame hashes at 1 per second and its MD5, nothing else); a
platform's copies of it match as vPDQ matches of that entry: one re-encoded by PyAV at a lower
bitrate and a smaller frame size, and one trimmed by a second at each end. The other sample
videos do not match it. A still frame saved as JPEG matches the video only when the platform
asks for video frames (`--include-video-frames`). Withdrawal stops every match at once.

The trimmed copy is cut on the sampling grid (30 frames = 1 s at 30 fps), so its 1-per-second
frames are frames the person's device hashed; see `test_trim_off_the_sampling_grid` for a cut
between samples.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from media import reencode
from fidelity_table import require_corpus
from test_e2e import CLI, CONSOLE_SCRIPT, hashmatch

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "videos"
SUBMITTED = VIDEOS / "chair-19-sd-bar.mp4"      # 480x720, 30 fps, 564 frames, ~830 kbit/s
OTHERS = [VIDEOS / "doorknob-hd-no-bar.mp4", VIDEOS / "test-padded-dimensions.mp4"]
STILL_FRAME = 300                               # a frame the device hashed (10 s at 1/s)

require_corpus()


def frame_as_jpeg(video: Path, number: int, path: Path) -> Path:
    """Frame `number` of `video` as a JPEG (a screenshot someone posts as a photo)."""
    import av

    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == number:
                frame.to_image().save(path, quality=85)
                return path
    raise ValueError(f"{video} has no frame {number}")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    return {
        "reencoded": reencode(SUBMITTED, folder / "reencoded.mp4", size=(320, 480),
                              bit_rate=150_000),
        "trimmed": reencode(SUBMITTED, folder / "trimmed.mp4", drop_first=30, drop_last=30,
                            bit_rate=1_500_000),
        "still": frame_as_jpeg(SUBMITTED, STILL_FRAME, folder / "still.jpg"),
    }


def test_copies_are_what_they_claim(uploads):
    """The copies really differ from the original in size, bitrate and length."""
    import av

    with av.open(str(SUBMITTED)) as original:
        source = original.streams.video[0]
        shape, frames, bit_rate = (source.width, source.height), source.frames, source.bit_rate
    with av.open(str(uploads["reencoded"])) as copy:
        stream = copy.streams.video[0]
        assert (stream.width, stream.height) == (320, 480) != shape
        assert stream.frames == frames
        assert stream.bit_rate < bit_rate / 2
    with av.open(str(uploads["trimmed"])) as copy:
        assert copy.streams.video[0].frames == frames - 60
    assert uploads["reencoded"].read_bytes() != SUBMITTED.read_bytes()


def test_submit_match_copies_and_withdraw(server_process, uploads):
    server = server_process()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHMATCH_")}
    env["HASHMATCH_SERVER"] = server.target
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else CLI
    platform = ["--api-key", server.api_key]

    def run(*argv, check_code=0):
        return hashmatch(*argv, env=env, command=command, check_code=check_code)

    _, submitted, _ = run("submit", "--json", SUBMITTED)
    (case,) = submitted
    (entry,) = case["entry_ids"]
    assert case["items"][0]["kind"] == "video"
    assert case["items"][0]["sent"] == "md5 + 19 frame hashes"
    _, status, _ = run("status", "--json", case["case_id"], "--pin", case["pin"])
    assert (status[0]["image_count"], status[0]["video_count"]) == (0, 1)
    _, info, _ = run("info", "--json", *platform)
    assert info[0]["counts"].get("vpdq") == 1 and info[0]["video_frame_count"] == 19

    checked = [SUBMITTED, uploads["reencoded"], uploads["trimmed"], *OTHERS, uploads["still"]]
    _, lines, _ = run("match", "--json", *platform, *checked)
    found = {Path(line["path"]).name: line["matches"] for line in lines}
    assert [line["path"] for line in lines] == [str(p) for p in checked]

    assert {(m["kind"], m["entry_id"]) for m in found[SUBMITTED.name]} == {
        ("md5", entry), ("vpdq", entry)}
    for name, least_compared in [("reencoded.mp4", 100.0), ("trimmed.mp4", 17 / 19 * 100)]:
        (hit,) = found[name]
        assert (hit["kind"], hit["entry_id"]) == ("vpdq", entry), name
        assert hit["query_match_percent"] == 100.0, name
        assert hit["compared_match_percent"] >= round(least_compared, 2), name
        assert 0 <= hit["distance"] <= 31, name
    for other in OTHERS:
        assert found[other.name] == [], other.name
    assert found["still.jpg"] == [], "video frames are matched only when asked for"

    _, with_frames, _ = run("match", "--json", *platform, "--include-video-frames",
                            uploads["still"], *OTHERS[:1])
    (still_hit,) = with_frames[0]["matches"]
    assert (still_hit["kind"], still_hit["entry_id"]) == ("vpdq", entry)
    assert still_hit["distance"] <= 31
    assert still_hit["video_frame"] is True and "query_match_percent" not in still_hit
    assert with_frames[1]["matches"] == []

    _, out, _ = run("withdraw", case["case_id"], "--pin", case["pin"])
    assert "withdrawn" in out and case["pin"] not in out
    _, after, _ = run("match", "--json", *platform, "--include-video-frames", SUBMITTED,
                      uploads["reencoded"], uploads["trimmed"], uploads["still"])
    assert [line["matches"] for line in after] == [[], [], [], []]
    _, info, _ = run("info", "--json", *platform)
    assert info[0]["counts"].get("vpdq", 0) == 0 and info[0]["video_frame_count"] == 0


def test_trim_off_the_sampling_grid(uploads, tmp_path):
    """A cut half a second off the grid: at 1 frame per second on both sides no query frame is a
    listed frame, and this video moves too fast for neighbours to be within 31 bits, so the
    copy does NOT match; listing every frame (`--seconds-per-hash 0` at submission) makes it
    match again. In-process (core + client hashing), the same code the server and CLI run."""
    from hashmatch.clients.hashing import hash_video
    from hashmatch.core import HashIndex
    from hashmatch.core import video as vpdq

    offset = reencode(SUBMITTED, tmp_path / "offset.mp4", drop_first=45, drop_last=30,
                      bit_rate=1_500_000)
    query = _frames(hash_video(offset, seconds_per_hash=1.0))

    def listed(seconds_per_hash):
        frames, qualities = _frames(hash_video(SUBMITTED, seconds_per_hash=seconds_per_hash))
        frames, _ = vpdq.prepare_frames(frames, qualities)
        index = HashIndex()
        index.add((np.uint64(1) << np.uint64(vpdq.FRAME_BITS))
                  | np.arange(len(frames), dtype=np.uint64), frames)
        return index, len(frames)

    for seconds_per_hash, should_match in [(1.0, False), (0.0, True)]:
        index, count = listed(seconds_per_hash)
        found = vpdq.match_video(index, query[0], lambda e: np.full(len(e), count),
                                 qualities=query[1])
        assert (len(found) == 1) == should_match, (seconds_per_hash, found)


def _frames(video):
    frames = np.frombuffer(b"".join(f.pdq for f in video.frames), np.uint8).reshape(-1, 32)
    return frames, np.array([f.quality for f in video.frames])
