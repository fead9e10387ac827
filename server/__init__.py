"""hashmatch.server: the gRPC server around hashmatch.core (store, services, auth, health).

Entry points: `hashmatch.server.app.serve(ServerConfig(...))`, `python -m hashmatch.server`,
`hashmatch.server.store.open_store(path or URL)` for operator tasks (platform keys, bulk imports).
"""
