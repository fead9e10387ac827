"""`python -m hashmatch.server [--config FILE] --db PATH --listen HOST:PORT [settings...]`."""
from hashmatch.server.app import serve
from hashmatch.server.config import from_namespace, parser

if __name__ == "__main__":
    flags = parser()
    try:
        config = from_namespace(flags.parse_args())
    except ValueError as error:
        flags.error(str(error))
    serve(config)
