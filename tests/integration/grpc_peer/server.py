"""The gRPC test server of Portico's integration tests: Debian's python3-grpcio serving the Peer
service of peer.proto (unary, server-streaming, client-streaming, bidi) over h2c or TLS.

Run it as a process (the tests do, through grpc_peer.start_server):

    /usr/bin/python3 tests/integration/grpc_peer/server.py --port 50051 [--host 127.0.0.1]
        [--tls-cert crt --tls-key key [--client-ca ca.crt]] [--workers 32]
        [--grpc-option grpc.max_concurrent_streams=10 ...] [--quiet]

It prints ``ready port=<port> tls=<0|1>`` once listening (--port 0 picks a free port and prints
it), then one line per call: ``CALL <method> peer=<peer> md=<metadata keys>`` when it starts and
``END <method> code=<status name>`` when the handler returns. SIGTERM or SIGINT stop it (the calls
in flight get 0.5 s), exit status 0.

What each call does is written in its Request (see peer.proto): sleep_ms, fail_code +
fail_message, echo_metadata, payload_size, replies, tag.
"""

import argparse
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from grpc_peer.common import payload, status_from_int  # noqa: E402
from grpc_peer.stubs import load  # noqa: E402

pb, pb_grpc = load()
_print_lock = threading.Lock()
QUIET = False


def log(line):
    if QUIET:
        return
    with _print_lock:
        print(line, flush=True)


def echoed(context):
    """The request metadata a call echoes: everything but pseudo-headers and grpc-* keys."""
    return [(k, v) for k, v in context.invocation_metadata()
            if not k.startswith(":") and not k.startswith("grpc-")]


def echo(context):
    md = echoed(context)
    context.send_initial_metadata(md + [("x-peer-phase", "initial")])
    context.set_trailing_metadata(md + [("x-peer-phase", "trailing")])


def sleep(context, ms):
    """Sleeps <ms> milliseconds, returning early when the call is no longer active (cancelled,
    deadline passed). Returns whether the call is still active."""
    end = time.monotonic() + ms / 1000.0
    while context.is_active():
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.01))
    return False


def fail(context, req):
    context.abort(status_from_int(req.fail_code), req.fail_message)


class Peer(pb_grpc.PeerServicer):
    def _start(self, name, context):
        keys = ",".join(k for k, _ in context.invocation_metadata())
        log(f"CALL {name} peer={context.peer()} md={keys}")

    def _reply(self, context, req, seq, received_bytes, received_messages):
        return pb.Reply(payload=payload(req.payload_size, seq), seq=seq,
                        received_bytes=received_bytes, received_messages=received_messages,
                        tag=req.tag, peer=context.peer())

    def Unary(self, req, context):
        self._start("Unary", context)
        code = "OK"
        try:
            if req.echo_metadata:
                echo(context)
            if not sleep(context, req.sleep_ms):
                code = "CANCELLED"
                return pb.Reply()
            if req.fail_code:
                code = status_from_int(req.fail_code).name
                fail(context, req)
            return self._reply(context, req, 0, len(req.payload), 1)
        finally:
            log(f"END Unary code={code}")

    def ServerStream(self, req, context):
        self._start("ServerStream", context)
        code = "OK"
        try:
            if req.echo_metadata:
                echo(context)
            for i in range(req.replies or 1):
                if not sleep(context, req.sleep_ms):
                    code = "CANCELLED"
                    return
                yield self._reply(context, req, i, len(req.payload), 1)
            if req.fail_code:
                code = status_from_int(req.fail_code).name
                fail(context, req)
        finally:
            log(f"END ServerStream code={code}")

    def ClientStream(self, reqs, context):
        self._start("ClientStream", context)
        code = "OK"
        try:
            n, size, last, want_echo = 0, 0, pb.Request(), False
            for req in reqs:
                n += 1
                size += len(req.payload)
                last = req
                want_echo = want_echo or req.echo_metadata
                if not sleep(context, req.sleep_ms):
                    code = "CANCELLED"
                    return pb.Reply()
            if want_echo:
                echo(context)
            if last.fail_code:
                code = status_from_int(last.fail_code).name
                fail(context, last)
            return self._reply(context, last, 0, size, n)
        finally:
            log(f"END ClientStream code={code}")

    def Bidi(self, reqs, context):
        self._start("Bidi", context)
        code = "OK"
        try:
            n, size, seq, echoed_once = 0, 0, 0, False
            for req in reqs:
                n += 1
                size += len(req.payload)
                if req.echo_metadata and not echoed_once:
                    echo(context)
                    echoed_once = True
                for _ in range(req.replies or 1):
                    if not sleep(context, req.sleep_ms):
                        code = "CANCELLED"
                        return
                    yield self._reply(context, req, seq, size, n)
                    seq += 1
                if req.fail_code:
                    code = status_from_int(req.fail_code).name
                    fail(context, req)
        finally:
            log(f"END Bidi code={code}")


def option_value(text):
    try:
        return int(text)
    except ValueError:
        return text


def main(argv=None):
    global QUIET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--grpc-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--quiet", action="store_true", help="no CALL/END lines")
    args = ap.parse_args(argv)
    QUIET = args.quiet
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert and --tls-key")
    options = []
    for o in args.grpc_option:
        k, sep, v = o.partition("=")
        if not sep:
            ap.error(f"--grpc-option {o!r}: expected KEY=VALUE")
        options.append((k, option_value(v)))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers), options=options)
    pb_grpc.add_PeerServicer_to_server(Peer(), server)
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
    with _print_lock:
        print(f"ready port={port} tls={1 if args.tls_cert else 0}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
