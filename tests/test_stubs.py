"""The .pyi stubs of the compiled modules say what the built modules hold: mypy's stubtest
checks every name both ways, and the arguments (names and defaults, which stubtest cannot read
from pybind11 functions) are compared with the signatures pybind11 writes in each docstring."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hashmatch.core import _kernels, _pdq

CORE = Path(__file__).resolve().parent.parent / "core"
MODULES = {"_kernels": _kernels, "_pdq": _pdq}


def test_stubtest_finds_every_name(tmp_path):
    # The editable install's import hook is invisible to mypy: give it the stubs on MYPYPATH.
    stubs = tmp_path / "hashmatch" / "core"
    stubs.mkdir(parents=True)
    (stubs / "__init__.pyi").write_text("")
    for name in MODULES:
        shutil.copy(CORE / f"{name}.pyi", stubs)
    # pybind11 classes have their own metaclass, which a stub cannot name.
    allow = tmp_path / "allow.txt"
    allow.write_text("hashmatch.core._kernels.MihIndex\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--allowlist", str(allow),
         *(f"hashmatch.core.{name}" for name in MODULES)],
        env={"MYPYPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True,
        text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _split_top(text: str) -> list[str]:
    """Splits at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def runtime_arguments(fn) -> list[tuple[str, str | None]]:
    """(name, default) of each argument in the pybind11 docstring signature, without self."""
    signature = fn.__doc__.splitlines()[0]
    inner = signature[signature.index("(") + 1:signature.rindex(") ->")]
    out = []
    for part in _split_top(inner):
        name, _, rest = part.partition(":")
        default = rest.split(" = ", 1)[1].strip() if " = " in rest else None
        if name.strip() != "self":
            out.append((name.strip(), default))
    return out


def stub_functions(name: str):
    """(qualified name, [(argument, default)]) of each function and method in a stub."""
    tree = ast.parse((CORE / f"{name}.pyi").read_text())
    for node in tree.body:
        defs = ([(getattr(f, "name", ""), f) for f in node.body] if isinstance(node, ast.ClassDef)
                else [("", node)])
        for attr, fn in defs:
            if not isinstance(fn, ast.FunctionDef) or fn.decorator_list or attr == "__len__":
                continue
            args = fn.args.args
            defaults = [None] * (len(args) - len(fn.args.defaults)) + [
                ast.unparse(d) for d in fn.args.defaults]
            pairs = [(a.arg, d) for a, d in zip(args, defaults) if a.arg != "self"]
            yield (f"{node.name}.{attr}" if attr else fn.name), pairs


@pytest.mark.parametrize("name", sorted(MODULES))
def test_stub_arguments_match_the_module(name):
    checked = 0
    for qualified, want in stub_functions(name):
        obj = MODULES[name]
        for part in qualified.split("."):
            obj = getattr(obj, part)
        assert runtime_arguments(obj) == want, qualified
        checked += 1
    assert checked >= 6
