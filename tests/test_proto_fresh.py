"""The generated API modules are committed; this fails when they are stale against proto/."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_match_the_proto_files(tmp_path):
    fresh = _load_generator().generate(tmp_path)
    assert fresh, "protoc generated nothing"
    for path in fresh:
        committed = ROOT / "proto" / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run python scripts/gen_proto.py"
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run python scripts/gen_proto.py")
