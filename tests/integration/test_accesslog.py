"""Black-box tests of the access log and the `ambassador` Module's envoy_log_type,
envoy_log_format and envoy_log_path (reference/envoy-compat.md §2.3): Emissary's default text line
on stdout, one JSON object per line with every Emissary key, a custom text format, a log file that a
reload switches to another file, and a format that does not compile (an error with file:line in
diag, and the default line in its place). One Portico with one worker in front of the quote
backend; each test writes its own Module."""

import json
import re
import time

import pytest
import requests

from conftest import RawConn, free_port, start_quote
from portico import docs, listener_yaml, mapping_yaml, start_portico

def config(port, backend, refused):
    """A Listener on <port>, the quote-backend Mapping to 127.0.0.1:<backend> and the nowhere
    Mapping to the closed port <refused>."""
    return docs(listener_yaml(port), mapping_yaml("quote-backend", f"127.0.0.1:{backend}"),
                mapping_yaml("nowhere", f"127.0.0.1:{refused}", prefix="/refused/"))

MODULE = """\
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {{name: ambassador}}
spec:
  config:
{config}"""

# Emissary's default line (§2.3): ACCESS [time] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION
# UPSTREAM_TIME "XFF" "UA" "REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
DEFAULT_LINE = re.compile(
    r'^ACCESS \[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>HTTP/1\.[01])" '
    r'(?P<code>\d+) (?P<flags>\S+) (?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) (?P<upstream_time>\d+|-) '
    r'"(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream>[^"]*)"$', re.M)

EMISSARY_KEYS = {
    "start_time", "method", "path", "protocol", "response_code", "response_flags", "bytes_received",
    "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id",
    "authority", "upstream_host", "upstream_cluster", "upstream_local_address",
    "downstream_local_address", "downstream_remote_address", "requested_server_name",
    "istio_policy_status", "upstream_transport_failure_reason",
}


class Portico:
    def __init__(self, proc, port, admin, cfg, backend):
        self.proc, self.port, self.admin, self.cfg, self.backend = proc, port, admin, cfg, backend

    def diag(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/diag/?json=true",
                            timeout=5).json()

    def get(self, path, **headers):
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=5)

    def write_module(self, config):
        """Writes the Module and waits until a new snapshot is in force (published to workers)."""
        gen = self.diag()["generation"]
        text = MODULE.format(config="".join(f"    {line}\n" for line in config.splitlines()))
        (self.cfg / "module.yaml").write_text(text)
        deadline = time.time() + 10
        while self.diag()["generation"] == gen:
            assert time.time() < deadline, "the Module change was never loaded"
            time.sleep(0.02)
        time.sleep(0.1)  # the worker adopts it between events, just after it was published


def wait_for(get_text, pattern, count=1, timeout=5.0):
    """All matches of <pattern> in get_text() once there are <count> of them (the log is written
    at most half a second after a request)."""
    rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
    deadline = time.time() + timeout
    while True:
        found = list(rx.finditer(get_text()))
        if len(found) >= count:
            return found
        assert time.time() < deadline, f"no {count} lines /{rx.pattern}/ in:\n{get_text()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture
def portico(processes, tmp_path):
    backend = start_quote(processes)
    p = start_portico(processes, tmp_path, config("$PORT", backend.port, free_port()), workers=1)
    return Portico(p.proc, p.port, p.admin_port, p.config_dir, backend)


def test_default_text_line(portico):
    r = portico.get("/backend/hello?x=1", **{"User-Agent": "pytest-alog", "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200
    m = wait_for(portico.proc.log, DEFAULT_LINE)[0]
    assert m["method"] == "GET" and m["path"] == "/backend/hello?x=1" and m["proto"] == "HTTP/1.1"
    assert m["code"] == "200" and m["flags"] == "-" and m["upstream_time"] != "-"
    assert int(m["tx"]) == len(r.content)
    assert m["xff"] == "203.0.113.9,127.0.0.1"
    assert m["ua"] == "pytest-alog"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", m["rid"])
    assert m["authority"] == f"127.0.0.1:{portico.port}"
    assert m["upstream"] == f"127.0.0.1:{portico.backend.port}"

    portico.get("/no-such-route")
    m = wait_for(portico.proc.log, DEFAULT_LINE, count=2)[1]
    assert (m["code"], m["flags"], m["upstream_time"], m["upstream"]) == ("404", "NR", "-", "-")


def test_json_lines_have_every_emissary_key(portico):
    portico.write_module("envoy_log_type: json")
    portico.get("/backend/json", **{"User-Agent": 'say "hi"'})
    portico.get("/refused/")
    lines = wait_for(portico.proc.log, r"^\{.*\}$", count=2)
    ok, refused = (json.loads(m.group(0)) for m in lines[:2])
    for obj in (ok, refused):
        assert set(obj) == EMISSARY_KEYS
        assert list(obj) == sorted(obj)  # Envoy's JSON formatter sorts keys
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["start_time"])
        assert obj["downstream_local_address"] == f"127.0.0.1:{portico.port}"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", obj["downstream_remote_address"])
        assert obj["requested_server_name"] is None and obj["istio_policy_status"] is None
    assert ok["method"] == "GET" and ok["path"] == "/backend/json" and ok["protocol"] == "HTTP/1.1"
    assert ok["response_code"] == 200 and ok["response_flags"] == "-"
    assert isinstance(ok["bytes_sent"], int) and ok["bytes_sent"] > 0 and ok["bytes_received"] == 0
    assert isinstance(ok["duration"], int)
    assert re.fullmatch(r"\d+", ok["upstream_service_time"])
    assert ok["user_agent"] == 'say "hi"'
    assert ok["x_forwarded_for"] == "127.0.0.1"
    assert ok["authority"] == f"127.0.0.1:{portico.port}"
    assert ok["upstream_host"] == f"127.0.0.1:{portico.backend.port}"
    assert ok["upstream_cluster"] == f"127_0_0_1_{portico.backend.port}"  # alt_stat_name, as Envoy
    assert re.fullmatch(r"127\.0\.0\.1:\d+", ok["upstream_local_address"])
    assert ok["upstream_transport_failure_reason"] is None
    assert refused["response_code"] == 503 and refused["response_flags"] == "UF"
    assert refused["upstream_service_time"] is None
    assert refused["upstream_transport_failure_reason"] == "delayed connect error: Connection refused"
    assert not DEFAULT_LINE.search(portico.proc.log())


def test_json_custom_keys(portico):
    portico.write_module("envoy_log_type: typed_json\n"
                         "envoy_log_format:\n"
                         "  code: '%RESPONSE_CODE%'\n"
                         "  tenant: '%REQ(X-Tenant)%'\n"
                         "  line: '%REQ(:METHOD)% %REQ(X-Missing)%'")
    portico.get("/backend/k", **{"X-Tenant": "acme"})
    obj = json.loads(wait_for(portico.proc.log, r'^\{"code".*$')[0].group(0))
    assert obj == {"code": 200, "line": "GET -", "tenant": "acme"}


def test_custom_text_format(portico):
    portico.write_module("envoy_log_format: 'CUSTOM %REQ(:METHOD)% %REQ(X-Tenant?X-Fallback):4% "
                         "%RESPONSE_CODE% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
                         "%START_TIME(%s.%3f)% %UPSTREAM_CLUSTER% 100%%'")
    portico.get("/backend/t", **{"X-Fallback": "fallback"})
    portico.get("/backend/t", **{"X-Tenant": "ac"})
    with RawConn(portico.port) as c:  # unparsable: nothing of the request is known
        c.send(b"GARBAGE\r\n\r\n")
        assert c.read_response().status == 400
    found = wait_for(portico.proc.log, r"^CUSTOM .*$", count=3)
    assert re.fullmatch(r"CUSTOM GET fall 200 127\.0\.0\.1 \d{10}\.\d{3} 127_0_0_1_\d+ 100%",
                        found[0].group(0))
    assert re.fullmatch(r"CUSTOM GET ac 200 .*", found[1].group(0))
    assert re.fullmatch(r"CUSTOM - - 400 127\.0\.0\.1 \d{10}\.\d{3} - 100%", found[2].group(0))
    assert not DEFAULT_LINE.search(portico.proc.log())


def test_log_path_and_reload_to_another_file(portico, tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    portico.write_module(f"envoy_log_path: {first}")
    portico.get("/backend/one")
    wait_for(first.read_text, DEFAULT_LINE)
    portico.write_module(f"envoy_log_path: {second}\nenvoy_log_type: json")
    portico.get("/backend/two")
    obj = json.loads(wait_for(second.read_text, r"^\{.*\}$")[0].group(0))
    assert obj["path"] == "/backend/two"
    # Each request went to the file of the snapshot in force; nothing to stdout.
    assert [m["path"] for m in DEFAULT_LINE.finditer(first.read_text())] == ["/backend/one"]
    assert "/backend/two" not in first.read_text()
    assert not DEFAULT_LINE.search(portico.proc.log())
    # Back to stdout.
    portico.write_module("envoy_log_path: /dev/fd/1")
    portico.get("/backend/three")
    assert wait_for(portico.proc.log, DEFAULT_LINE)[0]["path"] == "/backend/three"
    assert "/backend/three" not in second.read_text()


def test_bad_format_is_an_error_and_default_is_used(portico):
    portico.write_module("envoy_log_format: 'BROKEN %NOT_AN_OPERATOR% %REQ(:PATH)%'")
    diag = portico.diag()
    errors = [e for e in diag["errors"] if e["object"] == "Module/default/ambassador"]
    assert len(errors) == 1, diag["errors"]
    assert errors[0]["location"].endswith("module.yaml:1")
    assert errors[0]["message"] == ("envoy_log_format: unknown command operator %NOT_AN_OPERATOR% at "
                                    "position 7; the default format is used")
    portico.get("/backend/after-bad-format")
    assert wait_for(portico.proc.log, DEFAULT_LINE)[0]["path"] == "/backend/after-bad-format"
    assert "BROKEN" not in portico.proc.log()


def test_unopenable_log_path_falls_back_to_stdout(portico, tmp_path):
    portico.write_module(f"envoy_log_path: {tmp_path}/no/such/dir/access.log")
    errors = [e for e in portico.diag()["errors"] if e["object"] == "Module/default/ambassador"]
    assert len(errors) == 1 and "access logs go to stdout" in errors[0]["message"], errors
    portico.get("/backend/stdout")
    assert wait_for(portico.proc.log, DEFAULT_LINE)[0]["path"] == "/backend/stdout"


def test_chunked_bodies_count_without_their_framing(portico):
    """BYTES_RECEIVED and BYTES_SENT are body bytes, as Envoy counts them, also when both bodies
    are chunked and forwarded chunked (the chunk-size lines and CRLFs are not counted)."""
    parts = [b"a" * 300, b"b" * 5, b"c" * 4096]
    r = requests.post(f"http://127.0.0.1:{portico.port}/backend/chunked/5000", data=iter(parts),
                      timeout=5)
    assert r.status_code == 200
    assert r.headers.get("transfer-encoding") == "chunked"
    m = wait_for(portico.proc.log, DEFAULT_LINE)[0]
    assert m["method"] == "POST"
    assert int(m["rx"]) == sum(len(p) for p in parts)
    assert int(m["tx"]) == len(r.content) == 5000
