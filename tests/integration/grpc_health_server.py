"""A gRPC health server for the health-check tests: Debian's python3-grpcio serving
grpc.health.v1.Health/Check (python3-grpcio ships no grpc_health module, so the two tiny messages
are read and written by hand: HealthCheckRequest{string service = 1},
HealthCheckResponse{ServingStatus status = 1}, SERVING = 1, NOT_SERVING = 2).

    /usr/bin/python3 tests/integration/grpc_health_server.py --port N [--host 127.0.0.1]

It prints ``ready port=<port>`` once listening, then ``CHECK service=<s> ua=<user-agent>`` per
call (grpcio's server does not show the :authority). It answers SERVING until SIGUSR1 (then NOT_SERVING), SIGUSR2 goes
back to SERVING. SIGTERM stops it.
"""

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

state = {"status": 1}
lock = threading.Lock()


def service_of(req):
    """The service field of a HealthCheckRequest (empty when absent)."""
    i, out = 0, b""
    while i < len(req):
        key = req[i]
        i += 1
        if key & 7 != 2:
            break
        n, shift = 0, 0
        while True:
            b = req[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if key >> 3 == 1:
            out = req[i:i + n]
        i += n
    return out.decode()


def check(req, context):
    md = dict(context.invocation_metadata())
    with lock:
        print(f"CHECK service={service_of(req)} ua={md.get('user-agent', '')}", flush=True)
    return bytes([0x08, state["status"]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{a.host}:{a.port}")
    server.start()
    done = threading.Event()

    def flip(sig, _):
        state["status"] = 2 if sig == signal.SIGUSR1 else 1

    signal.signal(signal.SIGUSR1, flip)
    signal.signal(signal.SIGUSR2, flip)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"ready port={port}", flush=True)
    done.wait()
    server.stop(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
