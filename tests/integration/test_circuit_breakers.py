"""A Mapping's (and the Module's) circuit_breakers, as Envoy's resource manager (issue 13 point 2):
max_requests, max_pending_requests, max_connections and max_retries of priority default, counted
over all workers; overflow answers 503 "... reset reason: overflow" with x-envoy-overloaded: true
(flag UO); Envoy's overflow counters and circuit_breakers_default_*_open gauges; the cluster named
as Emissary names it; a bounded flood holds without growing memory."""

import selectors
import socket
import time

import requests

from conftest import RawConn, start_quote
from portico import docs, listener_yaml, mapping_yaml, start_portico, wait_access_lines
from portico_cfg import poll_until
from test_retries import FlakyBackend, metric

OVERFLOW = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"


def start(processes, tmp_path, service, workers=2, module=None, **spec):
    parts = [listener_yaml(), mapping_yaml("quote", service, **spec)]
    if module is not None:
        parts.append("apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador}\n"
                     "spec:\n  config:\n" + "".join(f"    {line}\n" for line in module.splitlines()))
    return start_portico(processes, tmp_path, docs(*parts), workers=workers)


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, hdrs.get("x-envoy-overloaded"), body


def flood_responses(port, n, path):
    sel = selectors.DefaultSelector()
    bufs = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    deadline = time.monotonic() + 15
    open_ = n
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            if chunk:
                bufs[s] += chunk
            else:
                sel.unregister(s)
                open_ -= 1
    for s in bufs:
        s.close()
    assert open_ == 0, f"{open_} responses did not end"
    return [parse(b) for b in bufs.values()]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_max_requests_overflow(processes, tmp_path):
    q = start_quote(processes, threads=2)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", circuit_breakers=[{"max_requests": 10}])
    got = flood_responses(p.port, 50, "/backend/delay/400")
    ok = [g for g in got if g[0] == 200]
    over = [g for g in got if g[0] == 503]
    assert len(ok) + len(over) == 50
    assert len(ok) == 10, [g[0] for g in got]  # all 50 arrive while the first 10 wait 400 ms
    assert all(g[1] == "true" and g[2] == OVERFLOW for g in over)
    assert metric(p, "upstream_rq_pending_overflow") == 40
    assert metric(p, "circuit_breakers_default_rq_open") == 0  # closed again
    lines = wait_access_lines(p, 50)
    assert sum(1 for _, m in lines if m and m["flags"] == "UO" and m["code"] == "503") == 40
    # Emissary's name for the cluster: the breaker after the namespace
    diag = requests.get(p.admin_url("/ambassador/v0/diag/?json=true"), timeout=5).json()
    assert [c["name"] for c in diag["clusters"]] == [f"cluster_127_0_0_1_{q.port}_default_cbnr10"]


def test_open_gauge_while_full(processes, tmp_path):
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"priority": "default", "max_requests": 1}])
    with RawConn(p.port) as c:
        c.request("GET", "/backend/delay/600")
        time.sleep(0.2)
        assert metric(p, "circuit_breakers_default_rq_open") == 1
        with RawConn(p.port) as c2:
            c2.request("GET", "/backend/x")
            r2 = c2.read_response()
            assert (r2.status, r2.header("x-envoy-overloaded"), r2.body) == (503, "true", OVERFLOW)
        assert c.read_response().status == 200
    # the stream ends just after its last byte is written: the scrape may come first
    assert poll_until(lambda: metric(p, "circuit_breakers_default_rq_open") == 0, 2.0)[0]


def test_envoy_defaults_without_breakers(processes, tmp_path):
    """Without circuit_breakers a cluster has Envoy's defaults: 1024 requests at once over all
    workers; the rest of a flood of 1,100 is answered 503 overflow."""
    q = start_quote(processes, threads=2)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}")
    got = flood_responses(p.port, 1100, "/backend/delay/2000")
    assert sorted(g[0] for g in got) == [200] * 1024 + [503] * 76
    assert all(g[1] == "true" and g[2] == OVERFLOW for g in got if g[0] == 503)
    assert metric(p, "upstream_rq_pending_overflow") == 76
    assert metric(p, "upstream_rq_active") == 0


def test_module_breakers_are_the_default(processes, tmp_path):
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              module="circuit_breakers: [{max_requests: 1}]")
    with RawConn(p.port) as c:
        c.request("GET", "/backend/delay/500")
        time.sleep(0.15)
        with RawConn(p.port) as c2:
            c2.request("GET", "/backend/x")
            assert c2.read_response().status == 503
        assert c.read_response().status == 200
    diag = requests.get(p.admin_url("/ambassador/v0/diag/?json=true"), timeout=5).json()
    assert diag["clusters"][0]["name"].endswith("_default_cbnr1")


def test_max_connections_queue(processes, tmp_path):
    """Envoy's connection pool: past max_connections a request waits for a connection of its
    pool as a pending request, its route timeout running, and goes on it when it is free."""
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"max_connections": 1}])
    with RawConn(p.port) as c:
        c.request("GET", "/backend/delay/500")
        time.sleep(0.15)
        assert metric(p, "circuit_breakers_default_cx_open") == 1
        with RawConn(p.port) as c2:
            c2.request("GET", "/backend/x")
            time.sleep(0.15)
            assert metric(p, "upstream_rq_pending_active") == 1
            assert c.read_response().status == 200
            assert c2.read_response().status == 200
    assert metric(p, "upstream_cx_overflow") == 1
    assert metric(p, "upstream_cx_total") == 1  # the second went on the first one's connection
    assert metric(p, "upstream_rq_pending_active") == 0
    assert metric(p, "upstream_rq_pending_overflow") == 0
    # the pooled connection is reused: no new one needed, no overflow
    with RawConn(p.port) as c:
        c.request("GET", "/backend/x")
        assert c.read_response().status == 200
    assert metric(p, "upstream_cx_overflow") == 1


def test_max_connections_queue_is_bounded_by_max_pending(processes, tmp_path):
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"max_connections": 1, "max_pending_requests": 1}])
    with RawConn(p.port) as c, RawConn(p.port) as c2, RawConn(p.port) as c3:
        c.request("GET", "/backend/delay/500")
        time.sleep(0.15)
        c2.request("GET", "/backend/x")  # waits: the one pending request allowed
        time.sleep(0.1)
        t0 = time.monotonic()
        c3.request("GET", "/backend/x")
        r3 = c3.read_response()
        assert (r3.status, r3.body) == (503, OVERFLOW) and time.monotonic() - t0 < 0.3
        assert c.read_response().status == 200
        assert c2.read_response().status == 200
    assert metric(p, "upstream_rq_pending_overflow") == 1
    assert metric(p, "upstream_rq_pending_active") == 0


def test_waiting_request_times_out(processes, tmp_path):
    """A pending request's route timeout runs while it waits: 504 (UT), and it waits no more."""
    q = start_quote(processes)
    cb = [{"max_connections": 1}]
    text = docs(listener_yaml(),
                mapping_yaml("slow", f"127.0.0.1:{q.port}", prefix="/a/", timeout_ms=3000, circuit_breakers=cb),
                mapping_yaml("quick", f"127.0.0.1:{q.port}", prefix="/b/", timeout_ms=300, circuit_breakers=cb))
    p = start_portico(processes, tmp_path, text, workers=1)
    with RawConn(p.port) as c, RawConn(p.port) as c2:
        c.request("GET", "/a/delay/1000")
        time.sleep(0.15)
        t0 = time.monotonic()
        c2.request("GET", "/b/x")
        r2 = c2.read_response()
        assert r2.status == 504 and 0.25 < time.monotonic() - t0 < 0.8
        assert metric(p, "upstream_rq_pending_active") == 0
        assert c.read_response().status == 200
    assert metric(p, "upstream_cx_total") == 1


def test_empty_pool_makes_a_connection_anyway(processes, tmp_path):
    """Envoy's rule: a pool without any connection makes one even past max_connections (here 0),
    counted as an overflow, so that its requests never wait for connections it does not have."""
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"max_connections": 0}])
    with RawConn(p.port) as c, RawConn(p.port) as c2:
        c.request("GET", "/backend/delay/300")
        time.sleep(0.1)
        c2.request("GET", "/backend/x")  # waits for the one connection
        assert c.read_response().status == 200
        assert c2.read_response().status == 200
    assert metric(p, "upstream_cx_total") == 1
    assert metric(p, "upstream_cx_overflow") == 2


def test_max_pending_requests(processes, tmp_path):
    """A request waiting for its new connection (a non-blocking connect in progress) is pending:
    with none allowed it overflows; with one allowed it passes and is pending no more."""
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"max_pending_requests": 0}])
    with RawConn(p.port) as c:
        c.request("GET", "/backend/x")
        r = c.read_response()
    assert (r.status, r.header("x-envoy-overloaded"), r.body) == (503, "true", OVERFLOW)
    assert metric(p, "upstream_rq_pending_overflow") == 1
    assert metric(p, "upstream_rq_pending_active") == 0
    assert metric(p, "upstream_cx_active") == 0  # the connection it began is closed


def test_pending_released_when_connected(processes, tmp_path):
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", workers=1,
              circuit_breakers=[{"max_pending_requests": 1}])
    for _ in range(3):
        with RawConn(p.port) as c:  # a new client connection each time; the upstream one is pooled
            c.request("GET", "/backend/delay/50")
            assert c.read_response().status == 200
    assert metric(p, "upstream_rq_pending_overflow") == 0
    assert metric(p, "upstream_rq_pending_active") == 0
    assert metric(p, "circuit_breakers_default_rq_pending_open") == 0


def test_max_retries_overflow(processes, tmp_path):
    be = FlakyBackend(fails=100)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", workers=1,
                  retry_policy={"retry_on": "5xx", "num_retries": 3}, circuit_breakers=[{"max_retries": 0}])
        with RawConn(p.port) as c:
            c.request("GET", "/backend/x")
            r = c.read_response()
        assert (r.status, r.body) == (503, b"nope")
        assert len(be.bodies) == 1
        assert metric(p, "upstream_rq_retry_overflow") == 1
        assert metric(p, "upstream_rq_retry") == 0
        assert wait_access_lines(p, 1)[0][1]["flags"] == "UO"
    finally:
        be.close()


def test_flood_memory_flat(processes, tmp_path):
    q = start_quote(processes, threads=2)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}", circuit_breakers=[{"max_requests": 10}])
    pid = p.proc.pid
    flood_responses(p.port, 500, "/backend/delay/100")  # warm: buffers, free lists
    before = rss_kib(pid)
    counted = metric(p, "upstream_rq_pending_overflow")
    total_over = 0
    for _ in range(2):
        got = flood_responses(p.port, 500, "/backend/delay/100")
        assert all(g[0] in (200, 503) for g in got)
        over = sum(1 for g in got if g[0] == 503 and g[1] == "true")
        assert over >= 400, over
        total_over += over
    after = rss_kib(pid)
    assert after - before < 4096, (before, after)
    assert metric(p, "upstream_rq_pending_overflow") - counted == total_over
    assert metric(p, "circuit_breakers_default_rq_open") == 0
    assert metric(p, "upstream_rq_active") == 0
