"""Connection upgrades (WebSocket) through the real binary: a Mapping's `allow_upgrade` (or the
deprecated `use_websocket`) lets an `Upgrade` request through to the backend; its `101` reaches
the client and the two connections become one byte tunnel until either side closes or it stays
idle for --idle-timeout-ms. An upgrade the route does not allow gets Envoy's 403; h2c is dropped
and served as a plain request. The backend is a raw-socket server here
that answers 101 and echoes; the client is a raw socket too (a tunnel is bytes both ways)."""

import socket
import ssl
import time

import requests

from portico import (_ThreadedServer, basic_config, docs, mapping_yaml, recv_head, start_portico,
                     wait_access_lines)


class UpgradeEchoBackend(_ThreadedServer):
    """Answers an Upgrade request with 101 and then echoes every byte; b"bye" makes it close.
    A request without Upgrade gets 200 "plain". Keeps each request head it read."""

    def __init__(self):
        self.heads = []
        super().__init__()

    def serve(self, conn):
        got = recv_head(conn)
        if got is None:
            return
        head, rest = got
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.heads.append(headers)
        if "upgrade" not in headers:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain")
            return
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        if rest:
            conn.sendall(rest)
        while True:
            chunk = conn.recv(65536)
            if not chunk or chunk == b"bye":
                return
            conn.sendall(chunk)


UPGRADE_REQUEST = (b"GET /backend/chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")


def read_head(sock):
    got = recv_head(sock)
    assert got is not None, "the connection closed before a response head"
    return got[0].decode("latin-1"), got[1]


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def upgrades_active(p):
    text = requests.get(p.admin_url("/metrics"), timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("envoy_http_downstream_cx_upgrades_active{"))


def connect(p):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    return s


def test_websocket_tunnel(processes, tmp_path):
    backend = UpgradeEchoBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port, allow_upgrade=["websocket"]))
        s = connect(p)
        s.sendall(UPGRADE_REQUEST + b"early")  # bytes right behind the head go through too
        head, rest = read_head(s)
        lines = head.split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols"
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        assert hdrs["upgrade"] == "websocket" and hdrs["connection"] == "upgrade"
        assert hdrs["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert rest + recv_exactly(s, 5 - len(rest)) == b"early"
        seen = backend.heads[0]
        assert seen["upgrade"] == "websocket" and seen["connection"] == "upgrade"
        assert seen["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
        sent = 5
        assert upgrades_active(p) == 1
        for i in range(50):  # both ways, many times, bigger than one buffer at the end
            msg = (b"frame %d " % i) * (1 + i * 200)
            sent += len(msg)
            s.sendall(msg)
            assert recv_exactly(s, len(msg)) == msg
        s.sendall(b"bye")  # the backend closes: so does the client's connection
        s.settimeout(5)
        assert s.recv(10) == b""
        s.close()
        line = wait_access_lines(p, 1)[0][0]
        # BYTES_RECEIVED and BYTES_SENT: what went through the tunnel each way
        assert f'"GET /backend/chat HTTP/1.1" 101 - {sent + 3} {sent} ' in line
    finally:
        backend.close()


def test_client_close_ends_the_tunnel(processes, tmp_path):
    backend = UpgradeEchoBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port, use_websocket=True))
        s = connect(p)
        s.sendall(UPGRADE_REQUEST)
        assert read_head(s)[0].startswith("HTTP/1.1 101 ")
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        s.close()
        lines = wait_access_lines(p, 1)
        assert '"GET /backend/chat HTTP/1.1" 101 - 4 4 ' in lines[0][0]
        # and the proxy still serves
        assert requests.get(p.url("/backend/x"), timeout=5).text == "plain"
        diag = requests.get(p.admin_url("/ambassador/v0/diag/?json=true"), timeout=5).json()
        assert any("use_websocket is deprecated" in n for n in map(str, diag.get("notices", [])))
    finally:
        backend.close()


def test_idle_tunnel_is_closed(processes, tmp_path):
    backend = UpgradeEchoBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port, allow_upgrade=["WebSocket"]),
                          "--idle-timeout-ms", "400")
        s = connect(p)
        s.sendall(UPGRADE_REQUEST)
        assert read_head(s)[0].startswith("HTTP/1.1 101 ")
        for _ in range(4):  # traffic keeps it open past the idle timeout
            time.sleep(0.2)
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"
        t0 = time.monotonic()
        s.settimeout(5)
        assert s.recv(10) == b""
        assert 0.2 < time.monotonic() - t0 < 3
    finally:
        backend.close()


def test_upgrade_not_allowed_is_403(processes, tmp_path):
    """As Envoy without an upgrade config for the route: 403, empty body, nothing sent upstream;
    the connection stays usable."""
    backend = UpgradeEchoBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port))
        s = connect(p)
        s.sendall(UPGRADE_REQUEST)
        head, body = read_head(s)
        assert head.startswith("HTTP/1.1 403 ")
        assert "content-length: 0" in head.lower()
        s.sendall(b"GET /backend/x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        head, body = read_head(s)
        assert head.startswith("HTTP/1.1 200 ")
        assert len(backend.heads) == 1 and "upgrade" not in backend.heads[0]
        s.close()
        assert '"GET /backend/chat HTTP/1.1" 403 - 0 0 ' in wait_access_lines(p, 1)[0][0]
    finally:
        backend.close()


def test_other_protocols(processes, tmp_path):
    """A protocol allow_upgrade does not name is refused (403); h2c, which Envoy drops, makes a
    plain request."""
    backend = UpgradeEchoBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port, allow_upgrade=["websocket"]))
        s = connect(p)
        s.sendall(UPGRADE_REQUEST.replace(b"Upgrade: websocket", b"Upgrade: spdy/3.1"))
        assert read_head(s)[0].startswith("HTTP/1.1 403 ")
        s.sendall(UPGRADE_REQUEST.replace(b"Upgrade: websocket", b"Upgrade: h2c"))
        assert read_head(s)[0].startswith("HTTP/1.1 200 ")
        assert len(backend.heads) == 1 and "upgrade" not in backend.heads[0]
        s.close()
    finally:
        backend.close()


HTTPS_LISTENER = """apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: https}
spec: {port: $PORT, protocol: HTTPS, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
"""


def test_websocket_over_tls(processes, tmp_path):
    """wss: the same tunnel inside the client's TLS session (the fallback certificate)."""
    backend = UpgradeEchoBackend()
    try:
        cfg = docs(HTTPS_LISTENER, mapping_yaml("ws", f"127.0.0.1:{backend.port}", allow_upgrade=["websocket"]))
        p = start_portico(processes, tmp_path, cfg)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(connect(p), server_hostname="example.com")
        s.sendall(UPGRADE_REQUEST)
        head, rest = read_head(s)
        assert head.startswith("HTTP/1.1 101 ")
        assert rest == b""
        for i in range(20):
            msg = b"secret %d " % i * (1 + i * 500)
            s.sendall(msg)
            assert recv_exactly(s, len(msg)) == msg
        s.sendall(b"bye")
        assert s.recv(10) == b""
        s.close()
    finally:
        backend.close()
