"""Keeps the layers honest: walks every module's imports with `ast` and checks the seams of
docs/ARCHITECTURE.md (core is a plain library, servicers use no kernels and get their
collaborators, clients use no server); and that the client library documents its public names."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The client library's TLS settings, which a copy of another server's list connects with.
TLS_FILES = {"hashmatch.clients.client", "hashmatch.clients.client.TlsFiles"}
SYNC_READER = {"hashmatch.clients.sync_client", "hashmatch.clients.sync_client.SyncClient",
               "hashmatch.clients.sync_client.CopyBroken",
               "hashmatch.clients.sync_client.entries_of", "hashmatch.clients.sync_client.log_of",
               *TLS_FILES}


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
    # duration flags, the TLS flags, the printing of platforms and audit rows that `hashmatch
    # admin` shares), the server's copies of another server's list the Sync reader and the TLS
    # settings it connects with, and nothing else of the clients.
    allowed = {
        "commands.py": {"hashmatch.clients.cli", "hashmatch.clients.cli.UsageError",
                        "hashmatch.clients.cli.read_hash_lines", "hashmatch.clients.client",
                        "hashmatch.clients.client.HashmatchError", "hashmatch.clients",
                        "hashmatch.clients.output", "hashmatch.clients.cli.parse_duration",
                        "hashmatch.clients.cli.parse_since", "hashmatch.clients.cli.tls_flags",
                        "hashmatch.clients.cli.tls_of"},
        "mirror.py": SYNC_READER, "sync_follower.py": SYNC_READER, "config.py": TLS_FILES}
    used = {p.name: {n for n in imported_modules(p) if n.startswith("hashmatch.clients")}
            for p in (ROOT / "server").glob("*.py")}
    assert {name: names - allowed.get(name, set()) for name, names in used.items()
            if names - allowed.get(name, set())} == {}


def test_servicers_call_no_kernels_directly():
    servicers = [p for p in (ROOT / "server").glob("*.py") if p.name.startswith("servic")]
    assert servicers, "expected server/services*.py"
    bad = [f"{p.name} imports {n}" for p in servicers for n in imported_modules(p)
           if n.startswith(("hashmatch.core.kernels", "hashmatch.core._", "numba"))]
    assert bad == []


def test_servicers_get_collaborators_not_the_app():
    """Servicers are given what they use (app.py wires it), never the whole App to reach into."""
    servicers = [p for p in (ROOT / "server").glob("*.py") if p.name.startswith("servic")]
    reaching = [f"{p.name}:{node.lineno}" for p in servicers
                for node in ast.walk(ast.parse(p.read_text()))
                if (isinstance(node, ast.Name) and node.id == "app")
                or (isinstance(node, ast.Attribute) and node.attr == "app")]
    assert reaching == []


def test_clients_import_no_server():
    assert (ROOT / "clients" / "cli.py").exists()
    assert violations("clients", ("hashmatch.server",)) == []


def test_the_client_library_documents_every_public_name():
    """Every public class, function and method of the library modules platforms import has a
    docstring (dataclass fields and dunders aside)."""
    missing = []
    for name in ("client", "streaming", "mirror", "sync_client", "hashing", "video"):
        tree = ast.parse((ROOT / "clients" / f"{name}.py").read_text())
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name[0] == "_":
                continue
            inner = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and m.name[0] != "_"] if isinstance(node, ast.ClassDef) else []
            missing += [f"{name}.py {n.name}" for n in (node, *inner) if not ast.get_docstring(n)]
    assert missing == []
