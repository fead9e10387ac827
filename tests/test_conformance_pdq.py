"""Image hashes against every hash Meta publishes for the conformance corpus (../shared/conformance).

Bounds (per row of expected-pdq.tsv): distance 0 to the Java test and python-threatexchange
(signal.py) rows, which hash full-resolution pixels as we do; <= 10 to the C++ tool's rows (CImg
decoder, 512x512 resize first) for quality >= 80, Meta's own correctness rule; <= 16 to all other
rows with quality >= 50. Low-quality images (q < 50) only check that the quality is low.
docs/FIDELITY.md lists the measured distance of every row.
"""
import numpy as np
import pytest

from fidelity_table import (
    CONFORMANCE,
    LOW_QUALITY_IMAGES,
    MIN_QUALITY,
    bound_for,
    expected_md5,
    expected_pdq,
    require_corpus,
)
from hashmatch.clients.hashing import ImageHashes, hash_file, hash_image, md5_file, rgb_from_image
from hashmatch.core.pdq import hamming_distance, pdq_hash_luma

require_corpus()
ROWS = expected_pdq()
IMAGES = sorted({r.path for r in ROWS})


@pytest.fixture(scope="module")
def hashed():
    return {path: hash_image(CONFORMANCE / path) for path in IMAGES}


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.path.split('/')[-1]}:{r.short_source}" for r in ROWS])
def test_pdq_row_within_bound(row, hashed):
    ours = hashed[row.path]
    distance = hamming_distance(ours.pdq, row.hash)
    bound = bound_for(row, ours.quality)
    if bound is None:
        assert ours.quality < MIN_QUALITY
        if row.quality is not None:
            assert row.quality < MIN_QUALITY
        return
    assert distance <= bound, f"{row.path} vs {row.source}: distance {distance} > {bound}"
    if row.quality is not None:
        assert abs(ours.quality - row.quality) <= 1


@pytest.mark.parametrize("path", IMAGES)
def test_quality_is_low_exactly_for_the_low_quality_images(path, hashed):
    assert (hashed[path].quality < MIN_QUALITY) == (path in LOW_QUALITY_IMAGES)


def test_every_kind_of_bound_is_exercised():
    kinds = {r.kind for r in ROWS}
    assert kinds == {"exact", "cpp", "other"}


@pytest.mark.parametrize("path, md5", sorted(expected_md5().items()))
def test_md5_of_every_corpus_file(path, md5):
    assert md5_file(CONFORMANCE / path).hex() == md5


def test_image_md5_in_image_hashes(hashed):
    md5 = expected_md5()
    for path, h in hashed.items():
        assert h.md5.hex() == md5[path]


def test_hash_file_sniffs_images_by_content(tmp_path, hashed):
    path = IMAGES[0]
    disguised = tmp_path / "holiday.mp4"
    disguised.write_bytes((CONFORMANCE / path).read_bytes())
    got = hash_file(disguised)
    assert isinstance(got, ImageHashes)
    assert (got.pdq, got.quality, got.md5) == (hashed[path].pdq, hashed[path].quality,
                                               hashed[path].md5)


def test_exif_orientation_is_ignored():
    from PIL import Image

    path = CONFORMANCE / "images/reg-test-input/exif-rotn/exif-rotn-6.jpg"
    with Image.open(path) as img:
        assert img.getexif().get(0x0112) == 6
    rows = [r for r in ROWS if r.path.endswith("exif-rotn-6.jpg")]
    assert rows and hamming_distance(hash_image(path).pdq, rows[0].hash) <= 10


@pytest.mark.parametrize("path", IMAGES)
def test_same_pixels_as_pdqhash_package_give_its_hash_exactly(path, hashed):
    """Meta's rule 1: on the same decoded pixels, exactly the C++ hash. pdqhash wraps Meta's C++;
    it rounds a float64 luma to float32, so we feed our core that luma."""
    pdqhash = pytest.importorskip("pdqhash")
    from PIL import Image

    with Image.open(CONFORMANCE / path) as img:
        rgb = rgb_from_image(img)
    bits, quality = pdqhash.compute(rgb)
    theirs = np.packbits(bits.astype(np.uint8)).tobytes()
    luma = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype(np.float32)
    assert pdq_hash_luma(luma) == (theirs, quality)
    # With the reference's own float32 luma the corpus happens to agree exactly too.
    assert hamming_distance(hashed[path].pdq, theirs) <= 2
