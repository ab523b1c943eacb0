"""Mapping health_checks (issue 13, point 4): active HTTP and gRPC checks take an endpoint out of
the rotation and bring it back, passive ejection (Envoy's outlier detection defaults) takes out an
endpoint whose requests fail, envoy_cluster_membership_healthy and the diag page show it, and a
reload that does not change the cluster keeps its health. Real backends: portico-quote processes
on 127.0.0.1-3 (one port, an Endpoints object lists them), killed and restarted, and a real gRPC
health server (grpc_health_server.py). Intervals are 100 ms so each test takes a few seconds."""

import signal
import socket
import time
from pathlib import Path

from conftest import binary
from portico_cfg import (Portico, check, dump, endpoints, mapping, poll_until, same_port_two_addrs,
                         service)

ADDRS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PYTHON = "/usr/bin/python3"
HEALTH_SERVER = Path(__file__).resolve().parent / "grpc_health_server.py"


def quote_at(processes, addr, port, name):
    args = [binary("portico-quote"), "--port", port, "--bind", addr, "--name", name]
    return processes.start(args, name=f"quote-{name}", port=port, host=addr)


def three_backends(processes):
    port = same_port_two_addrs(ADDRS)
    procs = {n: quote_at(processes, a, port, n) for a, n in zip(ADDRS, "abc")}
    return port, procs


def make_proxy(processes, tmp_path, port, checks, workers=2):
    px = Portico(processes, tmp_path, workers=workers)
    px.write("q.yaml", dump(service("q", 80, port), endpoints("q", list(ADDRS), port),
                            mapping("m", "/q/", "q", health_checks=checks)))
    return px


def endpoint_health(px, cluster="cluster_q_default"):
    """{address: (health, failed_active_hc, ejected)} of <cluster> on the diag page."""
    for c in px.diag()["endpoint_health"]:
        if c["name"] == cluster:
            return {e["address"]: (e["health"], e["failed_active_hc"], e["ejected"])
                    for e in c["endpoints"]}
    return {}


def wait_healthy(px, n, timeout=3.0):
    v, _ = poll_until(lambda: px.metric("envoy_cluster_membership_healthy",
                                        envoy_cluster_name="q") == n, timeout, 0.02)
    assert v, (px.metric("envoy_cluster_membership_healthy", envoy_cluster_name="q"),
               endpoint_health(px), px.proc.log_tail())


def servers(px, n):
    """The backends that answered <n> requests to /q/ (every answer must be a 200)."""
    seen = []
    for _ in range(n):
        r = px.get("/q/")
        assert r.status == 200, (r, seen)
        seen.append(r.json()["server"])
    return seen


HTTP_CHECK = [{"interval": "100ms", "timeout": "300ms",
               "health_check": {"http": {"path": "/status/200"}}}]


def test_killed_endpoint_leaves_the_rotation_and_comes_back(processes, tmp_path):
    port, procs = three_backends(processes)
    px = make_proxy(processes, tmp_path, port, HTTP_CHECK).start()
    wait_healthy(px, 3)
    assert px.metric("envoy_cluster_membership_total", envoy_cluster_name="q") == 3
    procs["c"].stop()
    wait_healthy(px, 2)  # two failed checks in a row (unhealthy_threshold 2)
    h = endpoint_health(px)
    assert h[f"127.0.0.3:{port}"] == ("unhealthy", True, False), h
    assert h[f"127.0.0.1:{port}"] == ("healthy", False, False), h
    assert set(servers(px, 12)) == {"a", "b"}  # no 503: c is out of the rotation
    procs["c"] = quote_at(processes, ADDRS[2], port, "c")
    wait_healthy(px, 3)  # one passing check (healthy_threshold 1)
    assert "c" in servers(px, 12)
    attempts = px.metric("envoy_cluster_health_check_attempt", envoy_cluster_name="q")
    failures = px.metric("envoy_cluster_health_check_network_failure", envoy_cluster_name="q")
    assert attempts >= 6 and failures >= 2, (attempts, failures)
    assert "endpoint 127.0.0.3:%d of cluster_q_default is unhealthy" % port in px.log()


def test_unexpected_status_fails_at_once_and_ranges_are_inclusive(processes, tmp_path):
    port, _ = three_backends(processes)
    checks = [{"interval": "100ms", "unhealthy_threshold": 5,
               "health_check": {"http": {"path": "/status/503",
                                         "expected_statuses": [{"min": 200, "max": 299}]}}}]
    px = make_proxy(processes, tmp_path, port, checks).start()
    # an answer that is not expected fails at once, whatever unhealthy_threshold says (Envoy)
    wait_healthy(px, 0, timeout=1.0)
    assert all(v == ("unhealthy", True, False) for v in endpoint_health(px).values())
    # every endpoint unhealthy: Envoy's panic routing spreads the traffic on all of them
    assert px.get("/q/").status == 200
    checks[0]["health_check"]["http"]["expected_statuses"] = [{"min": 500, "max": 503}]
    px.write("q.yaml", dump(service("q", 80, port), endpoints("q", list(ADDRS), port),
                            mapping("m", "/q/", "q", health_checks=checks)))
    wait_healthy(px, 3)


def read_check_head(listener, timeout=3.0):
    """Accepts one connection on <listener>, reads one request head, answers 200; returns the
    head's bytes."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    return data


def test_check_request_bytes(processes, tmp_path):
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        port = ls.getsockname()[1]
        px = Portico(processes, tmp_path)
        checks = [{"interval": "5s",
                   "health_check": {"http": {"path": "/healthz?full=1", "hostname": "hc.example",
                                             "add_request_headers": {"x-hc": "1",
                                                                     "x-two": {"value": "2"}},
                                             "remove_request_headers": ["User-Agent"]}}},
                  {"interval": "5s", "health_check": {"http": {"path": "/ready"}}}]
        px.write("m.yaml", dump(mapping("m", "/m/", f"127.0.0.1:{port}", health_checks=checks)))
        px.start()
        heads = sorted([read_check_head(ls), read_check_head(ls)])
    # Envoy's check request: GET <path>, Host <hostname> (default: the cluster's name),
    # User-Agent Envoy/HC (unless removed), then the added headers
    assert heads == sorted([
        b"GET /healthz?full=1 HTTP/1.1\r\nhost: hc.example\r\nx-hc: 1\r\nx-two: 2\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nhost: cluster_127_0_0_1_%d_default\r\nuser-agent: Envoy/HC\r\n\r\n"
        % port,
    ]), heads


def test_checks_are_not_held_to_max_connections(processes, tmp_path):
    """A health check makes its own connection when the cluster's max_connections are all in use
    (as Envoy's health checker does): busy connections never make an endpoint look unhealthy."""
    port, _ = three_backends(processes)
    px = Portico(processes, tmp_path, workers=1)
    px.write("q.yaml", dump(service("q", 80, port), endpoints("q", list(ADDRS), port),
                            mapping("m", "/q/", "q", health_checks=HTTP_CHECK,
                                    circuit_breakers=[{"max_connections": 1}])))
    px.start()
    wait_healthy(px, 3)
    conns = []
    for _ in range(3):  # one per endpoint (round robin), each holding its connection for 1.5 s
        s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
        s.sendall(b"GET /q/delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        conns.append(s)
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # a dozen check rounds meanwhile
        assert px.metric("envoy_cluster_membership_healthy", envoy_cluster_name="q") == 3, endpoint_health(px)
        time.sleep(0.1)
    for s in conns:
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.close()


def test_passive_ejection_after_five_failures(processes, tmp_path):
    port, procs = three_backends(processes)
    # checks pass at the start and then not again for a minute: only passive health acts
    checks = [{"interval": "60s", "health_check": {"http": {"path": "/status/200"}}}]
    px = make_proxy(processes, tmp_path, port, checks, workers=1).start()
    wait_healthy(px, 3)
    procs["c"].stop()
    statuses = [px.get("/q/").status for _ in range(30)]
    # round robin sends every third request to c until its 5th failure in a row ejects it
    assert statuses.count(503) == 5, statuses
    assert statuses[-10:] == [200] * 10, statuses
    assert endpoint_health(px)[f"127.0.0.3:{port}"] == ("unhealthy", False, True)
    assert px.metric("envoy_cluster_membership_healthy", envoy_cluster_name="q") == 2
    assert "ejected after 5 failures in a row" in px.log()


def test_only_one_of_three_is_ejected(processes, tmp_path):
    """max_ejection_percent 10 % of 3 endpoints allows none; at least one is always allowed."""
    port, procs = three_backends(processes)
    checks = [{"interval": "60s", "health_check": {"http": {"path": "/status/200"}}}]
    px = make_proxy(processes, tmp_path, port, checks, workers=1).start()
    wait_healthy(px, 3)
    procs["b"].stop()
    procs["c"].stop()
    for _ in range(40):
        px.get("/q/")
    h = endpoint_health(px)
    assert sorted(v[2] for v in h.values()) == [False, False, True], h


def test_reload_keeps_health_of_an_unchanged_cluster(processes, tmp_path):
    port, procs = three_backends(processes)
    checks = [{"interval": "300ms", "unhealthy_threshold": 3,
               "health_check": {"http": {"path": "/status/200"}}}]
    px = make_proxy(processes, tmp_path, port, checks).start()
    wait_healthy(px, 3)
    procs["c"].stop()
    wait_healthy(px, 2, timeout=4.0)
    gen = px.diag()["generation"]
    px.write("other.yaml", dump(mapping("other", "/other/", f"127.0.0.1:{port}")))
    v, _ = poll_until(lambda: px.diag()["generation"] > gen, 3.0, 0.01)
    assert v
    # a fresh state would be healthy until three checks 300 ms apart failed again
    assert endpoint_health(px)[f"127.0.0.3:{port}"] == ("unhealthy", True, False)
    assert px.metric("envoy_cluster_membership_healthy", envoy_cluster_name="q") == 2
    assert set(servers(px, 9)) == {"a", "b"}
    # a changed check is a new cluster state: it starts healthy and checks at once
    checks[0]["health_check"]["http"]["path"] = "/status/204"
    checks[0]["health_check"]["http"]["expected_statuses"] = [{"min": 204, "max": 204}]
    px.write("q.yaml", dump(service("q", 80, port), endpoints("q", list(ADDRS), port),
                            mapping("m", "/q/", "q", health_checks=checks)))
    v, _ = poll_until(lambda: endpoint_health(px)[f"127.0.0.3:{port}"][0] == "healthy", 3.0, 0.005)
    assert v


def test_grpc_health_check(processes, tmp_path):
    hport = same_port_two_addrs(("127.0.0.1",))
    srv = processes.start([PYTHON, HEALTH_SERVER, "--port", hport], name="grpc-health",
                          port=hport)
    srv.wait_log(r"^ready port=\d+")
    px = Portico(processes, tmp_path)
    checks = [{"interval": "100ms", "timeout": "1s",
               "health_check": {"grpc": {"upstream_name": "quote.v1", "authority": "hc.example"}}}]
    px.write("g.yaml", dump(mapping("g", "/g/", f"127.0.0.1:{hport}", grpc=True,
                                    stats_name="g", health_checks=checks)))
    px.start()
    srv.wait_log(r"CHECK service=quote\.v1 ua=Envoy/HC")

    def healthy(n):
        v, _ = poll_until(lambda: px.metric("envoy_cluster_membership_healthy",
                                            envoy_cluster_name="g") == n, 3.0, 0.02)
        assert v, (px.metric("envoy_cluster_membership_healthy", envoy_cluster_name="g"),
                   px.proc.log_tail())

    healthy(1)
    srv.send_signal(signal.SIGUSR1)  # NOT_SERVING: unhealthy at once
    healthy(0)
    srv.send_signal(signal.SIGUSR2)
    healthy(1)


def test_invalid_health_checks_are_errors(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    bad = [
        ({"health_check": {"http": {"hostname": "x"}}}, "health_check.http.path: required"),
        ({"health_check": {}}, "exactly one of http or grpc"),
        ({"health_check": {"http": {"path": "/"}, "grpc": {"upstream_name": "x"}}},
         "exactly one of http or grpc"),
        ({"interval": "5 seconds", "health_check": {"http": {"path": "/"}}},
         'interval: expected a positive duration such as "5s" or "100ms" (got "5 seconds")'),
        ({"timeout": "0s", "health_check": {"http": {"path": "/"}}}, "timeout: expected a positive"),
        ({"health_check": {"grpc": {"upstream_name": "x"}}}, "needs grpc: true on the Mapping"),
        ({"health_check": {"http": {"path": "/", "expected_statuses": [{"min": 300, "max": 200}]}}},
         "expected_statuses[0]: min 300 is above max 200"),
        ({"unhealthy_threshold": 0, "health_check": {"http": {"path": "/"}}}, "unhealthy_threshold"),
    ]
    for i, (hc, msg) in enumerate(bad):
        (d / "m.yaml").write_text(dump(mapping("m", "/m/", "127.0.0.1:1", health_checks=[hc])))
        r = check(d)
        assert r.returncode == 1, (hc, r.stdout, r.stderr)
        assert msg in r.stdout + r.stderr, (hc, msg, r.stdout + r.stderr)
    good = {"interval": "1.5s", "timeout": "250ms", "healthy_threshold": 2,
            "health_check": {"http": {"path": "/healthz"}}}
    (d / "m.yaml").write_text(dump(mapping("m", "/m/", "127.0.0.1:1", health_checks=[good])))
    r = check(d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "health_checks" not in r.stdout + r.stderr  # no unknown-field notice either
