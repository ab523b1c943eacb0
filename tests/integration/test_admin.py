"""The admin port (check_alive, check_ready, diag, metrics) and process lifecycle (SIGTERM drain,
second signal). DESIGN.md "The contract"; reference/emissary.md §4."""

import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import start_quote
from portico_cfg import Portico, dump, http_get, line_of, mapping, poll_until


def px_with_backend(processes, tmp_path, backend, **kw):
    px = Portico(processes, tmp_path, **kw)
    px.write("routes.yaml", dump(mapping("quote", "/backend/", f"127.0.0.1:{backend.port}")))
    return px


def wait_exit(px, timeout):
    """Seconds until the process exits, or None if it did not within <timeout>."""
    t0 = time.monotonic()
    try:
        px.proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


# ---- health ----

def test_check_alive_and_ready(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend)
    px.start(wait_ready=False, wait_listener=False)
    r = px.admin("/ambassador/v0/check_alive")
    assert r.status == 200 and b"alive" in r.body
    ok, _ = poll_until(lambda: px.admin("/ambassador/v0/check_ready").status == 200, 5)
    assert ok
    r = px.admin("/ambassador/v0/check_ready")
    assert b"ready" in r.body
    # still alive and ready while serving
    assert px.get("/backend/").status == 200
    for _ in range(5):
        assert px.admin("/ambassador/v0/check_alive").status == 200
        assert px.admin("/ambassador/v0/check_ready").status == 200


def test_check_alive_with_an_empty_config_dir(processes, tmp_path):
    px = Portico(processes, tmp_path, with_listener=False)
    px.start(wait_ready=False, wait_listener=False)
    assert px.admin("/ambassador/v0/check_alive").status == 200


def test_unknown_admin_path_is_404(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend).start()
    assert px.admin("/no/such/thing").status == 404


# ---- diag ----

def test_diag_lists_resources_with_locations(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend)
    f = px.write("more.yaml", dump(mapping("other", "/other/", "127.0.0.1:9", namespace="ns1")))
    px.start()
    d = px.diag()
    assert {"resources", "errors", "notices", "clusters"} <= set(d), d.keys()
    res = {(r["kind"], r["namespace"], r["name"]): r for r in d["resources"]}
    for r in d["resources"]:
        assert {"kind", "name", "namespace", "location"} <= set(r), r
    assert ("Listener", "default", "http-listener") in res
    assert ("Mapping", "default", "quote") in res
    other = res[("Mapping", "ns1", "other")]
    assert other["location"] == f"{f}:{line_of(f, 'apiVersion')}", other
    assert d["errors"] == []
    names = [c.get("service") for c in d["clusters"]]
    assert f"127.0.0.1:{quote_backend.port}" in names, d["clusters"]


def test_diag_without_json_parameter_still_answers(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend).start()
    assert px.admin("/ambassador/v0/diag/").status == 200


# ---- metrics ----

def test_metrics_count_requests(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend).start()
    r = px.admin("/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    before = px.metric("envoy_http_downstream_rq_total")
    assert before is not None, r.body[:500]
    for _ in range(7):
        assert px.get("/backend/").status == 200
    for _ in range(3):
        assert px.get("/nope/").status == 404
    # counters are summed from per-worker blocks on scrape; give the workers a moment
    ok, _ = poll_until(lambda: px.metric("envoy_http_downstream_rq_total") - before == 10, 2, 0.02)
    assert ok, (before, px.metric("envoy_http_downstream_rq_total"))
    assert px.metric("envoy_http_downstream_rq_xx", envoy_response_code_class="2") >= 7
    assert px.metric("envoy_http_downstream_rq_xx", envoy_response_code_class="4") >= 3


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_metrics_pass_promtool(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend).start()
    px.get("/backend/")
    text = px.metrics()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=20)
    # promtool exits 1 for lint warnings too (e.g. missing HELP); only parse errors matter here
    assert "error while linting" not in (r.stdout + r.stderr), r.stdout + r.stderr
    assert "text format parsing error" not in (r.stdout + r.stderr), r.stdout + r.stderr


# ---- SIGTERM ----


@pytest.mark.parametrize("workers,requests", [
    pytest.param(1, 1, id="1worker-used"),
    pytest.param(1, 0, id="1worker-unused"),
    pytest.param(2, 0, id="2workers-unused"),
])
def test_sigterm_idle_exits_zero_within_a_second(processes, tmp_path, quote_backend, workers,
                                                 requests):
    px = px_with_backend(processes, tmp_path, quote_backend, workers=workers).start()
    for _ in range(requests):
        assert px.get("/backend/").status == 200
    time.sleep(0.1)
    px.signal(signal.SIGTERM)
    dt = wait_exit(px, 3)
    assert dt is not None, "did not exit within 3 s"
    assert dt < 1.0, dt
    assert px.proc.returncode == 0


def _sigterm_during_slow_request(processes, tmp_path, workers):
    backend = start_quote(processes, name="slow")
    px = px_with_backend(processes, tmp_path, backend, workers=workers,
                         env={"AMBASSADOR_DRAIN_TIME": "5"}).start()
    result = {}

    def slow():
        t0 = time.monotonic()
        try:
            r = http_get(px.port, "/backend/delay/1000", timeout=10)
            result["status"] = r.status
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = repr(e)
        result["t"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    px.signal(signal.SIGTERM)
    time.sleep(0.2)
    # no longer accepting: a new connection is refused (or reset) while draining
    refused = False
    try:
        with socket.create_connection(("127.0.0.1", px.port), timeout=1) as s:
            s.sendall(b"GET /backend/ HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = s.recv(100) == b""
    except OSError:
        refused = True
    t.join(10)
    dt = wait_exit(px, 3)
    return result, refused, dt, px


def test_sigterm_drains_in_flight_request_one_worker(processes, tmp_path):
    result, refused, dt, px = _sigterm_during_slow_request(processes, tmp_path, 1)
    assert result.get("status") == 200, result
    assert 0.9 < result["t"] < 2.5, result
    assert refused, "new connections are still accepted after SIGTERM"
    assert dt is not None, "did not exit after the drain"
    assert px.proc.returncode == 0


def test_sigterm_drains_in_flight_request_four_workers(processes, tmp_path):
    # Only two connections reach the listener (the readiness probe and the slow request), so
    # with four workers at least two never had a connection: the hang is deterministic.
    result, refused, dt, px = _sigterm_during_slow_request(processes, tmp_path, 4)
    assert result.get("status") == 200, result
    assert refused
    assert dt is not None, "did not exit after the drain"
    assert px.proc.returncode == 0


def test_second_sigterm_exits_at_once(processes, tmp_path):
    backend = start_quote(processes, name="slow")
    px = px_with_backend(processes, tmp_path, backend, workers=1,
                         env={"AMBASSADOR_DRAIN_TIME": "30"}).start()
    t = threading.Thread(target=lambda: _quiet_get(px.port, "/backend/delay/4000"))
    t.start()
    time.sleep(0.3)
    px.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert px.proc.running, "exited before the in-flight request finished"
    px.signal(signal.SIGTERM)
    dt = wait_exit(px, 3)
    assert dt is not None and dt < 0.5, dt
    t.join(10)


def _quiet_get(port, path):
    try:
        http_get(port, path, timeout=10)
    except Exception:  # noqa: BLE001 - the process is killed under it on purpose
        pass


def test_sigint_behaves_like_sigterm(processes, tmp_path, quote_backend):
    px = px_with_backend(processes, tmp_path, quote_backend, workers=1).start()
    assert px.get("/backend/").status == 200
    time.sleep(0.1)
    px.signal(signal.SIGINT)
    dt = wait_exit(px, 3)
    assert dt is not None and dt < 1.0, dt
    assert px.proc.returncode == 0
