"""Keeps the layers honest: walks every module's imports with `ast` and checks the seams of
docs/ARCHITECTURE.md (core is a plain library, servicers use no kernels, clients use no server)."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    """Every module a file imports; with top_level_only, only imports outside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(folder: str, forbidden: tuple[str, ...], top_level_only=False, skip=()) -> list:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name in skip:
            continue
        for name in imported_modules(path, top_level_only):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_core_is_a_plain_library():
    assert violations("core", ("grpc", "PIL", "av", "hashmatch.server", "hashmatch.clients",
                               "hashmatch.v1", "google.protobuf")) == []


def test_server_hashes_no_media():
    assert violations("server", ("PIL", "av")) == []
    # The operator commands share the CLI's plumbing (usage errors, the hex-line reader, the
    # duration flags, the printing of platforms and audit rows that `hashmatch admin` shares)
    # and nothing else of the clients.
    assert violations("server", ("hashmatch.clients",), skip=("commands.py",)) == []
    clients_used = {n for n in imported_modules(ROOT / "server" / "commands.py")
                    if n.startswith("hashmatch.clients")}
    assert clients_used <= {"hashmatch.clients.cli", "hashmatch.clients.cli.UsageError",
                            "hashmatch.clients.cli.read_hash_lines", "hashmatch.clients.client",
                            "hashmatch.clients.client.HashmatchError", "hashmatch.clients",
                            "hashmatch.clients.output", "hashmatch.clients.cli.parse_duration",
                            "hashmatch.clients.cli.parse_since"}


def test_servicers_call_no_kernels_directly():
    servicers = [p for p in (ROOT / "server").glob("*.py") if p.name.startswith("servic")]
    assert servicers, "expected server/services*.py"
    bad = [f"{p.name} imports {n}" for p in servicers for n in imported_modules(p)
           if n.startswith(("hashmatch.core.kernels", "hashmatch.core._", "numba"))]
    assert bad == []


def test_clients_import_no_server():
    assert (ROOT / "clients" / "cli.py").exists()
    assert violations("clients", ("hashmatch.server",)) == []
