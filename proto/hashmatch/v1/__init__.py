"""The hashmatch.v1 wire API: the generated modules, and what the .proto cannot declare."""

RETRY_AFTER_KEY = "retry-after-s"  # trailing metadata of a rate-limited call: whole seconds
