"""The response side of the proxy against raw backends (issue 9, points 4, 5 and 12): a response
is parsed into its own storage (an interim 103's headers never become the retried request's),
a response framed by both Content-Length and Transfer-Encoding is Envoy's protocol-error 502,
an HTTP/1.0 client never gets a body its Content-Length does not match, and a close that comes
with the last bytes is seen at once on either side. Raw sockets in, exact bytes out."""

import re
import socket
import threading
import time

from conftest import RawConn
from portico import (_ThreadedServer, access_lines, basic_config, docs, recv_head,
                     start_portico, wait_access_lines)
from portico_cfg import doc, dump

DATE_RX = rb"date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n"
UPE_BODY = (b"upstream connect error or disconnect/reset before headers. reset reason: "
            b"protocol error")
# HTTP/1.0 clients are served only with enable_http10 (issue 9, point 2).
HTTP10 = dump(doc("Module", "ambassador", {"config": {"enable_http10": True}}))


class ScriptedBackend(_ThreadedServer):
    """Answers the requests of its <n>th connection (0-based) with script(n)[i] for the i-th
    request: bytes to send with one sendall, or (bytes, "close") to send and close at once
    (TCP_CORK holds the bytes until the close, so they and the FIN arrive together).
    A connection whose script ran out closes. Records every request head it read, per
    connection, in .heads (bytes, blank line included)."""

    def __init__(self, script):
        self.script = script
        self.heads = []
        self.lock = threading.Lock()
        super().__init__()

    def serve(self, conn):
        with self.lock:
            n = len(self.heads)
            self.heads.append([])
        data = b""
        for answer in self.script(n):
            got = recv_head(conn, data)
            if got is None:
                return
            head, data = got
            self.heads[n].append(head + b"\r\n\r\n")
            close = isinstance(answer, tuple)
            if close:  # corked: the bytes and the FIN leave in one segment, arrive as one
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            conn.sendall(answer[0] if close else answer)
            if close:
                return  # _serve_guarded closes: the FIN flushes the corked bytes


def read_until_quiet(sock, quiet=0.5):
    sock.settimeout(quiet)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        if not chunk:
            return data, True
        data += chunk


def proxy(processes, tmp_path, backend, *extra_docs, **mapping_spec):
    return start_portico(processes, tmp_path,
                         docs(*extra_docs, basic_config(backend.port, **mapping_spec)),
                         workers=1)


# ---- point 4: responses never share storage with requests --------------------------------------

def test_retry_after_an_interim_103_sends_the_clients_request(processes, tmp_path):
    """A reused connection answers 103 Early Hints with headers, then closes: the GET goes again
    on a new connection with exactly the head it had, not one rebuilt from the 103's headers."""
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst"
    hints = (b"HTTP/1.1 103 Early Hints\r\nX-From-103: a\r\nLink: </style.css>; rel=preload\r\n"
             b"X-Also-103: b\r\n\r\n", "close")
    retried = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nx-conn: 2\r\n\r\nretried"
    backend = ScriptedBackend(lambda n: [ok, hints] if n == 0 else [retried])
    try:
        p = proxy(processes, tmp_path, backend)
        with RawConn(p.port) as c:
            c.send(b"GET /backend/one HTTP/1.1\r\nHost: a.example\r\n\r\n")
            r = c.read_response()
            assert (r.status, r.body) == (200, b"first")
            c.send(b"GET /backend/two HTTP/1.1\r\nHost: client.example\r\nX-Client: yes\r\n"
                   b"User-Agent: raw/1\r\n\r\n")
            r = c.read_response()
            assert (r.status, r.body, r.header("x-conn")) == (200, b"retried", "2"), r
            assert r.header("x-from-103") is None
        assert [len(h) for h in backend.heads] == [2, 1]
        sent, again = backend.heads[0][1], backend.heads[1][0]
        assert again == sent, (sent, again)  # the same head, byte for byte
        assert re.match(rb"GET /two HTTP/1.1\r\nHost: client.example\r\nX-Client: yes\r\n"
                        rb"User-Agent: raw/1\r\nx-forwarded-for: 127.0.0.1\r\n", again), again
        assert b"103" not in again and b"X-Also" not in again
    finally:
        backend.close()


def exact(wire, head_rx, body=b""):
    """Asserts <wire> is exactly one response: the head matching <head_rx> (DATE stands for the
    date line, UST for x-envoy-upstream-service-time's value), then <body>, nothing else."""
    rx = (re.escape(head_rx).replace(re.escape(b"DATE"), DATE_RX).replace(re.escape(b"UST"), rb"\d+")
          + re.escape(body))
    assert re.fullmatch(rx, wire, re.S), wire


# ---- point 5: one framing per response; HTTP/1.0 clients get bodies their length matches -------

BOTH = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n"
    b"0\r\n\r\n",
]


def test_response_with_content_length_and_chunked_is_a_protocol_error(processes, tmp_path):
    answers = list(BOTH)
    backend = ScriptedBackend(lambda n: [(answers[n], "close")] if n < len(answers) else [])
    try:
        p = proxy(processes, tmp_path, backend, HTTP10)
        for version in (b"1.1", b"1.0"):
            with RawConn(p.port) as c:
                c.send(b"GET /backend/x HTTP/" + version + b"\r\nHost: a\r\n\r\n")
                wire, closed = read_until_quiet(c.sock)
            exact(wire, b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 87\r\ncontent-type: "
                        b"text/plain\r\nDATEserver: envoy\r\n" +
                        (b"connection: close\r\n" if version == b"1.0" else b"") + b"\r\n",
                  UPE_BODY)
        lines = wait_access_lines(p, 2)
        assert [m.group("code", "flags") for _, m in lines] == [("502", "UPE")] * 2, lines
    finally:
        backend.close()


def test_chunked_response_to_http10_client_is_close_delimited(processes, tmp_path):
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n"
            b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: t\r\n\r\n")
    backend = ScriptedBackend(lambda n: [resp, resp])
    try:
        p = start_portico(processes, tmp_path, docs(HTTP10, basic_config(backend.port)),
                          workers=1)
        for method in (b"GET", b"HEAD"):
            with RawConn(p.port) as c:
                c.send(method + b" /backend/x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
                wire, closed = read_until_quiet(c.sock)
            assert closed == (method == b"GET")  # the close ends the de-chunked body
            exact(wire, b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nx-envoy-upstream-service-time: UST\r\n"
                        b"server: envoy\r\nconnection: " +
                        (b"close" if method == b"GET" else b"keep-alive") + b"\r\n\r\n",
                  b"hello, world" if method == b"GET" else b"")
    finally:
        backend.close()


def test_head_response_to_http10_client_keeps_its_length_and_sends_no_body(processes, tmp_path):
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    backend = ScriptedBackend(lambda n: [resp, resp])
    try:
        p = start_portico(processes, tmp_path, docs(HTTP10, basic_config(backend.port)),
                          workers=1)
        with RawConn(p.port) as c:
            c.send(b"HEAD /backend/x HTTP/1.0\r\nHost: a\r\n\r\n")
            wire, closed = read_until_quiet(c.sock)
        assert closed
        exact(wire, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nx-envoy-upstream-service-time: "
                    b"UST\r\nserver: envoy\r\nconnection: close\r\n\r\n")
    finally:
        backend.close()


# ---- point 12: a close that arrives with the last bytes is seen --------------------------------

def test_close_delimited_response_ending_with_the_fin(processes, tmp_path):
    """The backend sends its whole close-delimited response and closes in the same instant:
    the client has it at once, not a 504 after the route timeout."""
    backend = ScriptedBackend(lambda n: [(b"HTTP/1.1 200 OK\r\n\r\nhello", "close")])
    try:
        p = proxy(processes, tmp_path, backend)
        for _ in range(3):
            t0 = time.monotonic()
            with RawConn(p.port) as c:
                c.send(b"GET /backend/x HTTP/1.1\r\nHost: a\r\n\r\n")
                wire, closed = read_until_quiet(c.sock, quiet=2.5)
            elapsed = time.monotonic() - t0
            assert closed
            exact(wire, b"HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: UST\r\n"
                        b"server: envoy\r\nconnection: close\r\n\r\n", b"hello")
            assert elapsed < 0.5, elapsed
    finally:
        backend.close()


def _cluster_metric(p, name):
    import requests
    text = requests.get(p.admin_url("/metrics"), timeout=5).text
    vals = [float(v) for v in re.findall(rf"^envoy_cluster_{name}\{{[^}}]*\}} (\S+)$", text, re.M)]
    return sum(vals)


def test_keep_alive_response_ending_with_the_fin_is_not_pooled(processes, tmp_path):
    """Each connection: a complete keep-alive response, then the backend closes at once. The
    next request (a POST, which is never retried) must go on a new connection."""
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    backend = ScriptedBackend(lambda n: [(ok, "close")])
    try:
        p = proxy(processes, tmp_path, backend)
        with RawConn(p.port) as c:
            for i in range(3):
                c.request("POST" if i else "GET", f"/backend/{i}", body=b"x" * i)
                r = c.read_response()
                assert (r.status, r.body) == (200, b"ok"), r
        assert [len(h) for h in backend.heads] == [1, 1, 1]
        deadline = time.monotonic() + 2
        while _cluster_metric(p, "upstream_cx_destroy") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _cluster_metric(p, "upstream_cx_total") == 3
        assert _cluster_metric(p, "upstream_cx_destroy") == 3
        assert _cluster_metric(p, "upstream_cx_active") == 0
    finally:
        backend.close()


def test_client_half_close_with_its_request(processes, tmp_path):
    """The client sends its request and shuts down its side in the same instant: it still gets
    the whole response, and then the connection closes."""
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    backend = ScriptedBackend(lambda n: [ok])
    try:
        p = proxy(processes, tmp_path, backend)
        t0 = time.monotonic()
        with RawConn(p.port) as c:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # request + FIN: one segment
            c.send(b"GET /backend/x HTTP/1.1\r\nHost: a\r\n\r\n")
            c.sock.shutdown(socket.SHUT_WR)
            wire, closed = read_until_quiet(c.sock, quiet=2.5)
        assert closed and time.monotonic() - t0 < 1.0
        exact(wire, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-envoy-upstream-service-time: "
                    b"UST\r\nserver: envoy\r\n\r\n", b"hello")
    finally:
        backend.close()
