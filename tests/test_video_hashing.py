"""Client-side vPDQ (hashmatch.clients.video) on videos the tests encode themselves: sampling rule,
frame numbers and timestamps, parallel hashing, progress, and clear errors for files that are not
(complete) videos."""
import hashlib
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest

from hashmatch.clients import video
from hashmatch.clients.hashing import UnsupportedFileError, VideoHashes, hash_file, hash_video
from hashmatch.core.pdq import pdq_hash
from media import make_audio_only, make_video, truncate


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 30 fps, 96x64, mpeg4 in MP4."""
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", 90, (96, 64), fps=30)


def oracle_frames(path):
    """Every decoded frame's PDQ, decoded in the plainest way (one thread, no pool)."""
    with av.open(str(path)) as c:
        return [pdq_hash(f.to_ndarray(format="rgb24", interpolation="AREA"))
                for f in c.decode(video=0)]


def test_one_frame_a_second(clip):
    got = hash_video(clip)
    assert isinstance(got, VideoHashes)
    assert got.fps == 30.0
    assert [f.frame_number for f in got.frames] == [0, 30, 60]
    assert [f.timestamp for f in got.frames] == [0.0, 1.0, 2.0]
    assert got.md5 == hashlib.md5(clip.read_bytes()).digest()
    oracle = oracle_frames(clip)
    assert [(f.pdq, f.quality) for f in got.frames] == [oracle[n] for n in (0, 30, 60)]
    assert all(f.quality >= 50 for f in got.frames)


@pytest.mark.parametrize("seconds, expected", [(0.5, list(range(0, 90, 15))),
                                               (0, list(range(90))),
                                               (0.01, list(range(90))),
                                               (2.0, [0, 60]),
                                               (10.0, [0])])
def test_sampling_step_is_int_of_seconds_times_fps(clip, seconds, expected):
    got = hash_video(clip, seconds_per_hash=seconds)
    assert [f.frame_number for f in got.frames] == expected


def test_every_frame_equals_the_plain_decode(clip):
    got = video.hash_video(clip, seconds_per_hash=0, workers=3)
    assert [(f.pdq, f.quality) for f in got.frames] == oracle_frames(clip)


def test_workers_do_not_change_the_result(clip):
    one = video.hash_video(clip, seconds_per_hash=0.2, workers=1)
    many = video.hash_video(clip, seconds_per_hash=0.2, workers=4)
    assert one == many


@pytest.mark.parametrize("fps, step", [(Fraction(30000, 1001), 29), (25, 25), (5, 5),
                                       (Fraction(1, 2), 1)])
def test_non_integer_and_slow_frame_rates(tmp_path, fps, step):
    path = make_video(tmp_path / "r.mp4", 31, (64, 48), fps=fps)
    got = hash_video(path)
    assert got.fps == pytest.approx(float(fps))
    assert [f.frame_number for f in got.frames] == list(range(0, 31, step))
    for f in got.frames:
        assert f.timestamp == pytest.approx(f.frame_number / got.fps, rel=1e-6)
        assert f.timestamp == float(np.float32(f.frame_number) / np.float32(got.fps))


def test_frame_rate_rule_average_then_real():
    assert video.frame_rate(SimpleNamespace(average_rate=Fraction(30), guessed_rate=Fraction(25),
                                            base_rate=Fraction(25))) == 30
    assert video.frame_rate(SimpleNamespace(average_rate=None, guessed_rate=Fraction(25),
                                            base_rate=Fraction(24))) == 25
    assert video.frame_rate(SimpleNamespace(average_rate=Fraction(0), guessed_rate=None,
                                            base_rate=Fraction(24))) == 24
    assert video.frame_rate(SimpleNamespace(average_rate=None, guessed_rate=None,
                                            base_rate=None)) is None


def test_progress_reports_every_decoded_frame(clip):
    calls = []
    hash_video(clip, progress=lambda done, total: calls.append((done, total)))
    assert [c[0] for c in calls] == list(range(1, 91))
    assert {c[1] for c in calls} == {90}


@pytest.mark.parametrize("ext, codec", [("mkv", "mpeg4"), ("avi", "mpeg4"), ("webm", "libvpx-vp9"),
                                        ("mov", "mpeg4")])
def test_other_containers_and_codecs(tmp_path, ext, codec):
    path = make_video(tmp_path / f"c.{ext}", 45, (80, 48), fps=15, codec=codec)
    got = hash_file(path)
    assert isinstance(got, VideoHashes)
    assert [f.frame_number for f in got.frames] == [0, 15, 30]


def test_first_video_stream_is_used_when_audio_comes_first(tmp_path):
    path = make_video(tmp_path / "av.mp4", 40, (64, 48), fps=20, audio=True)
    with av.open(str(path)) as c:
        assert c.streams[0].type == "audio"
    got = hash_video(path)
    assert [f.frame_number for f in got.frames] == [0, 20]


def test_odd_frame_size(tmp_path):
    path = make_video(tmp_path / "odd.mkv", 20, (33, 17), fps=10, codec="ffv1", pix_fmt="yuv444p")
    got = hash_video(path)
    assert [f.frame_number for f in got.frames] == [0, 10]


def test_tiny_frames_hash_to_quality_zero(tmp_path):
    path = make_video(tmp_path / "tiny.mkv", 5, (4, 4), fps=5, codec="ffv1", pix_fmt="yuv444p")
    got = hash_video(path)
    assert [(f.pdq, f.quality) for f in got.frames] == [(bytes(32), 0)]


def test_audio_only_file_is_unsupported(tmp_path):
    path = make_audio_only(tmp_path / "voice.m4a")
    with pytest.raises(UnsupportedFileError, match="voice.m4a.*no video"):
        hash_video(path)
    with pytest.raises(UnsupportedFileError, match="voice.m4a"):
        hash_file(path)


@pytest.mark.parametrize("ext, keep", [("mp4", 0.5), ("mp4", 0.9), ("mkv", 0.5), ("avi", 0.7)])
def test_truncated_file_is_unsupported(tmp_path, ext, keep):
    whole = make_video(tmp_path / f"whole.{ext}", 60, (64, 48), fps=20)
    cut = truncate(whole, tmp_path / f"cut.{ext}", keep)
    with pytest.raises(UnsupportedFileError, match=f"cut.{ext}.*(truncated|broken)"):
        hash_video(cut)


def test_unknown_container_is_unsupported(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(UnsupportedFileError, match="noise.bin"):
        hash_file(path)


def test_negative_seconds_per_hash_is_rejected(clip):
    with pytest.raises(ValueError, match="seconds_per_hash"):
        hash_video(clip, seconds_per_hash=-1)


def test_decoding_waits_for_hashing_so_memory_stays_flat(clip, monkeypatch):
    """While hashing is blocked, decoding stops after a small window of sampled frames instead of
    queueing the whole video."""
    import threading

    release = threading.Event()
    real = video._hash_frame

    def blocked(frame):
        release.wait()
        return real(frame)

    monkeypatch.setattr(video, "_hash_frame", blocked)
    decoded_while_blocked = []

    def progress(done, total):
        if not release.is_set():
            decoded_while_blocked.append(done)

    timer = threading.Timer(0.3, release.set)
    timer.start()
    got = video.hash_video(clip, seconds_per_hash=0, progress=progress, workers=1)
    timer.join()
    assert len(got.frames) == 90
    window = video._WINDOW_PER_WORKER * 1 + 1
    assert max(decoded_while_blocked) <= window


def test_hash_file_passes_progress_for_videos(clip):
    calls = []
    got = hash_file(clip, progress=lambda done, total: calls.append(done))
    assert isinstance(got, VideoHashes)
    assert calls[-1] == 90


def test_yuv_is_read_as_bt601_whatever_the_tags_say(tmp_path):
    """vpdq's swscale context never sees colour tags, so a BT.709-tagged clip is still converted
    with the BT.601 matrix (limited range). Checked against the textbook formula on 4:4:4 frames
    (no chroma resampling), where honouring the tag would be off by up to ~30 levels."""
    path = make_video(tmp_path / "bt709.mp4", 3, (96, 64), codec="libx264", pix_fmt="yuv444p",
                      colorspace=1)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    assert frame.colorspace == 1
    y, u, v = (plane.astype(np.float64) for plane in frame.to_ndarray())
    y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    bt601 = np.clip(np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], -1)
                    .round(), 0, 255)
    assert np.abs(video.frame_to_rgb(frame) - bt601).max() <= 1
    tagged = frame.to_ndarray(format="rgb24", interpolation="AREA").astype(np.float64)
    assert np.abs(tagged - bt601).max() > 10
    got = hash_video(path, seconds_per_hash=0)
    assert (got.frames[0].pdq, got.frames[0].quality) == pdq_hash(video.frame_to_rgb(frame))


def test_hash_file_takes_the_sampling_interval(clip):
    got = hash_file(clip, seconds_per_hash=0.5)
    assert [f.frame_number for f in got.frames] == list(range(0, 90, 15))
