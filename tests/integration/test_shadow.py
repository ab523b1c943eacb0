"""Mapping `shadow: true` (Emissary's request mirroring, Envoy's request_mirror_policies): the
requests of the shadow Mapping's group (the Mappings of the same match keys) are copied to the
shadow's service with the Host suffixed "-shadow", `weight` percent of them; the shadow's
answers are dropped, it never takes part in the canary split, and a slow, dead or stalled
shadow never slows or fails the primary. Real backends: portico-quote (--echo) for the primary,
a recording backend (raw bytes as received) or portico-quote for the shadow."""

import json
import socket
import time

from conftest import RawConn, free_port, start_quote
from portico import RecordingBackend, _ThreadedServer
from portico_cfg import Portico, check, dump, line_of, mapping, poll_until


def start(processes, tmp_path, shadow_service, primary=None, shadow_spec=None, **primary_spec):
    """Portico with a primary Mapping /svc/ (quote --echo "primary" unless <primary> is given)
    and a shadow Mapping of the same prefix to <shadow_service>."""
    if primary is None:
        primary = start_quote(processes, "--echo", name="primary")
    px = Portico(processes, tmp_path, workers=1)
    px.write("m.yaml", dump(
        mapping("main", "/svc/", f"127.0.0.1:{primary.port}", stats_name="primary", **primary_spec),
        mapping("mirror", "/svc/", shadow_service, shadow=True, stats_name="shadow",
                **(shadow_spec or {}))))
    px.start()
    return px


def shadow_metric(px, name, cluster="shadow"):
    return px.metric(f"envoy_cluster_{name}", envoy_cluster_name=cluster) or 0


def wait_records(rec, n, timeout=3.0):
    ok, _ = poll_until(lambda: len(rec.records) >= n, timeout)
    assert ok, (len(rec.records), n)
    return rec.records


# ---- what the shadow receives ----------------------------------------------------------------

def test_shadow_gets_the_primary_request_with_host_suffixed(processes, tmp_path):
    """The mirror is the primary's upstream request (rewritten path, the route's added headers,
    the forwarding headers, the same x-request-id) with "-shadow" in the Host, before a port;
    the client gets the primary's answer only."""
    rec = RecordingBackend()
    px = start(processes, tmp_path, f"127.0.0.1:{rec.port}",
               add_request_headers={"x-added": "yes"})
    try:
        for host, want in (("app.example:8080", "app.example-shadow:8080"),
                           ("app.example", "app.example-shadow"),
                           ("[::1]:81", "[::1]-shadow:81")):
            n = len(rec.records)
            with RawConn(px.port) as c:
                c.send(f"GET /svc/echo?x=1 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n"
                       f"X-Mine: 1\r\n\r\n".encode())
                r = c.read_response()
            assert r.status == 200
            seen = r.json()
            assert seen["server"] == "primary"
            got = wait_records(rec, n + 1)[n]
            assert got["line"] == "GET /echo?x=1 HTTP/1.1"
            assert got["body"] == b"" and not got["chunked"]
            primary_headers = [(k.lower(), v) for k, v in seen["headers"]]
            shadow_headers = [(k.lower(), v) for k, v in got["headers"]]
            assert ("host", host) in primary_headers
            assert shadow_headers == [(k, want if k == "host" else v) for k, v in primary_headers]
            assert ("x-added", "yes") in shadow_headers and ("x-mine", "1") in shadow_headers
    finally:
        rec.close()
    assert shadow_metric(px, "upstream_rq_total") == 3
    assert px.metric("envoy_cluster_upstream_rq_xx", envoy_cluster_name="shadow",
                     envoy_response_code_class="2") == 3


def test_post_bodies_are_mirrored_whole(processes, tmp_path):
    """Content-Length and chunked request bodies reach the shadow whole, framed as they came."""
    rec = RecordingBackend()
    px = start(processes, tmp_path, f"127.0.0.1:{rec.port}")
    big = bytes((i * 7) % 251 for i in range(200_000))
    try:
        with RawConn(px.port) as c:
            c.request("POST", "/svc/echo", headers=[("Host", "a.example")], body=big)
            r = c.read_response()
            assert r.status == 200 and r.json()["body_length"] == len(big)
            pieces = [b"hello ", b"x" * 70_000, b" world"]
            c.send(b"POST /svc/echo HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n")
            for p in pieces:
                c.send(b"%x\r\n" % len(p) + p + b"\r\n")
                time.sleep(0.02)  # arriving in pieces, after the mirror started
            c.send(b"0\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.json()["body_chunked"] is True
            assert r.json()["body_length"] == sum(map(len, pieces))
        got = wait_records(rec, 2)
        assert got[0]["line"] == "POST /echo HTTP/1.1" and not got[0]["chunked"]
        assert got[0]["body"] == big
        assert ("content-length", str(len(big))) in [(k.lower(), v) for k, v in got[0]["headers"]]
        assert got[1]["chunked"] and got[1]["body"] == b"".join(pieces)
    finally:
        rec.close()


# ---- never slowing or failing the primary ------------------------------------------------------

def timed_gets(port, path, n, host="a.example"):
    """<n> GETs on one keep-alive connection: the slowest latency and the answers' servers."""
    worst, servers = 0.0, []
    with RawConn(port) as c:
        for _ in range(n):
            t0 = time.monotonic()
            c.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            r = c.read_response()
            worst = max(worst, time.monotonic() - t0)
            assert r.status == 200, r
            servers.append(json.loads(r.body)["server"])
    return worst, servers


def test_dead_shadow_never_fails_the_primary(processes, tmp_path):
    dead = free_port()  # nothing listens there
    px = start(processes, tmp_path, f"127.0.0.1:{dead}")
    worst, servers = timed_gets(px.port, "/svc/echo", 30)
    assert servers == ["primary"] * 30
    assert worst < 0.5, worst
    ok, _ = poll_until(lambda: shadow_metric(px, "upstream_cx_connect_fail") == 30, 3)
    assert ok, px.metrics()
    assert shadow_metric(px, "upstream_rq_total") == 30
    assert shadow_metric(px, "upstream_rq_active") == 0


def test_slow_shadow_never_slows_the_primary(processes, tmp_path):
    """The shadow answers /delay/5000 after 5 s; the primary (--echo) at once. The mirrors
    outlive their requests and end at the route's timeout (1 s here), counted as timeouts."""
    slow = start_quote(processes, name="shadow")
    px = start(processes, tmp_path, f"127.0.0.1:{slow.port}", timeout_ms=1000)
    t0 = time.monotonic()
    worst, servers = timed_gets(px.port, "/svc/delay/5000", 20)
    assert servers == ["primary"] * 20
    assert worst < 0.5 and time.monotonic() - t0 < 2.0, worst
    assert shadow_metric(px, "upstream_rq_total") == 20
    ok, _ = poll_until(lambda: shadow_metric(px, "upstream_rq_timeout") == 20, 4)
    assert ok, px.metrics()
    assert shadow_metric(px, "upstream_rq_active") == 0
    assert shadow_metric(px, "upstream_rq_timeout", "primary") == 0


def test_mirrors_in_flight_are_bounded(processes, tmp_path):
    """Mirrors outlive their requests, so the shadow cluster's max_requests (Envoy's 1024 by
    default, 5 here) bounds how many run at once: past it a request is not mirrored
    (upstream_rq_pending_overflow) and the primary goes on; a slow shadow cannot make the
    proxy hold a connection per request."""
    slow = start_quote(processes, name="shadow")
    px = start(processes, tmp_path, f"127.0.0.1:{slow.port}", timeout_ms=3000,
               shadow_spec={"circuit_breakers": [{"max_requests": 5}]})
    worst, servers = timed_gets(px.port, "/svc/delay/5000", 20)
    assert servers == ["primary"] * 20 and worst < 0.5, worst
    assert shadow_metric(px, "upstream_rq_active") == 5
    assert shadow_metric(px, "upstream_rq_pending_overflow") == 15
    assert shadow_metric(px, "upstream_cx_active") <= 5
    assert px.metric("envoy_cluster_circuit_breakers_default_rq_open", envoy_cluster_name="shadow") == 1
    ok, _ = poll_until(lambda: shadow_metric(px, "upstream_rq_timeout") == 5, 5)
    assert ok, px.metrics()
    assert px.metric("envoy_cluster_circuit_breakers_default_rq_open", envoy_cluster_name="shadow") == 0
    worst, servers = timed_gets(px.port, "/svc/delay/5000", 3)  # mirrored again once they ended
    assert shadow_metric(px, "upstream_rq_active") == 3


class StalledBackend(_ThreadedServer):
    """Accepts, then reads nothing: its socket buffers fill and stay full."""

    def serve(self, conn):
        while not self.stopping:
            time.sleep(0.05)


def test_stalled_shadow_is_dropped_not_waited_for(processes, tmp_path):
    """A shadow that does not read cannot hold the primary: once the mirror would keep more
    than its bound, it is dropped (retry_or_shadow_abandoned on the primary's cluster) and the
    request goes on at the primary's pace."""
    stalled = StalledBackend()
    px = start(processes, tmp_path, f"127.0.0.1:{stalled.port}")
    body = b"z" * (24 << 20)
    try:
        t0 = time.monotonic()
        with RawConn(px.port, timeout=10) as c:
            c.request("POST", "/svc/echo", headers=[("Host", "a.example")], body=body)
            r = c.read_response()
        assert r.status == 200 and r.json()["body_length"] == len(body)
        assert time.monotonic() - t0 < 5.0
        assert shadow_metric(px, "retry_or_shadow_abandoned", "primary") == 1
        assert shadow_metric(px, "upstream_rq_active") == 0
        worst, servers = timed_gets(px.port, "/svc/echo", 5)  # and the next ones go through
        assert servers == ["primary"] * 5 and worst < 0.5
    finally:
        stalled.close()


# ---- weight and the canary split ---------------------------------------------------------------

def test_weight_mirrors_its_share(processes, tmp_path):
    """weight: 30 mirrors about 30% of the requests (1,000: 300 +- 60, four standard
    deviations); every client answer is the primary's."""
    rec = RecordingBackend()
    px = start(processes, tmp_path, f"127.0.0.1:{rec.port}", shadow_spec={"weight": 30})
    try:
        _, servers = timed_gets(px.port, "/svc/echo", 1000)
        assert set(servers) == {"primary"}
        sent, _ = poll_until(lambda: (shadow_metric(px, "upstream_rq_total") == len(rec.records)
                                      and len(rec.records)), 3)
        assert sent and 240 <= sent <= 360, (sent, len(rec.records))
    finally:
        rec.close()


def test_shadow_is_never_a_canary_member(processes, tmp_path):
    """Two primaries split 50/50; the shadow (an --echo backend that would say "shadow") is
    never picked, and mirrors every request of both."""
    a = start_quote(processes, "--echo", name="a")
    b = start_quote(processes, "--echo", name="b")
    shadow = start_quote(processes, "--echo", name="shadow")
    px = Portico(processes, tmp_path, workers=1)
    px.write("m.yaml", dump(
        mapping("a", "/svc/", f"127.0.0.1:{a.port}", weight=50),
        mapping("b", "/svc/", f"127.0.0.1:{b.port}"),
        mapping("mirror", "/svc/", f"127.0.0.1:{shadow.port}", shadow=True, weight=100,
                stats_name="shadow")))
    px.start()
    _, servers = timed_gets(px.port, "/svc/echo", 200)
    assert "shadow" not in servers
    assert 50 <= servers.count("a") <= 150 and servers.count("a") + servers.count("b") == 200
    ok, _ = poll_until(lambda: px.metric("envoy_cluster_upstream_rq_xx", envoy_cluster_name="shadow",
                                         envoy_response_code_class="2") == 200, 3)
    assert ok


# ---- configuration -----------------------------------------------------------------------------

def test_second_shadow_and_lonely_shadow_are_reported(processes, tmp_path):
    """Emissary keeps one shadow per group ("cannot accept ... as second shadow"); a shadow
    with no Mapping of its match keys mirrors nothing. Both are errors in diag; the rest is
    served, and the first shadow still mirrors."""
    rec = RecordingBackend()
    primary = start_quote(processes, "--echo", name="primary")
    px = Portico(processes, tmp_path, workers=1)
    px.write("m.yaml", dump(
        mapping("main", "/svc/", f"127.0.0.1:{primary.port}"),
        mapping("first", "/svc/", f"127.0.0.1:{rec.port}", shadow=True),
        mapping("second", "/svc/", f"127.0.0.1:{free_port()}", shadow=True),
        mapping("lonely", "/other/", f"127.0.0.1:{rec.port}", shadow=True)))
    px.start()
    try:
        errs = sorted((e["object"], e["message"]) for e in px.diag()["errors"])
        assert errs == [
            ("Mapping/default/lonely",
             "shadow: no Mapping with the same match keys to mirror; nothing is mirrored"),
            ("Mapping/default/second",
             "shadow: a second shadow of the same match keys; only the first is used"),
        ]
        assert px.status("/other/") == 404
        assert px.status("/svc/echo") == 200
        assert wait_records(rec, 1)[0]["line"] == "GET /echo HTTP/1.1"
    finally:
        rec.close()


def test_check_accepts_shadow_and_prefers_it_to_host_redirect(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(dump(mapping("m", "/m/", "127.0.0.1:9"),
                      mapping("sh", "/m/", "127.0.0.1:10", shadow=True, host_redirect=True)))
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:{line_of(f, 'host_redirect')}: Mapping/default/sh: notice: At most one of host_redirect and shadow may be set; "
        "ignoring host_redirect"]


def test_http2_client_request_is_mirrored(processes, tmp_path):
    """An HTTP/2 client's request: the mirror's Host is its :authority with -shadow, its body
    (no content-length: chunked upstream) whole."""
    from h2raw import H2Raw
    rec = RecordingBackend()
    px = start(processes, tmp_path, f"127.0.0.1:{rec.port}")
    body = b"q" * 50_000
    try:
        with H2Raw(px.port) as h:
            sid = h.request("/svc/echo", method="POST", authority="h2.example", body=body)
            r = h.wait_response(sid)
        assert r.status == 200 and json.loads(r.body)["server"] == "primary"
        got = wait_records(rec, 1)[0]
        assert got["line"] == "POST /echo HTTP/1.1"
        assert ("host", "h2.example-shadow") in [(k.lower(), v) for k, v in got["headers"]]
        assert got["body"] == body
    finally:
        rec.close()
