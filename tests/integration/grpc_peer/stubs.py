"""The Python modules of peer.proto, generated on first use with Debian's grpc_tools.protoc and
cached under <build>/grpc_peer/<hash of the .proto and of grpc_tools>/ (build/ of the repository,
or $PORTICO_BUILD; $PORTICO_GRPC_STUBS overrides the cache root). Nothing generated is committed.

``load() -> (peer_pb2, peer_pb2_grpc)``
    Generates the stubs if the cache has none for this .proto, then imports them. Safe when two
    processes (a test and the server it started) generate at once: each writes its own temp dir
    and renames it into place; the loser discards its copy.
"""

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "peer.proto"
REPO = HERE.parents[2]
PYTHON = "/usr/bin/python3"


def _cache_root():
    if os.environ.get("PORTICO_GRPC_STUBS"):
        return Path(os.environ["PORTICO_GRPC_STUBS"])
    build = Path(os.environ.get("PORTICO_BUILD", "build"))
    if not build.is_absolute():
        build = REPO / build
    return build / "grpc_peer"


def _key():
    h = hashlib.sha256(PROTO.read_bytes())
    try:
        import grpc_tools
        h.update(str(Path(grpc_tools.__file__).resolve()).encode())
        h.update(str(Path(grpc_tools.__file__).stat().st_mtime_ns).encode())
    except ImportError:
        pass
    return h.hexdigest()[:16]


def generate():
    """Returns the directory holding peer_pb2.py and peer_pb2_grpc.py, generating it if needed."""
    root = _cache_root()
    out = root / _key()
    if (out / "peer_pb2_grpc.py").exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gen-", dir=root))
    try:
        r = subprocess.run([PYTHON, "-m", "grpc_tools.protoc", f"-I{HERE}",
                            f"--python_out={tmp}", f"--grpc_python_out={tmp}", str(PROTO)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not (tmp / "peer_pb2_grpc.py").exists():
            raise RuntimeError(f"grpc_tools.protoc failed ({r.returncode}): {r.stderr.strip()}")
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "peer_pb2_grpc.py").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load():
    """Imports the generated modules; returns (peer_pb2, peer_pb2_grpc)."""
    out = str(generate())
    if out not in sys.path:
        sys.path.insert(0, out)
    return importlib.import_module("peer_pb2"), importlib.import_module("peer_pb2_grpc")
