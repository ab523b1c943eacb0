"""The Module's `grpc_stats` (issue 11 point 3, Envoy's grpc_stats filter): per cluster, the gRPC
calls that ended with a grpc-status (success / failure / total), the messages each way (counted
from the 5-byte message prefixes), and with `upstream_stats` the upstream time, as Envoy's
cluster.<c>.grpc[.<service>.<method>].<stat> exported to Prometheus: envoy_cluster_grpc_<stat>
{envoy_cluster_name, envoy_grpc_bridge_method, envoy_grpc_bridge_service}. A real gRPC client
(python3-grpcio) calls a real gRPC server (grpc_peer) through Portico; the exact series lines of
/metrics are checked. Methods not allowlisted count in the generic series (cluster label only);
with `all_methods` at most 32 methods per cluster (per worker) get their own.
"""

import re
import time

import grpc
import pytest
import requests

from grpc_peer import Client, request, start_server
from portico_cfg import check, doc, dump, line_of, mapping
from tlsenv import mapping_yaml, start_portico

SVC = "portico.peer.Peer"


def module(cfg):
    return dump(doc("Module", "ambassador", {"config": {"grpc_stats": cfg}}))


def grpc_mapping(port, name="grpc"):
    return mapping_yaml(name, f"127.0.0.1:{port}", prefix=f"/{SVC}/",
                        extra="  rewrite: \"\"\n  grpc: true\n")


@pytest.fixture
def peer(processes):
    return start_server(processes)


def grpc_lines(edge):
    text = requests.get(f"http://127.0.0.1:{edge.admin}/metrics", timeout=5).text
    return [l for l in text.splitlines() if l.startswith("envoy_cluster_grpc_")]


def cluster_of(edge):
    """The stats name of the gRPC cluster (the only one with grpc series)."""
    for l in grpc_lines(edge):
        m = re.search(r'envoy_cluster_name="([^"]+)"', l)
        if m:
            return m.group(1)
    pytest.fail("no envoy_cluster_grpc_ series", pytrace=False)


def series(stat, cluster, method=None):
    labels = f'envoy_cluster_name="{cluster}"'
    if method is not None:
        labels += f',envoy_grpc_bridge_method="{method}",envoy_grpc_bridge_service="{SVC}"'
    return f"envoy_cluster_grpc_{stat}{{{labels}}}"


def wait_lines(edge, expected, timeout=5.0):
    """Polls /metrics until every line of <expected> is there (a call is counted when the proxy
    ends its stream, just after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = grpc_lines(edge)
        missing = [e for e in expected if e not in lines]
        if not missing:
            return lines
        if time.monotonic() > deadline:
            pytest.fail(f"missing {missing}\nhave:\n" + "\n".join(lines), pytrace=False)
        time.sleep(0.05)


def test_allowlisted_methods_counted_exactly(processes, tmp_path, peer):
    edge = start_portico(processes, tmp_path, grpc_mapping(peer.port), module(
        {"services": [{"name": SVC, "method_names": ["Unary", "ServerStream", "ClientStream"]}],
         "upstream_stats": True}))
    c = Client(edge.http)
    assert c.unary(payload_size=10).ok
    assert c.unary(payload_size=10).ok
    r = c.unary(fail_code=grpc.StatusCode.NOT_FOUND.value[0], fail_message="nope")
    assert r.code == grpc.StatusCode.NOT_FOUND, r
    r = c.server_stream(replies=5, payload_size=70000)        # messages cut across DATA frames
    assert r.ok and len(r.replies) == 5, r
    r = c.client_stream([request(payload=bytes([i]) * 50000) for i in range(6)])
    assert r.ok and r.replies[-1].received_messages == 6, r
    r = c.bidi([request(payload=b"x", tag=f"m{i}") for i in range(3)], lockstep=True)
    assert r.ok and len(r.replies) == 3, r                    # Bidi is not allowlisted
    cl = cluster_of(edge)
    lines = wait_lines(edge, [
        series("success", cl, "Unary") + " 2",
        series("failure", cl, "Unary") + " 1",
        series("total", cl, "Unary") + " 3",
        series("request_message_count", cl, "Unary") + " 3",
        series("response_message_count", cl, "Unary") + " 2",   # the failed call sent none
        series("upstream_rq_time_count", cl, "Unary") + " 3",
        series("total", cl, "ServerStream") + " 1",
        series("success", cl, "ServerStream") + " 1",
        series("request_message_count", cl, "ServerStream") + " 1",
        series("response_message_count", cl, "ServerStream") + " 5",
        series("total", cl, "ClientStream") + " 1",
        series("request_message_count", cl, "ClientStream") + " 6",
        series("response_message_count", cl, "ClientStream") + " 1",
        # the method not allowlisted: the generic series, no method labels
        series("total", cl) + " 1",
        series("success", cl) + " 1",
        series("request_message_count", cl) + " 3",
        series("response_message_count", cl) + " 3",
    ])
    assert not [l for l in lines if "Bidi" in l], lines
    assert "# TYPE envoy_cluster_grpc_total counter" in requests.get(
        f"http://127.0.0.1:{edge.admin}/metrics", timeout=5).text


def test_local_reply_is_counted_as_a_failure(processes, tmp_path):
    """Portico's own answer to a gRPC call (no upstream: 503 UF -> grpc-status 14) is counted,
    as Envoy's filter sees local replies; no upstream time is recorded for it."""
    from conftest import free_port
    dead = free_port()
    edge = start_portico(processes, tmp_path, grpc_mapping(dead), module(
        {"all_methods": True, "upstream_stats": True}))
    r = Client(edge.http).unary(payload_size=1)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    cl = cluster_of(edge)
    lines = wait_lines(edge, [series("total", cl, "Unary") + " 1",
                              series("failure", cl, "Unary") + " 1",
                              series("success", cl, "Unary") + " 0"])
    assert not [l for l in lines if "upstream_rq_time" in l], lines


def test_all_methods_is_bounded(processes, tmp_path, peer):
    """40 distinct methods (the server answers UNIMPLEMENTED): the first 32 get their series,
    the rest count in the generic one, so a client cannot create unbounded series."""
    edge = start_portico(processes, tmp_path, grpc_mapping(peer.port), module({"all_methods": True}))
    with grpc.insecure_channel(f"127.0.0.1:{edge.http}") as ch:
        for i in range(40):
            call = ch.unary_unary(f"/{SVC}/M{i:02d}")
            with pytest.raises(grpc.RpcError) as e:
                call(b"", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    cl = cluster_of(edge)
    expected = [series("failure", cl, f"M{i:02d}") + " 1" for i in range(32)]
    lines = wait_lines(edge, expected + [series("total", cl) + " 8", series("failure", cl) + " 8"])
    named = {re.search(r'method="([^"]+)"', l).group(1) for l in lines if "method=" in l}
    assert len(named) == 32, sorted(named)


def test_module_without_grpc_stats_has_no_grpc_series(processes, tmp_path, peer):
    edge = start_portico(processes, tmp_path, grpc_mapping(peer.port))
    assert Client(edge.http).unary(payload_size=10).ok
    peer.wait_ends(1)
    time.sleep(0.2)
    assert grpc_lines(edge) == []


@pytest.mark.parametrize("cfg,needle", [
    ({"all_methods": True, "services": [{"name": SVC, "method_names": ["Unary"]}]},
     "all_methods and services exclude each other"),
    ({"services": [{"name": SVC, "method_names": ["a/b"]}]}, "is not a gRPC method name"),
    ({"services": [{"name": "", "method_names": ["Unary"]}]}, "is not a gRPC service name"),
    ({"services": [{"name": SVC, "method_names": [f"M{i}" for i in range(33)]}]},
     "33 methods listed, at most 32"),
    ({"services": [{"name": "s" * 100, "method_names": ["m" * 40]}]}, "longer than 128 bytes"),
    ("yes", "grpc_stats: expected a mapping"),
])
def test_bad_grpc_stats_is_a_config_error(tmp_path, cfg, needle):
    f = tmp_path / "m.yaml"
    f.write_text(dump(doc("Module", "ambassador", {"config": {"grpc_stats": cfg}}),
                      mapping("good", "/good/", "127.0.0.1:9")))
    r = check(tmp_path)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert r.returncode == 1, (cfg, r.stdout)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{f}:") and "Module/default/ambassador: " in lines[0], lines
    assert needle in lines[0], lines


def test_grpc_web_text_counted_decoded(processes, tmp_path, peer):
    """A gRPC-Web -text call (Module enable_grpc_web) is counted as the gRPC call it becomes:
    its request message counted after base64 decoding, the upstream's messages before
    encoding."""
    from grpc_peer import pb
    from test_grpc_web import web_call
    edge = start_portico(processes, tmp_path, grpc_mapping(peer.port), dump(doc(
        "Module", "ambassador", {"config": {"enable_grpc_web": True, "grpc_stats": {"all_methods": True}}})))
    r = web_call(edge, "ServerStream", pb.Request(replies=3, payload_size=20000), text=True)
    assert r.status == 200, r
    cl = cluster_of(edge)
    wait_lines(edge, [series("total", cl, "ServerStream") + " 1",
                      series("success", cl, "ServerStream") + " 1",
                      series("request_message_count", cl, "ServerStream") + " 1",
                      series("response_message_count", cl, "ServerStream") + " 3"])


def test_normalized_path_counts_under_the_normalized_method(processes, tmp_path, peer):
    """The method is read from the :path after normalization ("/./" removed), as Envoy's filter
    sees it behind its connection manager. (A gRPC client would have cleaned the path itself:
    raw HTTP/2.)"""
    from h2raw import H2Raw
    edge = start_portico(processes, tmp_path, grpc_mapping(peer.port), module({"all_methods": True}))
    msg = request(payload_size=5).SerializeToString()
    with H2Raw(edge.http) as c:
        sid = c.request(f"/{SVC}/./Unary", method="POST", authority="x",
                        headers=[("content-type", "application/grpc"), ("te", "trailers")],
                        body=b"\x00" + len(msg).to_bytes(4, "big") + msg)
        resp = c.wait_response(sid, timeout=5)
    assert resp.status == 200, resp
    cl = cluster_of(edge)
    lines = wait_lines(edge, [series("total", cl, "Unary") + " 1",
                              series("request_message_count", cl, "Unary") + " 1",
                              series("response_message_count", cl, "Unary") + " 1"])
    assert not [l for l in lines if "/./" in l or 'method="."' in l], lines
