"""vPDQ of Meta's sample videos (../shared/conformance/videos) against Meta's published hash files.

At 1 frame a second our output must be exactly the lines with frame_number % int(fps) == 0: same
frame numbers, same timestamps (3 decimals), qualities within 1, and distance < 31 wherever both
qualities are >= 50 (Meta's own regression rule: FFmpeg builds differ in their YUV->RGB rounding,
so hashes match closely, not always exactly). The whole video must match the expected 1-per-second
subset 100% / 100% under Meta's frame-share rule. docs/FIDELITY.md lists the measured numbers.
"""
import pytest

from fidelity_table import (
    CONFORMANCE,
    MIN_QUALITY,
    VIDEO_DISTANCE_BOUND,
    expected_md5,
    expected_vpdq,
    frame_share,
    require_corpus,
    sample_videos,
)
from hashmatch.clients.hashing import VideoHashes, hash_file, hash_video
from hashmatch.core.pdq import hamming_distance

require_corpus()
VIDEOS = sample_videos()


@pytest.fixture(scope="module")
def hashed():
    """Each sample video hashed once at 1 frame a second."""
    return {mp4.name: hash_video(mp4) for mp4 in VIDEOS}


def one_per_second(mp4, fps):
    return [ln for ln in expected_vpdq(mp4.with_suffix(".txt")) if ln.frame_number % int(fps) == 0]


def test_all_three_sample_videos_are_present():
    assert [v.name for v in VIDEOS] == ["chair-19-sd-bar.mp4", "doorknob-hd-no-bar.mp4",
                                        "test-padded-dimensions.mp4"]


@pytest.mark.parametrize("mp4", VIDEOS, ids=lambda p: p.name)
def test_one_per_second_lines(mp4, hashed):
    got = hashed[mp4.name]
    assert got.fps == 30.0
    expected = one_per_second(mp4, got.fps)
    assert [f.frame_number for f in got.frames] == [e.frame_number for e in expected]
    assert [f"{f.timestamp:.3f}" for f in got.frames] == [e.timestamp for e in expected]
    exact = 0
    for f, e in zip(got.frames, expected):
        assert abs(f.quality - e.quality) <= 1, f.frame_number
        distance = hamming_distance(f.pdq, e.hash)
        exact += distance == 0
        if f.quality >= MIN_QUALITY and e.quality >= MIN_QUALITY:
            assert distance < VIDEO_DISTANCE_BOUND, (f.frame_number, distance)
    print(f"\n{mp4.name}: {exact}/{len(expected)} frames exact "
          f"({100 * exact / len(expected):.0f}%)")


@pytest.mark.parametrize("mp4", VIDEOS, ids=lambda p: p.name)
def test_frame_share_against_expected_subset_is_full(mp4, hashed):
    got = hashed[mp4.name]
    expected = one_per_second(mp4, got.fps)
    query = [(f.pdq, f.quality) for f in got.frames]
    compared = [(e.hash, e.quality) for e in expected]
    assert frame_share(query, compared) == (100.0, 100.0)


def test_other_video_does_not_match():
    """Meta's README: chair-19 against any pattern-* video matches 0%."""
    chair = [(e.hash, e.quality) for e in expected_vpdq(CONFORMANCE / "videos/chair-19-sd-bar.txt")]
    pattern = [(e.hash, e.quality)
               for e in expected_vpdq(CONFORMANCE / "expected-vpdq/pattern-hd-no-bar.txt")]
    assert frame_share(chair, pattern) == (0.0, 0.0)


def test_every_frame_of_the_short_video(hashed):
    """seconds_per_hash=0 hashes every frame, like the files themselves."""
    mp4 = CONFORMANCE / "videos/test-padded-dimensions.mp4"
    got = hash_video(mp4, seconds_per_hash=0)
    expected = expected_vpdq(mp4.with_suffix(".txt"))
    assert [f.frame_number for f in got.frames] == [e.frame_number for e in expected]
    for f, e in zip(got.frames, expected):
        if f.quality >= MIN_QUALITY and e.quality >= MIN_QUALITY:
            assert hamming_distance(f.pdq, e.hash) < VIDEO_DISTANCE_BOUND


@pytest.mark.parametrize("mp4", VIDEOS, ids=lambda p: p.name)
def test_md5_and_sniffing(mp4, hashed):
    assert hashed[mp4.name].md5.hex() == expected_md5()[f"videos/{mp4.name}"]
    assert isinstance(hashed[mp4.name], VideoHashes)


def test_hash_file_sniffs_a_video_with_an_image_name(tmp_path, hashed):
    mp4 = CONFORMANCE / "videos/doorknob-hd-no-bar.mp4"
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(mp4.read_bytes())
    got = hash_file(disguised)
    assert isinstance(got, VideoHashes)
    assert [(f.frame_number, f.pdq) for f in got.frames] == \
        [(f.frame_number, f.pdq) for f in hashed[mp4.name].frames]


@pytest.mark.parametrize("mp4", VIDEOS, ids=lambda p: p.name)
def test_project_matcher_finds_the_expected_video(mp4, hashed):
    """The same check through hashmatch.core.video (the server's matcher): our 1-fps hashes of
    the sample video match the listed expected subset, and only it, at 100% / 100%."""
    core_video = pytest.importorskip("hashmatch.core.video")
    np = pytest.importorskip("numpy")
    from hashmatch.core import HashIndex

    listed = {}
    for entry_id, other in enumerate(VIDEOS + [CONFORMANCE / "expected-vpdq/pattern-hd-no-bar.mp4"]):
        lines = [ln for ln in expected_vpdq(other.with_suffix(".txt")) if ln.frame_number % 30 == 0]
        frames, _ = core_video.prepare_frames(
            np.frombuffer(b"".join(ln.hash for ln in lines), np.uint8).reshape(-1, 32),
            [ln.quality for ln in lines])
        listed[entry_id] = (other.name, frames)
    index = HashIndex()
    for entry_id, (_, frames) in listed.items():
        index.add((np.uint64(entry_id) << np.uint64(core_video.FRAME_BITS))
                  + np.arange(len(frames), dtype=np.uint64), frames)
    got = hashed[mp4.name]
    query = np.frombuffer(b"".join(f.pdq for f in got.frames), np.uint8).reshape(-1, 32)
    matches = core_video.match_video(
        index, query, lambda ids: [len(listed[int(i)][1]) for i in ids],
        qualities=[f.quality for f in got.frames])
    names = {listed[int(e)][0] for e in matches.entry_ids}
    assert mp4.name in names
    row = [listed[int(e)][0] for e in matches.entry_ids].index(mp4.name)
    assert (matches.query_percent[row], matches.compared_percent[row]) == (100.0, 100.0)
    assert "pattern-hd-no-bar.mp4" not in names
