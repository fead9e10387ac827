"""The person's web page in a real headless Chromium against a real server (gRPC-Web bridge on
--web-listen, SQLite store, gRPC for the platform).

Proves: the page's PDQ and MD5 equal `hashmatch hash` on every conformance image; bad files get
a clear message and lose nothing; the whole flow (hash, review, submit, id + PIN download, a
platform matches an edited copy, status, wrong PIN, withdraw, the copy stops matching); no
request carries image bytes and nothing is stored in the browser; axe-core finds no
accessibility violation in English or Spanish. Screenshots of each step go to the artefact
folder (HASHMATCH_WEB_ARTEFACTS, else a temporary folder; its path is printed).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pathlib
import re
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from hashmatch.clients.client import HashmatchClient
from hashmatch.clients.hashing import hash_file
from hashmatch.server.app import ServerThread
from hashmatch.server.config import ServerConfig
from hashmatch.server.store import Store
from hashmatch.server.web import STATIC_DIR, grpc_web_frame
from hashmatch.v1 import hashmatch_pb2 as pb

from web_browser import Browser

pytestmark = pytest.mark.slow

CONFORMANCE = (pathlib.Path(__file__).parents[1] / ".." / "shared" / "conformance").resolve()
IMAGES = sorted(glob.glob(str(CONFORMANCE / "images" / "**" / "*.jpg"), recursive=True))
VIDEO = CONFORMANCE / "videos" / "chair-19-sd-bar.mp4"
AXE = pathlib.Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> pathlib.Path:
    folder = pathlib.Path(os.environ.get("HASHMATCH_WEB_ARTEFACTS")
                          or tmp_path_factory.mktemp("web-artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"web page screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(server, web base URL, platform API key) on a fresh store."""
    db = str(tmp_path_factory.mktemp("web-db") / "list.db")
    store = Store(db)
    api_key = store.add_platform("web-test-platform")
    store.close()
    server = ServerThread(ServerConfig(db_path=db, listen="127.0.0.1:0",
                                       web_listen="127.0.0.1:0", worker_threads=2)).start()
    yield server, f"http://127.0.0.1:{server.app.web.port}/", api_key
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("downloads"))
    yield b
    b.close()


def choose(browser: Browser, paths) -> None:
    browser.find("#files").send_keys("\n".join(str(p) for p in paths))


def hashed_items(browser: Browser, count: int) -> dict[str, dict]:
    """{file name: the li's data-* (md5, pdq, quality, frames)} once `count` files are done."""
    browser.wait(lambda: len(browser.driver.find_elements(
        "css selector", "#list li[data-done='1']")) == count, f"{count} files hashed", 120)
    return {row["file"]: row for row in browser.driver.execute_script(
        "return [...document.querySelectorAll('#list li')].map(li => ({...li.dataset, "
        "note: li.querySelector('.note').textContent}))")}


def catalogue(browser: Browser, key: str) -> str:
    return browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"import('./i18n.js').then(m => done(m.CATALOGUE.en[{key!r}]));")


def test_page_hashes_equal_hashmatch_hash_and_bad_files_lose_nothing(site, browser, artefacts,
                                                                     tmp_path):
    _, url, _ = site
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is text, not a photo\n")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (3, 3), (200, 10, 10)).save(tiny)
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:  # sparse: 3 GiB that take no disk
        f.truncate(3 * 1024 ** 3)
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(np.random.default_rng(1).bytes(20_000))
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # over the 64 MiB the page decodes: MD5 only
        f.truncate(65 * 1024 ** 2)
    browser.open(url)
    choose(browser, [*IMAGES[:3], not_image, tiny, huge, big, broken_video, *IMAGES[3:]])
    rows = hashed_items(browser, len(IMAGES) + 5)
    browser.screenshot(artefacts / "1-hashed.png")

    for path in IMAGES:
        want, got = hash_file(path), rows[os.path.basename(path)]
        assert got["md5"] == want.md5.hex(), path
        assert (got["pdq"], int(got["quality"])) == (want.pdq.hex(), want.quality), path
    messages = {name: rows[name]["note"]
                for name in ("notes.jpg", "tiny.png", "huge.mp4", "big.jpg")}
    assert "65.0 MB" in messages["big.jpg"] and "64.0 MB" in messages["big.jpg"]
    assert rows["big.jpg"]["md5"] == hashlib.md5(bytes(65 * 1024 ** 2)).hexdigest()
    assert rows["broken.mp4"]["note"] == catalogue(browser, "doneVideoMd5")  # said plainly
    assert rows["broken.mp4"]["md5"] == hash_file_md5(broken_video)
    assert messages["notes.jpg"] == catalogue(browser, "errNotImage")
    assert "3×3 pixels" in messages["tiny.png"]
    assert "3.0 GB" in messages["huge.mp4"] and "2.0 GB" in messages["huge.mp4"]
    review = browser.driver.execute_script(
        "return [...document.querySelectorAll('#review tbody tr')]"
        ".map(r => r.cells[0].textContent)")
    # Every conformance photo, the tiny and big photos and the broken video (their MD5s) are still
    # there to send; the text file and the huge file are not.
    assert sorted(review) == sorted([os.path.basename(p) for p in IMAGES]
                                    + ["tiny.png", "big.jpg", "broken.mp4"])
    assert browser.find("#submit").is_enabled()


def pixel_rule_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """One photo in every EXIF orientation and in the Pillow modes the core converts."""
    source = CONFORMANCE / "images" / "reg-test-input" / "labelme-subset" / "q0122.jpg"
    with Image.open(source) as img:
        rgb = img.convert("RGB").crop((0, 0, 256, 200))  # not square: transposes show
    files = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        files[f"orientation-{orientation}.jpg"] = rgb, {"exif": exif.tobytes(), "quality": 92}
    files["palette.png"] = rgb.quantize(64), {}
    files["grey.png"] = rgb.convert("L"), {}
    files["grey-16bit.png"] = Image.fromarray(
        (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257 + 100).astype(np.uint16)), {}
    files["opaque-alpha.png"] = rgb.convert("RGBA"), {}
    files["cmyk.jpg"] = rgb.convert("CMYK"), {"quality": 95}
    paths = {}
    for name, (img, options) in files.items():
        paths[name] = folder / name
        img.save(paths[name], **options)
    see_through = rgb.convert("RGBA")
    see_through.putpixel((5, 5), (1, 2, 3, 0))
    paths["see-through.png"] = folder / "see-through.png"
    see_through.save(paths["see-through.png"])
    return paths


def test_page_follows_the_cores_pixel_rules(site, browser, tmp_path):
    """EXIF orientation (all 8), palette, grey, 16-bit grey, alpha and CMYK as clients/hashing.py:
    equal PDQ, or (for transparency) MD5 only with a message."""
    _, url, _ = site
    paths = pixel_rule_files(tmp_path)
    browser.open(url)
    choose(browser, paths.values())
    rows = hashed_items(browser, len(paths))
    differ = {}
    for name, path in paths.items():
        want, got = hash_file(path), rows[name]
        assert got["md5"] == want.md5.hex(), name
        if name == "see-through.png":
            assert "pdq" not in got and got["note"] == catalogue(browser, "errTransparent")
        elif got["pdq"] != want.pdq.hex():
            differ[name] = (int(got["pdq"], 16) ^ int(want.pdq.hex(), 16)).bit_count()
    assert differ == {}, f"PDQ distance to hashmatch hash: {differ}"


def hash_file_md5(path) -> str:
    return hashlib.md5(pathlib.Path(path).read_bytes()).hexdigest()


def edited_copy(path, out: pathlib.Path) -> pathlib.Path:
    """What a re-uploader might post: scaled to 80 %, a strip cropped, saved at JPEG quality 70."""
    with Image.open(path) as img:
        w, h = img.width * 8 // 10, img.height * 8 // 10
        img.convert("RGB").resize((w, h)).crop((0, 0, w, h - 8)).save(out, quality=70)
    return out


def test_submit_check_withdraw_and_the_copy_stops_matching(site, browser, artefacts, tmp_path):
    server, url, api_key = site
    photo = CONFORMANCE / "images" / "reg-test-input" / "dih" / "bridge-1-original.jpg"
    browser.open(url)
    choose(browser, [photo, VIDEO])
    rows = hashed_items(browser, 2)
    video = rows[VIDEO.name]
    assert video["md5"] == hash_file(VIDEO).md5.hex()
    frames = video["frames"].split(",")
    assert len(frames) >= 15, "Chromium decodes H.264 here, so the page must send vPDQ frames"
    ffmpeg = [f.pdq.hex() for f in hash_file(VIDEO).frames]
    print("vPDQ frames, browser vs FFmpeg (hashmatch hash), distances:",
          [(int(a, 16) ^ int(b, 16)).bit_count() for a, b in zip(frames, ffmpeg)],
          f"({len(frames)} vs {len(ffmpeg)} frames)")
    review = browser.find("#review details")
    review.click()  # every frame hash that will be sent is there to see
    assert review.text.split("\n")[1:] == [f"{h} ({q})" for h, q in zip(
        frames, video["qualities"].split(","))]
    browser.screenshot(artefacts / "2-review.png")

    browser.find("#submit").click()
    browser.wait(lambda: browser.text("#case-pin"), "case id and PIN")
    case_id, pin = browser.text("#case-id"), browser.text("#case-pin")
    # What was sent is no longer pending: it cannot go out twice by a second click.
    assert browser.text("#review tbody") == catalogue(browser, "nothingToSend")
    assert not browser.find("#submit").is_enabled()
    browser.find("#download").click()
    browser.screenshot(artefacts / "3-case-id-and-pin.png")
    saved = browser.wait(lambda: list(browser.download_dir.glob(f"hashmatch-case-{case_id}.txt")),
                         "download")
    assert f"Case number: {case_id}\nPIN: {pin}\n" in saved[0].read_text()

    copy = hash_file(edited_copy(photo, tmp_path / "copy.jpg"))
    video_hashes = hash_file(VIDEO)  # FFmpeg's frames, not the browser's
    with HashmatchClient(f"127.0.0.1:{server.port}", api_key=api_key) as platform:
        hits = platform.match_batch("pdq", [copy.pdq])
        assert [h.kind for h in hits] == ["pdq"] and 0 < hits[0].distance <= 31
        assert [h.kind for h in platform.match_video(video_hashes)] == ["vpdq"]

        browser.open(url + "case.html?do=status")
        browser.find("#case-id").send_keys(case_id)
        browser.find("#pin").send_keys(pin + Keys.ENTER)  # the keyboard alone sends the form
        browser.wait(lambda: browser.text("#answer"), "status answer")
        assert browser.text("#answer").startswith("Active:")
        assert "1 photo(s), 1 video(s)" in browser.text("#answer")
        browser.screenshot(artefacts / "4-status.png")

        browser.open(url + "case.html?do=withdraw")
        browser.find("#case-id").send_keys(case_id)
        browser.find("#pin").send_keys("0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin))
        browser.find("#confirm").click()
        browser.find("button[type=submit]").click()
        browser.wait(lambda: browser.text("#error"), "wrong-PIN message")
        assert browser.text("#error") == catalogue(browser, "errWrongPin")
        assert browser.find("#case-id").get_attribute("value") == case_id  # nothing typed is lost
        browser.screenshot(artefacts / "5-wrong-pin.png")
        assert platform.match_batch("pdq", [copy.pdq]), "a wrong PIN must not withdraw"

        browser.find("#pin").clear()
        browser.find("#pin").send_keys(pin)
        browser.find("button[type=submit]").click()
        browser.wait(lambda: browser.text("#answer"), "withdrawn answer")
        assert browser.text("#answer") == catalogue(browser, "withdrawn")
        browser.screenshot(artefacts / "6-withdrawn.png")
        assert platform.match_batch("pdq", [copy.pdq]) == []
        assert platform.match_video(video_hashes) == []

    image_bytes = [pathlib.Path(p).read_bytes() for p in (photo, VIDEO, *IMAGES)]
    made = [r for r in browser.requests() if r["document"].startswith(url)]
    sent = [r for r in made if r["method"] != "GET"]
    assert len(sent) == 4, "submit, status, withdraw (wrong PIN), withdraw"
    for request in made:
        assert request["url"].startswith((url, "data:", "blob:")), \
            f"request to another origin: {request['url']}"
    # Every byte of every request body is accounted for: it re-encodes to exactly the hashes the
    # review table showed (or the id and PIN), so there is no room for anything else.
    submitted = pb.SubmitCaseRequest(media=[
        pb.MediaHashes(image=pb.ImageHashes(md5=bytes.fromhex(rows[photo.name]["md5"]),
                                            pdq=bytes.fromhex(rows[photo.name]["pdq"]),
                                            quality=int(rows[photo.name]["quality"]))),
        pb.MediaHashes(video=pb.VideoHashes(
            md5=bytes.fromhex(video["md5"]), frame_pdqs=bytes.fromhex("".join(frames)),
            frame_qualities=map(int, video["qualities"].split(","))))])
    by_id = pb.GetCaseStatusRequest(case_id=case_id, pin=pin).SerializeToString()
    expected = [submitted.SerializeToString(), by_id, by_id, by_id]
    for request, message in zip(sent, expected):
        body = request["body"]
        assert body is not None, f"body of {request['url']} not readable"
        if body != grpc_web_frame(0, message):  # the wrong-PIN call carries the other PIN
            assert "WithdrawCase" in request["url"] and len(body) == len(message) + 5
        for data in image_bytes:
            assert data[len(data) // 2:len(data) // 2 + 64] not in body, request["url"]
    stored = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "indexedDB.databases().then(dbs => done([document.cookie, localStorage.length, "
        "sessionStorage.length, dbs.length]));")
    assert stored == ["", 0, 0, 0]


@pytest.mark.parametrize("page", ["index.html?", "case.html?do=status&", "case.html?do=withdraw&"])
def test_pages_have_no_accessibility_violations_in_both_languages(site, browser, page):
    assert AXE.exists(), f"{AXE} missing: scripts/test.sh runs npm install in tests/node"
    _, url, _ = site
    for lang in ("en", "es"):
        browser.open(f"{url}{page}lang={lang}")
        if page == "index.html?":
            choose(browser, IMAGES[:2])
            hashed_items(browser, 2)
        assert browser.driver.execute_script("return document.documentElement.lang") == lang
        browser.driver.execute_script(AXE.read_text())
        result = browser.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done(r.violations.map(v => "
            "({id: v.id, nodes: v.nodes.map(n => n.target.join(' '))}))));")
        assert result == [], f"{page}lang={lang}: {json.dumps(result)}"


def test_keyboard_reaches_every_control_in_order(site, browser):
    _, url, _ = site
    browser.open(url)
    choose(browser, IMAGES[:1])
    hashed_items(browser, 1)
    reached = []
    for _ in range(11):
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
        reached.append(browser.driver.execute_script(
            "const e = document.activeElement; return e.id || e.getAttribute('href') || "
            "e.getAttribute('aria-label') || e.tagName"))
    assert reached == ["#main", "/index.html?lang=en", "/case.html?do=status&lang=en",
                       "/case.html?do=withdraw&lang=en", "lang", "drop", "files", "folder",
                       "previews", f"Remove {os.path.basename(IMAGES[0])}", "submit"]


def test_folder_choice_and_previews_stay_in_the_page(site, browser, tmp_path):
    _, url, _ = site
    folder = tmp_path / "holiday"
    (folder / "inner").mkdir(parents=True)
    for name, source in (("a.jpg", IMAGES[0]), ("inner/b.jpg", IMAGES[1])):
        (folder / name).write_bytes(pathlib.Path(source).read_bytes())
    browser.open(url)
    browser.find("#folder").send_keys(str(folder))
    rows = hashed_items(browser, 2)
    assert sorted(rows) == ["holiday/a.jpg", "holiday/inner/b.jpg"]
    assert rows["holiday/a.jpg"]["pdq"] == hash_file(IMAGES[0]).pdq.hex()
    assert browser.driver.find_elements("css selector", "#list img") == []  # none unless asked
    browser.find("#previews").click()
    sources = [img.get_attribute("src") for img in
               browser.driver.find_elements("css selector", "#list img")]
    assert len(sources) == 2 and all(src.startswith("blob:") for src in sources)


def test_language_switch_translates_every_string_in_place(site, browser, artefacts):
    _, url, _ = site
    browser.open(url)
    choose(browser, IMAGES[:1])
    hashed_items(browser, 1)
    keys = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('./i18n.js').then(m => done(Object.fromEntries(Object.entries(m.CATALOGUE)"
        ".map(([lang, c]) => [lang, Object.keys(c).sort()]))));")
    assert keys["es"] == keys["en"] and len(keys["en"]) > 50
    english = browser.text("h1")
    browser.driver.execute_script(
        "const s = document.getElementById('lang'); s.value = 'es';"
        "s.dispatchEvent(new Event('change'));")
    assert browser.text("h1") != english and browser.text("h1").startswith("Impide")
    assert browser.text("#list .note").startswith("Listo")  # hashed work kept, now in Spanish
    assert browser.driver.execute_script("return location.search") == "?lang=es"
    links = browser.driver.execute_script(
        "return [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
    assert links == ["/index.html?lang=es", "/case.html?do=status&lang=es",
                     "/case.html?do=withdraw&lang=es"]
    browser.screenshot(artefacts / "7-spanish.png")


def test_first_load_is_under_300_kb_without_the_wasm_module(site, browser):
    _, url, _ = site
    browser.open(url)
    loaded = browser.driver.execute_script(
        "return [performance.getEntriesByType('navigation')[0], "
        "...performance.getEntriesByType('resource')].map(e => [e.name, e.transferSize])")
    assert all(transferred > 0 for _, transferred in loaded), loaded  # not from a cache
    total = sum(transferred for name, transferred in loaded if not name.endswith(".wasm"))
    print(f"first load: {total} bytes in {len(loaded)} requests (pdq.wasm "
          f"{(pathlib.Path(STATIC_DIR) / 'pdq.wasm').stat().st_size} bytes, fetched on the "
          "first hash)")
    assert total < 300_000


def test_measure_page_hashing_speed_against_pdqhash(site, browser, artefacts, tmp_path):
    """Images per second on the same 1080p photo, page and Python in turns in the same run, best
    of 3 rounds each, since other work on the machine disturbs single rounds (recorded in
    docs/WEB.md; no pass/fail on time). The page's figure includes MD5, decode and PDQ."""
    pdqhash = pytest.importorskip("pdqhash", reason="pdqhash comes with the bench extra")
    _, url, _ = site
    copies, rounds = 8, 3
    source = CONFORMANCE / "images" / "reg-test-input" / "dih" / "bridge-1-original.jpg"
    with Image.open(source) as img:
        photo = img.convert("RGB").resize((1920, 1080))
    page, python, core = [], [], []
    for r in range(rounds):
        paths = []
        for i in range(copies):  # a comment apiece, so no copy is a duplicate of another
            paths.append(tmp_path / f"photo-1080p-{r}-{i}.jpg")
            photo.save(paths[-1], quality=90, comment=f"copy {r} {i}".encode())
        browser.open(url)
        choose(browser, paths)
        rows = hashed_items(browser, copies)
        assert rows[paths[0].name]["pdq"] == hash_file(paths[0]).pdq.hex()
        text = browser.text("#speed")
        page.append(float(re.search(r"\(([\d.]+) per second", text).group(1)))
        started = time.perf_counter()
        for path in paths:
            with Image.open(path) as img:
                pdqhash.compute(np.asarray(img.convert("RGB")))
        python.append(copies / (time.perf_counter() - started))
        started = time.perf_counter()
        for path in paths:
            hash_file(path)
        core.append(copies / (time.perf_counter() - started))
    result = {"photo": "1920x1080 JPEG q90", "copies": copies, "rounds": rounds,
              "page_images_per_s": page,
              "pdqhash_python_images_per_s": [round(x, 2) for x in python],
              "hashmatch_hash_images_per_s": [round(x, 2) for x in core],
              "best": {"page": max(page), "pdqhash": round(max(python), 2),
                       "hashmatch_hash": round(max(core), 2)},
              "load_average": os.getloadavg()}
    (artefacts / "speed.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    assert min(page) > 0 and min(python) > 0
