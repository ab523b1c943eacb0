"""The `portico` command line: run, check, --help, --version (DESIGN.md "The contract")."""

import re
import subprocess

import pytest

import seed
from conftest import binary
from portico_cfg import check, dump, line_of, mapping

USAGE_RX = re.compile(r"usage: portico run --config DIR")


def run(*args, timeout=10):
    return subprocess.run([str(binary("portico"))] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def test_help_exits_zero_and_documents_the_flags():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert USAGE_RX.search(out)
    for flag in ("--config", "--admin-port", "--workers", "--log-level", "--version", "check"):
        assert flag in out, flag


def test_version_exits_zero():
    r = run("--version")
    assert r.returncode == 0
    assert re.match(r"^portico \d+\.\d+\.\d+", r.stdout), r.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["run", "--bogus", "x"], ["frob"]])
def test_unknown_flag_or_command_exits_2_with_usage(args):
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert USAGE_RX.search(r.stderr), r.stderr
    assert r.stdout == ""


def test_run_without_config_says_so():
    r = run("run", "--admin-port", "1")
    assert r.returncode == 2
    assert "--config" in r.stderr.splitlines()[0], r.stderr


def test_check_without_directory_errors():
    r = run("check")
    assert r.returncode == 2
    assert "director" in r.stderr


def test_check_missing_directory_errors(tmp_path):
    r = check(tmp_path / "nope")
    assert r.returncode == 1
    assert str(tmp_path / "nope") in r.stdout + r.stderr


def test_check_valid_directory_exits_zero(tmp_path):
    (tmp_path / "ok.yaml").write_text(dump(mapping("good", "/backend/", "127.0.0.1:9")))
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ""


def test_check_reports_the_bad_mapping_with_file_and_line(tmp_path):
    (tmp_path / "good.yaml").write_text(dump(mapping("good", "/backend/", "127.0.0.1:9")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("# a comment first\n" + dump(
        mapping("other", "/other/", "127.0.0.1:9"),
        mapping("bad", "/bad/", "127.0.0.1:9", timeout_ms="abc")))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert len(lines) == 1, lines
    want = f"{bad}:{line_of(bad, 'timeout_ms: abc')}: Mapping/default/bad: "
    assert lines[0].startswith(want), (lines[0], want)
    assert "timeout_ms" in lines[0]


def test_check_reports_a_yaml_syntax_error_with_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  labels: [a, b\n")
    r = check(tmp_path)
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(f))}:\d+: ", r.stdout + r.stderr, re.M), r.stdout


# ---- the seed document's YAML (seed.py), $productNamespace$ -> Emissary's default "ambassador" ----

SEED = seed.documents(seed.TLSCONTEXT, seed.MTLS_MAPPING, seed.QUOTE_MAPPING_MTLS, seed.TRACING)


def seed_check(tmp_path):
    f = tmp_path / "seed.yaml"
    f.write_text(SEED)
    r = check(tmp_path)
    return f, r, [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]


def test_seed_yaml_check_exits_1(tmp_path):
    f, r, lines = seed_check(tmp_path)
    assert r.returncode == 1, lines


def test_seed_mtls_mapping_without_service_is_rejected_clearly(tmp_path):
    # The guide's mtls-mapping has no `service:`; Emissary requires one as well.
    f, r, lines = seed_check(tmp_path)
    start = line_of(f, "name: mtls-mapping") - 3  # its apiVersion line
    mine = [l for l in lines if "Mapping/default/mtls-mapping" in l]
    assert mine, lines
    assert any(l.startswith(f"{f}:") and "service" in l and "required" in l for l in mine), mine
    assert any(l.startswith(f"{f}:{start}:") or l.startswith(f"{f}:{start + 1}:")
               for l in mine), (mine, start)


def test_seed_tlscontext_and_tracingservice_are_not_errors(tmp_path):
    f, r, lines = seed_check(tmp_path)
    for l in lines:
        assert "TLSContext/ambassador/istio-upstream" not in l or "notice" in l, l
        assert "TracingService/ambassador/tracing" not in l or "notice" in l, l


def test_seed_quote_mapping_with_tls_reports_the_missing_istio_certs(tmp_path):
    """Without AMBASSADOR_ISTIO_SECRET_DIR there is no istio-certs Secret: check says so on the
    Mapping that needs it (run keeps the route, answering 503 until the certificates come)."""
    f, r, lines = seed_check(tmp_path)
    mine = [l for l in lines if "Mapping/default/quote-backend" in l]
    assert len(mine) == 1, lines
    line = mine[0]
    assert line.startswith(f"{f}:"), line
    assert "istio-upstream" in line and "istio-certs" in line and "not found" in line, line


def test_seed_yaml_under_run_rejects_the_same_mappings(processes, tmp_path):
    """`run` on the seed YAML without the Istio certificates: the TLSContext and TracingService
    load, both Mappings are reported (service required; the istio-certs Secret is missing), and
    the rest of the configuration serves."""
    from conftest import start_quote
    from portico_cfg import Portico, endpoints, service
    q = start_quote(processes, name="quote-pod")
    px = Portico(processes, tmp_path)
    seed_file = px.write("seed.yaml", SEED)
    px.write("quote.yaml", dump(service("quote", 80, q.port),
                                endpoints("quote", ["127.0.0.1"], q.port),
                                mapping("plain", "/plain/", "quote")))
    px.start()
    d = px.diag()
    errs = {e["object"]: e for e in d["errors"]}
    assert set(errs) == {"Mapping/default/mtls-mapping", "Mapping/default/quote-backend"}, errs
    assert "required" in errs["Mapping/default/mtls-mapping"]["message"]
    assert "istio-certs" in errs["Mapping/default/quote-backend"]["message"]
    assert errs["Mapping/default/quote-backend"]["location"].startswith(f"{seed_file}:")
    kinds = {(r["kind"], r["name"]) for r in d["resources"]}
    assert ("TLSContext", "istio-upstream") in kinds
    assert ("TracingService", "tracing") in kinds
    assert px.status("/plain/") == 200
    assert px.status("/backend/") == 503  # the route stays; its TLS context waits for istio-certs
