"""The gRPC policy peer of Portico's integration tests: Debian's python3-grpcio serving Envoy's
external authorization service (/envoy.service.auth.v3.Authorization/Check) and/or rate limit
service (/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) from the messages of the
repository's proto/, over h2c or TLS. It records every request and decides from what the request
carries (the controls are in policy_peer/__init__.py).

Run it as a process (the tests do, through policy_peer.start_authz / start_ratelimit):

    /usr/bin/python3 tests/integration/policy_peer/grpc_server.py --port 50051
        --service authz|ratelimit [--service ...] [--host 127.0.0.1] [--record file.jsonl]
        [--tls-cert crt --tls-key key [--client-ca ca.crt]] [--workers 32]

It prints ``ready port=<port> tls=<0|1> services=<list>`` once listening (--port 0 picks a free
port), then ``END <method> <outcome>`` per call (outcome: allow, deny, error, ok, over_limit,
fail, cancelled). SIGTERM or SIGINT stop it (calls in flight get 0.5 s), exit status 0.
"""

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from policy_peer.common import (add_server_args, b64, check_server_args, items,  # noqa: E402
                                names, sleep_ms, sleep_while, Recorder)
from policy_peer.stubs import load  # noqa: E402

pb = load()
_print_lock = threading.Lock()
RECORD = Recorder(None)


def log(line):
    with _print_lock:
        print(line, flush=True)


def call_info(context):
    """What every record carries about the call itself: the gRPC peer, the metadata (text
    values) and the deadline left when the call arrived (ms, None without one)."""
    left = context.time_remaining()
    return {"peer": context.peer(),
            "metadata": [[k, v] for k, v in context.invocation_metadata()
                         if not k.endswith("-bin")],
            "deadline_ms": None if left is None else int(left * 1000)}


def peer_dict(peer):
    sa = peer.address.socket_address
    return {"address": sa.address, "port": sa.port_value, "service": peer.service,
            "principal": peer.principal, "certificate": peer.certificate}


def check_dict(req):
    a = req.attributes
    h = a.request.http
    return {"source": peer_dict(a.source), "destination": peer_dict(a.destination),
            "id": h.id, "method": h.method, "path": h.path, "host": h.host, "scheme": h.scheme,
            "query": h.query, "fragment": h.fragment, "size": h.size, "protocol": h.protocol,
            "headers": dict(h.headers), "body": h.body.decode("utf-8"),  # strict: Envoy sends a string
            "raw_body_b64": b64(h.raw_body),
            "context_extensions": dict(a.context_extensions), "tls_sni": a.tls_session.sni}


def header_options(values, append=None):
    """HeaderValueOption messages for "name=value" items; <append>: None leaves append unset
    (Envoy: false here), True/False sets the BoolValue."""
    out = []
    for name, value in items(values):
        opt = pb.core.HeaderValueOption(header=pb.core.HeaderValue(key=name, value=value))
        if append is not None:
            opt.append.CopyFrom(pb.wrappers.BoolValue(value=append))
        out.append(opt)
    return out


def control(headers, name):
    """The values of control header <name> in a CheckRequest's headers map (merged with ",")."""
    v = headers.get(name)
    return [] if v is None else [v]


class Authorization(pb.auth_grpc.AuthorizationServicer):
    def Check(self, req, context):
        rec = check_dict(req)
        headers = rec["headers"]
        decision = (headers.get("x-auth-decision") or "allow").strip().lower()
        RECORD.write(dict(call_info(context), service="authz", decision=decision, **rec))
        outcome = decision
        try:
            if not sleep_while(context.is_active, sleep_ms(headers.get("x-auth-sleep-ms"))):
                outcome = "cancelled"
                return pb.auth.CheckResponse()
            if decision == "error":
                context.abort(grpc.StatusCode.UNAVAILABLE, "policy-peer: x-auth-decision: error")
            if decision == "deny-bare":
                return pb.auth.CheckResponse(status=pb.status.Status(code=7))
            if decision == "allow-bare":
                return pb.auth.CheckResponse(status=pb.status.Status(code=0))
            if decision == "deny":
                denied = pb.auth.DeniedHttpResponse(
                    headers=header_options(control(headers, "x-auth-header")),
                    body=headers.get("x-auth-body", ""))
                if headers.get("x-auth-status"):
                    denied.status.code = int(headers["x-auth-status"])
                return pb.auth.CheckResponse(status=pb.status.Status(code=7),
                                             denied_response=denied)
            outcome = "allow"
            ok = pb.auth.OkHttpResponse(
                headers=header_options(control(headers, "x-auth-header"))
                + header_options(control(headers, "x-auth-append-header"), append=True),
                headers_to_remove=names(control(headers, "x-auth-remove-header")),
                response_headers_to_add=header_options(
                    control(headers, "x-auth-response-header")))
            return pb.auth.CheckResponse(status=pb.status.Status(code=0), ok_response=ok)
        finally:
            log(f"END Check {outcome}")


def descriptor_values(req):
    return [e.value for d in req.descriptors for e in d.entries]


def is_over(value):
    return value == "over" or value.startswith("over-")


class RateLimitService(pb.rls_grpc.RateLimitServiceServicer):
    def ShouldRateLimit(self, req, context):
        Code = pb.rls.RateLimitResponse
        descs = [[[e.key, e.value] for e in d.entries] for d in req.descriptors]
        RECORD.write(dict(call_info(context), service="ratelimit", domain=req.domain,
                          descriptors=descs, hits_addend=req.hits_addend))
        values = descriptor_values(req)
        outcome = "ok"
        try:
            ms = max([sleep_ms(v[len("sleep-"):]) for v in values if v.startswith("sleep-")],
                     default=0)
            if not sleep_while(context.is_active, ms):
                outcome = "cancelled"
                return Code()
            if "fail" in values:
                outcome = "fail"
                context.abort(grpc.StatusCode.UNAVAILABLE, "policy-peer: descriptor value fail")
            statuses = [Code.DescriptorStatus(code=Code.OVER_LIMIT
                                              if any(is_over(e.value) for e in d.entries)
                                              else Code.OK)
                        for d in req.descriptors]
            if any(is_over(v) for v in values):
                outcome = "over_limit"
                resp = Code(overall_code=Code.OVER_LIMIT, statuses=statuses,
                            response_headers_to_add=[
                                pb.core.HeaderValue(key="x-ratelimit-test", value="over")])
                if "over-body" in values:
                    resp.raw_body = b"rate limited by policy-peer\n"
                return resp
            resp = Code(overall_code=Code.OK, statuses=statuses)
            if "addhdr" in values:
                resp.request_headers_to_add.append(
                    pb.core.HeaderValue(key="x-ratelimit-ok", value="yes"))
            return resp
        finally:
            log(f"END ShouldRateLimit {outcome}")


def main(argv=None):
    global RECORD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--service", action="append", choices=["authz", "ratelimit"], required=True)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args(argv)
    check_server_args(ap, args)
    RECORD = Recorder(args.record)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    if "authz" in args.service:
        pb.auth_grpc.add_AuthorizationServicer_to_server(Authorization(), server)
    if "ratelimit" in args.service:
        pb.rls_grpc.add_RateLimitServiceServicer_to_server(RateLimitService(), server)
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.tls_cert:
        key = Path(args.tls_key).read_bytes()
        crt = Path(args.tls_cert).read_bytes()
        ca = Path(args.client_ca).read_bytes() if args.client_ca else None
        creds = grpc.ssl_server_credentials([(key, crt)], root_certificates=ca,
                                            require_client_auth=ca is not None)
        port = server.add_secure_port(f"{host}:{args.port}", creds)
    else:
        port = server.add_insecure_port(f"{host}:{args.port}")
    if port == 0:
        print(f"cannot listen on {host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    log(f"ready port={port} tls={1 if args.tls_cert else 0} services={','.join(args.service)}")
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
