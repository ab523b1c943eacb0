"""Fault tests with real failing backends (issue 13, point 11). Six endpoints on 127.0.0.1-6 (one
port) stand behind one Service: a, a portico-quote SIGKILLed during the load; b, a Python server
that answers 503 to everything (health checks included); c, a Python server that accepts, reads
and never answers; d, e, f, healthy portico-quotes. Three good endpoints are needed beside the
three bad ones: with fewer than half the endpoints healthy, Envoy's panic threshold routes to all
of them, and a retry has nowhere good to go.

- With a retry policy and health checks, once the first detection has passed (b and c out of the
  rotation), a load during which a is killed sees only 200s: a's connect failures and resets are
  retried while its checks fail, then it is out too.
- Without them, the client sees what Envoy gives: b's 503s relayed, 503 UF for a once it is
  gone, 504 UT for c at the route timeout, each endpoint taking its sixth of round robin, and
  Envoy's counters say so.
- Circuit breakers hold a bounded flood against the stalling endpoint: the overflow is answered
  at once (503, x-envoy-overloaded), the admitted requests time out, their upstream connections
  are closed, and Portico's memory does not grow.

The issue says "e.g. 20,000 requests"; each load here is 2,000 (the project's bound for one test
loop, as CI runs the suite twice, plain and under ASan), from 16 keep-alive client connections."""

import http.client
import signal
import threading
import time

from conftest import binary
from portico import _ThreadedServer, recv_head, wait_access_lines
from portico_cfg import Portico, dump, endpoints, mapping, poll_until, same_port_two_addrs, service
from test_circuit_breakers import OVERFLOW, flood_responses, rss_kib

ADDRS = tuple(f"127.0.0.{i}" for i in range(1, 7))
NAMES = "abcdef"
LOAD = 2000
CLIENTS = 16


class Always503(_ThreadedServer):
    """Answers every request (keep-alive) with 503 "down"."""

    def serve(self, conn):
        data = b""
        while True:
            got = recv_head(conn, data)
            if got is None:
                return
            data = got[1]
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown")


class Stalling(_ThreadedServer):
    """Accepts, reads whatever comes and never answers; .open counts the connections the proxy
    has not closed yet."""

    def __init__(self, *args, **kw):
        self.open = 0
        self.lock = threading.Lock()
        super().__init__(*args, **kw)

    def serve(self, conn):
        with self.lock:
            self.open += 1
        try:
            while conn.recv(65536):
                pass
        finally:
            with self.lock:
                self.open -= 1


def quote_at(processes, addr, port, name):
    args = [binary("portico-quote"), "--port", port, "--bind", addr, "--name", name]
    return processes.start(args, name=f"quote-{name}", port=port, host=addr)


class Fleet:
    """The six endpoints; .close() stops the Python ones (the fixture stops the processes)."""

    def __init__(self, processes):
        self.port = same_port_two_addrs(ADDRS)
        self.addr = {n: f"{a}:{self.port}" for a, n in zip(ADDRS, NAMES)}
        self.quotes = {n: quote_at(processes, a, self.port, n)
                       for a, n in zip(ADDRS, NAMES) if n in "adef"}
        self.b = Always503(ADDRS[1], self.port)
        self.c = Stalling(ADDRS[2], self.port)

    def close(self):
        self.b.close()
        self.c.close()


def proxy(processes, tmp_path, fleet, **spec):
    px = Portico(processes, tmp_path)
    px.write("q.yaml", dump(service("q", 80, fleet.port), endpoints("q", list(ADDRS), fleet.port),
                            mapping("m", "/q/", "q", **spec)))
    return px.start()


def load(port, n, kill_at=None, kill=None):
    """<n> GETs of /q/ over CLIENTS keep-alive connections; calls kill() once the <kill_at>th
    request is about to go. Returns the statuses in the order they came back (0: no answer)
    and the seconds it took."""
    statuses, lock, sent = [], threading.Lock(), [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while True:
            with lock:
                if sent[0] >= n:
                    break
                sent[0] += 1
                if sent[0] == kill_at:
                    kill()
            try:
                conn.request("GET", "/q/")
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            with lock:
                statuses.append(status)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "the load did not end in 60 s"
    return statuses, time.monotonic() - t0


def metric(px, name, **labels):
    return px.metric(f"envoy_cluster_{name}", envoy_cluster_name="q", **labels) or 0


def wait_healthy(px, n, timeout):
    """Waits until <n> endpoints are in the rotation; returns the seconds it took."""
    v, took = poll_until(lambda: metric(px, "membership_healthy") == n, timeout, 0.01)
    assert v, (metric(px, "membership_healthy"), px.diag().get("endpoint_health"),
               px.proc.log_tail())
    return took


def test_retries_and_health_checks_hide_the_faults(processes, tmp_path):
    fleet = Fleet(processes)
    try:
        px = proxy(processes, tmp_path, fleet, timeout_ms=3000,
                   retry_policy={"retry_on": "5xx,connect-failure,reset", "num_retries": 2,
                                 "per_try_timeout": "0.1s"},
                   # Envoy's default lets 3 retries run at once per cluster: when a dies under
                   # 16 clients more wait at once, and the overflow (UO) would reach the client
                   circuit_breakers=[{"max_retries": 64}],
                   health_checks=[{"interval": "100ms", "timeout": "200ms",
                                   "unhealthy_threshold": 2,
                                   "health_check": {"http": {"path": "/status/200"}}}])
        # the first detection: b fails its first check (a 503), c its first two (timeouts)
        detect = wait_healthy(px, 4, timeout=3.0)
        retries0 = metric(px, "upstream_rq_retry")
        statuses, took = load(px.port, LOAD, kill_at=LOAD // 3,
                              kill=lambda: fleet.quotes["a"].send_signal(signal.SIGKILL))
        print(f"detection {detect:.2f} s, load of {LOAD} in {took:.2f} s")
        bad = {s: statuses.count(s) for s in set(statuses) if s != 200}
        assert len(statuses) == LOAD and not bad, bad
        wait_healthy(px, 3, timeout=2.0)  # a is out as well
        h = {e["address"]: e["health"] for c in px.diag()["endpoint_health"]
             for e in c["endpoints"]}  # one cluster: cluster_q_default_cbdt64
        assert {n for n, a in fleet.addr.items() if h[a] == "unhealthy"} == set("abc"), h
        # a's connect failures and resets were retried: none of it reached the client
        assert metric(px, "upstream_rq_retry") > retries0
        assert metric(px, "upstream_rq_retry_overflow") == 0
        assert metric(px, "upstream_rq_retry_limit_exceeded") == 0
        assert metric(px, "health_check_failure") >= 4  # b once, c twice, a at least once
        assert metric(px, "health_check_network_failure") >= 3
        assert metric(px, "upstream_rq_xx", envoy_response_code_class="5") == 0
    finally:
        fleet.close()


def test_without_them_the_client_sees_the_faults(processes, tmp_path):
    fleet = Fleet(processes)
    try:
        px = proxy(processes, tmp_path, fleet, timeout_ms=100)
        statuses, took = load(px.port, LOAD, kill_at=LOAD // 3,
                              kill=lambda: fleet.quotes["a"].send_signal(signal.SIGKILL))
        print(f"load of {LOAD} in {took:.2f} s")
        assert len(statuses) == LOAD and 0 not in statuses
        lines = wait_access_lines(px, LOAD)
        assert len(lines) == LOAD and all(m for _, m in lines)
        by = {}
        for _, m in lines:
            by.setdefault(m["upstream"], []).append((m["code"], m["flags"]))
        # round robin: each endpoint takes its sixth, faulty or not
        for name, addr in fleet.addr.items():
            share = len(by.get(addr, [])) / LOAD
            assert 0.8 / 6 < share < 1.2 / 6, (name, share)
        codes = {n: {x for x in by[a]} for n, a in fleet.addr.items()}
        assert codes["b"] == {("503", "-")}  # b's own 503, relayed
        assert codes["c"] == {("504", "UT")}  # c at the route timeout
        for n in "def":
            assert codes[n] == {("200", "-")}, (n, codes[n])
        # a: 200 until it was killed, then 503 UF (a request in flight may see its reset: UC)
        assert ("200", "-") in codes["a"] and ("503", "UF") in codes["a"], codes["a"]
        assert codes["a"] <= {("200", "-"), ("503", "UF"), ("503", "UC")}, codes["a"]
        n503, n504 = statuses.count(503), statuses.count(504)
        assert n503 + n504 + statuses.count(200) == LOAD
        assert n504 == len(by[fleet.addr["c"]])
        assert n503 == len(by[fleet.addr["b"]]) + sum(1 for x in by[fleet.addr["a"]] if x[0] == "503")
        # Envoy's counters say the same
        uf = sum(1 for x in by[fleet.addr["a"]] if x[1] == "UF")
        assert metric(px, "upstream_cx_connect_fail") == uf
        assert metric(px, "upstream_rq_timeout") == n504
        assert metric(px, "upstream_rq", envoy_response_code="503") == n503
        assert metric(px, "upstream_rq", envoy_response_code="504") == n504
        assert metric(px, "upstream_rq_xx", envoy_response_code_class="5") == n503 + n504
        assert metric(px, "upstream_rq_retry") == 0
        assert metric(px, "membership_healthy") == 6  # no checks: everyone stays in
    finally:
        fleet.close()


def test_breakers_hold_a_flood_without_growing(processes, tmp_path):
    """Floods of 500 requests at once (2,000 in all) on the stalling endpoint alone, through
    max_requests 10: the overflow is answered at once, the admitted requests get 504 at the route
    timeout and their upstream connections are closed; RSS stays flat after the first flood."""
    stall = Stalling()
    try:
        px = Portico(processes, tmp_path)
        px.write("s.yaml", dump(mapping("s", "/s/", f"127.0.0.1:{stall.port}", stats_name="s",
                                        timeout_ms=200, circuit_breakers=[{"max_requests": 10}])))
        px.start()

        def s_metric(name):
            return px.metric(f"envoy_cluster_{name}", envoy_cluster_name="s") or 0

        def flood():
            t0 = time.monotonic()
            got = flood_responses(px.port, 500, "/s/")
            took = time.monotonic() - t0
            over = [g for g in got if g[0] == 503]
            timed_out = [g for g in got if g[0] == 504]
            assert len(over) + len(timed_out) == 500, sorted({g[0] for g in got})
            assert all(g[1] == "true" and g[2] == OVERFLOW for g in over)
            assert all(g[1] is None and g[2] == b"upstream request timeout" for g in timed_out)
            assert len(over) >= 400 and len(timed_out) >= 10, (len(over), len(timed_out))
            # the stalled connections are closed at their timeout, none is pooled or leaked
            v, _ = poll_until(lambda: stall.open == 0 and s_metric("upstream_cx_active") == 0,
                              3.0, 0.01)
            assert v, (stall.open, s_metric("upstream_cx_active"))
            return len(over), len(timed_out), took

        flood()  # warm: buffers and free lists reach their working size
        before = rss_kib(px.proc.pid)
        over0, timeouts0 = s_metric("upstream_rq_pending_overflow"), s_metric("upstream_rq_timeout")
        results = [flood() for _ in range(3)]
        after = rss_kib(px.proc.pid)
        print(f"floods (overflow, timeouts, s): {results}; RSS {before} -> {after} KiB")
        assert after - before < 4096, (before, after)
        assert s_metric("upstream_rq_pending_overflow") - over0 == sum(r[0] for r in results)
        assert s_metric("upstream_rq_timeout") - timeouts0 == sum(r[1] for r in results)
        assert s_metric("upstream_rq_active") == 0
        assert s_metric("circuit_breakers_default_rq_open") == 0
    finally:
        stall.close()
