"""The HTTP auth peer of Portico's integration tests: an external authorization server for
AuthService `proto: http` (Envoy's ext_authz HTTP mode), on Python's http.server (threads,
HTTP/1.1 keep-alive, optionally TLS). It records every request and decides from the request's
headers (the controls are in policy_peer/__init__.py).

Run it as a process (the tests do, through policy_peer.start_http_auth):

    /usr/bin/python3 tests/integration/policy_peer/http_server.py --port 8000
        [--host 127.0.0.1] [--record file.jsonl] [--tls-cert crt --tls-key key [--client-ca ca]]

It prints ``ready port=<port> tls=<0|1>`` once listening (--port 0 picks a free port), then
``END <method> <path> <outcome>`` per request (outcome: allow, deny, error, cancelled). SIGTERM
or SIGINT stop it, exit status 0.
"""

import argparse
import http.server
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policy_peer.common import (add_server_args, b64, check_server_args, items,  # noqa: E402
                                names, sleep_ms, sleep_while, Recorder)

RECORD = Recorder(None)
_print_lock = threading.Lock()
# A body larger than this is refused with 413 (a test never needs more).
MAX_BODY = 16 << 20


def log(line):
    with _print_lock:
        print(line, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "policy-peer"
    sys_version = ""
    timeout = 60

    def log_message(self, fmt, *args):  # no access log on stderr
        pass

    def setup(self):
        # The TLS handshake happens here, in the connection's thread, not in accept().
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def values(self, name):
        return self.headers.get_all(name) or []

    def read_body(self):
        """The request body (Content-Length or chunked), or None when it is malformed."""
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = b""
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(8192).strip():
                        pass
                    return body
                if len(body) + size > MAX_BODY:
                    return None
                body += self.rfile.read(size)
                self.rfile.readline(8)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if 0 <= n <= MAX_BODY else None

    def answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        body = self.read_body()
        decision = (self.headers.get("x-auth-decision") or "allow").strip().lower()
        RECORD.write({"service": "http", "method": self.command, "path": self.path,
                      "version": self.request_version,
                      "headers": [[k, v] for k, v in self.headers.items()],
                      "body_b64": b64(body or b""),
                      "peer": f"{self.client_address[0]}:{self.client_address[1]}",
                      "decision": decision})
        outcome = decision
        try:
            if body is None:
                outcome = "bad-body"
                self.answer(413, [], b"policy-peer: bad or too large body\n")
                self.close_connection = True
                return
            if not sleep_while(lambda: True, sleep_ms(self.headers.get("x-auth-sleep-ms"))):
                outcome = "cancelled"
                return
            if decision == "error":
                # No answer at all: the connection is reset.
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            hdrs = items(self.values("x-auth-header"))
            remove = names(self.values("x-auth-remove-header"))
            if remove:
                hdrs.append(("x-envoy-auth-headers-to-remove", ", ".join(remove)))
            if decision == "deny":
                status = int(self.headers.get("x-auth-status") or 403)
                body_out = (self.headers.get("x-auth-body") or "").encode()
                self.answer(status, hdrs, body_out)
                return
            outcome = "allow"
            status = int(self.headers.get("x-auth-status") or 200)
            if not 200 <= status < 300:
                status = 200
            self.answer(status, hdrs, b"")
        finally:
            log(f"END {self.command} {self.path} {outcome}")

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        log(f"ERROR {client_address[0]}:{client_address[1]} {sys.exc_info()[1]!r}")


def main(argv=None):
    global RECORD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_args(ap)
    args = ap.parse_args(argv)
    check_server_args(ap, args)
    RECORD = Recorder(args.record)
    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    server = Server((args.host, args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                       do_handshake_on_connect=False)
    port = server.server_address[1]
    stop = threading.Event()

    def on_signal(*_):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"ready port={port} tls={1 if args.tls_cert else 0}")
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
