"""Upstream connections (issue 13, point 5): a Mapping's (and the `ambassador` Module's)
keepalive, cluster_idle_timeout_ms and cluster_max_connection_lifetime_ms, a Mapping's
connect_timeout_ms (a value other than 3000 makes a cluster of its own), dns_type and
respect_dns_ttl.

Which upstream connection a request used is visible in the quote backend's /echo ("client" is
Portico's side of the connection, so a new port is a new connection), and the connection itself
in `ss` (its keepalive timer, whether it is still established). A connect that never completes
is one to a listening socket whose accept queue the test filled. DNS answers come from a hosts
file that c-ares reads (CARES_HOSTS), with two backends on 127.0.0.2 and 127.0.0.3."""

import ctypes
import os
import re
import select
import socket
import subprocess
import time

import pytest

from conftest import binary, start_quote
from portico_cfg import Portico, check, doc, dump, line_of, mapping, poll_until, same_port_two_addrs

CONNECT_TIMEOUT_BODY = (b"upstream connect error or disconnect/reset before headers. reset reason: "
                        b"connection timeout")


def started(processes, tmp_path, *docs, env=None):
    """One worker, so that every request sees the same pool."""
    px = Portico(processes, tmp_path, workers=1, env=env)
    px.write("10-config.yaml", dump(*docs))
    px.start()
    return px


def module(**config):
    return doc("Module", "ambassador", {"config": config})


def client_port(px, path):
    """The local port of the upstream connection that served <path> (the backend's /echo)."""
    r = px.get(path)
    assert r.status == 200, r
    return int(r.json()["client"].rsplit(":", 1)[1])


def established(port):
    """`ss -tnoi` lines of the established connection whose local port is <port>."""
    out = subprocess.run(["ss", "-Htnoi", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


def keepalive_timer_s(port):
    """Seconds left on the keepalive timer of the connection from local <port> (ss's
    `timer:(keepalive,1min29sec,0)`), or None when it has none."""
    m = re.search(r"timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:\.\d+)?sec)?(?:(\d+)ms)?,\d+\)",
                  established(port))
    if m is None:
        return None
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) + int(m.group(3) or 0) / 1000


# ---- cluster_idle_timeout_ms ----------------------------------------------------------------

def test_idle_timeout_closes_pooled_connection(processes, tmp_path):
    """The Module's cluster_idle_timeout_ms (300 ms) closes a pooled connection after that long
    idle: the backend sees the close and the next request opens another connection. A Mapping's
    own value wins over the Module's; both win over --upstream-idle-timeout-ms (60 s)."""
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path, module(cluster_idle_timeout_ms=300),
                 mapping("mod", "/m/", f"127.0.0.1:{q.port}"),
                 mapping("own", "/o/", f"localhost:{q.port}", cluster_idle_timeout_ms=5000))
    m1, o1 = client_port(px, "/m/echo"), client_port(px, "/o/echo")
    assert m1 != o1
    assert client_port(px, "/m/echo") == m1  # pooled: reused at once
    assert established(m1)
    closed, _ = poll_until(lambda: not established(m1), 3.0, 0.02)
    assert closed, "the idle connection was not closed"
    time.sleep(0.4)  # the Mapping's 5 s keep the other one
    assert client_port(px, "/m/echo") != m1
    assert client_port(px, "/o/echo") == o1


def test_idle_timeout_took_its_time(processes, tmp_path):
    """Not before the 300 ms: a connection idle for 100 ms is still reused."""
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path,
                 mapping("m", "/m/", f"127.0.0.1:{q.port}", cluster_idle_timeout_ms=300))
    p = client_port(px, "/m/echo")
    time.sleep(0.1)
    assert client_port(px, "/m/echo") == p
    t0 = time.monotonic()
    closed, _ = poll_until(lambda: not established(p), 3.0, 0.02)
    assert closed and time.monotonic() - t0 >= 0.25, time.monotonic() - t0


# ---- cluster_max_connection_lifetime_ms ------------------------------------------------------

def test_max_lifetime_new_connection(processes, tmp_path):
    """A connection is reused while younger than cluster_max_connection_lifetime_ms (400 ms),
    closed when it reaches it even while idle, and the next request gets a new one."""
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path,
                 mapping("m", "/l/", f"127.0.0.1:{q.port}", cluster_max_connection_lifetime_ms=400))
    t0 = time.monotonic()
    p1 = client_port(px, "/l/echo")
    time.sleep(0.1)
    assert client_port(px, "/l/echo") == p1
    closed, _ = poll_until(lambda: not established(p1), 3.0, 0.02)
    assert closed and time.monotonic() - t0 >= 0.35, time.monotonic() - t0
    p2 = client_port(px, "/l/echo")
    assert p2 != p1


def test_module_max_lifetime_default(processes, tmp_path):
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path, module(cluster_max_connection_lifetime_ms=300),
                 mapping("m", "/l/", f"127.0.0.1:{q.port}"))
    p1 = client_port(px, "/l/echo")
    closed, _ = poll_until(lambda: not established(p1), 3.0, 0.02)
    assert closed
    assert client_port(px, "/l/echo") != p1


# ---- connect_timeout_ms: one cluster per value ----------------------------------------------

@pytest.fixture
def full_listener():
    """A port whose accept queue is full: a SYN to it is dropped, so a connect never ends."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    held = []
    for _ in range(16):
        c = socket.socket()
        c.setblocking(False)
        held.append(c)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        _, w, _ = select.select([], [c], [], 0.3)
        if not w:
            break
    else:
        pytest.fail("the accept queue of a listen(0) socket never filled")
    yield port
    for c in held:
        c.close()
    ls.close()


def timed(px, path):
    t0 = time.monotonic()
    r = px.get(path)
    return r, time.monotonic() - t0


def test_connect_timeout_per_mapping(processes, tmp_path, full_listener):
    port = full_listener
    svc = f"127.0.0.1:{port}"
    px = started(processes, tmp_path,
                 mapping("fast", "/fast/", svc, connect_timeout_ms=200),
                 mapping("slow", "/slow/", svc, connect_timeout_ms=1200),
                 mapping("fast2", "/fast2/", svc, connect_timeout_ms=200),
                 mapping("dflt", "/dflt/", svc, connect_timeout_ms=3000))
    base = f"cluster_127_0_0_1_{port}_default"
    assert sorted(c["name"] for c in px.diag()["clusters"]) == sorted(
        [base, base + "_ctms1200", base + "_ctms200"])
    assert not [n for n in px.diag()["notices"] if "connect_timeout" in str(n)]
    r, took = timed(px, "/fast/")
    assert (r.status, r.body) == (503, CONNECT_TIMEOUT_BODY)
    assert 0.18 <= took < 1.0, took
    r, took = timed(px, "/slow/")
    assert (r.status, r.body) == (503, CONNECT_TIMEOUT_BODY)
    assert 1.15 <= took < 2.5, took


# ---- keepalive --------------------------------------------------------------------------------

def peer_socket(pid, local_port):
    """A duplicate of the process <pid>'s socket whose local port is <local_port>
    (pidfd_getfd), or None when the kernel does not allow it here."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        pfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(438, pfd, int(name), 0)  # SYS_pidfd_getfd
            if fd < 0:
                return None
            s = socket.socket(fileno=fd)
            try:
                if (s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
                        and s.getsockname()[1] == local_port):
                    return s
            except OSError:
                pass
            s.close()
    finally:
        os.close(pfd)
    return None


def test_keepalive_socket_options(processes, tmp_path):
    """keepalive {idle_time, interval, probes} is TCP keepalive on the upstream socket (ss shows
    its timer counting down from idle_time); the Module's keepalive is the default of Mappings
    without one. The two clusters' connections are not shared."""
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path, module(keepalive={"idle_time": 90}),
                 mapping("ka", "/ka/", f"localhost:{q.port}",
                         keepalive={"idle_time": 40, "interval": 7, "probes": 4}),
                 mapping("mod", "/mod/", f"127.0.0.1:{q.port}"))
    ka, mod = client_port(px, "/ka/echo"), client_port(px, "/mod/echo")
    assert ka != mod
    t = keepalive_timer_s(ka)
    assert t is not None and 30 < t <= 40, established(ka)
    t = keepalive_timer_s(mod)
    assert t is not None and 80 < t <= 90, established(mod)
    s = peer_socket(px.proc.pid, ka)
    if s is not None:  # the exact options, where this kernel lets us look
        with s:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 40
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


def test_shared_cluster_notice(processes, tmp_path):
    """Settings that are not part of the cluster's name (as in Emissary): the first Mapping's
    cluster is used, and the other Mapping is told what it does not get."""
    q = start_quote(processes, "--echo")
    px = started(processes, tmp_path,
                 mapping("first", "/a/", f"127.0.0.1:{q.port}", cluster_idle_timeout_ms=300),
                 mapping("second", "/b/", f"127.0.0.1:{q.port}", keepalive={"probes": 3},
                         dns_type="logical_dns"))
    notes = [n for n in px.diag()["notices"] if "second" in str(n)]
    assert len(notes) == 1, notes
    assert (f"cluster cluster_127_0_0_1_{q.port}_default is another Mapping's, whose settings are "
            "used; this one's differ in: keepalive cluster_idle_timeout_ms dns_type") in str(notes[0])
    p = client_port(px, "/b/echo")
    assert keepalive_timer_s(p) is None  # the first Mapping's settings
    closed, _ = poll_until(lambda: not established(p), 3.0, 0.02)
    assert closed


# ---- dns_type ---------------------------------------------------------------------------------

def test_dns_type_strict_and_logical(processes, tmp_path):
    """Two names that the hosts file maps to 127.0.0.2 and 127.0.0.3. strict_dns (the default)
    sends to both; logical_dns only to the first. When the answer changes (re-read every 5 s,
    Envoy's dns_refresh_rate), new connections follow it."""
    port = same_port_two_addrs(("127.0.0.2", "127.0.0.3"))
    for addr, name in (("127.0.0.2", "b2"), ("127.0.0.3", "b3")):
        processes.start([binary("portico-quote"), "--port", port, "--bind", addr, "--name", name,
                         "--threads", 1], name=f"quote-{name}", port=port, host=addr)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 upc-strict.test upc-logical.test\n"
                     "127.0.0.3 upc-strict.test upc-logical.test\n")
    px = started(processes, tmp_path,
                 mapping("strict", "/s/", f"upc-strict.test:{port}"),
                 mapping("logical", "/l/", f"upc-logical.test:{port}", dns_type="logical_dns"),
                 env={"CARES_HOSTS": str(hosts)})
    eps = {c["name"]: c["endpoints"] for c in px.diag()["clusters"]}
    assert eps == {"cluster_upc_strict_test_" + str(port) + "_default":
                   [f"127.0.0.2:{port}", f"127.0.0.3:{port}"],
                   "cluster_upc_logical_test_" + str(port) + "_default": [f"127.0.0.2:{port}"]}

    def served(path, n=6):
        return {px.get(path).json()["server"] for _ in range(n)}

    assert served("/s/") == {"b2", "b3"}
    assert served("/l/") == {"b2"}
    hosts.write_text("127.0.0.3 upc-strict.test upc-logical.test\n")
    moved, took = poll_until(lambda: served("/l/", 1) == {"b3"}, 9.0, 0.1)
    assert moved, "logical_dns did not follow the new answer"
    assert served("/l/") == {"b3"}
    assert served("/s/") == {"b3"}


# ---- invalid values ---------------------------------------------------------------------------

def test_check_rejects_bad_values(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(dump(
        mapping("ka", "/a/", "x.example", keepalive={"probes": 0, "idle_time": 40000}),
        mapping("dns", "/b/", "x.example", dns_type="round_robin", respect_dns_ttl="maybe"),
        mapping("to", "/c/", "x.example", cluster_idle_timeout_ms=-5,
                cluster_max_connection_lifetime_ms="soon"),
        mapping("kb", "/d/", "x.example", keepalive="yes"),
        mapping("good", "/e/", "y.example", keepalive={"time": 30}, dns_type="LOGICAL_DNS",
                respect_dns_ttl=True, cluster_idle_timeout_ms=0),
        module(keepalive={"interval": 0})))
    r = check(tmp_path)
    KB = "keepalive: 'yes'"
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:{line_of(f, 'probes: 0')}: Mapping/default/ka: keepalive.probes: expected an integer "
        "between 1 and 127",
        f"{f}:{line_of(f, 'idle_time: 40000')}: Mapping/default/ka: keepalive.idle_time: expected "
        "an integer between 1 and 32767",
        f"{f}:{line_of(f, 'dns_type: round_robin')}: Mapping/default/dns: dns_type: expected "
        "strict_dns or logical_dns (got \"round_robin\")",
        f"{f}:{line_of(f, 'respect_dns_ttl: maybe')}: Mapping/default/dns: respect_dns_ttl: "
        "expected true or false",
        f"{f}:{line_of(f, 'cluster_idle_timeout_ms: -5')}: Mapping/default/to: "
        "cluster_idle_timeout_ms: expected an integer >= 0",
        f"{f}:{line_of(f, 'soon')}: Mapping/default/to: cluster_max_connection_lifetime_ms: "
        "expected an integer",
        f"{f}:{line_of(f, KB)}: Mapping/default/kb: keepalive: expected a mapping",
        f"{f}:{line_of(f, 'interval: 0')}: Module/default/ambassador: config.keepalive.interval: "
        "expected an integer between 1 and 32767",
    ]
