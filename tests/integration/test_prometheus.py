"""A real Prometheus server scrapes Portico's admin /metrics (reference/envoy-compat.md §1):
the page must be accepted by Prometheus' own parser, and the queries the Envoy/Emissary
dashboards run (§1.5) must give the request counts the test sent."""

import math
import subprocess
import time

import pytest
import requests

from conftest import binary, free_port, start_quote
from portico import docs, listener_yaml, mapping_yaml

PROMETHEUS_YML = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: portico
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{admin}"]
"""

START_TIMEOUT = 15.0


class Prometheus:
    def __init__(self, proc, port, admin):
        self.proc, self.port, self.admin = proc, port, admin
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr):
        """{frozenset(labels.items()): value} of an instant query."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in data["result"]}

    def scalar(self, expr):
        result = self.query(expr)
        assert len(result) == 1, f"{expr} -> {result}"
        return next(iter(result.values()))

    def target(self):
        targets = self.api("targets")["activeTargets"]
        assert len(targets) == 1, targets
        return targets[0]

    def wait_scrape_after(self, t, timeout=10.0):
        """Waits until the samples of a scrape that started after wall-clock time <t> can be
        queried (the `up` sample carries the scrape's start time); returns the target. Fails on
        a scrape error."""
        deadline = time.monotonic() + timeout
        while True:
            stamps = self.query('timestamp(up{job="portico"})')
            if stamps and max(stamps.values()) > t:
                target = self.target()
                assert target["health"] == "up", target
                assert target["lastError"] == "", target
                assert self.scalar('up{job="portico"}') == 1
                return target
            assert time.monotonic() < deadline, f"no scrape after the requests: {self.target()}"
            time.sleep(0.1)


@pytest.fixture
def portico(processes, tmp_path):
    backend = start_quote(processes, "--echo")
    port, admin = free_port(), free_port()
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "edge.yaml").write_text(docs(listener_yaml(port), mapping_yaml("quote-backend", f"127.0.0.1:{backend.port}")))
    proc = processes.start([binary("portico"), "run", "--config", cfg, "--admin-port", admin,
                            "--workers", 2], port=admin)
    deadline = time.monotonic() + 10
    while requests.get(f"http://127.0.0.1:{admin}/ambassador/v0/check_ready",
                       timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "Portico never became ready"
        time.sleep(0.05)
    proc.port, proc.admin = port, admin
    proc.stats_name = f"127_0_0_1_{backend.port}"
    return proc


@pytest.fixture
def prometheus(processes, tmp_path, portico):
    if subprocess.run(["which", "prometheus"], capture_output=True).returncode != 0:
        pytest.skip("prometheus is not installed")
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(PROMETHEUS_YML.format(admin=portico.admin))
    tsdb = tmp_path / "tsdb"
    proc = processes.start(["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tsdb}",
                            f"--web.listen-address=127.0.0.1:{port}"], name="prometheus",
                           port=port, timeout=START_TIMEOUT)
    prom = Prometheus(proc, port, portico.admin)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if requests.get(f"{prom.url}/-/ready", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert proc.running, proc.log_tail()
        assert time.monotonic() < deadline, f"Prometheus not ready in {START_TIMEOUT}s\n" \
                                            f"{proc.log_tail()}"
        time.sleep(0.1)
    yield prom
    assert proc.stop(timeout=10) in (0, -9, -15), proc.log_tail()  # stopped at teardown


def test_prometheus_counts_the_requests(portico, prometheus):
    # a scrape before any request (the first comes ~5 s after start: discovery is throttled)
    prometheus.wait_scrape_after(time.time(), timeout=15)
    assert prometheus.scalar("sum(envoy_cluster_upstream_rq_total)") == 0
    n_ok, n_missing = 23, 2
    with requests.Session() as s:
        for i in range(n_ok):
            assert s.get(f"http://127.0.0.1:{portico.port}/backend/{i}", timeout=5) \
                .status_code == 200
        for i in range(n_missing):
            assert s.get(f"http://127.0.0.1:{portico.port}/nowhere/{i}", timeout=5) \
                .status_code == 404
    prometheus.wait_scrape_after(time.time())

    cluster = f'envoy_cluster_name="{portico.stats_name}"'
    hcm = 'envoy_http_conn_manager_prefix="ingress_http"'
    assert prometheus.scalar("sum(envoy_cluster_upstream_rq_total)") == n_ok
    assert prometheus.scalar(f"envoy_cluster_upstream_rq_total{{{cluster}}}") == n_ok
    assert prometheus.scalar(f'envoy_cluster_upstream_rq{{{cluster},envoy_response_code="200"}}') \
        == n_ok
    by_class = prometheus.query(
        "sum by (envoy_response_code_class) (envoy_cluster_upstream_rq_xx)")
    assert {dict(k)["envoy_response_code_class"]: v for k, v in by_class.items()} == \
        {"2": n_ok}
    assert prometheus.scalar(f"envoy_http_downstream_rq_total{{{hcm}}}") == n_ok + n_missing
    by_class = prometheus.query(
        f"sum by (envoy_response_code_class) (envoy_http_downstream_rq_xx{{{hcm}}})")
    counts = {dict(k)["envoy_response_code_class"]: v for k, v in by_class.items()}
    assert counts == {"1": 0, "2": n_ok, "3": 0, "4": n_missing, "5": 0}
    # the histogram as the golden-signals dashboards read it
    assert prometheus.scalar(f"envoy_cluster_upstream_rq_time_count{{{cluster}}}") == n_ok
    assert prometheus.scalar(
        f'envoy_cluster_upstream_rq_time_bucket{{{cluster},le="+Inf"}}') == n_ok
    p99 = prometheus.scalar(f"histogram_quantile(0.99, sum by (le) "
                            f"(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}))")
    assert not math.isnan(p99) and 0 <= p99 <= 1000, p99
    # the counter went 0 -> n between two scrapes, as rate()/increase() see it
    assert prometheus.scalar(f"max_over_time(envoy_cluster_upstream_rq_total{{{cluster}}}[1m]) "
                             f"- min_over_time(envoy_cluster_upstream_rq_total{{{cluster}}}[1m])"
                             ) == n_ok
    assert prometheus.scalar(f'envoy_cluster_membership_healthy{{{cluster}}}') == 1
    assert prometheus.scalar("envoy_server_live") == 1
    assert prometheus.scalar('up{job="portico"}') == 1
    assert prometheus.scalar('scrape_samples_scraped{job="portico"}') > 50
    # labels survive the trip: job/instance added, Envoy's labels kept as they are
    series = prometheus.api("series", **{"match[]": "envoy_cluster_upstream_rq_total"})
    assert series == [{"__name__": "envoy_cluster_upstream_rq_total",
                       "envoy_cluster_name": portico.stats_name,
                       "instance": f"127.0.0.1:{portico.admin}", "job": "portico"}]


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode().splitlines()


def lint_is_allowed(line):
    """Envoy's output has no HELP lines, and Envoy's own names break some naming lints:
    counters without _total, the gauge envoy_cluster_membership_total, *_ms units. Any of those
    on a portico_* series (Portico's own names) is not allowed, except the missing HELP."""
    name = line.split(" ", 1)[0]
    if line == f"{name} no help text":
        return True
    if not name.startswith("envoy_"):
        return False
    return (line == f'{name} counter metrics should have "_total" suffix'
            or line == f'{name} non-counter metrics should not have "_total" suffix'
            or (name.endswith("_ms") and line == f"{name} metric names should not contain "
                                                 "abbreviated units"))


def test_promtool_accepts_the_scraped_page(portico, prometheus):
    with requests.Session() as s:
        for i in range(5):
            s.get(f"http://127.0.0.1:{portico.port}/backend/{i}", timeout=5)
        s.get(f"http://127.0.0.1:{portico.port}/nowhere", timeout=5)
    target = prometheus.wait_scrape_after(time.time(), timeout=15)
    page = requests.get(target["scrapeUrl"], timeout=5)  # the URL Prometheus scrapes
    assert page.status_code == 200
    rc, report = promtool(page.text)
    assert rc != 1, "promtool cannot parse the page:\n" + "\n".join(report)
    assert rc in (0, 3), "\n".join(report)
    assert [line for line in report if not lint_is_allowed(line)] == []
    assert any(line.endswith(" no help text") for line in report)  # Envoy prints no HELP
