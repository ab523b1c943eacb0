"""The admin server's bounds (issue 9, point 10): --admin-bind, --admin-max-connections,
--admin-timeout-ms, and a slow admin client never blocks the control thread (which also serves
probes and applies configuration changes). docs/configuration.md section 11."""

import http.client
import socket
import subprocess
import time

import pytest

from conftest import binary
from portico_cfg import Portico, dump, mapping, poll_until, same_port_two_addrs

ALIVE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 26\r\n"
         b"connection: close\r\n\r\nPortico is alive and well\n")
ALIVE_REQUEST = b"GET /ambassador/v0/check_alive HTTP/1.1\r\nHost: admin\r\n\r\n"


def raw_admin(port, request=ALIVE_REQUEST, host="127.0.0.1", timeout=5.0):
    """Sends <request> on a fresh connection and reads until the server closes: the bytes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def timed_alive(port):
    t0 = time.monotonic()
    data = raw_admin(port)
    return data, time.monotonic() - t0


def closed_within(sock, timeout):
    """Reads <sock> until the peer closes (EOF or reset), for at most <timeout> s: (closed,
    bytes read)."""
    sock.settimeout(0.2)
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def with_args(px, *args):
    px.args = lambda *extra, _args=px.args: _args(*args, *extra)
    return px


def many_clusters(px, n=1000):
    """<n> Mappings to distinct services: /metrics is then about 5 MB, more than the kernel buffers
    of a loopback connection hold (the send buffer grows to 4 MiB)."""
    px.write("many.yaml", dump(*[mapping(f"m{i}", f"/m{i}/", f"127.0.0.1:{20000 + i}")
                                 for i in range(n)]))


def non_reader(port, request):
    """A client with a tiny receive buffer that sends <request> and never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


# ---- a slow client never blocks the control thread ----

def test_metrics_readers_that_never_read_do_not_block_probes_or_reloads(processes, tmp_path,
                                                                        quote_backend):
    """Five clients ask for /metrics (5 MB) and never read. check_alive still answers
    at once, and a configuration change applies. Before, the control thread waited up to a second
    per stalled client in a write loop with usleep: check_alive took seconds."""
    px = Portico(processes, tmp_path, workers=1)
    many_clusters(px)
    px.start()
    size = len(px.metrics())
    assert size > 4_500_000, size
    stalled = [non_reader(px.admin_port, b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
               for _ in range(5)]
    try:
        time.sleep(0.1)
        for _ in range(3):
            data, dt = timed_alive(px.admin_port)
            assert data == ALIVE
            assert dt < 1.0, f"check_alive took {dt:.2f} s behind stalled /metrics readers"
        px.write("new.yaml", dump(mapping("new", "/new/", f"127.0.0.1:{quote_backend.port}")))
        px.wait_status("/new/", 200, timeout=3.0)
    finally:
        for s in stalled:
            s.close()


def test_stalled_clients_are_closed_after_the_admin_timeout(processes, tmp_path):
    """--admin-timeout-ms 1000: a half request (no blank line) is closed about a second after it
    connected, and so is a /metrics reader that stops reading; check_alive answers meanwhile."""
    px = with_args(Portico(processes, tmp_path, workers=1), "--admin-timeout-ms", "1000")
    many_clusters(px)
    px.start()
    half = socket.create_connection(("127.0.0.1", px.admin_port), timeout=5)
    half.sendall(b"GET /ambassador/v0/check_alive HTTP/1.1\r\nHost: admin\r\n")
    reader = non_reader(px.admin_port, b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
    t0 = time.monotonic()
    try:
        assert timed_alive(px.admin_port)[0] == ALIVE
        time.sleep(0.6)
        assert timed_alive(px.admin_port)[0] == ALIVE
        closed, data = closed_within(half, 3.0)
        assert closed and data == b"", data
        assert 0.8 < time.monotonic() - t0 < 3.0
        time.sleep(1.5)  # the reader's last write progress was before its buffers filled
        closed, data = closed_within(reader, 3.0)
        assert closed, "a /metrics reader that never reads is never closed"
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        assert len(body) < length, "the whole response fit in the buffers: the test proves nothing"
    finally:
        half.close()
        reader.close()
    assert timed_alive(px.admin_port)[0] == ALIVE


# ---- --admin-max-connections ----

def test_admin_connections_over_the_cap_are_closed_at_once(processes, tmp_path):
    """--admin-max-connections 4: four idle connections hold every slot; the fifth is closed at
    once (counted in portico_admin_connections_rejected_total, one warning); once one of the
    four leaves, check_alive answers again."""
    px = with_args(Portico(processes, tmp_path, workers=1), "--admin-max-connections", "4")
    px.start()
    idle = [socket.create_connection(("127.0.0.1", px.admin_port), timeout=5) for _ in range(4)]
    try:
        extra = socket.create_connection(("127.0.0.1", px.admin_port), timeout=5)
        closed, data = closed_within(extra, 1.0)
        extra.close()
        assert closed and data == b"", "a connection over --admin-max-connections was kept"
        for s in idle:
            s.settimeout(0.05)
            with pytest.raises(socket.timeout):
                s.recv(1)  # still open: the idle ones were not the ones closed
        idle.pop().close()
        ok, _ = poll_until(lambda: raw_admin(px.admin_port, timeout=1) == ALIVE, 3, 0.05)
        assert ok, "check_alive does not answer after a slot was freed"
    finally:
        for s in idle:
            s.close()
    ok, _ = poll_until(lambda: (px.metric("portico_admin_connections_rejected_total") or 0) >= 1, 3)
    assert ok, px.metrics()[-2000:]
    warnings = [ln for ln in px.log().splitlines() if "(--admin-max-connections)" in ln]
    assert len(warnings) == 1, warnings
    assert "portico warn: admin: 4 connections open (--admin-max-connections): new ones are " \
           "closed" in warnings[0]


# ---- --admin-bind ----

def test_admin_bind_listens_on_that_address_only(processes, tmp_path):
    """--admin-bind 127.0.0.2: the admin server answers there, and 127.0.0.1 refuses."""
    px = Portico(processes, tmp_path, workers=1)
    px.admin_port = same_port_two_addrs()
    px.proc = processes.start(px.args("--admin-bind", "127.0.0.2"), name="portico",
                              port=px.admin_port, host="127.0.0.2")
    assert raw_admin(px.admin_port, host="127.0.0.2") == ALIVE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", px.admin_port), timeout=2).close()
    assert "admin port %d on 127.0.0.2" % px.admin_port in px.proc.log()


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:8877", "[::1]", "1.2.3.4.5", ""])
def test_bad_admin_bind_is_a_usage_error(tmp_path, value):
    r = subprocess.run([str(binary("portico")), "run", "--config", str(tmp_path),
                        "--admin-bind", value], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    assert r.stderr == ("portico: --admin-bind: expected a numeric IPv4 or IPv6 address (such as "
                        f"127.0.0.1 or ::1), got '{value}'\n")


@pytest.mark.parametrize("flag,value", [("--admin-max-connections", "0"),
                                        ("--admin-max-connections", "x"),
                                        ("--admin-timeout-ms", "99")])
def test_bad_admin_limits_are_usage_errors(tmp_path, flag, value):
    r = subprocess.run([str(binary("portico")), "run", "--config", str(tmp_path), flag, value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"portico: {flag}: expected a number from "), r.stderr


def test_admin_bind_to_an_address_not_on_this_host_exits_1(processes, tmp_path):
    px = Portico(processes, tmp_path, workers=1)
    r = subprocess.run([str(a) for a in px.args("--admin-bind", "192.0.2.1")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert (f"portico error: admin: cannot listen on 192.0.2.1 port {px.admin_port}: Cannot "
            f"assign requested address") in r.stderr
