"""Policy test peers for Portico's integration tests (AuthService, RateLimitService): real servers
that record every request they get and decide from what the request carries.

- a gRPC external authorization server (/envoy.service.auth.v3.Authorization/Check),
- a gRPC rate limit server (/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit),
  both Debian's python3-grpcio (policy_peer/grpc_server.py) with the messages of the
  repository's proto/ (the Envoy API subset Portico's C is generated from), generated at test
  time with grpc_tools.protoc (policy_peer/stubs.py, cached under build/policy_peer/; nothing
  generated is committed),
- an HTTP auth server for AuthService ``proto: http`` (python3 http.server, threads, HTTP/1.1
  keep-alive; policy_peer/http_server.py).

Import with ``from policy_peer import ...`` (tests/integration is on sys.path through conftest.py).

Starting them (each a process started through the ``processes`` fixture, stopped at teardown,
returned once it printed ``ready``; <port> default: a free one; <tls>: a tlsenv Cert (leaf) to
serve TLS with, None: plaintext (h2c for gRPC); <client_ca>: a tlsenv Cert, client certificates
are then required):

``start_authz(processes, tls=None, client_ca=None, port=None, host="127.0.0.1", workers=32,
ratelimit=False) -> PolicyServer``
    The gRPC ext_authz server (with <ratelimit>, the same process serves ShouldRateLimit too).
``start_ratelimit(processes, tls=None, client_ca=None, port=None, host="127.0.0.1",
workers=32) -> PolicyServer``
    The gRPC rate limit server.
``start_http_auth(processes, tls=None, client_ca=None, port=None, host="127.0.0.1")
-> PolicyServer``
    The HTTP auth server.

``PolicyServer``: ``.port``, ``.host``, ``.proc`` (conftest.Process), ``.tls``, ``.record_path``;
``.records(since=0)`` every request recorded so far (dicts, in arrival order; <since>: skip the
first n, e.g. ``n = len(srv.records())`` before a step); ``.checks()`` (the same, for the authz
server) and ``.requests()`` (the same, for the other two); ``.wait_records(n, timeout=5)``
waits until <n> requests have been recorded and returns them; ``.ends()`` the (name, outcome)
of every request answered (from the log's ``END`` lines). A request is recorded when it arrives
(before any sleep), so a request Portico gave up on is still there.

What a record holds:

- authz (one CheckRequest): ``source`` and ``destination`` ({address, port, service, principal,
  certificate}), ``id``, ``method``, ``path``, ``host``, ``scheme``, ``query``, ``fragment``,
  ``size``, ``protocol``, ``headers`` (dict, as in the request's map), ``body`` (str),
  ``raw_body`` (bytes), ``context_extensions`` (dict), ``tls_sni``, and about the call:
  ``peer`` (gRPC peer, "ipv4:127.0.0.1:port"), ``metadata`` ([key, value] of the text metadata),
  ``deadline_ms`` (the grpc-timeout left on arrival, None without one), ``decision``.
- ratelimit: ``domain``, ``descriptors`` (a list per descriptor of [key, value] pairs),
  ``hits_addend``, ``peer``, ``metadata``, ``deadline_ms``.
- http: ``method``, ``path`` (the request target), ``version``, ``headers`` (list of [name,
  value] as received), ``body`` (bytes), ``peer`` ("ip:port" of the connection: keep-alive
  reuse shows as one peer), ``decision``.
Every record also has ``service`` ("authz", "ratelimit", "http"), ``seq`` and ``t`` (time).

Controls of the authz server (headers of the checked request, read from CheckRequest's headers
map; a repeated header arrives merged with ","):

- ``x-auth-decision``: ``allow`` (default): status 0 and an ok_response; ``deny``: status 7
  (PERMISSION_DENIED) and a denied_response; ``error``: the call fails with gRPC UNAVAILABLE;
  ``allow-bare`` / ``deny-bare``: status 0 / 7 with no http_response at all.
- ``x-auth-status``: the denied_response's HttpStatus code (unset when absent: Envoy's 403).
- ``x-auth-body``: the denied_response's body.
- ``x-auth-header: name=value[, name=value...]``: headers of the ok_response (request headers
  for upstream) or of the denied_response (to the client), ``append`` left unset (false).
- ``x-auth-append-header: name=value,...``: ok_response headers with ``append: true``.
- ``x-auth-remove-header: name[, name...]``: ok_response ``headers_to_remove``.
- ``x-auth-response-header: name=value,...``: ok_response ``response_headers_to_add``.
- ``x-auth-sleep-ms``: sleep first (at most 30 s; a cancelled call stops sleeping).

Controls of the rate limit server (the values of the descriptor entries):

- any value ``over`` or starting ``over-``: overall_code OVER_LIMIT, with
  response_headers_to_add ``x-ratelimit-test: over``; ``over-body`` also sets raw_body
  ``rate limited by policy-peer\\n``;
- ``sleep-<ms>``: sleep first (the longest of them, at most 30 s);
- ``fail``: the call fails with gRPC UNAVAILABLE;
- else OK; with a value ``addhdr``, request_headers_to_add ``x-ratelimit-ok: yes``.
  ``statuses`` has one DescriptorStatus per descriptor (OVER_LIMIT for one with an over value).

Controls of the HTTP auth server (request headers; several lines or comma lists):

- ``x-auth-decision``: ``allow`` (default): 200 (or ``x-auth-status`` when it is 2xx), empty
  body; ``deny``: ``x-auth-status`` (default 403) with ``x-auth-body``; ``error``: no answer,
  the connection is reset.
- ``x-auth-header: name=value,...``: headers of the answer (allow or deny).
- ``x-auth-remove-header: name,...``: ``x-envoy-auth-headers-to-remove`` on the answer.
- ``x-auth-sleep-ms``: sleep before answering (at most 30 s).

Clients for talking to the servers directly: ``pb`` (stubs.Pb: ``pb.auth``, ``pb.auth_grpc``,
``pb.rls``, ``pb.rls_grpc``, ``pb.core``, ...), ``channel(port, host="127.0.0.1", ca=None,
server_name=None, cert=None) -> grpc.Channel`` (h2c unless <ca>).
"""

import re
import time
from pathlib import Path

import grpc

from .common import read_records, unb64
from .stubs import load

pb = load()

HERE = Path(__file__).resolve().parent
GRPC_SERVER = HERE / "grpc_server.py"
HTTP_SERVER = HERE / "http_server.py"
PYTHON = "/usr/bin/python3"

__all__ = ["PolicyServer", "channel", "pb", "start_authz", "start_http_auth", "start_ratelimit"]


def _decode(rec):
    """A record as tests use it: base64 fields back to bytes."""
    if "raw_body_b64" in rec:
        rec["raw_body"] = unb64(rec.pop("raw_body_b64"))
    if "body_b64" in rec:
        rec["body"] = unb64(rec.pop("body_b64"))
    return rec


class PolicyServer:
    def __init__(self, proc, port, host, tls, record_path):
        self.proc = proc
        self.port = port
        self.host = host
        self.tls = tls
        self.record_path = record_path

    def records(self, since=0):
        return [_decode(r) for r in read_records(self.record_path)[since:]]

    checks = records
    requests = records

    def wait_records(self, n, timeout=5.0):
        """Waits until <n> requests have been recorded; returns records() (fails the test on
        timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.records()
            if len(recs) >= n:
                return recs
            if time.monotonic() > deadline:
                import pytest
                pytest.fail(f"policy-peer: {len(recs)} requests recorded, not {n}, after "
                            f"{timeout}s\n{self.proc.log_tail()}", pytrace=False)
            time.sleep(0.02)

    def ends(self):
        return [(m[0], m[-1]) for m in
                re.findall(r"^END (\S+)(?: (\S+))? (\S+)$", self.proc.log(), re.M)]


def _start(processes, script, name, extra, tls, client_ca, port, host, timeout):
    from conftest import free_port
    port = port or free_port(host)
    d = processes.tmp_path / f"{name}-{port}"
    d.mkdir(parents=True, exist_ok=True)
    record = d / "records.jsonl"
    args = [PYTHON, script, "--port", port, "--host", host, "--record", record, *extra]
    if tls is not None:
        key, crt, _ = tls.write(d, "server")
        args += ["--tls-cert", crt, "--tls-key", key]
        if client_ca is not None:
            ca = d / "client-ca.crt"
            ca.write_bytes(client_ca.cert_pem)
            args += ["--client-ca", ca]
    proc = processes.start(args, name=name, port=port, host=host, timeout=timeout)
    proc.wait_log(r"^ready port=\d+", timeout=timeout)
    return PolicyServer(proc, port, host, tls, record)


def start_authz(processes, tls=None, client_ca=None, port=None, host="127.0.0.1", workers=32,
                ratelimit=False, timeout=15.0):
    extra = ["--service", "authz", "--workers", workers]
    if ratelimit:
        extra += ["--service", "ratelimit"]
    return _start(processes, GRPC_SERVER, "authz-peer", extra, tls, client_ca, port, host,
                  timeout)


def start_ratelimit(processes, tls=None, client_ca=None, port=None, host="127.0.0.1",
                    workers=32, timeout=15.0):
    return _start(processes, GRPC_SERVER, "ratelimit-peer",
                  ["--service", "ratelimit", "--workers", workers], tls, client_ca, port, host,
                  timeout)


def start_http_auth(processes, tls=None, client_ca=None, port=None, host="127.0.0.1",
                    timeout=15.0):
    return _start(processes, HTTP_SERVER, "http-auth-peer", [], tls, client_ca, port, host,
                  timeout)


def _pem(x):
    if x is None or isinstance(x, bytes):
        return x
    return getattr(x, "chain_pem", None) or x.cert_pem


def channel(port, host="127.0.0.1", ca=None, server_name=None, cert=None):
    """A gRPC channel to a policy peer: h2c, or TLS trusting <ca> (tlsenv Cert or PEM), checking
    <server_name> when it is not <host>, with the client certificate <cert> (tlsenv Cert)."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    if ca is None:
        return grpc.insecure_channel(target, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_pem(ca),
        private_key=cert.key_pem if cert is not None else None,
        certificate_chain=_pem(cert) if cert is not None else None)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, creds, options=options)
