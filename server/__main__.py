"""`python -m hashmatch.server --db PATH --listen HOST:PORT [--port-file FILE] [limits...]`."""
from hashmatch.server.app import serve
from hashmatch.server.config import from_args

if __name__ == "__main__":
    serve(from_args())
