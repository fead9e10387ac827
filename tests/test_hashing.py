"""Image hashing in the client (hashmatch.clients.hashing): pixel-mode rules, MD5 of the exact
bytes, sniffing by content, and clear errors for files that cannot be hashed."""
import dataclasses
import hashlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from hashmatch.clients.hashing import (
    ImageHashes,
    UnsupportedFileError,
    hash_file,
    hash_image,
    md5_file,
    rgb_from_image,
)
from hashmatch.core.pdq import hamming_distance, pdq_hash
from media import pattern_rgb


@pytest.fixture(scope="module")
def rgb():
    return pattern_rgb(120, 160, seed=4)


def save(tmp_path, img, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_png_hash_equals_core_hash_of_the_pixels(tmp_path, rgb):
    path = save(tmp_path, Image.fromarray(rgb), "a.png")
    got = hash_image(path)
    assert isinstance(got, ImageHashes)
    assert (got.pdq, got.quality) == pdq_hash(rgb)
    assert got.quality >= 50
    assert got.md5 == hashlib.md5(path.read_bytes()).digest()
    assert got.path == str(path)
    assert len(got.md5) == 16 and len(got.pdq) == 32


def test_result_is_frozen_and_repr_is_hex(tmp_path, rgb):
    got = hash_image(save(tmp_path, Image.fromarray(rgb), "a.png"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.quality = 3
    assert got.pdq.hex() in repr(got)


def test_alpha_is_dropped_not_composited(tmp_path, rgb):
    rgba = np.dstack([rgb, np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None, :]
                      .repeat(rgb.shape[0], 0)])
    got = hash_image(save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"))
    assert (got.pdq, got.quality) == pdq_hash(rgb)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "CMYK", "YCbCr", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, rgb, mode):
    img = Image.fromarray(rgb)
    if mode == "I;16":
        grey = np.asarray(img.convert("L")).astype(np.uint16) * 257
        converted = Image.fromarray(grey)
        assert converted.mode == "I;16"
    else:
        converted = img.convert(mode)
    fmt = "jpeg" if mode in ("CMYK", "YCbCr") else "png" if mode != "CMYK" else "tiff"
    if mode == "YCbCr":
        fmt = "tiff"
    path = save(tmp_path, converted, f"a.{fmt}")
    got = hash_image(path)
    with Image.open(path) as reopened:
        pixels = rgb_from_image(reopened)
    assert pixels.dtype == np.uint8 and pixels.shape == rgb.shape
    assert (got.pdq, got.quality) == pdq_hash(pixels)
    if mode in ("L", "LA", "I;16"):
        expected_grey = np.asarray(img.convert("L"))
        assert np.array_equal(pixels[:, :, 0], expected_grey)
        assert hamming_distance(got.pdq, pdq_hash(np.dstack([expected_grey] * 3))[0]) == 0


def test_16_bit_grey_keeps_its_high_byte():
    grey = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    pixels = rgb_from_image(Image.fromarray(grey))
    assert np.array_equal(pixels[:, :, 1], (grey >> 8).astype(np.uint8))


def test_exif_orientation_is_ignored(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, img, "rot.jpg", exif=exif, quality=95)
    plain = save(tmp_path, img, "plain.jpg", quality=95)
    assert hash_image(path).pdq == hash_image(plain).pdq


def test_first_frame_of_an_animated_gif(tmp_path):
    frames = [Image.fromarray(pattern_rgb(64, 64, seed=s)) for s in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as img:
        first = rgb_from_image(img)
    assert (hash_image(path).pdq, hash_image(path).quality) == pdq_hash(first)


def test_md5_streams_large_files(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 17, np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert md5_file(path) == hashlib.md5(data).digest()


def test_hash_file_sniffs_content_not_extension(tmp_path, rgb):
    path = save(tmp_path, Image.fromarray(rgb), "a.png")
    renamed = tmp_path / "clip.mov"
    renamed.write_bytes(path.read_bytes())
    got = hash_file(renamed)
    assert isinstance(got, ImageHashes)
    assert got.pdq == hash_image(path).pdq


def test_heic_is_a_photo_that_matches_the_same_photo_as_jpeg(tmp_path, rgb):
    # An iPhone photo: hashed as a one-frame video it would never match its own JPEG copy.
    img = Image.fromarray(rgb).resize((640, 480), Image.Resampling.BICUBIC)
    # Written through pillow_heif's own API: the test must not be what teaches Pillow HEIC.
    pillow_heif.from_pillow(img).save(tmp_path / "IMG_0001.HEIC", quality=90)
    heic = hash_file(tmp_path / "IMG_0001.HEIC")
    jpeg = hash_file(save(tmp_path, img, "IMG_0001.jpg", quality=90))
    assert isinstance(heic, ImageHashes) and isinstance(jpeg, ImageHashes)
    assert heic.quality >= 50
    assert hamming_distance(heic.pdq, jpeg.pdq) <= 31


def test_tiny_image_has_quality_zero(tmp_path):
    got = hash_image(save(tmp_path, Image.new("RGB", (3, 3), "red"), "tiny.png"))
    assert got.quality == 0 and got.pdq == bytes(32)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"just some text, not a picture\n" * 10, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "(not an image|broken|truncated)"),
])
def test_unsupported_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFileError, match=message) as info:
        hash_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_jpeg_is_unsupported(tmp_path, rgb):
    path = save(tmp_path, Image.fromarray(rgb), "a.jpg", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(UnsupportedFileError, match="cut.jpg.*(broken|truncated)"):
        hash_image(cut)


def test_hash_file_rejects_non_media(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(UnsupportedFileError, match="notes.txt"):
        hash_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        hash_image(tmp_path / "nope.jpg")
    with pytest.raises(UnsupportedFileError, match="directory"):
        hash_file(tmp_path)


def test_decompression_bomb_is_refused_clearly(tmp_path, rgb, monkeypatch):
    path = save(tmp_path, Image.fromarray(rgb), "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UnsupportedFileError, match="big.png.*too large"):
        hash_image(path)


def test_unreadable_file_is_an_os_error_not_a_format_error(tmp_path, rgb, monkeypatch):
    """A file we may not read is reported as such, not as an unknown format. Root ignores
    permission bits (CI runs as root), so the refusal is simulated at open()."""
    import builtins

    path = save(tmp_path, Image.fromarray(rgb), "locked.png")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(PermissionError):
        hash_file(path)


def test_messages_carry_no_raw_library_text(tmp_path, rgb, monkeypatch):
    """No FFmpeg errno number, no Pillow warning naming its own source file."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(5000))
    with pytest.raises(UnsupportedFileError) as info:
        hash_file(junk)
    assert "Errno" not in str(info.value) and "Invalid data" in str(info.value)
    path = save(tmp_path, Image.fromarray(rgb), "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", rgb.shape[0] * rgb.shape[1] - 1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hash_file(path).pdq == hash_image(path).pdq
