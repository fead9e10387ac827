"""The `hashmatch` command, run in-process (`main(argv)`) against a real server.

Checks what people and scripts rely on: every command's --json lines, messages for bad files
and bad lines, exit codes (0 ok, 1 some item failed or server refused, 2 usage), PINs never
printed except once at submission. tests/test_e2e.py runs the same command as a subprocess.
"""
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from hashmatch.clients import cli
from fidelity_table import SHARED


def natural_photo(seed: int, size=(640, 480)) -> Image.Image:
    """A photo-like image: smooth colour waves, overlapping shapes, blur, sensor-like noise.

    Different seeds give PDQ hashes far apart (> 100 bits); JPEG re-encoding or halving the
    size moves a hash by well under the default threshold of 31.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 2 * np.pi)
        waves[..., channel] = 128 + 90 * np.sin(2 * np.pi * (fx * x / width + fy * y / height)
                                                + phase)
    image = Image.fromarray(waves.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(30, width // 2)), y0 + int(rng.integers(30, height // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def run(capsys, *argv):
    """Runs `hashmatch argv...`; returns (exit code, stdout JSON lines or text, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    if "--json" in argv:
        return code, [json.loads(line) for line in out.splitlines()], err
    return code, out, err


@pytest.fixture
def photos(tmp_path):
    paths = []
    for seed in range(3):
        path = tmp_path / f"photo{seed}.png"
        natural_photo(seed).save(path)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("HASHMATCH_SERVER", "HASHMATCH_API_KEY", "HASHMATCH_PIN"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------- hash (no server)


def test_hash_prints_image_hashes_and_reports_bad_files(capsys, tmp_path, photos):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo")
    code, lines, err = run(capsys, "hash", "--json", photos[0], fake, tmp_path / "gone.png",
                           photos[1])
    assert code == 1
    assert [line.get("path") for line in lines] == [str(photos[0]), str(fake),
                                                     str(tmp_path / "gone.png"), str(photos[1])]
    good = lines[0]
    assert good["kind"] == "image" and good["quality"] >= 50
    assert len(good["pdq"]) == 64 and len(good["md5"]) == 32
    assert "error" in lines[1] and "error" in lines[2]
    assert f"{fake}:" in err and "no such file" in err


def test_hash_text_output_is_one_line_per_photo(capsys, photos):
    code, out, err = run(capsys, "hash", *photos)
    assert code == 0 and err == ""
    assert [line.split(":")[0] for line in out.splitlines()] == [str(p) for p in photos]
    assert all("pdq=" in line and "quality=" in line for line in out.splitlines())


def test_hash_video_compact_and_with_frames(capsys, tmp_path):
    from media import make_video

    video = make_video(tmp_path / "clip.mp4", 60, size=(64, 48))
    code, lines, _ = run(capsys, "hash", "--json", video)
    assert code == 0
    assert lines[0]["kind"] == "video" and lines[0]["frame_count"] == len(lines[0]["frames"]) >= 2
    code, out, _ = run(capsys, "hash", video)
    assert len(out.splitlines()) == 1 and "2 s, 2 frames at 1 frame/s (30 fps video)" in out
    code, out, _ = run(capsys, "hash", "--frames", video)
    assert len(out.splitlines()) == 1 + lines[0]["frame_count"]
    code, denser, _ = run(capsys, "hash", "--json", "--seconds-per-hash", "0.5", video)
    assert denser[0]["frame_count"] > lines[0]["frame_count"]


def test_usage_errors_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        cli.main(["hash"])
    assert caught.value.code == 2
    code, _, err = run(capsys, "match", tmp_path / "a.jpg")
    assert code == 2 and "API key" in err
    code, _, err = run(capsys, "match", "--api-key", "k", "--hashes", "x.txt", tmp_path / "a.jpg")
    assert code == 2 and "either" in err


# ---------------------------------------------------------------------- against a server


def test_submit_status_withdraw_and_pin_sources(capsys, live_server, photos, monkeypatch):
    server = ("--server", live_server.target)
    code, lines, _ = run(capsys, "submit", "--json", *server, *photos)
    assert code == 0
    case = lines[0]
    assert len(case["entry_ids"]) == 3 and case["pin"]
    assert [item["sent"] for item in case["items"]] == ["pdq + md5"] * 3

    code, out, _ = run(capsys, "status", *server, case["case_id"], "--pin", case["pin"])
    assert code == 0 and "active" in out and "3 image(s)" in out
    assert case["pin"] not in out

    code, _, err = run(capsys, "status", *server, case["case_id"], "--pin", "00000000")
    assert code == 1 and "PERMISSION_DENIED" in err

    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = run(capsys, "withdraw", *server, case["case_id"])
    assert code == 2 and "PIN" in err

    monkeypatch.setenv("HASHMATCH_PIN", case["pin"])
    code, lines, _ = run(capsys, "withdraw", "--json", *server, case["case_id"])
    assert code == 0 and lines == [{"case_id": case["case_id"], "state": "withdrawn",
                                    "sequence": lines[0]["sequence"]}]
    code, lines, _ = run(capsys, "status", "--json", *server, case["case_id"])
    assert lines[0]["state"] == "withdrawn" and lines[0]["withdrawn_unix"] > 0


def test_submit_low_quality_photo_sends_md5_only(capsys, live_server, tmp_path):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(flat)
    code, lines, err = run(capsys, "submit", "--json", "--server", live_server.target, flat)
    assert code == 0
    assert lines[0]["items"][0]["sent"] == "md5 only (low quality)"
    assert "below 50" in err and "only exact copies" in err
    code, lines, _ = run(capsys, "match", "--json", "--server", live_server.target,
                         "--api-key", live_server.api_key, flat)
    assert [m["kind"] for m in lines[0]["matches"]] == ["md5"]


def test_submit_with_a_bad_file_submits_nothing_unless_partial(capsys, live_server, photos,
                                                               tmp_path):
    missing = tmp_path / "missing.jpg"
    server = ("--server", live_server.target)
    code, _, err = run(capsys, "submit", *server, photos[0], missing)
    assert code == 1 and "nothing was submitted" in err and "--partial" in err
    code, lines, _ = run(capsys, "submit", "--json", "--partial", *server, photos[0], missing)
    assert code == 1
    assert [line.get("error") is None for line in lines] == [False, True]
    assert len(lines[1]["entry_ids"]) == 1


def test_match_hash_file_reports_bad_lines_and_md5(capsys, live_server, photos, tmp_path):
    server = ("--server", live_server.target, "--api-key", live_server.api_key)
    _, lines, _ = run(capsys, "submit", "--json", "--server", live_server.target, photos[0])
    _, hashed, _ = run(capsys, "hash", "--json", photos[0], photos[1])
    listed, unlisted = hashed
    near = bytearray(bytes.fromhex(listed["pdq"]))
    near[0] ^= 0b111  # 3 bits away
    hash_file = tmp_path / "uploads.txt"
    hash_file.write_text("\n".join([
        "# uploads of the day",
        unlisted["pdq"],
        f"{near.hex()},100,upload-2.jpg",
        "xyz",
        listed["md5"],
        "",
        listed["pdq"][:-2],
    ]) + "\n")
    code, lines, err = run(capsys, "match", "--json", *server, "--hashes", hash_file)
    assert code == 1
    errors = [line for line in lines if "error" in line]
    assert [e["line"] for e in errors] == [4, 7]
    assert f"{hash_file}:4:" in err and f"{hash_file}:7:" in err
    found = {(line["line"], line["kind"]): line["matches"] for line in lines if "matches" in line}
    assert set(found) == {(3, "pdq"), (5, "md5")}
    assert found[(3, "pdq")][0]["distance"] == 3
    assert found[(5, "md5")][0]["entry_id"] == found[(3, "pdq")][0]["entry_id"]


def test_match_large_hash_input_streams_from_stdin(capsys, start_server, random_hashes,
                                                   monkeypatch):
    listed = random_hashes(5000, seed=11)
    server = start_server(imported=listed, max_in_flight=2, max_batch_hashes=1024)
    queries = random_hashes(cli.STREAM_ABOVE * 3, seed=12)
    planted = {7: 0, 1500: 17, 2999: 4999}
    for row, listed_row in planted.items():
        queries[row] = listed[listed_row]
    md5_lines = [row[:16].tobytes().hex() for row in random_hashes(500, seed=13)]
    text = "".join(row.tobytes().hex() + "\n" for row in queries) + "\n".join(md5_lines) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, lines, _ = run(capsys, "match", "--json", "--server", server.target,
                         "--api-key", server.api_key, "--hashes", "-", "--threshold", "0")
    assert code == 0
    *lines, summary = lines
    assert summary["summary"]["checked"] == len(queries) + len(md5_lines)
    assert summary["summary"]["matched"] == len(planted)
    assert sorted(line["line"] for line in lines) == [row + 1 for row in sorted(planted)]
    assert all(line["path"] == "-" and line["matches"][0]["distance"] == 0 for line in lines)


def test_match_says_how_many_entries_hold_the_same_hash(capsys, live_server, photos):
    server = ("--server", live_server.target, "--api-key", live_server.api_key)
    for _ in range(3):
        run(capsys, "submit", "--json", "--server", live_server.target, photos[0])
    code, lines, _ = run(capsys, "match", "--json", *server, photos[0])
    assert code == 0
    assert [m.get("same_hash_entries") for m in lines[0]["matches"]] == [3, 3]   # pdq, md5
    code, out, _ = run(capsys, "match", *server, photos[0])
    assert "2 other entries hold the same hash" in out


def test_wrong_api_key_and_unreachable_server(capsys, live_server, photos):
    code, lines, err = run(capsys, "match", "--json", "--server", live_server.target,
                           "--api-key", "not-a-key", photos[0])
    assert code == 1 and "UNAUTHENTICATED" in err
    assert lines[-1]["code"] == "UNAUTHENTICATED"
    code, _, err = run(capsys, "status", "--server", "127.0.0.1:1", "--timeout", "3",
                       "some-case", "--pin", "1")
    assert code == 1 and "cannot reach the hashmatch server at 127.0.0.1:1" in err


def test_info_json(capsys, live_server, monkeypatch):
    monkeypatch.setenv("HASHMATCH_API_KEY", live_server.api_key)
    monkeypatch.setenv("HASHMATCH_SERVER", live_server.target)
    code, lines, _ = run(capsys, "info", "--json")
    assert code == 0
    assert lines[0]["default_threshold"] == 31 and lines[0]["max_in_flight"] >= 1


# ---------------------------------------------------------------------- operator commands


def test_platform_add_and_list_import(capsys, tmp_path, random_hashes):
    db = tmp_path / "ops.db"
    code, lines, _ = run(capsys, "platform", "add", "acme", "--db", db, "--json")
    assert code == 0 and lines[0]["platform"] == "acme" and len(lines[0]["api_key"]) >= 20
    hashes = random_hashes(5, seed=3)
    list_file = tmp_path / "list.txt"
    list_file.write_text("".join(h.tobytes().hex() + "\n" for h in hashes[:3])
                         + "00ff\n" + hashes[3].tobytes().hex()[:32] + "\n"
                         + hashes[4].tobytes().hex() + "\n")
    code, lines, err = run(capsys, "list", "import", list_file, "--db", db, "--json")
    assert code == 1
    assert [line["line"] for line in lines if "error" in line] == [4, 5]
    assert lines[-1] == {"path": str(list_file), "imported": 4, "bad_lines": 2}
    assert f"{list_file}:4:" in err


def test_list_import_the_store_refuses_says_why_without_a_traceback(capsys, tmp_path,
                                                                    random_hashes):
    from hashmatch.server.store import CASE_ENTRY_FIRST, open_store

    db = tmp_path / "full.db"
    store = open_store(str(db))
    with store._db.transaction(write=True) as tx:      # room for 2 more imported ids
        tx.execute("UPDATE meta SET value=? WHERE key='next_entry'", (CASE_ENTRY_FIRST - 2,))
    store.close()
    list_file = tmp_path / "list.txt"
    list_file.write_text("".join(h.tobytes().hex() + "\n" for h in random_hashes(3, seed=4)))
    code, lines, err = run(capsys, "list", "import", list_file, "--db", db, "--json")
    assert code == 1 and "Traceback" not in err
    assert lines[0]["code"] == "RESOURCE_EXHAUSTED"
    assert "2 more can be imported" in lines[0]["error"] and f"{list_file}:" in err
    assert lines[-1]["imported"] == 0


def test_video_submit_and_match_by_frames_and_md5(capsys, live_server, tmp_path):
    from media import make_video, video_frames

    original = make_video(tmp_path / "clip.mp4", 90, size=(128, 96))
    copy = make_video(tmp_path / "copy.avi", 90, size=(128, 96))
    other = make_video(tmp_path / "other.mp4", video_frames(90, 96, 128, seed=5))
    code, lines, _ = run(capsys, "submit", "--json", "--server", live_server.target, original)
    assert code == 0 and lines[0]["items"][0]["kind"] == "video"
    entry = lines[0]["entry_ids"][0]

    code, lines, _ = run(capsys, "match", "--json", "--server", live_server.target,
                         "--api-key", live_server.api_key, original, copy, other)
    assert code == 0
    by_input = {line["path"]: line for line in lines}
    assert {(m["kind"], m["entry_id"]) for m in by_input[str(original)]["matches"]} == {
        ("md5", entry), ("vpdq", entry)}
    copy_hits = by_input[str(copy)]["matches"]
    assert [(m["kind"], m["entry_id"]) for m in copy_hits] == [("vpdq", entry)]
    assert copy_hits[0]["query_match_percent"] >= 80
    assert by_input[str(other)]["matches"] == []


def test_pin_is_asked_without_echo_in_a_terminal(capsys, live_server, photos, monkeypatch):
    _, lines, _ = run(capsys, "submit", "--json", "--server", live_server.target, photos[0])
    case_id, pin = lines[0]["case_id"], lines[0]["pin"]
    prompts = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: prompts.append(prompt) or pin)
    code, out, err = run(capsys, "status", "--server", live_server.target, case_id)
    assert code == 0 and "active" in out
    assert prompts == [f"PIN for case {case_id}: "]
    assert pin not in out + err


def test_serve_rejects_inconsistent_limits_before_starting(capsys, tmp_path):
    code, _, err = run(capsys, "serve", "--db", tmp_path / "x.db", "--listen", "127.0.0.1:0",
                       "--max-threshold", "10")
    assert code == 2 and "default_threshold" in err
    assert not (tmp_path / "x.db").exists()


def test_dihedral_matches_rotated_and_mirrored_uploads(capsys, live_server, tmp_path):
    """Meta's rotated/flipped copies of one photo match only when --dihedral asks for the 8
    variants, each once, at the variant's own (small) distance."""
    dih = SHARED / "conformance" / "images" / "reg-test-input" / "dih"
    original, *turned = sorted(dih.glob("bridge-*.jpg"))
    assert original.name == "bridge-1-original.jpg" and len(turned) == 7
    run(capsys, "submit", "--server", live_server.target, original)
    match = ("match", "--json", "--server", live_server.target, "--api-key", live_server.api_key)
    _, plain, _ = run(capsys, *match, *turned)
    assert [line["matched"] for line in plain] == [False] * 7
    code, robust, _ = run(capsys, *match, "--dihedral", *turned)
    assert code == 0
    assert all(line["matched"] for line in robust), robust
    for line in robust:
        (hit,) = line["matches"]
        assert hit["kind"] == "pdq" and hit["distance"] <= 16


def test_serve_has_every_server_setting_and_hash_no_server_flags(capsys):
    """One flag table: `hashmatch serve` offers exactly what `python -m hashmatch.server` does."""
    import dataclasses

    from hashmatch.server.config import ServerConfig, parser

    def flags(help_text):
        return {word.rstrip(",") for word in help_text.split() if word.startswith("--")}

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    serve_flags = flags(capsys.readouterr().out)
    server_flags = flags(parser().format_help())
    assert len(server_flags) > len(dataclasses.fields(ServerConfig))  # --db is an alias
    assert server_flags <= serve_flags
    with pytest.raises(SystemExit):
        cli.main(["hash", "--help"])
    assert "--server" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("hashmatch 0.")


def test_folders_are_hashed_file_by_file_and_local_errors_carry_a_code(capsys, tmp_path, photos):
    folder = tmp_path / "album"
    (folder / "trip").mkdir(parents=True)
    for i, photo in enumerate(photos[:2]):
        (folder / ("trip" if i else "") / f"p{i}.png").write_bytes(open(photo, "rb").read())
    (folder / ".hidden.png").write_bytes(b"not looked at")
    (folder / "notes.txt").write_text("not an image")
    code, lines, _ = run(capsys, "hash", "--json", folder, tmp_path / "missing.jpg")
    assert code == 1
    assert [line["path"] for line in lines if "pdq" in line] == [
        str(folder / "p0.png"), str(folder / "trip" / "p1.png")]
    errors = {line["path"]: line["code"] for line in lines if "error" in line}
    assert errors == {str(folder / "notes.txt"): "INVALID_ARGUMENT",
                      str(tmp_path / "missing.jpg"): "NOT_FOUND"}


def test_ctrl_d_at_the_pin_prompt_ends_cleanly(capsys, monkeypatch):
    def eof(prompt):
        raise EOFError
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr(cli.getpass, "getpass", eof)
    code, _, err = run(capsys, "status", "--server", "127.0.0.1:1", "some-case")
    assert code == 2 and "the case PIN is needed" in err and "Traceback" not in err


def test_info_without_a_key_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("HASHMATCH_API_KEY", raising=False)
    code, _, err = run(capsys, "info", "--server", "127.0.0.1:1")
    assert code == 2 and "API key is needed" in err
