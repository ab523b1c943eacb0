"""Black-box tests of /metrics on the admin port: Prometheus text that `promtool check metrics`
parses, Envoy's names, labels, types and ordering (reference/envoy-compat.md §1), and Portico's
own portico_* series. One Portico with two workers in front of the quote backend."""

import re
import subprocess
import time

import pytest
import requests

from conftest import binary, start_quote
from portico import docs, endpoints_yaml, listener_yaml, mapping_yaml, service_yaml, start_portico

def config(port, backend):
    """A Listener on <port>, the quote Service and its Endpoints at 127.0.0.1:<backend>, and the
    quote-backend Mapping."""
    return docs(listener_yaml(port), service_yaml("quote", 80, backend),
                endpoints_yaml("quote", ["127.0.0.1"], backend), mapping_yaml("quote-backend", "quote"))

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (-?[0-9.e+]+)$')


class Portico:
    def __init__(self, proc, port, admin, config_dir):
        self.proc, self.port, self.admin, self.config_dir = proc, port, admin, config_dir

    def metrics(self):
        r = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5)
        assert r.status_code == 200
        return r

    def series(self):
        """{(name, labels-text): value} of the current page."""
        out = {}
        for line in self.metrics().text.splitlines():
            if line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            out[(m.group(1), m.group(2))] = float(m.group(3))
        return out

    def stats_name(self):
        diag = requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/diag/?json=true",
                            timeout=5).json()
        return diag["clusters"][0]["stats_name"]


@pytest.fixture
def portico(processes, tmp_path):
    backend = start_quote(processes)
    p = start_portico(processes, tmp_path, config("$PORT", backend.port), workers=2)
    return Portico(p.proc, p.port, p.admin_port, p.config_dir)


def promtool(text):
    """(exit status, report lines) of `promtool check metrics`."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode().splitlines()


def lint_is_envoys(line):
    """The lints that Envoy's own names and its no-HELP output imply (and that no dashboard
    should be broken to avoid); Portico's own series may only lack HELP."""
    name = line.split(" ", 1)[0]
    if line.endswith(" no help text"):
        return True
    if not name.startswith("envoy_"):
        return False
    return (line.endswith('counter metrics should have "_total" suffix')
            or (name == "envoy_cluster_membership_total"
                and line.endswith('non-counter metrics should not have "_total" suffix'))
            or (name.endswith("_ms") and line.endswith("should not contain abbreviated units")))


def test_page_passes_promtool(portico):
    r = portico.metrics()
    assert r.headers["content-type"].startswith("text/plain")
    rc, report = promtool(r.text)
    assert rc in (0, 3), "\n".join(report)  # 1 would mean the text does not parse
    assert [line for line in report if not lint_is_envoys(line)] == []


def test_layout_follows_envoy(portico):
    text = portico.metrics().text
    assert "# HELP" not in text
    order = {"counter": 0, "gauge": 1, "histogram": 2}
    seen, last, family = set(), (0, ""), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in seen
            seen.add(name)
            assert (order[kind], name) > last, f"{line} is out of order"
            last, family = (order[kind], name), (name, kind)
            continue
        name = SAMPLE.match(line).group(1)
        if family[1] == "histogram":
            assert name in (family[0] + "_bucket", family[0] + "_sum", family[0] + "_count")
        else:
            assert name == family[0]
    assert "envoy_server_live{} 1" in text.splitlines()


def test_server_cluster_and_portico_series(portico, tmp_path):
    s = portico.series()
    cluster = f'envoy_cluster_name="{portico.stats_name()}"'
    assert s[("envoy_server_live", "")] == 1
    assert s[("envoy_server_uptime", "")] >= 0
    assert s[("envoy_cluster_manager_active_clusters", "")] == 1
    assert s[("envoy_cluster_membership_total", cluster)] == 1
    assert s[("envoy_cluster_membership_healthy", cluster)] == 1
    assert s[("envoy_cluster_upstream_rq_total", cluster)] >= 0
    assert s[("envoy_http_downstream_rq_total",
              'envoy_http_conn_manager_prefix="ingress_http"')] >= 0
    for cls in "12345":  # static in Envoy: present before any request
        assert ("envoy_http_downstream_rq_xx", f'envoy_response_code_class="{cls}",'
                'envoy_http_conn_manager_prefix="ingress_http"') in s
    assert not any(name == "envoy_cluster_upstream_rq" for name, _ in s)  # dynamic: none yet
    assert ("envoy_listener_downstream_cx_total",
            f'envoy_listener_address="0.0.0.0_{portico.port}"') in s
    assert s[("portico_config_reloads_total", 'result="ok"')] >= 1
    assert s[("portico_config_reloads_total", 'result="failed"')] == 0
    assert ("portico_resources", 'kind="Mapping"') in s
    assert ("portico_invalid_resources", "") in s
    assert s[("portico_tracing_spans_total", 'result="sent"')] == 0
    assert not any(name == "portico_certificate_expiry_seconds" for name, _ in s)


def test_build_info_and_concurrency(portico):
    s = portico.series()
    version = subprocess.run([str(binary("portico")), "--version"], capture_output=True,
                             text=True).stdout.split()[1]  # "portico 0.1.0 (features: ...)"
    info = [labels for name, labels in s if name == "portico_build_info"]
    assert info == [f'version="{version}"']
    assert s[("portico_build_info", info[0])] == 1
    assert s[("envoy_server_concurrency", "")] == 2  # registered worker blocks


def test_failed_reload_is_counted(portico):
    (portico.config_dir / "broken.yaml").write_text("kind: Mapping\nspec: [unclosed\n")
    deadline = time.time() + 10
    while portico.series()[("portico_config_reloads_total", 'result="failed"')] < 1:
        assert time.time() < deadline, "the failed reload was never counted"
        time.sleep(0.1)
    assert portico.series()[("envoy_server_live", "")] == 1  # the last good snapshot stays


def test_requests_are_counted(portico):
    """The request path's counters, summed over both workers."""
    for _ in range(3):
        assert requests.get(f"http://127.0.0.1:{portico.port}/backend/",
                            timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{portico.port}/nothing-here",
                        timeout=5).status_code == 404
    cluster = f'envoy_cluster_name="{portico.stats_name()}"'
    hcm = 'envoy_http_conn_manager_prefix="ingress_http"'
    # a worker counts a request once its last byte is out: the client may read it a moment before
    deadline = time.monotonic() + 2
    while (s := portico.series()).get(("envoy_http_downstream_rq_time_count", hcm)) != 4 and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    assert s[("envoy_cluster_upstream_rq_total", cluster)] == 3
    assert s[("envoy_cluster_upstream_rq", f'envoy_response_code="200",{cluster}')] == 3
    assert s[("envoy_cluster_upstream_rq_xx", f'envoy_response_code_class="2",{cluster}')] == 3
    assert ("envoy_cluster_upstream_rq_xx", f'envoy_response_code_class="5",{cluster}') not in s
    assert s[("envoy_cluster_upstream_rq_time_count", cluster)] == 3
    assert s[("envoy_cluster_upstream_rq_time_bucket", f'{cluster},le="+Inf"')] == 3
    assert s[("envoy_http_downstream_rq_total", hcm)] == 4
    assert s[("envoy_http_downstream_rq_xx", f'envoy_response_code_class="2",{hcm}')] == 3
    assert s[("envoy_http_downstream_rq_xx", f'envoy_response_code_class="4",{hcm}')] == 1
    assert s[("envoy_http_downstream_rq_time_count", hcm)] == 4
    assert s[("envoy_http_downstream_cx_total", hcm)] >= 1
    assert s[("envoy_listener_downstream_cx_total",
              f'envoy_listener_address="0.0.0.0_{portico.port}"')] >= 1
    assert s[("envoy_cluster_upstream_cx_total", cluster)] >= 1
    assert s[("envoy_cluster_upstream_rq_active", cluster)] == 0
    rc, report = promtool(portico.metrics().text)
    assert rc in (0, 3), "\n".join(report)
