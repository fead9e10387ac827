"""Regenerates the Python modules beside proto/hashmatch/v1/*.proto.

One command, run from anywhere: `python scripts/gen_proto.py`. tests/test_proto_fresh.py runs
it into a temporary folder and fails if the committed modules differ.
"""
import pathlib
import sys

import google.rpc
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Writes *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every .proto under proto/ to out_dir."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    includes = [
        str(PROTO_ROOT),
        str(pathlib.Path(grpc_tools.__file__).parent / "_proto"),
        # google/rpc/status.proto ships with googleapis-common-protos
        str(pathlib.Path(google.rpc.__path__[0]).parent.parent),
    ]
    args = ["protoc", *(f"-I{i}" for i in includes), f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*_pb2*.py*"))


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT
    for path in generate(out):
        print(path)
