"""Black-box tests of Zipkin tracing (reference/envoy-compat.md §3, reference/zipkin2-api.yaml):
a TracingService makes Portico report two spans per sampled request (the HCM span named after
the authority, the router span "router <stats_name> egress") as JSON v2 to a collector, inject
x-b3-* headers upstream, continue incoming B3 contexts, and take TracingService changes live.

The collector is a Python http.server in the test that records every POST and answers 202. The
backend is `portico-quote --echo`, whose body tells which headers the upstream received.

Portico's reporter POSTs as soon as 5 spans are pending, else every 5 s (Envoy's defaults). To
keep the tests fast, the spans under test are pushed out with a few "padding" requests sent
after them (one worker, so its ring is drained in order) instead of waiting for the timer."""

import functools
import json
import os
import re
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

import seed
from conftest import RawConn, binary, free_port, start_quote, shared_path

ZIPKIN_API = shared_path("reference/zipkin2-api.yaml")
SPANS_PATH = "/api/v2/spans"

LISTENER_AND_MAPPING = """\
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec:
  port: {port}
  protocol: HTTP
  securityModel: XFP
  hostBinding: {{namespace: {{from: ALL}}}}{ambassador_id}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: echo}}
spec: {{hostname: "*", prefix: {prefix}, service: "127.0.0.1:{backend}"{ambassador_id_flow}}}
"""

HEX16 = re.compile(r"[a-f0-9]{16}")


# ---------------------------------------------------------------------------------------------
# Span validation against zipkin2-api.yaml

@functools.lru_cache(maxsize=1)
def _zipkin_definitions():
    return yaml.safe_load(ZIPKIN_API.read_text())["definitions"]


def _check(schema, value, where, defs, errors):
    """A small JSON-schema (swagger 2.0 subset) checker: $ref, type, required, properties,
    additionalProperties, items, enum, pattern (anchored), minLength, maxLength, minimum."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{where}: {value!r} is not an object")
            return
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: required {key!r} is missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                _check(props[key], sub, f"{where}.{key}", defs, errors)
            elif isinstance(extra, dict):
                _check(extra, sub, f"{where}[{key!r}]", defs, errors)
        return
    if kind == "array":
        if not isinstance(value, list):
            errors.append(f"{where}: {value!r} is not an array")
            return
        for i, item in enumerate(value):
            _check(schema.get("items", {}), item, f"{where}[{i}]", defs, errors)
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) \
                != len(value):
            errors.append(f"{where}: items are not unique")
        return
    if kind == "string":
        if not isinstance(value, str):
            errors.append(f"{where}: {value!r} is not a string")
            return
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match ^{schema['pattern']}$")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            errors.append(f"{where}: {value!r} has a bad length")
    elif kind == "integer":
        # json.loads gives int only for integer literals: 1.5e15 or 12.0 become floats
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{where}: {value!r} is not an integer")
            return
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{where}: {value!r} is not a boolean")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")


def span_errors(span, since_us=None, until_us=None):
    """Every way <span> breaks zipkin2-api.yaml's Span (plus what the schema only says in words:
    serviceName present and lower case, a port is never 0, timestamps in epoch microseconds)."""
    defs = _zipkin_definitions()
    errors = []
    _check(defs["Span"], span, "span", defs, errors)
    if not isinstance(span, dict):
        return errors
    for key in ("timestamp", "duration", "kind", "name", "localEndpoint", "tags"):
        if key not in span:
            errors.append(f"span: {key!r} is missing (Portico always knows it)")
    ep = span.get("localEndpoint") or {}
    name = ep.get("serviceName")
    if not isinstance(name, str) or not name or name != name.lower():
        errors.append(f"localEndpoint.serviceName {name!r} is not a lower-case name")
    for end in ("localEndpoint", "remoteEndpoint"):
        if end in span and "port" in span[end] and not 0 < span[end]["port"] < 65536:
            errors.append(f"{end}.port {span[end]['port']!r} is not a port")
    ts = span.get("timestamp")
    if isinstance(ts, int) and since_us is not None and not since_us <= ts <= until_us:
        errors.append(f"timestamp {ts} is not epoch microseconds of this test "
                      f"[{since_us}, {until_us}]")
    dur = span.get("duration")
    if isinstance(dur, int) and dur > 10_000_000:
        errors.append(f"duration {dur} us is longer than 10 s")
    for ann in span.get("annotations") or []:
        if isinstance(ann, dict) and isinstance(ann.get("timestamp"), int) \
                and since_us is not None and not since_us <= ann["timestamp"] <= until_us:
            errors.append(f"annotation timestamp {ann['timestamp']} is out of range")
    if span.get("shared") is True and span.get("kind") != "SERVER":
        errors.append("shared is only for SERVER spans")
    return errors


def test_validator_rejects_bad_spans():
    """The validator itself: the schema's own example passes, typical mistakes do not."""
    good = _zipkin_definitions()["Span"]["example"]
    assert span_errors(good) == []
    bad = [
        dict(good, traceId="5AF7183FB1D4CF5F"),           # upper case
        dict(good, traceId="5af7183fb1d4cf5"),            # 15 hex
        dict(good, id="352bff9a74ca9ad2ff"),              # 18 hex
        dict(good, parentId="0x6b221d5bc9e6496"),
        dict(good, kind="client"),
        dict(good, timestamp=1.556604172355737e15),
        dict(good, duration=0),
        dict(good, tags={"http.status_code": 200}),
        dict(good, localEndpoint={"ipv4": "127.0.0.1"}),  # no serviceName
        {k: v for k, v in good.items() if k != "id"},
    ]
    for span in bad:
        assert span_errors(span), span


# ---------------------------------------------------------------------------------------------
# Collectors

class Collector:
    """A Zipkin collector on a free port: records every request (method, path, headers, body)
    and answers <status> (202 like Zipkin) with an empty body."""

    def __init__(self, status=202):
        self.status = status
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue as libcurl likes

            def _record(self):
                if (self.headers.get("transfer-encoding") or "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": self.path,
                                           "headers": {k.lower(): v for k, v in
                                                       self.headers.items()},
                                           "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def posts(self):
        with self.lock:
            return list(self.requests)

    def spans(self):
        out = []
        for post in self.posts():
            try:
                body = json.loads(post["body"])
            except ValueError:
                continue
            if isinstance(body, list):
                out.extend(body)
        return out

    def trace(self, trace_id):
        return [s for s in self.spans() if isinstance(s, dict) and s.get("traceId") == trace_id]

    def wait(self, predicate, pad=None, timeout=12.0):
        """Waits until predicate(spans) is true, calling pad() now and then to make Portico flush.
        Returns the spans."""
        deadline = time.monotonic() + timeout
        next_pad = 0.0
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                pytest.fail(f"collector: condition not met in {timeout}s; "
                            f"{len(self.posts())} POSTs, {len(spans)} spans", pytrace=False)
            if pad is not None and time.monotonic() >= next_pad:
                pad()
                next_pad = time.monotonic() + 1.0
            time.sleep(0.05)

    def wait_trace(self, trace_id, pad=None, count=2, timeout=12.0):
        """The <count> spans of <trace_id> (waits for them)."""
        self.wait(lambda spans: len([s for s in spans if s.get("traceId") == trace_id])
                  >= count, pad, timeout)
        return self.trace(trace_id)


class DeadCollector:
    """A socket that accepts connections and never answers (nor closes them)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)  # read nothing, answer nothing

    def close(self):
        self.stopping = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def collectors():
    made = []

    def make(status=202, dead=False):
        c = DeadCollector() if dead else Collector(status)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# ---------------------------------------------------------------------------------------------
# Portico in front of an echo backend

def tracing_service(collector_port, ambassador_id=None, **spec):
    """A TracingService resource (dict) for the zipkin collector on 127.0.0.1:<collector_port>."""
    body = {"service": f"127.0.0.1:{collector_port}", "driver": "zipkin", "config": {}}
    body.update(spec)
    if ambassador_id:
        body["ambassador_id"] = [ambassador_id]
    return {"apiVersion": "getambassador.io/v3alpha1", "kind": "TracingService",
            "metadata": {"name": "tracing"}, "spec": body}


def upstream_headers(resp):
    """{lower-case name: [values]} of the headers the echo backend received."""
    assert resp.status_code == 200, resp.text[:300]
    out = {}
    for name, value in resp.json()["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def one(headers, name):
    values = headers.get(name, [])
    assert len(values) == 1, f"upstream got {name}: {values}"
    return values[0]


class Edge:
    def __init__(self, processes, tmp_path, backend, tracing, env, workers, ambassador_id,
                 prefix, extra):
        self.port, self.admin = free_port(), free_port()
        self.cfg = tmp_path / f"config-{self.port}"
        self.cfg.mkdir()
        self.ambassador_id = ambassador_id
        aid = f"\n  ambassador_id: [{ambassador_id}]" if ambassador_id else ""
        aid_flow = f", ambassador_id: [{ambassador_id}]" if ambassador_id else ""
        (self.cfg / "edge.yaml").write_text(LISTENER_AND_MAPPING.format(
            port=self.port, backend=backend.port, ambassador_id=aid, ambassador_id_flow=aid_flow,
            prefix=prefix))
        if extra:
            (self.cfg / "extra.yaml").write_text(extra)
        if tracing is not None:
            (self.cfg / "tracing.yaml").write_text(yaml.safe_dump(tracing))
        self.proc = processes.start([binary("portico"), "run", "--config", self.cfg,
                                     "--admin-port", self.admin, "--workers", workers],
                                    name="portico", port=self.admin, env=env)
        deadline = time.monotonic() + 10
        while requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/check_ready",
                           timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "Portico never became ready"
            time.sleep(0.05)
        self.session = requests.Session()
        self.authority = f"127.0.0.1:{self.port}"

    def get(self, path="/", headers=None):
        return self.session.get(f"http://{self.authority}{path}", headers=headers, timeout=5)

    def upstream(self, path="/", headers=None):
        return upstream_headers(self.get(path, headers))

    def pad(self, n=3):
        """Requests whose spans push the reporter's batch of 5 out."""
        for _ in range(n):
            self.get("/pad")

    def series(self):
        out = {}
        text = requests.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def spans_counter(self, result):
        return self.series().get(f'portico_tracing_spans_total{{result="{result}"}}')

    def reloads(self):
        return self.series()['portico_config_reloads_total{result="ok"}']

    def stats_name(self):
        diag = requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/diag/?json=true",
                            timeout=5).json()
        return diag["clusters"][0]["stats_name"]

    def set_tracing(self, tracing):
        """Writes (or, with None, deletes) the TracingService and waits for the reload."""
        before = self.reloads()
        path = self.cfg / "tracing.yaml"
        if tracing is None:
            path.unlink()
        else:
            tmp = self.cfg / "tracing.tmp"
            tmp.write_text(yaml.safe_dump(tracing))
            tmp.rename(path)
        deadline = time.monotonic() + 10
        while self.reloads() <= before:
            assert time.monotonic() < deadline, "the TracingService change was never reloaded"
            time.sleep(0.05)
        time.sleep(0.2)  # the exporter takes the new config right after the snapshot


@pytest.fixture
def echo(processes):
    return start_quote(processes, "--echo", name="echo")


@pytest.fixture
def edge(processes, tmp_path, echo):
    """edge(tracing=None, env=None, workers=1, ambassador_id=None, prefix="/", extra=None) -> a
    ready Edge whose Mapping <prefix> goes to the echo backend; <extra> is more YAML."""
    def make(tracing=None, env=None, workers=1, ambassador_id=None, prefix="/", extra=None):
        return Edge(processes, tmp_path, echo, tracing, env, workers, ambassador_id, prefix,
                    extra)
    return make


def split(spans):
    """(HCM span, router span) of one request's spans."""
    assert len(spans) == 2, json.dumps(spans, indent=1)
    router = [s for s in spans if s.get("name", "").startswith("router ")]
    hcm = [s for s in spans if not s.get("name", "").startswith("router ")]
    assert len(router) == 1 and len(hcm) == 1, json.dumps(spans, indent=1)
    return hcm[0], router[0]


def now_us():
    return int(time.time() * 1_000_000)


# ---------------------------------------------------------------------------------------------
# Spans and their wire format

def test_spans_are_zipkin_v2_json(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    since = now_us()
    ids = [one(e.upstream(f"/valid/{i}?q={i}"), "x-b3-traceid") for i in range(6)]
    col.wait(lambda spans: all(len([s for s in spans if s.get("traceId") == t]) == 2
                               for t in ids), pad=e.pad)
    until = now_us()
    posts = col.posts()
    assert posts
    errors = []
    for post in posts:
        assert post["method"] == "POST"
        assert post["path"] == SPANS_PATH
        assert post["headers"].get("content-type", "").split(";")[0].strip() \
            == "application/json", post["headers"]
        body = json.loads(post["body"])
        assert isinstance(body, list) and body, post["body"][:200]
        assert len(body) <= 1024
        for span in body:
            errors += [f"{span.get('id')}: {e}" for e in span_errors(span, since, until)]
    assert errors == []
    stats = e.stats_name()
    for trace_id in ids:
        hcm, router = split(col.trace(trace_id))
        assert hcm["name"] == e.authority
        assert router["name"] == f"router {stats} egress"
        assert hcm["kind"] == router["kind"] == "CLIENT"
        for span in (hcm, router):
            assert span["localEndpoint"]["serviceName"] == "ambassador-default"
            assert span["tags"]["http.status_code"] == "200"
            assert span["tags"]["component"] == "proxy"
            assert span["tags"]["upstream_cluster.name"] == stats
        assert hcm["tags"]["http.method"] == "GET"
        assert hcm["tags"]["http.url"].startswith(f"http://{e.authority}/valid/")
        # the router span lies within the HCM span
        assert hcm["timestamp"] <= router["timestamp"]
        assert router["timestamp"] + router["duration"] <= hcm["timestamp"] + hcm["duration"]
    deadline = time.monotonic() + 5  # the counter follows the 202s
    while e.spans_counter("sent") != len(col.spans()):
        assert time.monotonic() < deadline, (e.spans_counter("sent"), len(col.spans()))
        time.sleep(0.05)
    assert e.spans_counter("dropped") == 0


def test_collector_endpoint_and_hostname(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, config={"collector_endpoint": "/custom/zipkin",
                                               "collector_hostname": "zipkin.example"}))
    trace_id = one(e.upstream(), "x-b3-traceid")
    col.wait_trace(trace_id, pad=e.pad)
    assert {p["path"] for p in col.posts()} == {"/custom/zipkin"}
    assert {p["headers"]["host"] for p in col.posts()} == {"zipkin.example"}


def test_default_host_is_the_tracing_cluster(edge, collectors):
    """Without collector_hostname, Host is Emissary's tracing cluster name (§3.4, §1.6)."""
    col = collectors()
    e = edge(tracing_service(col.port))
    col.wait_trace(one(e.upstream(), "x-b3-traceid"), pad=e.pad)
    assert {p["headers"]["host"] for p in col.posts()} == \
        {f"cluster_tracing_127_0_0_1_{col.port}_default"}


# ---------------------------------------------------------------------------------------------
# B3 propagation

def test_upstream_b3_headers_match_the_spans(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    up = e.upstream("/hello")
    trace_id, span_id = one(up, "x-b3-traceid"), one(up, "x-b3-spanid")
    parent_id, sampled = one(up, "x-b3-parentspanid"), one(up, "x-b3-sampled")
    assert re.fullmatch(r"[a-f0-9]{32}", trace_id)  # Emissary sets trace_id_128bit
    assert HEX16.fullmatch(span_id) and HEX16.fullmatch(parent_id)
    assert sampled == "1"
    assert "b3" not in up and "x-b3-flags" not in up  # Envoy never injects these
    hcm, router = split(col.wait_trace(trace_id, pad=e.pad))
    assert router["id"] == span_id
    assert router["parentId"] == hcm["id"] == parent_id
    assert hcm["traceId"] == router["traceId"] == trace_id
    assert "parentId" not in hcm  # a root span ...
    assert hcm["id"] == trace_id[16:]  # ... whose id is the low 64 bits of the trace id
    assert hcm["tags"]["guid:x-request-id"] == one(up, "x-request-id")


@pytest.mark.parametrize("trace_id", ["463ac35c9f6413ad48485a3953bb6124", "48485a3953bb6124"])
def test_incoming_b3_headers_are_continued(edge, collectors, trace_id):
    col = collectors()
    e = edge(tracing_service(col.port))
    incoming = "a2fb4a1d1a96d312"
    up = e.upstream("/continued", {"x-b3-traceid": trace_id, "x-b3-spanid": incoming,
                                   "x-b3-parentspanid": "0020000000000001",
                                   "x-b3-sampled": "1"})
    assert one(up, "x-b3-traceid") == trace_id
    assert one(up, "x-b3-sampled") == "1"
    hcm, router = split(col.wait_trace(trace_id, pad=e.pad))
    assert hcm["parentId"] == incoming
    assert hcm["id"] != incoming  # CLIENT spans never share ids
    assert one(up, "x-b3-parentspanid") == hcm["id"] == router["parentId"]
    assert one(up, "x-b3-spanid") == router["id"]


@pytest.mark.parametrize("flag", ["1", "d"])
def test_incoming_single_b3_header_is_continued(edge, collectors, flag):
    col = collectors()
    e = edge(tracing_service(col.port))
    trace_id, incoming = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    b3 = f"{trace_id}-{incoming}-{flag}-05e3ac9a4f6e3b90"
    up = e.upstream("/single", {"b3": b3,  # tried first: the x-b3-* below lose
                                "x-b3-traceid": "1111111111111111",
                                "x-b3-spanid": "2222222222222222", "x-b3-sampled": "0"})
    assert one(up, "x-b3-traceid") == trace_id
    assert one(up, "x-b3-sampled") == "1"
    assert one(up, "b3") == b3  # passed through unchanged
    hcm, router = split(col.wait_trace(trace_id, pad=e.pad))
    assert hcm["parentId"] == incoming
    assert one(up, "x-b3-parentspanid") == hcm["id"] == router["parentId"]
    assert one(up, "x-b3-spanid") == router["id"]


def test_incoming_trace_id_with_zero_high_half_is_64_bit(edge, collectors):
    """As Envoy (SpanContext::is128BitTraceId() is trace_id_high != 0): 32 hex digits whose high
    half is zero are a 64-bit trace id from then on."""
    col = collectors()
    e = edge(tracing_service(col.port))
    up = e.upstream("/zero-high", {"b3": "0000000000000000a3ce929d0e0e4736-e457b5a2e4d86bd1-1"})
    assert one(up, "x-b3-traceid") == "a3ce929d0e0e4736"
    hcm, _ = split(col.wait_trace("a3ce929d0e0e4736", pad=e.pad))
    assert hcm["parentId"] == "e457b5a2e4d86bd1"


def test_incoming_unsampled_context_is_not_reported(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    up = e.upstream("/unsampled", {"x-b3-traceid": trace_id, "x-b3-spanid": "b7ad6b7169203331",
                                   "x-b3-sampled": "0"})
    assert one(up, "x-b3-traceid") == trace_id  # headers are injected even when not sampled
    assert one(up, "x-b3-sampled") == "0"
    marker = one(e.upstream("/after"), "x-b3-traceid")
    col.wait_trace(marker, pad=e.pad)  # spans of later requests have been reported ...
    assert col.trace(trace_id) == []   # ... but none of the unsampled one


def test_incoming_sampled_flag_overrides_sampling(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, sampling={"overall": 0}))
    assert one(e.upstream("/not-sampled"), "x-b3-sampled") == "0"
    trace_id = "1f2e3d4c5b6a79881f2e3d4c5b6a7988"
    up = e.upstream("/forced", {"x-b3-traceid": trace_id, "x-b3-spanid": "1122334455667788",
                                "x-b3-sampled": "1"})
    assert one(up, "x-b3-sampled") == "1"
    # pad with sampled requests too: with overall 0 nothing else is traced
    pad = lambda: [e.get("/pad", {"x-b3-traceid": "00000000000000000000000000000abc",
                                  "x-b3-spanid": "0000000000000abc", "x-b3-sampled": "1"})
                   for _ in range(3)]
    hcm, _ = split(col.wait_trace(trace_id, pad=pad))
    assert hcm["parentId"] == "1122334455667788"


def test_malformed_incoming_context_is_forwarded_untouched(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    up = e.upstream("/malformed", {"x-b3-traceid": "not-hex-at-all", "x-b3-spanid": "zz"})
    assert up["x-b3-traceid"] == ["not-hex-at-all"]
    assert up["x-b3-spanid"] == ["zz"]
    assert "x-b3-parentspanid" not in up and "x-b3-sampled" not in up


# ---------------------------------------------------------------------------------------------
# Configuration

def test_overall_sampling_10_percent(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, sampling={"overall": 10}), workers=2)
    sampled = set()
    for i in range(1000):
        up = e.upstream(f"/s/{i}")
        if one(up, "x-b3-sampled") == "1":
            sampled.add(one(up, "x-b3-traceid"))
        else:
            assert one(up, "x-b3-sampled") == "0"
    assert 50 <= len(sampled) <= 200, f"{len(sampled)} of 1000 requests sampled at 10%"
    def all_reported(spans):
        counts = {}
        for s in spans:
            counts[s["traceId"]] = counts.get(s["traceId"], 0) + 1
        return all(counts.get(t, 0) >= 2 for t in sampled)
    pad_trace = "abcdef0000000000abcdef0000000001"
    pad = lambda: [e.get("/pad", {"b3": f"{pad_trace}-0000000000000abc-1"}) for _ in range(6)]
    col.wait(all_reported, pad=pad)  # forced-sampled padding pushes the last batch out
    traces = {}
    for s in col.spans():
        if s["traceId"] != pad_trace:
            traces.setdefault(s["traceId"], []).append(s)
    assert set(traces) == sampled  # exactly the sampled requests were reported ...
    assert {len(v) for v in traces.values()} == {2}  # ... each with its two spans


@pytest.mark.parametrize("sampling,low,high", [
    ({"random": 10}, 30, 120),                   # ~60 of 600
    ({"random": 50, "overall": 20}, 85, 160),    # ~120: min(50, 20), not 50% of 20%
])
def test_random_sampling(edge, collectors, sampling, low, high):
    """Envoy tests random and overall sampling against the same key (x-request-id mod 10000,
    conn_manager_utility.cc mutateTracingRequestHeader), so the rate is min(random, overall)."""
    col = collectors()
    e = edge(tracing_service(col.port, sampling=sampling), workers=2)
    flags = [one(e.upstream(f"/r/{i}"), "x-b3-sampled") for i in range(600)]
    assert set(flags) <= {"0", "1"}
    assert low <= flags.count("1") <= high, f"{flags.count('1')} of 600 sampled with {sampling}"


def test_trace_id_64bit(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, config={"trace_id_128bit": False}))
    up = e.upstream()
    trace_id = one(up, "x-b3-traceid")
    assert HEX16.fullmatch(trace_id), trace_id
    hcm, router = split(col.wait_trace(trace_id, pad=e.pad))
    assert hcm["traceId"] == router["traceId"] == trace_id
    assert hcm["id"] == trace_id  # the root span's id is the trace id
    incoming = "4bf92f3577b34da6a3ce929d0e0e4736"  # an incoming 128-bit id is kept as it is
    up = e.upstream("/in128", {"x-b3-traceid": incoming, "x-b3-spanid": "00f067aa0ba902b7",
                               "x-b3-sampled": "1"})
    assert one(up, "x-b3-traceid") == incoming
    assert {s["traceId"] for s in col.wait_trace(incoming, pad=e.pad)} == {incoming}


def test_tag_headers_become_tags(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, tag_headers=[":authority", ":path", "x-custom"]))
    up = e.upstream("/tagged/path?q=1&r=2", {"x-custom": "custom value"})
    trace_id = one(up, "x-b3-traceid")
    bare = one(e.upstream("/bare"), "x-b3-traceid")
    col.wait(lambda spans: len(col.trace(trace_id)) == 2 and len(col.trace(bare)) == 2,
             pad=e.pad)
    for span in col.trace(trace_id):
        assert span["tags"][":authority"] == e.authority, span["name"]
        assert span["tags"][":path"] == "/tagged/path?q=1&r=2", span["name"]
        assert span["tags"]["x-custom"] == "custom value", span["name"]
    for span in col.trace(bare):
        assert span["tags"][":path"] == "/bare"
        assert "x-custom" not in span["tags"]  # no header, no default: Zipkin drops empty tags


def test_custom_tags(edge, collectors):
    col = collectors()
    tags = [
        {"tag": "lit", "literal": {"value": "fixed value"}},
        {"tag": "env", "environment": {"name": "PORTICO_TRACE_TEST_ENV",
                                       "default_value": "unused"}},
        {"tag": "env-missing", "environment": {"name": "PORTICO_TRACE_TEST_UNSET",
                                               "default_value": "env fallback"}},
        {"tag": "hdr", "request_header": {"name": "x-tag-me", "default_value": "unused"}},
        {"tag": "hdr-missing", "request_header": {"name": "x-absent",
                                                  "default_value": "hdr fallback"}},
    ]
    e = edge(tracing_service(col.port, custom_tags=tags),
             env={"PORTICO_TRACE_TEST_ENV": "from the environment"})
    assert "PORTICO_TRACE_TEST_UNSET" not in os.environ
    trace_id = one(e.upstream("/custom", {"X-Tag-Me": "header value"}), "x-b3-traceid")
    for span in split(col.wait_trace(trace_id, pad=e.pad)):
        assert span["tags"]["lit"] == "fixed value", span["name"]
        assert span["tags"]["env"] == "from the environment", span["name"]
        assert span["tags"]["env-missing"] == "env fallback", span["name"]
        assert span["tags"]["hdr"] == "header value", span["name"]
        assert span["tags"]["hdr-missing"] == "hdr fallback", span["name"]


@pytest.mark.parametrize("env,service_name", [
    ({}, "ambassador-default"),
    ({"AMBASSADOR_NAMESPACE": "edge"}, "ambassador-edge"),
    ({"AMBASSADOR_ID": "tracingtest"}, "tracingtest-default"),
    ({"AMBASSADOR_ID": "tracingtest", "AMBASSADOR_NAMESPACE": "edge"}, "tracingtest-edge"),
])
def test_service_name(edge, collectors, env, service_name):
    for var in ("AMBASSADOR_ID", "AMBASSADOR_NAMESPACE"):
        if var in os.environ:
            pytest.skip(f"{var} is set in the test environment")
    col = collectors()
    aid = env.get("AMBASSADOR_ID")
    e = edge(tracing_service(col.port, ambassador_id=aid), env=env, ambassador_id=aid)
    trace_id = one(e.upstream(), "x-b3-traceid")
    for span in split(col.wait_trace(trace_id, pad=e.pad)):
        assert span["localEndpoint"]["serviceName"] == service_name


# ---------------------------------------------------------------------------------------------
# A bad collector costs the requests nothing

def test_dead_collector_leaves_latency_unchanged(edge, collectors):
    dead = collectors(dead=True)
    off = edge(None)
    traced = edge(tracing_service(dead.port))
    assert "x-b3-traceid" not in off.upstream()
    assert one(traced.upstream(), "x-b3-sampled") == "1"
    for e in (off, traced):  # warm both
        for _ in range(20):
            e.get("/warm")
    times = {"off": [], "dead": []}
    for i in range(200):  # interleaved, so load on the machine hits both alike
        for key, e in (("off", off), ("dead", traced)):
            t0 = time.perf_counter()
            assert e.get(f"/lat/{i}").status_code == 200
            times[key].append(time.perf_counter() - t0)
    p50_off, p50_dead = statistics.median(times["off"]), statistics.median(times["dead"])
    msg = f"p50 tracing off {p50_off * 1e3:.3f} ms, dead collector {p50_dead * 1e3:.3f} ms"
    assert p50_dead < 2 * p50_off, msg
    assert p50_dead < p50_off + 0.005, msg
    # the POSTs time out (5 s) and their spans are counted as dropped
    deadline = time.monotonic() + 15
    while not traced.spans_counter("dropped") > 0:
        assert time.monotonic() < deadline, "no span counted as dropped with a dead collector"
        time.sleep(0.2)
    assert traced.spans_counter("sent") == 0
    assert traced.get("/still-fine").status_code == 200
    traced.session.close()
    t0 = time.monotonic()
    assert traced.proc.stop(timeout=8) == 0  # POSTs hanging on the collector do not block exit
    assert time.monotonic() - t0 < 5
    print(msg)


def test_collector_errors_count_as_dropped(edge, collectors):
    col = collectors(status=500)
    e = edge(tracing_service(col.port))
    e.upstream()
    e.pad()
    col.wait(lambda spans: len(spans) >= 5, pad=e.pad)
    deadline = time.monotonic() + 5
    while not e.spans_counter("dropped") >= 5:
        assert time.monotonic() < deadline, "spans refused with 500 were not counted dropped"
        time.sleep(0.1)
    assert e.spans_counter("sent") == 0


# ---------------------------------------------------------------------------------------------
# Live changes

def test_tracing_service_changes_apply_live(edge, collectors):
    a, b = collectors(), collectors()
    e = edge(tracing_service(a.port))
    pid = e.proc.pid
    t1 = one(e.upstream("/one"), "x-b3-traceid")
    a.wait_trace(t1, pad=e.pad)

    e.set_tracing(tracing_service(b.port, config={"trace_id_128bit": False}))  # another port
    t2 = one(e.upstream("/two"), "x-b3-traceid")
    assert HEX16.fullmatch(t2), "the new TracingService's trace_id_128bit: false is not used"
    b.wait_trace(t2, pad=e.pad)
    assert a.trace(t2) == [] and b.trace(t1) == []

    e.set_tracing(None)  # deleted: tracing off
    settled = (e.spans_counter("sent"), e.spans_counter("dropped"))
    n_a, n_b = len(a.spans()), len(b.spans())
    up = e.upstream("/three")
    assert not any(h.startswith("x-b3-") for h in up), up
    e.pad(6)
    time.sleep(0.5)  # longer than the exporter's 100 ms drain
    assert (e.spans_counter("sent"), e.spans_counter("dropped")) == settled
    assert (len(a.spans()), len(b.spans())) == (n_a, n_b)

    e.set_tracing(tracing_service(a.port))  # and back on
    t4 = one(e.upstream("/four"), "x-b3-traceid")
    a.wait_trace(t4, pad=e.pad)
    assert e.proc.running and e.proc.pid == pid


# ---------------------------------------------------------------------------------------------
# More of Envoy's behaviour (reference/envoy-compat.md §3)

def test_span_tags_follow_envoy(edge, collectors, echo):
    col = collectors()
    e = edge(tracing_service(col.port))
    resp = e.session.post(f"http://{e.authority}/tags/x?y=1", data=b"hello world", timeout=5)
    up = upstream_headers(resp)
    hcm, router = split(col.wait_trace(one(up, "x-b3-traceid"), pad=e.pad))
    stats = e.stats_name()
    common = {"component": "proxy", "upstream_cluster": f"cluster_{stats}_default",
              "upstream_cluster.name": stats, "http.status_code": "200", "response_flags": "-"}
    expected_hcm = dict(common, **{
        "node_id": "test-id", "guid:x-request-id": one(up, "x-request-id"),
        "http.url": f"http://{e.authority}/tags/x?y=1", "http.method": "POST",
        "downstream_cluster": "-", "user_agent": requests.utils.default_user_agent(),
        "http.protocol": "HTTP/1.1", "peer.address": "127.0.0.1", "request_size": "11",
        "response_size": str(len(resp.content))})
    assert {k: hcm["tags"].get(k) for k in expected_hcm} == expected_hcm
    assert "error" not in hcm["tags"] and "zone" not in hcm["tags"]  # zone: empty, left out
    expected_router = dict(common, **{"http.protocol": "HTTP/1.1",
                                      "upstream_address": f"127.0.0.1:{echo.port}"})
    assert {k: router["tags"].get(k) for k in expected_router} == expected_router
    assert "error" not in router["tags"]


def test_span_protocol_of_an_http2_request(edge, collectors, echo):
    """An HTTP/2 stream's spans say http.protocol HTTP/2 (and the upstream still gets B3)."""
    from h2raw import H2Raw
    col = collectors()
    e = edge(tracing_service(col.port))
    with H2Raw(e.port) as c:
        sid = c.request("/h2/x", authority=e.authority)
        r = c.wait_response(sid)
    assert r.status == 200, r
    up = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    hcm, router = split(col.wait_trace(up["x-b3-traceid"], pad=e.pad))
    assert hcm["tags"]["http.protocol"] == "HTTP/2"
    assert router["tags"]["http.protocol"] == "HTTP/2"
    assert hcm["tags"]["http.url"] == f"http://{e.authority}/h2/x"


def test_router_span_peer_address_is_the_upstream_address(edge, collectors, echo):
    col = collectors()
    e = edge(tracing_service(col.port))
    _, router = split(col.wait_trace(one(e.upstream(), "x-b3-traceid"), pad=e.pad))
    assert router["tags"]["upstream_address"] == f"127.0.0.1:{echo.port}"
    assert router["tags"].get("peer.address") == f"127.0.0.1:{echo.port}"


def test_http_url_uses_the_original_path_cut_at_256(edge, collectors, echo):
    col = collectors()
    rewritten = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: rewritten}
spec: {hostname: "*", prefix: /rw/, service: "%s"}
"""
    e = edge(tracing_service(col.port), prefix="/plain/")
    (e.cfg / "rw.yaml").write_text(rewritten % f"127.0.0.1:{echo.port}")
    deadline = time.monotonic() + 10
    while e.get("/rw/abc").status_code != 200:
        assert time.monotonic() < deadline, "the /rw/ Mapping never loaded"
        time.sleep(0.05)
    resp = e.get("/rw/abc?q=1")
    assert resp.json()["path"] == "/abc?q=1"  # Emissary's default rewrite is "/"
    long_path = "/plain/" + "a" * 300
    t_rw = one(upstream_headers(resp), "x-b3-traceid")
    t_long = one(e.upstream(long_path), "x-b3-traceid")
    col.wait(lambda s: len(col.trace(t_rw)) == 2 and len(col.trace(t_long)) == 2,
             pad=lambda: [e.get("/plain/pad") for _ in range(3)])
    hcm, _ = split(col.trace(t_rw))
    assert hcm["tags"]["http.url"] == f"http://{e.authority}/rw/abc?q=1"
    hcm, _ = split(col.trace(t_long))
    assert hcm["tags"]["http.url"] == f"http://{e.authority}" + long_path[:256]


def test_local_replies_are_traced(edge, collectors):
    """A 503 from a refused upstream and a 404 without a route still get the HCM span."""
    col = collectors()
    dead_port = free_port()
    dead = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: dead}
spec: {hostname: "*", prefix: /dead/, service: "127.0.0.1:%d"}
""" % dead_port
    e = edge(tracing_service(col.port), prefix="/ok/", extra=dead)
    r503 = e.get("/dead/x")
    assert r503.status_code == 503
    r404 = e.get("/nowhere")
    assert r404.status_code == 404
    col.wait(lambda spans: any(s["tags"].get("http.status_code") == "503" for s in spans)
             and any(s["tags"].get("http.status_code") == "404" for s in spans),
             pad=lambda: [e.get("/ok/pad") for _ in range(3)])
    spans = col.spans()
    s503 = [s for s in spans if s["tags"].get("http.url", "").endswith("/dead/x")]
    assert len(s503) == 1, spans
    hcm = s503[0]
    assert hcm["tags"]["error"] == "true"
    assert hcm["tags"]["response_flags"] == "UF"
    router = [s for s in spans if s.get("parentId") == hcm["id"]]
    assert len(router) == 1 and router[0]["name"] == f"router 127_0_0_1_{dead_port} egress"
    assert router[0]["tags"]["error"] == "true"
    s404 = [s for s in spans if s["tags"].get("http.url", "").endswith("/nowhere")]
    assert len(s404) == 1
    assert s404[0]["tags"]["response_flags"] == "NR"
    assert "error" not in s404[0]["tags"]
    assert not [s for s in spans if s.get("parentId") == s404[0]["id"]]  # no router span


def test_client_trace_id_forces_client_sampling(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, sampling={"random": 0}))
    assert one(e.upstream("/random-off"), "x-b3-sampled") == "0"
    up = e.upstream("/client", {"x-client-trace-id": "client-abc"})
    assert one(up, "x-b3-sampled") == "1"
    pad = lambda: [e.get("/pad", {"x-client-trace-id": "pad"}) for _ in range(3)]
    hcm, _ = split(col.wait_trace(one(up, "x-b3-traceid"), pad=pad))
    assert hcm["tags"]["guid:x-client-trace-id"] == "client-abc"


def test_x_request_id_carries_the_trace_reason(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    up = e.upstream("/sampled")
    assert one(up, "x-b3-sampled") == "1"
    rid = one(up, "x-request-id")
    assert rid[14] == "9", rid
    hcm, _ = split(col.wait_trace(one(up, "x-b3-traceid"), pad=e.pad))
    assert hcm["tags"]["guid:x-request-id"] == rid
    e.set_tracing(tracing_service(col.port, sampling={"random": 0}))
    assert one(e.upstream("/none"), "x-request-id")[14] == "4"
    assert one(e.upstream("/client", {"x-client-trace-id": "c"}), "x-request-id")[14] == "b"


def test_single_b3_sampling_flag_only(edge, collectors):
    """`b3: 0` is a bare "do not sample": a new trace, not reported."""
    col = collectors()
    e = edge(tracing_service(col.port))
    up = e.upstream("/deny", {"b3": "0"})
    assert one(up, "x-b3-sampled") == "0"
    denied = one(up, "x-b3-traceid")
    marker = one(e.upstream("/after"), "x-b3-traceid")
    col.wait_trace(marker, pad=e.pad)
    assert col.trace(denied) == []


def test_sampled_true_is_sampled(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port, sampling={"overall": 0}))
    trace_id = "00f067aa0ba902b700f067aa0ba902b7"
    up = e.upstream("/true", {"x-b3-traceid": trace_id, "x-b3-spanid": "00f067aa0ba902b7",
                              "x-b3-sampled": "true"})
    assert one(up, "x-b3-sampled") == "1"
    pad = lambda: [e.get("/pad", {"b3": "00000000000000000000000000000abc-0000000000000abc-1"})
                   for _ in range(3)]
    col.wait_trace(trace_id, pad=pad)


def test_tag_headers_and_custom_tags_both_apply(edge, collectors):
    """Deliberately beyond Emissary (docs/configuration.md): Emissary's v2 conversion drops
    tag_headers when custom_tags is set, and v3alpha1 ignores tag_headers altogether; a user who
    writes both means both."""
    col = collectors()
    e = edge(tracing_service(col.port, tag_headers=["x-old"],
                             custom_tags=[{"tag": "new", "literal": {"value": "yes"}}]))
    trace_id = one(e.upstream("/both", {"x-old": "old"}), "x-b3-traceid")
    for span in split(col.wait_trace(trace_id, pad=e.pad)):
        assert span["tags"]["new"] == "yes"
        assert span["tags"]["x-old"] == "old"


def test_reporter_batches_of_five_or_every_five_seconds(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    time.sleep(0.2)
    t0 = time.monotonic()
    trace_id = one(e.upstream("/lonely"), "x-b3-traceid")
    col.wait_trace(trace_id, timeout=8)  # no padding: the 5 s timer sends them
    assert time.monotonic() - t0 < 6.5
    assert [len(json.loads(p["body"])) for p in col.posts()] == [2]
    t1 = time.monotonic()
    ids = [one(e.upstream(f"/batch/{i}"), "x-b3-traceid") for i in range(3)]  # 6 spans
    col.wait(lambda spans: len(spans) >= 2 + 5, timeout=8)
    assert time.monotonic() - t1 < 2.0, "5 pending spans did not make a POST at once"
    assert ids


SEED_ZIPKIN = """\
apiVersion: v1
kind: Service
metadata: {name: zipkin}
spec:
  ports: [{name: http, port: 9411, targetPort: %(port)d}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: zipkin}
subsets:
  - addresses: [{ip: 127.0.0.1}]
    ports: [{name: http, port: %(port)d}]
"""


def test_seed_tracing_service(edge, collectors):
    """seed/istio-integration.md's TracingService as written, `zipkin:9411` resolved through a
    Service and its Endpoints."""
    col = collectors()
    e = edge(yaml.safe_load(seed.in_namespace(seed.TRACING, "default")),
             extra=SEED_ZIPKIN % {"port": col.port})
    up = e.upstream("/backend/seed")
    for span in split(col.wait_trace(one(up, "x-b3-traceid"), pad=e.pad)):
        assert span["tags"][":authority"] == e.authority
        assert span["tags"][":path"] == "/backend/seed"
        assert span["localEndpoint"]["serviceName"] == "ambassador-default"
    assert {p["headers"]["host"] for p in col.posts()} == {"cluster_tracing_zipkin_9411_default"}


def test_collector_by_dns_name(edge, collectors):
    col = collectors()
    e = edge(dict(tracing_service(col.port), spec={"service": f"localhost:{col.port}",
                                                   "driver": "zipkin"}))
    col.wait_trace(one(e.upstream("/dns"), "x-b3-traceid"), pad=e.pad)


def test_span_timing_is_in_microseconds(processes, edge, collectors):
    col = collectors()
    slow = start_quote(processes, name="slow")
    extra = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: slow}
spec: {hostname: "*", prefix: /slow/, service: "127.0.0.1:%d"}
""" % slow.port
    e = edge(tracing_service(col.port), prefix="/echo/", extra=extra)
    t0 = now_us()
    r = e.get("/slow/delay/120", {"b3": "5af7183fb1d4cf5f5af7183fb1d4cf5f-6b221d5bc9e6496c-1"})
    t1 = now_us()
    assert r.status_code == 200
    hcm, router = split(col.wait_trace("5af7183fb1d4cf5f5af7183fb1d4cf5f",
                                       pad=lambda: [e.get("/echo/pad") for _ in range(3)]))
    for span in (hcm, router):
        assert t0 - 1000 <= span["timestamp"] <= t1, (t0, span["timestamp"], t1)
        assert 120_000 <= span["duration"] <= t1 - t0 + 1000, span["duration"]
    assert hcm["duration"] >= router["duration"]


def test_b3_headers_pass_untouched_when_tracing_is_off(edge):
    e = edge(None)
    sent = {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312",
            "x-b3-parentspanid": "0020000000000001", "x-b3-sampled": "1", "x-b3-flags": "1",
            "b3": "463ac35c9f6413ad-a2fb4a1d1a96d312-1"}
    up = e.upstream("/off", sent)
    assert {k: up.get(k) for k in sent} == {k: [v] for k, v in sent.items()}
    assert "x-b3-traceid" not in e.upstream("/off-bare")
    assert e.spans_counter("sent") == 0


def test_switch_away_from_a_dead_collector(edge, collectors):
    """POSTs hanging on a dead collector hold neither the reload nor, for longer than their
    timeout, the spans meant for the next collector."""
    dead, live = collectors(dead=True), collectors()
    e = edge(tracing_service(dead.port))
    for i in range(30):  # 60 spans: a POST of 5 hangs, then the rest wait for 250 or 5 s
        e.get(f"/to-dead/{i}")
    time.sleep(0.3)
    t0 = time.monotonic()
    e.set_tracing(tracing_service(live.port))
    assert time.monotonic() - t0 < 3, "the reload waited for the dead collector"
    trace_id = one(e.upstream("/to-live"), "x-b3-traceid")
    live.wait_trace(trace_id, pad=e.pad, timeout=15)
    deadline = time.monotonic() + 10  # the hanging POST is dropped at its 5 s timeout
    while e.spans_counter("dropped") != 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert e.spans_counter("dropped") == 5
    assert e.spans_counter("sent") >= 55 + 2  # what waited went to the live collector


def test_ids_are_unique_across_workers_and_processes(edge, collectors):
    col = collectors()
    spec = tracing_service(col.port, sampling={"overall": 0})  # ids are taken all the same
    first, second = edge(spec, workers=4), edge(spec, workers=4)
    seen_trace, seen_span = [], []
    for e in (first, second):
        for i in range(150):  # a new connection each time: spread over the workers
            up = upstream_headers(requests.get(f"http://{e.authority}/id/{i}", timeout=5))
            seen_trace.append(one(up, "x-b3-traceid"))
            seen_span += [one(up, "x-b3-spanid"), one(up, "x-b3-parentspanid")]
    assert all(re.fullmatch(r"[a-f0-9]{32}", t) for t in seen_trace)
    assert len(set(seen_trace)) == len(seen_trace), "a trace id was handed out twice"
    assert len(set(seen_span)) == len(seen_span), "a span id was handed out twice"
    assert len({t[:16] for t in seen_trace}) == len(seen_trace)  # the high half is random too


def test_collector_settings_change_live(edge, collectors):
    col = collectors()
    e = edge(tracing_service(col.port))
    t1 = one(e.upstream("/before"), "x-b3-traceid")
    col.wait_trace(t1, pad=e.pad)
    e.set_tracing(tracing_service(col.port, config={"collector_endpoint": "/second/path"},
                                  custom_tags=[{"tag": "phase", "literal": {"value": "two"}}],
                                  sampling={"overall": 100}))
    n_posts = len(col.posts())
    t2 = one(e.upstream("/after"), "x-b3-traceid")
    for span in split(col.wait_trace(t2, pad=e.pad)):
        assert span["tags"]["phase"] == "two"
    assert {p["path"] for p in col.posts()[n_posts:]} == {"/second/path"}
    e.set_tracing(tracing_service(col.port, sampling={"overall": 0}))
    assert one(e.upstream("/off"), "x-b3-sampled") == "0"


def test_odd_header_values_stay_valid_json(edge, collectors):
    """Tag values are JSON-escaped and the body stays valid UTF-8 JSON, whatever bytes the
    request carried (quotes, backslashes, tabs, UTF-8, bytes that are not UTF-8, values cut to
    fit a record)."""
    col = collectors()
    e = edge(tracing_service(col.port, tag_headers=["x-quote", "x-utf8", "x-latin1", "x-long",
                                                    "user-agent"]))
    values = {"x-quote": 'say "hi" \\ back\tslash </script>'.encode(),
              "x-utf8": "café ünïcode ☃ 𝄞".encode(),
              "x-latin1": b"caf\xe9 \xff\xfe",
              "x-long": ("é" * 1500 + "𝄞" * 200).encode(),
              "user-agent": b'agent "quoted" \\'}
    with RawConn(e.port) as c:
        c.send(f"GET /odd HTTP/1.1\r\nHost: {e.authority}\r\n".encode()
               + b"".join(k.encode() + b": " + v + b"\r\n" for k, v in values.items())
               + b"\r\n")
        resp = c.read_response()
    assert resp.status == 200
    up = {}
    for name, value in json.loads(resp.body)["headers"]:
        up.setdefault(name.lower(), []).append(value)
    trace_id = one(up, "x-b3-traceid")
    col.wait_trace(trace_id, pad=e.pad)
    for post in col.posts():
        text = post["body"].decode("utf-8")  # strict: raises on bytes that are not UTF-8
        json.loads(text)
        assert all(ch >= " " for ch in text), "a raw control character in the JSON body"
    for span in col.trace(trace_id):
        tags = span["tags"]
        assert tags["x-quote"] == values["x-quote"].decode(), span["name"]
        assert tags["x-utf8"] == values["x-utf8"].decode(), span["name"]
        assert tags["user-agent"] == values["user-agent"].decode(), span["name"]
        assert isinstance(tags.get("x-latin1"), str) and tags["x-latin1"].startswith("caf")
        long_value = values["x-long"].decode()
        assert long_value.startswith(tags["x-long"]) and len(tags["x-long"]) >= 256


# ---------------------------------------------------------------------------------------------
# Spans of the calls to policy services (issue 12, point 7)

def test_auth_call_span_http(edge, collectors, processes):
    """An HTTP AuthService check is a CLIENT child span of the HCM span, "async <auth cluster>
    egress", before the router span; the auth service gets its B3 context, never the client's."""
    from policy_peer import start_http_auth
    col = collectors()
    auth = start_http_auth(processes)
    extra = ("apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: a}\n"
             f"spec: {{auth_service: '127.0.0.1:{auth.port}'}}\n")
    e = edge(tracing_service(col.port), extra=extra)
    up = e.upstream("/hello", headers={"x-b3-traceid": "a" * 16, "x-b3-spanid": "b" * 16, "x-b3-sampled": "1"})
    trace_id = one(up, "x-b3-traceid")
    spans = col.wait_trace(trace_id, pad=e.pad, count=3)
    auth_cluster = f"cluster_extauth_127_0_0_1_{auth.port}_default"
    hcm = next(s for s in spans if s["name"] == e.authority)
    router = next(s for s in spans if s["name"].startswith("router "))
    call = next(s for s in spans if s["name"] == f"async {auth_cluster} egress")
    assert span_errors(call) == []
    assert call["kind"] == "CLIENT" and call["traceId"] == trace_id
    assert call["parentId"] == hcm["id"]
    assert call["tags"]["upstream_cluster"] == auth_cluster
    assert call["tags"]["ext_authz_status"] == "ext_authz_ok"
    assert call["tags"]["http.status_code"] == "200"
    assert call["timestamp"] + call["duration"] <= router["timestamp"] + 1000
    seen = {k.lower(): v for k, v in auth.records()[0]["headers"]}
    assert seen["x-b3-traceid"] == trace_id and seen["x-b3-sampled"] == "1"
    assert seen["x-b3-spanid"] == call["id"] and seen["x-b3-parentspanid"] == hcm["id"]
    assert one(up, "x-b3-spanid") == router["id"] != call["id"]


def test_ratelimit_and_grpc_auth_call_spans(edge, collectors, processes):
    from policy_peer import start_authz
    col = collectors()
    peer = start_authz(processes, ratelimit=True)
    extra = ("apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata: {name: a}\n"
             f"spec: {{auth_service: '127.0.0.1:{peer.port}', proto: grpc, protocol_version: v3}}\n---\n"
             "apiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {name: r}\n"
             f"spec: {{service: '127.0.0.1:{peer.port}', protocol_version: v3, timeout_ms: 1000}}\n---\n"
             "apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador}\n"
             "spec: {config: {default_labels: {ambassador: {defaults: [remote_address]}}}}\n")
    e = edge(tracing_service(col.port), extra=extra)
    trace_id = one(e.upstream("/hello", headers={"x-client-trace-id": "t1"}), "x-b3-traceid")
    spans = col.wait_trace(trace_id, pad=e.pad, count=4)
    names = sorted(s["name"] for s in spans)
    auth_span = next(s for s in spans if s["name"].startswith("async cluster_extauth_"))
    rl_span = next(s for s in spans if s["name"] == f"async cluster_127_0_0_1_{peer.port}_default egress")
    assert len(spans) == 4, names
    for s in (auth_span, rl_span):
        assert span_errors(s) == [] and s["kind"] == "CLIENT"
        assert s["tags"]["grpc.status_code"] == "0"
    assert auth_span["tags"]["ext_authz_status"] == "ext_authz_ok"
    assert rl_span["tags"]["ratelimit_status"] == "ok"
    assert auth_span["timestamp"] <= rl_span["timestamp"]
