"""Server settings from flags, HASHMATCH_* environment variables and a TOML file, in that order
of precedence, with errors that name the source and the setting."""
import subprocess
import sys

import pytest

from hashmatch.server.config import ServerConfig, from_args, from_namespace, parser


def settings(argv, environ=None) -> ServerConfig:
    return from_namespace(parser().parse_args(argv), environ=environ or {})


def test_defaults_without_any_source():
    assert settings([]) == ServerConfig()


def test_flag_beats_environment_beats_file(tmp_path):
    conf = tmp_path / "hashmatch.toml"
    conf.write_text('max_batch_hashes = 100\nmax_in_flight = 3\nlisten = "127.0.0.1:7000"\n'
                    'rate_limit_hashes_per_s = 5\n')
    got = settings(["--config", str(conf), "--max-batch-hashes", "300"],
                   {"HASHMATCH_MAX_BATCH_HASHES": "200", "HASHMATCH_MAX_IN_FLIGHT": "4"})
    assert (got.max_batch_hashes, got.max_in_flight, got.listen) == (300, 4, "127.0.0.1:7000")
    assert got.rate_limit_hashes_per_s == 5.0 and isinstance(got.rate_limit_hashes_per_s, float)
    assert got.max_case_items == ServerConfig().max_case_items


@pytest.mark.parametrize("text, message", [
    ("max_batch_hashes = 'many'\n", "max_batch_hashes must be int, got 'many'"),
    ("max_batch = 3\n", "unknown setting 'max_batch'"),
    ("max_batch_hashes = \n", "not valid TOML"),
])
def test_bad_file_names_the_setting(tmp_path, text, message):
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    with pytest.raises(ValueError, match=message):
        settings(["--config", str(conf)])


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="HASHMATCH_MAX_IN_FLIGHT: max_in_flight must be int"):
        settings([], {"HASHMATCH_MAX_IN_FLIGHT": "eight"})


def test_module_entry_point_reports_a_bad_setting_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hashmatch.server", "--config",
                           str(tmp_path / "missing.toml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "missing.toml: cannot read it" in done.stderr and "Traceback" not in done.stderr


def test_from_args_reads_the_real_environment(monkeypatch):
    monkeypatch.setenv("HASHMATCH_DEFAULT_THRESHOLD", "20")
    assert from_args([]).default_threshold == 20
