"""The compiled PDQ (hashmatch.core.pdq) against a dumb NumPy oracle of the same algorithm.

The oracle below is written from the algorithm's description, step by step, with NumPy float32
arrays (so each operation rounds to float32 as in Meta's C++ reference); it is slow and obvious on
purpose. The compiled hash must equal it bit for bit on random images of odd sizes and on edge
cases. A second check runs the pdqhash package (Meta's C++ wrapped in Cython) on the same luma.
"""
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hashmatch.core import _pdq
from hashmatch.core.pdq import (
    DIHEDRAL_NAMES,
    hamming_distance,
    luma_from_rgb,
    pdq_hash,
    pdq_hash_dihedral,
    pdq_hash_luma,
)

F32 = np.float32


# ---- the oracle --------------------------------------------------------------------------------

def oracle_luma(rgb):
    r, g, b = (rgb[:, :, k].astype(F32) for k in range(3))
    return F32(0.299) * r + F32(0.587) * g + F32(0.114) * b


def oracle_box(x, window):
    """One box-filter pass down axis 0 of x (float32), all other axes at once."""
    n = x.shape[0]
    half = (window + 2) // 2
    out = np.empty_like(x)
    total = np.zeros_like(x[0])
    count, left, right, o = 0, 0, 0, 0
    for _ in range(half - 1):
        total = total + x[right]
        right += 1
        count += 1
    for _ in range(window - half + 1):
        total = total + x[right]
        right += 1
        count += 1
        out[o] = total / F32(count)
        o += 1
    for _ in range(n - window):
        total = total + x[right]
        total = total - x[left]
        right += 1
        left += 1
        out[o] = total / F32(count)
        o += 1
    for _ in range(half - 1):
        total = total - x[left]
        left += 1
        count -= 1
        out[o] = total / F32(count)
        o += 1
    return out


def oracle_window(old, new=64):
    return math.ceil(old / (2 * new))


def oracle_dct_matrix():
    scale = float(F32(math.sqrt(2.0 / 64)))
    return np.array([[F32(scale * math.cos(math.pi / 2 / 64 * (i + 1) * (2 * j + 1)))
                      for j in range(64)] for i in range(16)], dtype=F32)


def oracle_hash(rgb, blur_64x64=False):
    luma = oracle_luma(rgb)
    rows, cols = luma.shape
    if rows < 5 or cols < 5:
        return bytes(32), 0
    if rows == 64 and cols == 64 and not blur_64x64:
        small = luma
    else:
        for _ in range(2):
            luma = oracle_box(luma.T, oracle_window(cols)).T
            luma = oracle_box(luma, oracle_window(rows))
        ri = [int(((i + 0.5) * rows) / 64) for i in range(64)]
        ci = [int(((j + 0.5) * cols) / 64) for j in range(64)]
        small = luma[np.ix_(ri, ci)]
    down = ((small[:-1, :] - small[1:, :]) * F32(100)) / F32(255)
    across = ((small[:, :-1] - small[:, 1:]) * F32(100)) / F32(255)
    gradient = int(np.abs(down.astype(np.int32)).sum() + np.abs(across.astype(np.int32)).sum())
    quality = min(gradient // 90, 100)
    d = oracle_dct_matrix()
    t = np.zeros((16, 64), F32)
    for k in range(64):
        t = t + d[:, k:k + 1] * small[k:k + 1, :]
    b = np.zeros((16, 16), F32)
    for k in range(64):
        b = b + t[:, k:k + 1] * d[:, k][None, :]
    return oracle_bits(b), quality


def oracle_bits(b):
    median = np.sort(b.ravel())[127]
    bits = "".join("1" if b[i, j] > median else "0" for i in reversed(range(16))
                   for j in reversed(range(16)))
    return int(bits, 2).to_bytes(32, "big")


# ---- helpers ------------------------------------------------------------------------------------

def smooth_image(rng, h, w):
    """A random image with structure at several scales, so the hash has real quality."""
    base = rng.integers(0, 256, (max(h // 8, 1) + 1, max(w // 8, 1) + 1, 3)).astype(np.float64)
    ys = np.linspace(0, base.shape[0] - 1, h)
    xs = np.linspace(0, base.shape[1] - 1, w)
    img = base[ys.astype(int)][:, xs.astype(int)]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def pdqhash_package(rgb):
    import pdqhash

    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    return np.packbits(bits.astype(np.uint8)).tobytes(), quality


# ---- tests --------------------------------------------------------------------------------------

def test_stage_constants_match_oracle():
    assert np.array_equal(_pdq.dct_matrix(), oracle_dct_matrix())
    for old in [1, 5, 64, 127, 128, 129, 255, 256, 257, 1000, 4032]:
        assert _pdq.jarosz_window_size(old, 64) == oracle_window(old)


def test_luma_is_float32_reference_formula():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    luma = luma_from_rgb(rgb)
    assert luma.dtype == np.float32 and luma.shape == (37, 23)
    assert np.array_equal(luma, oracle_luma(rgb))


@pytest.mark.parametrize("seed", range(12))
def test_random_odd_sizes_equal_oracle(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 400, 2) | 1)
    rgb = smooth_image(rng, h, w) if seed % 2 else rng.integers(0, 256, (h, w, 3), np.uint8)
    assert pdq_hash(rgb) == oracle_hash(rgb), (h, w)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (2, 300), (4, 4), (4, 900), (5, 5), (5, 2000),
                                   (2000, 5), (7, 13), (64, 64), (63, 65), (128, 128), (129, 257)])
def test_edge_sizes_equal_oracle(shape):
    rng = np.random.default_rng(sum(shape))
    rgb = smooth_image(rng, *shape)
    got = pdq_hash(rgb)
    assert got == oracle_hash(rgb)
    if min(shape) < 5:
        assert got == (bytes(32), 0)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_image_has_quality_zero(value):
    rgb = np.full((100, 80, 3), value, np.uint8)
    got = pdq_hash(rgb)
    assert got[1] == 0
    assert got == oracle_hash(rgb)


def test_64x64_skips_blur_like_the_reference_but_dihedral_blurs():
    rgb = smooth_image(np.random.default_rng(64), 64, 64)
    assert pdq_hash(rgb) == oracle_hash(rgb)
    hashes, quality = pdq_hash_dihedral(rgb)
    assert (hashes[0], quality) == oracle_hash(rgb, blur_64x64=True)


def test_any_strides_give_the_same_hash():
    rng = np.random.default_rng(7)
    big = smooth_image(rng, 300, 220)
    view = big[10:250:2, ::-3]
    assert not view.flags.c_contiguous
    assert pdq_hash(view) == pdq_hash(np.ascontiguousarray(view))
    fortran = np.asfortranarray(big)
    assert pdq_hash(fortran) == pdq_hash(big)
    bgr_view = big[:, :, ::-1][:, :, ::-1]
    assert pdq_hash(bgr_view) == pdq_hash(big)


def test_dihedral_hashes_are_hashes_of_the_transformed_image():
    """At 320x576 (64 * 5 by 64 * 9) the decimation points and the odd box windows are symmetric,
    so rotating or flipping the pixels commutes with blur + decimation and each variant must be
    exactly the hash of the transformed image. (At other sizes they differ by a few bits.)"""
    rgb = smooth_image(np.random.default_rng(3), 320, 576)
    hashes, quality = pdq_hash_dihedral(rgb)
    assert len(hashes) == len(DIHEDRAL_NAMES) == 8
    transformed = {
        "original": rgb, "rotate90": np.rot90(rgb, 1), "rotate180": np.rot90(rgb, 2),
        "rotate270": np.rot90(rgb, -1), "flipx": rgb[::-1], "flipy": rgb[:, ::-1],
        "flipplus1": rgb.transpose(1, 0, 2), "flipminus1": np.rot90(rgb, 2).transpose(1, 0, 2),
    }
    assert quality > 50
    for name, h in zip(DIHEDRAL_NAMES, hashes):
        assert (h, quality) == pdq_hash(transformed[name]), name


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 3), np.int16), "uint8"),
    (np.zeros((10, 10), np.uint8), "shape"),
    (np.zeros((10, 10, 4), np.uint8), "shape"),
    (np.zeros((10, 10, 3, 1), np.uint8), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 0, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "uint8"),
])
def test_bad_input_is_a_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        pdq_hash(bad)


def test_bad_luma_is_a_value_error():
    with pytest.raises(ValueError, match="float32"):
        pdq_hash_luma(np.zeros((10, 10), np.float64))
    with pytest.raises(ValueError, match="shape"):
        pdq_hash_luma(np.zeros((10, 10, 1), np.float32))


def test_luma_entry_equals_rgb_entry_and_leaves_input_alone():
    rgb = smooth_image(np.random.default_rng(11), 90, 77)
    luma = luma_from_rgb(rgb)
    before = luma.copy()
    assert pdq_hash_luma(luma) == pdq_hash(rgb)
    assert np.array_equal(luma, before)


def test_threads_hash_concurrently_and_agree():
    rng = np.random.default_rng(5)
    images = [smooth_image(rng, int(h), int(w)) for h, w in rng.integers(50, 400, (16, 2))]
    expected = [pdq_hash(im) for im in images]
    seen_threads = set()

    def work(im):
        seen_threads.add(threading.get_ident())
        return pdq_hash(im)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, images * 3)) == expected * 3


@pytest.mark.parametrize("seed", range(6))
def test_pdqhash_package_on_same_luma_is_bit_exact(seed):
    """pdqhash computes luma in float64 and rounds it to float32; fed that same luma our hash must
    equal Meta's compiled C++ exactly (Meta's rule 1: same pixels, same hash)."""
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(5, 700, 2))
    rgb = smooth_image(rng, h, w)
    luma64 = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype(F32)
    assert pdq_hash_luma(luma64) == pdqhash_package(rgb)


def test_float32_luma_is_near_pdqhash_float64_luma():
    rng = np.random.default_rng(9)
    for _ in range(10):
        rgb = smooth_image(rng, *(int(v) for v in rng.integers(32, 500, 2)))
        ours, q = pdq_hash(rgb)
        theirs, q2 = pdqhash_package(rgb)
        assert abs(q - q2) <= 1
        assert hamming_distance(ours, theirs) <= 8


@settings(max_examples=60, deadline=None, derandomize=True)
@given(arrays(np.uint8, st.tuples(st.integers(1, 90), st.integers(1, 90), st.just(3)),
              elements=st.integers(0, 255)))
def test_hypothesis_small_images_equal_oracle(rgb):
    assert pdq_hash(rgb) == oracle_hash(rgb)
