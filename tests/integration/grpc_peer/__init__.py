"""gRPC test peers for Portico's integration tests: a real gRPC server and client (Debian's
python3-grpcio) speaking the Peer service of peer.proto. The stubs are generated at test time
(grpc_peer/stubs.py, cached under build/grpc_peer/); nothing generated is committed.

Import with ``from grpc_peer import ...`` (tests/integration is on sys.path through conftest.py).

Server (a process, grpc_peer/server.py; its options are in that file's docstring):

``start_server(processes, tls=None, client_ca=None, port=None, host="127.0.0.1", workers=32,
options=(), quiet=False) -> GrpcServer``
    Starts the server on <port> (default: a free one) through the ``processes`` fixture (stopped
    at teardown) and returns once it printed ``ready``. <tls>: a tlsenv Cert (leaf) to serve
    TLS with; None: h2c. <client_ca>: a tlsenv Cert; client certificates are then required.
    <options>: (key, value) gRPC server options (e.g. ("grpc.max_concurrent_streams", 4)).
``GrpcServer``: ``.port``, ``.host``, ``.proc`` (conftest.Process), ``.tls``; ``.calls()`` the
    (method, peer, metadata keys) of every call started, ``.ends()`` the (method, code name) of
    every call finished; ``.wait_ends(n, timeout=5)`` waits until <n> calls have finished.

Client (grpc_peer/client.py): ``Client(port, host="127.0.0.1", ca=None, server_name=None,
cert=None, authority=None, options=())``, h2c unless <ca> (a tlsenv Cert or PEM) is given;
``.unary(req=None, metadata=(), timeout=5.0, bound=10.0, **fields)``,
``.server_stream(...)`` (same arguments), ``.client_stream(reqs, metadata=(), timeout=5.0,
bound=10.0)``, ``.bidi(reqs, metadata=(), timeout=5.0, bound=10.0, lockstep=False)``; each
returns a ``Result``: ``.code`` (grpc.StatusCode), ``.details``, ``.initial_metadata``,
``.trailing_metadata``, ``.replies`` (Reply messages), ``.payloads``, ``.metadata``,
``.header(k)``, ``.trailer(k)``, ``.ok``, ``.elapsed``. <timeout> is the gRPC deadline
(grpc-timeout; None sends none), <bound> a hard limit after which the call is cancelled.
``request(req=None, **fields)`` builds a Request; ``pb`` is the generated peer_pb2 module.

Request fields (peer.proto): sleep_ms, fail_code, fail_message, echo_metadata, payload_size,
replies, payload, tag. Echoed metadata comes back with x-peer-phase: initial / trailing.
``payload(size, seq=0)`` is the exact payload the server puts in reply <seq> (check bodies
byte for byte).
"""

import re
import time
from pathlib import Path

from .common import payload, status_from_int
from .client import Client, Result, pb, pb_grpc, request

SERVER = Path(__file__).resolve().parent / "server.py"
PYTHON = "/usr/bin/python3"

__all__ = ["Client", "Result", "GrpcServer", "pb", "pb_grpc", "payload", "request",
           "start_server", "status_from_int", "SERVER"]


class GrpcServer:
    def __init__(self, proc, port, host, tls):
        self.proc = proc
        self.port = port
        self.host = host
        self.tls = tls

    def calls(self):
        return re.findall(r"^CALL (\S+) peer=(\S*) md=(\S*)$", self.proc.log(), re.M)

    def ends(self):
        return re.findall(r"^END (\S+) code=(\S+)$", self.proc.log(), re.M)

    def wait_ends(self, n, timeout=5.0):
        """Waits until <n> calls have finished; returns ends() (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            ends = self.ends()
            if len(ends) >= n:
                return ends
            if time.monotonic() > deadline:
                import pytest
                pytest.fail(f"grpc-peer: {len(ends)} calls finished, not {n}, after {timeout}s\n"
                            f"{self.proc.log_tail()}", pytrace=False)
            time.sleep(0.02)


def start_server(processes, tls=None, client_ca=None, port=None, host="127.0.0.1", workers=32,
                 options=(), quiet=False, timeout=15.0):
    from conftest import free_port
    port = port or free_port(host)
    args = [PYTHON, SERVER, "--port", port, "--host", host, "--workers", workers]
    if tls is not None:
        d = processes.tmp_path / f"grpc-peer-{port}"
        key, crt, _ = tls.write(d, "server")
        args += ["--tls-cert", crt, "--tls-key", key]
        if client_ca is not None:
            ca = d / "client-ca.crt"
            ca.write_bytes(client_ca.cert_pem)
            args += ["--client-ca", ca]
    for k, v in options:
        args += ["--grpc-option", f"{k}={v}"]
    if quiet:
        args.append("--quiet")
    proc = processes.start(args, name="grpc-peer", port=port, host=host, timeout=timeout)
    proc.wait_log(r"^ready port=\d+", timeout=timeout)
    return GrpcServer(proc, port, host, tls)
