"""Hot restart with AMBASSADOR_ENVOY_BASE_ID: a new portico takes over the listening sockets of
the running one with the same base id, which drains and exits, losing no request; portico
processes with different base ids never interfere."""

import os
import threading
import time

import requests

from conftest import binary, free_port

CONFIG = """\
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec: {{port: {port}, protocol: HTTP, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: quote}}
spec: {{hostname: "*", prefix: /backend/, service: "127.0.0.1:{backend}"}}
"""


def start(processes, config_dir, base_id, workers, name, admin=None):
    admin = admin or free_port()
    env = dict(os.environ, AMBASSADOR_ENVOY_BASE_ID=str(base_id), AMBASSADOR_DRAIN_TIME="10")
    proc = processes.start([str(binary("portico")), "run", "--config", str(config_dir),
                            "--workers", str(workers), "--admin-port", str(admin)],
                           name=name, port=admin, env=env)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{admin}/ambassador/v0/check_ready",
                            timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{name} never became ready:\n{proc.log()}")


def load(port, stop, results):
    """New connections and keep-alive sessions alike, until told to stop."""
    session = requests.Session()
    while not stop.is_set():
        for client in (session, requests):
            try:
                r = client.get(f"http://127.0.0.1:{port}/backend/", timeout=5)
                results.append(r.status_code)
            except requests.RequestException as e:
                results.append(repr(e))


def test_takeover_loses_no_request(processes, quote_backend, tmp_path):
    port = free_port()
    (tmp_path / "c.yaml").write_text(CONFIG.format(port=port, backend=quote_backend.port))
    old = start(processes, tmp_path, 41, 2, "portico-old")
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=load, args=(port, stop, results)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        new = start(processes, tmp_path, 41, 1, "portico-new")
        deadline = time.time() + 10
        while old.running and time.time() < deadline:
            time.sleep(0.05)
        assert not old.running, "the old process did not drain and exit"
        assert old.returncode == 0
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    failures = [r for r in results if r != 200]
    assert len(results) > 100
    assert failures == [], f"{len(failures)} of {len(results)} failed: {failures[:5]}"
    assert "took over 2 listening sockets" in new.log()
    assert requests.get(f"http://127.0.0.1:{port}/backend/", timeout=5).status_code == 200


def test_different_base_ids_do_not_interfere(processes, quote_backend, tmp_path):
    port = free_port()
    (tmp_path / "c.yaml").write_text(CONFIG.format(port=port, backend=quote_backend.port))
    first = start(processes, tmp_path, 51, 1, "portico-a")
    second = start(processes, tmp_path, 52, 1, "portico-b")
    # The second one neither took the sockets nor shared the port: it says the port is taken.
    second.wait_log(r"cannot listen on port %d: it is in use by another process" % port, timeout=5)
    assert "took over" not in second.log()
    assert first.running and second.running
    for _ in range(50):
        assert requests.get(f"http://127.0.0.1:{port}/backend/", timeout=5).status_code == 200
    assert "ACCESS" not in second.log()  # every request went to the first one


def test_takeover_shares_the_admin_port(processes, quote_backend, tmp_path):
    """The new process may use the admin port of the old one (Kubernetes probes keep working):
    both serve it until the old one has drained, then the new one alone."""
    port, admin = free_port(), free_port()
    (tmp_path / "c.yaml").write_text(CONFIG.format(port=port, backend=quote_backend.port))
    old = start(processes, tmp_path, 42, 1, "portico-old", admin=admin)
    new = start(processes, tmp_path, 42, 1, "portico-new", admin=admin)
    deadline = time.time() + 10
    while old.running and time.time() < deadline:
        time.sleep(0.05)
    assert not old.running and old.returncode == 0, old.log()
    assert new.running
    for _ in range(5):
        r = requests.get(f"http://127.0.0.1:{admin}/ambassador/v0/check_ready", timeout=2)
        assert r.status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/backend/", timeout=2).status_code == 200
