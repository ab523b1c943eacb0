"""Issue 9, points 1, 2, 6 and 10: what reaches the backend is framed by Portico from what it
parsed, never by a client's header. Each test sends exact bytes and checks the exact bytes the
backend receives (RawBackend keeps every byte of every connection).

- Connection options cannot remove Host, Content-Length, Transfer-Encoding, TE or Upgrade
  handling, and come from every Connection header (RFC 9110 §7.6.1).
- Chunked request bodies are framed again: sizes written by Portico, extensions and trailers
  dropped, chunk sizes above 2^31-1 refused.
- HTTP/1.0 is 426 unless the Module says enable_http10; then a 1.0 request without Host is
  routed and forwarded with one.
- SNI and Host must choose the same TLS context (421 otherwise); an absolute-form target
  replaces Host.
- A request with nothing moving ends after the stream idle timeout; the Module's
  listener_idle_timeout_ms closes idle keep-alive connections.
"""

import re
import socket
import ssl
import threading
import time

import pytest

import tlsenv
from conftest import RawConn, connections_on_port
from portico import _ThreadedServer, docs, listener_yaml, mapping_yaml, start_portico


class RawBackend(_ThreadedServer):
    """Keeps every byte each connection sends (``.streams``, one bytearray per connection, in
    accept order) and answers every request it can delimit with 200 "ok" (keep-alive). Its own
    parsing is deliberately simple: the test reads ``.streams`` to see what was really sent."""

    def __init__(self):
        self.streams = []
        self.lock = threading.Lock()
        super().__init__()

    def serve(self, conn):
        data = bytearray()
        with self.lock:
            self.streams.append(data)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            need = int(m.group(1)) if m else 0
            if re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
                while not buf.endswith(b"0\r\n\r\n") and b"\r\n0\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                    buf += chunk
                end = buf.find(b"0\r\n\r\n") + 5 if buf.startswith(b"0\r\n\r\n") else \
                    buf.find(b"\r\n0\r\n\r\n") + 7
                buf = buf[end:]
            else:
                while len(buf) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                    buf += chunk
                buf = buf[need:]
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(s) for s in self.streams)

    def wait_bytes(self, needle, timeout=3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.all_bytes():
                return True
            time.sleep(0.02)
        return False


def split_head(stream):
    """(request line, [(name, value)], rest) of the first request in <stream>."""
    head, _, rest = bytes(stream).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    hdrs = [tuple(x.strip() for x in ln.split(b":", 1)) for ln in lines[1:]]
    return lines[0], hdrs, rest


def values(hdrs, name):
    return [v for n, v in hdrs if n.lower() == name.lower().encode()]


MODULE = """apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {{name: ambassador}}
spec: {{config: {{{fields}}}}}
"""


@pytest.fixture
def raw(processes, tmp_path):
    backend = RawBackend()
    p = start_portico(processes, tmp_path,
                      docs(listener_yaml(), mapping_yaml("raw", f"127.0.0.1:{backend.port}",
                                                         prefix="/backend/", rewrite="/")))
    p.backend = backend
    yield p
    backend.close()


def exchange(port, data, timeout=5):
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_response()


# ---- 1. Connection options never decide framing -----------------------------------------

SMUGGLE = (b"POST /backend/a HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n"
           b"Content-Length: 48\r\n\r\nGET /internal-only/SMUGGLED HTTP/1.1\r\nX-Ignore: ")


def test_connection_content_length_cannot_smuggle(raw):
    """The issue's exact bytes: the 48 body bytes must reach the backend as the POST's body,
    framed by content-length: 48, never as a request of their own."""
    assert len(SMUGGLE.partition(b"\r\n\r\n")[2]) == 48
    r = exchange(raw.port, SMUGGLE)
    assert r.status == 200 and r.body == b"ok"
    r2 = exchange(raw.port, b"GET /backend/victim HTTP/1.1\r\nHost: a\r\nCookie: secret\r\n\r\n")
    assert r2.status == 200
    assert raw.backend.wait_bytes(b"GET /victim")
    everything = raw.backend.all_bytes()
    first = [s for s in raw.backend.streams if s.startswith(b"POST /a ")][0]
    line, hdrs, rest = split_head(first)
    assert values(hdrs, "content-length") == [b"48"]
    assert rest.startswith(b"GET /internal-only/SMUGGLED HTTP/1.1\r\nX-Ignore: ")
    # the smuggled line only ever appears as those body bytes, never at a request boundary
    assert everything.count(b"GET /internal-only/SMUGGLED") == 1
    assert b"\r\n\r\nGET /internal-only/SMUGGLED" in everything


def test_connection_host_keeps_host(raw):
    r = exchange(raw.port, b"GET /backend/h HTTP/1.1\r\nHost: kept.example\r\nConnection: host\r\n\r\n")
    assert r.status == 200
    line, hdrs, _ = split_head(raw.backend.streams[-1])
    assert line == b"GET /h HTTP/1.1"
    assert values(hdrs, "host") == [b"kept.example"]


def test_connection_transfer_encoding_keeps_chunked_framing(raw):
    r = exchange(raw.port, b"POST /backend/c HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert r.status == 200
    line, hdrs, rest = split_head(raw.backend.streams[-1])
    assert values(hdrs, "transfer-encoding") == [b"chunked"]
    assert rest == b"5\r\nhello\r\n0\r\n\r\n"


def test_connection_options_from_every_connection_header(raw):
    """RFC 9110 §7.6.1: the second Connection header's options count too."""
    r = exchange(raw.port, b"GET /backend/o HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
                           b"Connection: x-secret\r\nX-Secret: 1\r\nX-Other: 2\r\n\r\n")
    assert r.status == 200
    _, hdrs, _ = split_head(raw.backend.streams[-1])
    assert values(hdrs, "x-secret") == []
    assert values(hdrs, "x-other") == [b"2"]
    assert values(hdrs, "connection") == []


def test_client_content_length_is_rewritten_not_copied(raw):
    """Portico writes content-length itself: the client's spelling never reaches the wire."""
    r = exchange(raw.port, b"POST /backend/l HTTP/1.1\r\nHost: a\r\ncOnTeNt-LeNgTh: 005\r\n\r\nhello")
    assert r.status == 200
    line, hdrs, rest = split_head(raw.backend.streams[-1])
    assert [n for n, _ in hdrs if n.lower() == b"content-length"] == [b"content-length"]
    assert values(hdrs, "content-length") == [b"5"]
    assert rest == b"hello"


# ---- 2. Chunked bodies are framed again; 501; HTTP/1.0 --------------------------------------

def test_chunked_body_is_reframed_without_extensions_or_trailers(raw):
    body = (b"5;name=value;q=\"x y\"\r\nhello\r\n006\r\n world\r\n"
            b"0;last=1\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n")
    r = exchange(raw.port, b"POST /backend/r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           b"TE: trailers\r\n\r\n" + body)
    assert r.status == 200
    _, hdrs, rest = split_head(raw.backend.streams[-1])
    assert values(hdrs, "transfer-encoding") == [b"chunked"]
    assert values(hdrs, "te") == []
    # sent in one segment, decoded in one read: Portico's own sizes, no extension, no trailer
    assert rest == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def test_chunk_size_a_32_bit_reader_misreads_is_refused(raw):
    """2^32+1 would be 1 to a 32-bit parser, 0x80000000 negative: both are refused."""
    for size in (b"100000001", b"80000000", b"0000000000000000100000001"):
        r = exchange(raw.port, b"POST /backend/big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                               b"\r\n\r\n" + size + b"\r\nxxxx")
        assert r.status == 400, size
    assert b"POST /big" not in raw.backend.all_bytes() or all(
        b"100000001" not in s and b"80000000" not in s for s in raw.backend.streams)


def test_http10_is_426_by_default(raw):
    with RawConn(raw.port) as c:
        c.send(b"GET /backend/x HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.reason, r.body) == (426, "Upgrade Required", b"Upgrade Required")
        assert c.closed_by_peer()
    assert raw.backend.streams == []


def test_http10_without_host_is_routed_with_a_host(processes, tmp_path):
    backend = RawBackend()
    try:
        p = start_portico(processes, tmp_path,
                          docs(listener_yaml(),
                               mapping_yaml("raw", f"127.0.0.1:{backend.port}", rewrite="/"),
                               MODULE.format(fields="enable_http10: true")))
        r = exchange(p.port, b"GET /backend/ten HTTP/1.0\r\n\r\n")
        assert r.status == 200 and r.body == b"ok"
        line, hdrs, _ = split_head(backend.streams[-1])
        assert line == b"GET /ten HTTP/1.1"
        assert values(hdrs, "host") == [b"127.0.0.1"]  # the service's host
    finally:
        backend.close()


# ---- 6. absolute-form and SNI/Host ---------------------------------------------------------

def test_empty_query_is_kept(raw):
    """A bare '?' reaches the backend as sent (Envoy keeps it; it used to be dropped)."""
    r = exchange(raw.port, b"GET /backend/q? HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200
    line, _, _ = split_head(raw.backend.streams[-1])
    assert line == b"GET /q? HTTP/1.1"


def test_absolute_form_target_replaces_host(raw):
    r = exchange(raw.port, b"GET http://abs.example:8080/backend/abs?q=1 HTTP/1.1\r\n"
                           b"Host: other.example\r\n\r\n")
    assert r.status == 200
    line, hdrs, _ = split_head(raw.backend.streams[-1])
    assert line == b"GET /abs?q=1 HTTP/1.1"
    assert values(hdrs, "host") == [b"abs.example:8080"]


@pytest.fixture(scope="module")
def pki():
    ca = tlsenv.make_ca("Framing Test CA")
    client_ca = tlsenv.make_ca("Framing Client CA")
    return {"ca": ca, "client_ca": client_ca,
            "mtls": tlsenv.issue(ca, "mtls.example", dns=["mtls.example"]),
            "open": tlsenv.issue(ca, "open.example", dns=["open.example"]),
            "client": tlsenv.issue(client_ca, "client-1", client=True)}


def sni_edge(processes, tmp_path, quote_backend, pki):
    m, o = pki["mtls"], pki["open"]
    return tlsenv.start_portico(
        processes, tmp_path,
        tlsenv.mapping_yaml("quote", f"127.0.0.1:{quote_backend.port}"),
        tlsenv.secret_yaml("mtls-cert", m.chain_pem, m.key_pem),
        tlsenv.secret_yaml("open-cert", o.chain_pem, o.key_pem),
        tlsenv.secret_yaml("client-ca", pki["client_ca"].cert_pem, type="Opaque"),
        tlsenv.tlscontext_yaml("mtls", hosts=["mtls.example"], secret="mtls-cert",
                               ca_secret="client-ca", cert_required=True),
        tlsenv.host_yaml("mtls", "mtls.example"),
        tlsenv.host_yaml("open", "open.example", "  tlsSecret:\n    name: open-cert\n"))


def test_sni_of_an_open_host_cannot_reach_an_mtls_host(processes, tmp_path, quote_backend, pki):
    """SNI open.example (no client certificate) + Host: mtls.example: 421, not the mTLS Host's
    routes (Emissary fixed the same hole in 2.0)."""
    edge = sni_edge(processes, tmp_path, quote_backend, pki)
    r = tlsenv.tls_get(edge.https, tlsenv.client_ctx(), sni="open.example", host="mtls.example")
    assert r.error is None, r
    assert r.status == 421, r
    assert r.body == b"Misdirected Request"
    # the open Host itself still answers, and the mTLS Host with a certificate
    r = tlsenv.tls_get(edge.https, tlsenv.client_ctx(), sni="open.example", host="open.example")
    assert r.status == 200, r
    r = tlsenv.tls_get(edge.https, tlsenv.client_ctx(cert=pki["client"], tmp=tmp_path),
                       sni="mtls.example", host="mtls.example")
    assert r.status == 200, r


def test_absolute_form_is_checked_against_sni(processes, tmp_path, quote_backend, pki):
    edge = sni_edge(processes, tmp_path, quote_backend, pki)
    ctx = tlsenv.client_ctx()
    with socket.create_connection(("127.0.0.1", edge.https), timeout=5) as raw_sock:
        with ctx.wrap_socket(raw_sock, server_hostname="open.example") as s:
            s.sendall(b"GET https://mtls.example/backend/ HTTP/1.1\r\nHost: open.example\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"), data[:200]


# ---- 10. Every request has a bound ------------------------------------------------------

def test_stream_idle_timeout_ends_a_stalled_body(processes, tmp_path):
    backend = RawBackend()
    try:
        p = start_portico(processes, tmp_path,
                          docs(listener_yaml(),
                               mapping_yaml("raw", f"127.0.0.1:{backend.port}", timeout_ms=0)),
                          "--stream-idle-timeout-ms", "400")
        with RawConn(p.port, timeout=5) as c:
            t0 = time.monotonic()
            c.send(b"POST /backend/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
            r = c.read_response()
            took = time.monotonic() - t0
            assert r.status == 408 and r.body == b"stream timeout", r
            assert 0.3 < took < 3, took
            assert c.closed_by_peer()
    finally:
        backend.close()


def test_stream_idle_timeout_ends_a_reader_that_never_reads(processes, tmp_path, quote_backend):
    """A client that stops reading a large response: the stream idle timeout cuts it with a reset,
    so the kernel drops the bytes queued for it instead of holding them (FIN_WAIT1) after the
    close until the client reads or TCP gives up."""
    p = start_portico(processes, tmp_path,
                      docs(listener_yaml(),
                           mapping_yaml("quote", f"127.0.0.1:{quote_backend.port}", timeout_ms=0)),
                      "--stream-idle-timeout-ms", "500")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /backend/size/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(2.5)  # never read: Portico's writes block, nothing moves
    assert connections_on_port(p.port) == [], "Portico's side of the connection is still there"
    total, how = 0, "still open"
    try:
        while total < 50000000:
            chunk = s.recv(1 << 20)
            if not chunk:
                how = "closed"
                break
            total += len(chunk)
    except ConnectionResetError:
        how = "reset"
    s.close()
    assert how == "reset" and total < 50000000, (how, total)
    assert " 200 SI " in p.log()


def test_slow_reader_of_a_closing_response_gets_all_of_it(processes, tmp_path, quote_backend):
    """The other side of the reset above: a client that reads slowly but steadily a large
    response on a connection that closes after it (its bytes outlast Portico's linger) is still
    given every byte and an orderly close."""
    p = start_portico(processes, tmp_path,
                      docs(listener_yaml(), mapping_yaml("quote", f"127.0.0.1:{quote_backend.port}")))
    size = 8_000_000
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /backend/size/%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % size)
    data, t0 = b"", time.monotonic()
    while time.monotonic() - t0 < 30:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        time.sleep(0.03)  # about 2 MB/s: the last MBs wait in the kernel past the linger
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and len(body) == size, (head[:100], len(body))
    assert time.monotonic() - t0 > 2.5  # it did outlast one linger


def test_module_listener_idle_timeout_closes_idle_keepalive(processes, tmp_path, quote_backend):
    p = start_portico(processes, tmp_path,
                      docs(listener_yaml(),
                           mapping_yaml("quote", f"127.0.0.1:{quote_backend.port}"),
                           MODULE.format(fields="listener_idle_timeout_ms: 300")))
    with RawConn(p.port, timeout=5) as c:
        c.send(b"GET /backend/ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=3)
        assert time.monotonic() - t0 < 2
