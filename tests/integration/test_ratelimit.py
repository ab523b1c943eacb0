"""RateLimitService, `protocol_version: v3` (issue 12, points 4, 6, 7):
envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit against a real gRPC rate-limit
server (policy_peer): the domain, Mapping labels turned into descriptors as Emissary does
(generic_key, request_headers — the descriptor skipped when the header is absent —,
remote_address, source_cluster, destination_cluster), the Module's default_labels, OVER_LIMIT
answered 429 with x-envoy-ratelimited and the service's headers, request and response headers
of an OK, errors passing unless failure_mode_deny (500), gRPC clients' status."""

import threading

import pytest
import requests

from conftest import free_port, start_quote
from policy_peer import start_ratelimit
from tlsenv import mapping_yaml, metric, start_portico

LABELS = """\
  labels:
    ambassador:
    - first_group:
      - generic_key:
          value: static
      - request_headers:
          key: x-limit
          header_name: x-limit
    - second_group:
      - remote_address:
          key: remote_address
      - destination_cluster:
          key: destination_cluster
      - source_cluster:
          key: source_cluster
"""


def rls_yaml(port, extra="", timeout_ms=1000):
    return f"""\
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata:
  name: ratelimit
spec:
  service: "127.0.0.1:{port}"
  protocol_version: v3
{f"  timeout_ms: {timeout_ms}" if timeout_ms is not None else ""}
{extra}"""


@pytest.fixture
def echo(processes):
    return start_quote(processes, "--echo")


@pytest.fixture
def rls(processes):
    return start_ratelimit(processes)


def start(processes, tmp_path, echo, *docs, labels=LABELS):
    return start_portico(processes, tmp_path, *docs,
                         mapping_yaml("echo", f"127.0.0.1:{echo.port}", prefix="/backend/", extra=labels),
                         mapping_yaml("nolabels", f"127.0.0.1:{echo.port}", prefix="/plain/"))




def test_descriptors_as_emissary_builds_them(processes, tmp_path, echo, rls):
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "alice"}, timeout=5)
    assert r.status_code == 200
    (rec,) = rls.wait_records(1)
    assert rec["domain"] == "ambassador"
    assert rec["descriptors"] == [
        [["generic_key", "static"], ["x-limit", "alice"]],
        [["remote_address", "127.0.0.1"], ["destination_cluster", f"cluster_127_0_0_1_{echo.port}_default"],
         ["source_cluster", "ambassador-default"]],
    ]
    # the header absent: the first descriptor is not sent
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5)
    assert r.status_code == 200
    rec = rls.wait_records(2)[1]
    assert len(rec["descriptors"]) == 1 and rec["descriptors"][0][0][0] == "remote_address"
    # no labels, no defaults: no call at all
    assert requests.get(f"http://127.0.0.1:{edge.http}/plain/", timeout=5).status_code == 200
    assert len(rls.records()) == 2


def test_over_limit_429(processes, tmp_path, echo, rls):
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "over"}, timeout=5)
    assert r.status_code == 429
    assert r.headers["x-envoy-ratelimited"] == "true"
    assert r.headers["x-ratelimit-test"] == "over"
    assert r.text == ""
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "over-body"}, timeout=5)
    assert r.status_code == 429
    assert r.text == "rate limited by policy-peer\n"
    assert metric(edge, "envoy_cluster_ratelimit_over_limit") == 2


def test_ok_adds_request_headers(processes, tmp_path, echo, rls):
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "addhdr"}, timeout=5)
    assert r.status_code == 200
    assert ["x-ratelimit-ok", "yes"] in [[k.lower(), v] for k, v in r.json()["headers"]]
    assert metric(edge, "envoy_cluster_ratelimit_ok") == 1


def test_errors_pass_unless_failure_mode_deny(processes, tmp_path, echo, rls):
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port, timeout_ms=200))
    assert requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "fail"},
                        timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "sleep-2000"},
                        timeout=5).status_code == 200
    assert metric(edge, "envoy_cluster_ratelimit_error") == 2
    assert metric(edge, "envoy_cluster_ratelimit_failure_mode_allowed") == 2
    edge2 = start(processes, tmp_path / "b", echo, rls_yaml(rls.port, "  failure_mode_deny: true\n"))
    r = requests.get(f"http://127.0.0.1:{edge2.http}/backend/", headers={"x-limit": "fail"}, timeout=5)
    assert r.status_code == 500
    # a dead service too
    edge3 = start(processes, tmp_path / "c", echo, rls_yaml(free_port(), "  failure_mode_deny: true\n"))
    assert requests.get(f"http://127.0.0.1:{edge3.http}/backend/", timeout=5).status_code == 500


def test_default_timeout_is_20ms(processes, tmp_path, echo, rls):
    doc = rls_yaml(rls.port, timeout_ms=None)
    edge = start(processes, tmp_path, echo, doc)
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "sleep-500"}, timeout=5)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() < 0.4
    assert metric(edge, "envoy_cluster_ratelimit_error") == 1


def test_module_default_labels_and_domain(processes, tmp_path, echo, rls):
    module = """\
---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata:
  name: ambassador
spec:
  config:
    default_label_domain: edge
    default_labels:
      edge:
        defaults:
        - generic_key:
            value: from-defaults
"""
    labels = """\
  labels:
    edge:
    - mine:
      - generic_key:
          key: route
          value: echo
    other:
    - ignored:
      - generic_key:
          value: never
"""
    edge = start(processes, tmp_path, echo, module, rls_yaml(rls.port), labels=labels)
    assert requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{edge.http}/plain/", timeout=5).status_code == 200
    recs = rls.wait_records(2)
    assert recs[0]["domain"] == "edge"
    assert recs[0]["descriptors"] == [[["generic_key", "from-defaults"], ["route", "echo"]]]
    assert recs[1]["descriptors"] == [[["generic_key", "from-defaults"]]]


def test_grpc_client_status(processes, tmp_path, rls):
    from grpc_peer import Client, start_server
    peer = start_server(processes)
    labels = "  labels:\n    ambassador:\n    - g:\n      - request_headers:\n          key: k\n          header_name: x-limit\n"
    for exhausted, code in ((False, "UNAVAILABLE"), (True, "RESOURCE_EXHAUSTED")):
        extra = "  grpc:\n    use_resource_exhausted_code: true\n" if exhausted else ""
        edge = start_portico(processes, tmp_path / code, rls_yaml(rls.port, extra),
                             mapping_yaml("grpc", f"127.0.0.1:{peer.port}", prefix="/portico.peer.Peer/",
                                          extra="  rewrite: \"\"\n  grpc: true\n" + labels))
        r = Client(edge.http).unary(metadata=(("x-limit", "over"),))
        assert r.code.name == code


def test_1000_requests_none_misjudged(processes, tmp_path, echo, rls):
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port))
    errors = []

    def worker(k):
        s = requests.Session()
        for i in range(250):
            over = (i * 7 + k) % 5 == 0
            r = s.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": "over" if over else f"u{k}"},
                      timeout=10)
            if r.status_code != (429 if over else 200):
                errors.append((k, i, r.status_code))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    assert len(rls.wait_records(1000)) == 1000


def test_v2_and_several_are_errors(processes, tmp_path):
    import subprocess
    from conftest import binary
    (tmp_path / "r.yaml").write_text(rls_yaml(1).replace("  protocol_version: v3\n", ""))
    out = subprocess.run([binary("portico"), "check", str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "r.yaml:" in out.stdout + out.stderr
    assert "protocol_version must be" in out.stdout + out.stderr


def test_large_descriptor_value_is_sent(processes, tmp_path, echo, rls):
    """A header value used by a descriptor, larger than any fixed buffer: the request is still
    sent (never skipped, which would let the client choose to go unlimited)."""
    edge = start(processes, tmp_path, echo, rls_yaml(rls.port))
    big = "u" * 50000
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-limit": big}, timeout=5)
    assert r.status_code == 200
    (rec,) = rls.wait_records(1)
    assert rec["descriptors"][0] == [["generic_key", "static"], ["x-limit", big]]
    assert len(rec["descriptors"]) == 2
