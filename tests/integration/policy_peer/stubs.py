"""The Python modules of the repository's proto/ (the Envoy API subset Portico speaks), generated on
first use with Debian's grpc_tools.protoc and cached under <build>/policy_peer/<hash of proto/ and
of grpc_tools>/ (build/ of the repository, or $PORTICO_BUILD; $PORTICO_GRPC_STUBS overrides the
cache root). Nothing generated is committed.

``load() -> Pb``
    Generates the modules if the cache has none for this proto/, then imports them. Safe when
    two processes (a test and the server it started) generate at once: each writes its own temp
    dir and renames it into place; the loser discards its copy.

google/protobuf/wrappers.proto is taken from grpc_tools (its include directory comes first), so
the generated code uses the real google.protobuf.wrappers_pb2; proto/'s copy is for protoc-c.
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
REPO = HERE.parents[2]
PROTO = REPO / "proto"
PYTHON = "/usr/bin/python3"

# The .proto files compiled for Python (not google/protobuf/: grpc_tools ships those).
FILES = ["envoy/config/core/v3/address.proto", "envoy/config/core/v3/base.proto",
         "envoy/type/v3/http_status.proto", "envoy/service/auth/v3/attribute_context.proto",
         "envoy/service/auth/v3/external_auth.proto",
         "envoy/extensions/common/ratelimit/v3/ratelimit.proto",
         "envoy/service/ratelimit/v3/rls.proto", "google/rpc/status.proto"]
MARKER = "envoy/service/ratelimit/v3/rls_pb2_grpc.py"


def _cache_root():
    if os.environ.get("PORTICO_GRPC_STUBS"):
        return Path(os.environ["PORTICO_GRPC_STUBS"])
    build = Path(os.environ.get("PORTICO_BUILD", "build"))
    if not build.is_absolute():
        build = REPO / build
    return build / "policy_peer"


def _grpc_tools_include():
    import grpc_tools
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def _key():
    h = hashlib.sha256()
    for f in FILES:
        h.update(f.encode() + b"\0" + (PROTO / f).read_bytes())
    try:
        import grpc_tools
        h.update(str(Path(grpc_tools.__file__).resolve()).encode())
        h.update(str(Path(grpc_tools.__file__).stat().st_mtime_ns).encode())
    except ImportError:
        pass
    return h.hexdigest()[:16]


def generate():
    """Returns the directory holding the generated packages (envoy/, google/rpc/)."""
    root = _cache_root()
    out = root / _key()
    if (out / MARKER).exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gen-", dir=root))
    try:
        r = subprocess.run([PYTHON, "-m", "grpc_tools.protoc", f"-I{_grpc_tools_include()}",
                            f"-I{PROTO}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                            *FILES], capture_output=True, text=True, timeout=60, cwd=PROTO)
        if r.returncode != 0 or not (tmp / MARKER).exists():
            raise RuntimeError(f"grpc_tools.protoc failed ({r.returncode}): {r.stderr.strip()}")
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / MARKER).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


class Pb:
    """The generated modules: ``auth`` (external_auth_pb2: CheckRequest, CheckResponse,
    OkHttpResponse, DeniedHttpResponse), ``auth_grpc`` (AuthorizationStub,
    AuthorizationServicer, add_AuthorizationServicer_to_server), ``attrs``
    (attribute_context_pb2: AttributeContext), ``rls`` (rls_pb2: RateLimitRequest,
    RateLimitResponse), ``rls_grpc`` (RateLimitServiceStub, RateLimitServiceServicer,
    add_RateLimitServiceServicer_to_server), ``ratelimit`` (ratelimit_pb2: RateLimitDescriptor),
    ``core`` (base_pb2: HeaderValue, HeaderValueOption, QueryParameter), ``address``
    (address_pb2), ``http_status`` (http_status_pb2: HttpStatus), ``status`` (google.rpc
    status_pb2: Status), ``wrappers`` (google.protobuf.wrappers_pb2: BoolValue)."""

    def __init__(self):
        imp = importlib.import_module
        self.auth = imp("envoy.service.auth.v3.external_auth_pb2")
        self.auth_grpc = imp("envoy.service.auth.v3.external_auth_pb2_grpc")
        self.attrs = imp("envoy.service.auth.v3.attribute_context_pb2")
        self.rls = imp("envoy.service.ratelimit.v3.rls_pb2")
        self.rls_grpc = imp("envoy.service.ratelimit.v3.rls_pb2_grpc")
        self.ratelimit = imp("envoy.extensions.common.ratelimit.v3.ratelimit_pb2")
        self.core = imp("envoy.config.core.v3.base_pb2")
        self.address = imp("envoy.config.core.v3.address_pb2")
        self.http_status = imp("envoy.type.v3.http_status_pb2")
        self.status = imp("google.rpc.status_pb2")
        self.wrappers = imp("google.protobuf.wrappers_pb2")


_pb = None


def load():
    """Imports the generated modules (once per process); returns a Pb."""
    global _pb
    if _pb is None:
        out = str(generate())
        if out not in sys.path:
            sys.path.insert(0, out)
        importlib.invalidate_caches()
        _pb = Pb()
    return _pb
