"""Envoy's header sanitizing at the edge (docs/configuration.md 9.1): a request is internal when
it comes without X-Forwarded-For from an internal address (RFC 1918, 127.0.0.1 only, fd00::/8,
::1). An external client's x-envoy-* headers that would steer an Envoy behind Portico (an Istio
sidecar: retries, timeouts, forced tracing) stop at the edge, and the upstream gets
x-envoy-external-address; an internal request keeps them and gets x-envoy-internal: true.
127.0.0.2 is a loopback address that Envoy does not count internal, so it plays the external
client here."""

import http.client
import json

import pytest

from conftest import start_quote
from portico import echo_headers
from portico_cfg import Portico, dump, mapping
from policy_peer import start_ratelimit

STEERING = {
    "x-envoy-retry-on": "5xx",
    "x-envoy-retry-grpc-on": "unavailable",
    "x-envoy-max-retries": "100",
    "x-envoy-upstream-rq-timeout-ms": "1",
    "x-envoy-upstream-rq-per-try-timeout-ms": "1",
    "x-envoy-upstream-rq-timeout-alt-response": "204",
    "x-envoy-upstream-stream-duration-ms": "1",
    "x-envoy-upstream-alt-stat-name": "evil",
    "x-envoy-force-trace": "true",
    "x-envoy-ip-tags": "internal",
    "x-envoy-decorator-operation": "op",
    "x-envoy-downstream-service-cluster": "spoof",
    "x-envoy-downstream-service-node": "spoof",
}


def echo_from(port, source, headers):
    """A request from <source> to the proxy; the headers the echo backend got, as a list."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/backend/echo", headers={"Host": "a.example", **headers})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        return json.loads(body)
    finally:
        conn.close()


@pytest.fixture
def edge(processes, tmp_path):
    echo = start_quote(processes, "--echo")
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("echo", "/backend/", f"127.0.0.1:{echo.port}")))
    px.start()
    return px


def test_external_client_cannot_steer_envoys_behind(edge):
    sent = {**STEERING, "x-envoy-internal": "true", "x-envoy-external-address": "10.0.0.1",
            "x-envoy-custom": "kept", "x-envoy-original-path": "/spoof"}
    doc = echo_from(edge.port, "127.0.0.2", sent)
    for name in STEERING:
        assert echo_headers(doc, name) == [], name
    assert echo_headers(doc, "x-envoy-internal") == []
    assert echo_headers(doc, "x-envoy-external-address") == ["127.0.0.2"]
    assert echo_headers(doc, "x-envoy-original-path") == ["/backend/echo"]  # Portico's, not "/spoof"
    assert echo_headers(doc, "x-envoy-custom") == ["kept"]  # not Envoy's: forwarded
    assert echo_headers(doc, "x-forwarded-for") == ["127.0.0.2"]


def test_internal_client_keeps_them(edge):
    doc = echo_from(edge.port, "127.0.0.1", {**STEERING, "x-envoy-internal": "false"})
    for name, value in STEERING.items():
        assert echo_headers(doc, name) == [value], name
    assert echo_headers(doc, "x-envoy-internal") == ["true"]  # Envoy's, not the client's
    assert echo_headers(doc, "x-envoy-external-address") == []


def test_forwarded_request_is_external(edge):
    """With X-Forwarded-For the request is not internal, even from 127.0.0.1 (Envoy's rule: the
    extended list must hold a single internal address)."""
    doc = echo_from(edge.port, "127.0.0.1", {**STEERING, "X-Forwarded-For": "10.1.2.3"})
    for name in STEERING:
        assert echo_headers(doc, name) == [], name
    assert echo_headers(doc, "x-envoy-internal") == []
    assert echo_headers(doc, "x-envoy-external-address") == ["127.0.0.1"]
    assert echo_headers(doc, "x-forwarded-for") == ["10.1.2.3,127.0.0.1"]


@pytest.mark.parametrize("depth,xff,want", [
    (1, "203.0.113.9", "203.0.113.9"),                   # the proxy in front saw this client
    (1, "198.51.100.1, 203.0.113.9", "203.0.113.9"),     # the last hop is the trusted one
    (2, "198.51.100.1, 203.0.113.9", "198.51.100.1"),
    (2, "198.51.100.1", "127.0.0.1"),                    # fewer addresses than trusted hops: the peer
    (1, "not-an-address", "127.0.0.1"),                  # not an address: the peer
    (1, "2001:db8::7", "2001:db8::7"),
])
def test_external_address_with_trusted_hops(processes, tmp_path, depth, xff, want):
    echo = start_quote(processes, "--echo")
    px = Portico(processes, tmp_path, listener_spec={"l7Depth": depth})
    px.write("m.yaml", dump(mapping("echo", "/backend/", f"127.0.0.1:{echo.port}")))
    px.start()
    doc = echo_from(px.port, "127.0.0.1", {"X-Forwarded-For": xff, "x-envoy-max-retries": "9"})
    assert echo_headers(doc, "x-envoy-external-address") == [want]
    assert echo_headers(doc, "x-envoy-max-retries") == []


def test_http2_external_client(edge):
    """The same rule for an HTTP/2 client (prior-knowledge h2c from 127.0.0.2)."""
    import socket

    import h2.connection
    import h2.events

    s = socket.create_connection(("127.0.0.1", edge.port), timeout=5, source_address=("127.0.0.2", 0))
    c = h2.connection.H2Connection()
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", "/backend/echo"), (":scheme", "http"),
                       (":authority", "a.example"), ("x-envoy-retry-on", "5xx"),
                       ("x-envoy-internal", "true")], end_stream=True)
    s.sendall(c.data_to_send())
    body, done = b"", False
    while not done:
        data = s.recv(65536)
        assert data
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                body += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        s.sendall(c.data_to_send())
    s.close()
    doc = json.loads(body)
    assert echo_headers(doc, "x-envoy-retry-on") == []
    assert echo_headers(doc, "x-envoy-internal") == []
    assert echo_headers(doc, "x-envoy-external-address") == ["127.0.0.2"]


def test_ratelimit_remote_address_is_the_trusted_client(processes, tmp_path):
    """The rate-limit descriptor remote_address is the address Envoy trusts (the l7Depth hop of
    X-Forwarded-For), not the proxy in front."""
    echo = start_quote(processes, "--echo")
    rls = start_ratelimit(processes)
    px = Portico(processes, tmp_path, listener_spec={"l7Depth": 1})
    px.write("m.yaml", dump(
        mapping("echo", "/backend/", f"127.0.0.1:{echo.port}",
                labels={"ambassador": [{"by_client": [{"remote_address": {"key": "remote_address"}}]}]}),
        {"apiVersion": "getambassador.io/v3alpha1", "kind": "RateLimitService",
         "metadata": {"name": "rl"},
         "spec": {"service": f"127.0.0.1:{rls.port}", "protocol_version": "v3"}}))
    px.start()
    echo_from(px.port, "127.0.0.1", {"X-Forwarded-For": "203.0.113.9"})
    (rec,) = rls.wait_records(1)
    assert rec["descriptors"] == [[["remote_address", "203.0.113.9"]]]
