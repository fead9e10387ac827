"""hashmatch.clients: what runs on the person's and the platform's side of the wire.

`hashing` turns photos and videos into hashes on the device (nothing else ever leaves it),
`client` speaks the gRPC API, `streaming` matches large inputs over one stream, and `cli` is the
`hashmatch` command. Import the module you need; this package itself loads nothing, so hashing
does not drag in gRPC and the client does not drag in Pillow or PyAV.
"""
