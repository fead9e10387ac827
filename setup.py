"""Builds hashmatch: the Python packages under one `hashmatch.` namespace and the compiled core.

The folders keep the layout of the brief (core/, server/, clients/, proto/) and are installed as
hashmatch.core, hashmatch.server, hashmatch.clients and hashmatch.v1 (the generated API), so no
top-level name collides with another distribution.
"""
import glob
import os

from setuptools import setup

VERSION = "0.1.0"

# Portable flags only: CPU-specific code (AVX2, AVX-512) is compiled per function with target
# attributes and chosen at run time, so a wheel built here runs on any x86-64.
COMPILE_ARGS = ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra"]


# The light client (HASHMATCH_DIST=client): the client library and the generated API only, for
# platforms that stream hashes: no C++ build, no Numba, Pillow or PyAV.
LIGHT_CLIENT = {
    "name": "hashmatch-client",
    "description": "hashmatch client library: match hashes over gRPC (no hashing, no server)",
    "python_requires": ">=3.11",
    "packages": ["hashmatch.v1"],
    "py_modules": ["hashmatch.clients.__init__", "hashmatch.clients.client",
                   "hashmatch.clients.streaming", "hashmatch.core.__init__",
                   "hashmatch.core.signals"],
    "package_dir": {"hashmatch.clients": "clients", "hashmatch.core": "core",
                    "hashmatch.v1": "proto/hashmatch/v1"},
    "package_data": {"hashmatch.v1": ["*.proto", "*.pyi"]},
    "install_requires": ["numpy>=1.26", "grpcio>=1.85.1", "protobuf>=6.31",
                         "googleapis-common-protos>=1.66"],
}


def core_extension(name: str):
    """hashmatch.core.<name> from core/cpp/<folder>/*.cpp, e.g. _pdq from core/cpp/pdq/."""
    from pybind11.setup_helpers import Pybind11Extension

    return Pybind11Extension(
        f"hashmatch.core.{name}",
        sorted(glob.glob(f"core/cpp/{name.lstrip('_')}/*.cpp")),
        include_dirs=["core/cpp"],
        define_macros=[("HASHMATCH_VERSION", f'"{VERSION}"')],
        extra_compile_args=COMPILE_ARGS,
        cxx_std=17,
    )


def full_distribution() -> dict:
    from pybind11.setup_helpers import build_ext

    return dict(
        name="hashmatch",
        description="gRPC hash-matching server with a compiled core (PDQ, MD5, vPDQ)",
        python_requires=">=3.11",
        packages=["hashmatch.core", "hashmatch.server", "hashmatch.clients",
                  "hashmatch.v1", "hashmatch.web"],
        package_dir={
            "hashmatch.core": "core",
            "hashmatch.server": "server",
            "hashmatch.clients": "clients",
            "hashmatch.v1": "proto/hashmatch/v1",
            "hashmatch.web": "web",
        },
        package_data={"hashmatch.v1": ["*.proto", "*.pyi"], "hashmatch.core": ["*.pyi"],
                      "hashmatch.web": ["static/*"]},
        ext_modules=[core_extension("_kernels"), core_extension("_pdq")],
        cmdclass={"build_ext": build_ext},
        install_requires=[
            "numpy>=1.26",
            "numba>=0.60",
            "grpcio>=1.85.1",
            "grpcio-health-checking>=1.85.1",
            "grpcio-reflection>=1.85.1",
            "grpcio-status>=1.85.1",
            "protobuf>=6.31",
            "googleapis-common-protos>=1.66",
            "pillow>=10",
            "pillow-heif>=0.18",
            "av>=14",
            "tqdm>=4.66",
            "aiohttp>=3.9",
            "psycopg[binary]>=3.2",
            "psycopg-pool>=3.2",
        ],
        extras_require={
            "test": [
                "pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "pytest-benchmark>=4",
                "grpcio-tools==1.85.1", "psutil>=5.9", "cryptography>=42", "mypy>=1.10",
                "selenium>=4.20",
            ],
            "bench": ["faiss-cpu>=1.8", "pytest-benchmark>=4", "matplotlib>=3.8", "psutil>=5.9",
                      "pdqhash>=0.2.7", "cryptography>=42"],
        },
        entry_points={
            "console_scripts": ["hashmatch = hashmatch.clients.cli:main"],
            # The operator commands (serve, platform, list) come from the server package.
            "hashmatch.cli": ["operator = hashmatch.server.commands:register"],
        },
    )


if os.environ.get("HASHMATCH_DIST") == "client":
    setup(version=VERSION, **LIGHT_CLIENT)
else:
    setup(version=VERSION, **full_distribution())
