"""Acceptance for the Istio integration guide (the seed, docs/howtos/istio.md in Emissary): its
YAML, as written, served by Portico in front of a STRICT-mTLS Istio sidecar (HAProxy, see
istio.py), with the certificates that istio-agent writes into AMBASSADOR_ISTIO_SECRET_DIR.

The tests that need Portico to originate TLS are skipped until ``portico --version`` names the
``tls`` feature (istio.portico_has_tls; ``PORTICO_TLS_TESTS=1`` runs them anyway).

What the TLS tests expect of Portico (beyond the guide's YAML):
- AMBASSADOR_ISTIO_SECRET_DIR: key.pem + cert-chain.pem become Secret ``istio-certs`` in
  AMBASSADOR_NAMESPACE; the files are watched and a new pair is used without a restart, for
  new upstream connections, within a few seconds (the tests poll up to 5 s).
- A pair whose key does not match its certificate is not used: the previous pair stays in force,
  and the diag JSON (``/ambassador/v0/diag/?json=true`` on the admin port) lists an entry under
  ``errors`` naming ``istio-certs`` (in ``object`` or ``message``) and saying the key does not
  match; it is gone once a good pair arrives.
- An empty secret dir at start does not hold readiness back (check_ready 200); meanwhile the
  route answers 503 (it exists, its upstream cannot be used) and it starts working when the files
  appear, without a restart.
- ``tls: istio-upstream`` with ``service: quote`` and no port: the Service's only port (80) is used
  (Portico's one-port rule, not Emissary's 443 default), so the YAML works as written.
- The HTTPS Listener answers with a fallback self-signed certificate when no Host gives one
  (the guide's ``curl -k https://...``).
- Upstream TLS sessions from a previous certificate are not resumed after a rotation: the sidecar
  must see the new identity (its log shows the client certificate serial of each connection).
- A sidecar that closes the connection after each response (``option httpclose``) costs no
  request: Portico does not reuse an upstream connection that said ``Connection: close``.
"""

import collections
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

import seed
from conftest import RawConn, binary, free_port, shared_path
from istio import (issue_workload, make_mesh, mismatched_pair, portico_has_tls, start_sidecar,
                   write_istio_dir, write_workload)
from tlsenv import LISTENERS, Edge as TLSEdge

needs_tls = pytest.mark.skipif(
    not portico_has_tls(),
    reason="Portico TLS origination not built yet (`portico --version` names no `tls` feature; "
           "PORTICO_TLS_TESTS=1 forces)")

SEED_DOC = Path(os.environ.get("PORTICO_SEED_DOC", str(shared_path("seed/istio-integration.md"))))
RESET_BODY = ("upstream connect error or disconnect/reset before headers. "
              "reset reason: connection termination")
PRODUCT_NAMESPACE = "default"

# ---- the guide's YAML (seed.py), $productNamespace$ -> default ----

SEED_TLSCONTEXT = "---\n" + seed.in_namespace(seed.TLSCONTEXT, PRODUCT_NAMESPACE)
SEED_MAPPING_MTLS = seed.QUOTE_MAPPING_MTLS
SEED_MAPPING_PLAIN = seed.QUOTE_MAPPING_PLAIN

# quote.yaml's Service (port 80) whose pod is the sidecar: targetPort = the sidecar's port.
QUOTE_SERVICE = """\
---
apiVersion: v1
kind: Service
metadata:
  name: quote
  namespace: default
spec:
  ports:
    - name: http
      port: 80
      targetPort: {port}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: quote
  namespace: default
subsets:
  - addresses:
      - ip: 127.0.0.1
    ports:
      - name: http
        port: {port}
"""


def _replace(path, text):
    """Replaces a config file by rename, so Portico never reads half of it."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


class Edge(TLSEdge):
    """A running Portico with the seed's configuration."""

    def __init__(self, proc, cfg, istio_dir, http, https, admin):
        super().__init__(proc, cfg, http, https, admin)
        self.istio_dir = istio_dir

    def set_mapping(self, text):
        _replace(self.cfg / "quote-backend.yaml", text)

    def curl_https(self, path="/backend/"):
        """The guide's `curl -k https://{{AMBASSADOR_HOST}}/backend/`: (status, body)."""
        code, body, _ = self.curl("-k", f"https://127.0.0.1:{self.https}{path}")
        return code, body


def wait_until(what, fn, timeout=5.0, interval=0.05):
    """Calls fn() until it returns a true value; fails with <what> and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {v!r})",
                        pytrace=False)
        time.sleep(interval)


def start_edge(processes, tmp, sidecar, mapping=SEED_MAPPING_MTLS, wl=None):
    """Portico with the seed's Listeners, TLSContext, quote Service and <mapping>; the istio dir
    is written with workload <wl> first (left empty when None)."""
    tmp = Path(tmp)
    cfg = tmp / "config"
    istio_dir = tmp / "istio-certs"
    cfg.mkdir(parents=True)
    istio_dir.mkdir(parents=True)
    if wl is not None:
        write_workload(istio_dir, wl)
    http, https, admin = free_port(), free_port(), free_port()
    # createDefaultListeners: true, on free ports instead of 8080/8443.
    (cfg / "listeners.yaml").write_text(LISTENERS.format(http=http, https=https,
                                                         prefix="portico-"))
    (cfg / "istio-upstream.yaml").write_text(SEED_TLSCONTEXT)
    (cfg / "quote-service.yaml").write_text(QUOTE_SERVICE.format(port=sidecar.port))
    (cfg / "quote-backend.yaml").write_text(mapping)
    env = {"AMBASSADOR_ISTIO_SECRET_DIR": str(istio_dir), "AMBASSADOR_NAMESPACE": "default",
           "AMBASSADOR_ENVOY_BASE_ID": "1"}
    proc = processes.start([binary("portico"), "run", "--config", cfg, "--admin-port", admin,
                            "--workers", "2"], name="portico", port=http, env=env)
    edge = Edge(proc, cfg, istio_dir, http, https, admin)
    wait_until("check_ready 200", lambda: edge.ready_status() == 200)
    return edge


@pytest.fixture
def edges(processes, tmp_path):
    """Starts Portico instances (start_edge) and stops them with a bounded wait: SIGTERM, then
    SIGKILL after 2 s. (At the time of writing Portico does not exit on SIGTERM once it has
    proxied a request; the shutdown is not what these tests are about.)"""
    started = []

    def start(sidecar, **kw):
        edge = start_edge(processes, tmp_path / f"edge{len(started)}", sidecar, **kw)
        started.append(edge)
        return edge

    yield start
    for edge in started:
        rc = edge.proc.stop(timeout=2.0)
        if rc == -9:
            print(f"note: portico (pid {edge.proc.pid}) ignored SIGTERM for 2 s; killed")


@pytest.fixture
def mesh(tmp_path):
    return make_mesh(tmp_path / "mesh")


@pytest.fixture
def portico_wl(mesh):
    """Portico's own identity, as istio-agent would issue it (ns default, sa portico)."""
    return issue_workload(mesh, "default", "portico")


@pytest.fixture
def sidecar(processes, tmp_path, quote_backend, mesh):
    """The quote pod's STRICT sidecar; one request per connection, so the log shows the
    identity Portico presents now, not the one of a connection pooled earlier."""
    return start_sidecar(processes, tmp_path / "sidecar", quote_backend.port, mesh, close=True)


def is_quote(body):
    try:
        doc = json.loads(body)
    except (ValueError, TypeError):
        return False
    return list(doc) == ["server", "quote", "time"]


# ---- runs today ----

@pytest.mark.skipif(not SEED_DOC.exists(), reason=f"{SEED_DOC} not present")
def test_seed_yaml_is_the_guides_yaml():
    """The YAML above is the guide's, byte for byte (apart from the namespace placeholder)."""
    doc = SEED_DOC.read_text()
    raw = re.findall(r"```[a-z]*\n(.*?)```", doc, re.S)
    # blocks inside the numbered steps are indented by three spaces
    flat = "\n".join(raw + [re.sub(r"(?m)^   ", "", b) for b in raw])
    for block in seed.BLOCKS:
        assert block in flat, block
    assert "AMBASSADOR_ISTIO_SECRET_DIR" in doc and "OUTPUT_CERTS: /etc/istio-certs" in doc
    assert RESET_BODY in doc


def test_plaintext_mapping_to_strict_sidecar_is_503_connection_termination(edges, sidecar):
    """"Enforcing authentication", step 1, over the HTTP Listener (needs no TLS in Portico):
    without `tls:` the sidecar closes the connection and the client gets Envoy's 503."""
    edge = edges(sidecar, mapping=SEED_MAPPING_PLAIN)
    r = edge.get()
    assert r.status_code == 503
    assert r.text == RESET_BODY
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["server"] == "envoy"
    sidecar.wait_errors(1)
    assert sidecar.entries() == []


# ---- needs TLS origination ----

@needs_tls
def test_mtls_to_strict_sidecar_over_https_and_http(edges, sidecar, portico_wl):
    """"Routing to services" step 3 and "Enforcing authentication" step 2."""
    edge = edges(sidecar, wl=portico_wl)
    status, body = edge.curl_https()
    assert status == 200, body
    assert is_quote(body), body
    entries = sidecar.wait_requests(1)
    assert sidecar.serials() == [portico_wl.serial]
    assert sidecar.alpns() == ["istio"]     # alpn_protocols: istio
    assert entries[0]["path"] == "/"         # Emissary's default rewrite: /backend/ -> /
    assert entries[0]["verify"] == "0"

    r = edge.get()
    assert r.status_code == 200, r.text
    assert is_quote(r.text)
    sidecar.wait_requests(2)
    assert sidecar.serials() == [portico_wl.serial] * 2
    assert sidecar.errors() == []


@needs_tls
def test_removing_tls_from_the_mapping_gives_503_then_restoring_it_works(edges, sidecar,
                                                                        portico_wl):
    edge = edges(sidecar, wl=portico_wl)
    assert edge.curl_https()[0] == 200

    edge.set_mapping(SEED_MAPPING_PLAIN)

    def https_503():
        status, body = edge.curl_https()
        return body if status == 503 else None

    assert wait_until("503 after removing tls:", https_503) == RESET_BODY
    r = edge.get()
    assert (r.status_code, r.text) == (503, RESET_BODY)
    assert sidecar.errors(), "the plaintext request never reached the sidecar"

    edge.set_mapping(SEED_MAPPING_MTLS)
    wait_until("200 after restoring tls:", lambda: edge.curl_https()[0] == 200)
    assert sidecar.serials()[-1] == portico_wl.serial


def _load(edge, seconds, results, stop):
    """One keep-alive client: GET /backend/ until <seconds> pass; appends (ok, detail)."""
    deadline = time.monotonic() + seconds
    conn = None
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if conn is None:
                conn = RawConn(edge.http, timeout=5)
            conn.request("GET", "/backend/")
            r = conn.read_response()
            ok = r.status == 200 and is_quote(r.body)
            results.append((ok, None if ok else f"{r.status} {r.body[:120]!r}"))
            if (r.header("connection") or "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, ConnectionError, ValueError) as e:
            results.append((False, f"{type(e).__name__}: {e}"))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


@needs_tls
def test_rotation_under_load_loses_no_request(edges, sidecar, mesh, portico_wl):
    """istio-agent rotates: key.pem, then cert-chain.pem 300 ms later (root unchanged), while two
    keep-alive clients send requests for 5 s. Between the two files the directory holds the new
    key with the old chain: that pair must not be used."""
    edge = edges(sidecar, wl=portico_wl)
    assert edge.get().status_code == 200
    new = issue_workload(mesh, "default", "portico")
    results = []
    stop = threading.Event()
    clients = [threading.Thread(target=_load, args=(edge, 5.0, results, stop)) for _ in range(2)]
    for t in clients:
        t.start()
    try:
        time.sleep(1.0)
        written = write_workload(edge.istio_dir, new, delay=0.3)
    except BaseException:
        stop.set()
        raise
    finally:
        for t in clients:
            t.join(15)
    assert written == ["key.pem", "cert-chain.pem"]     # the root did not change
    failures = [d for ok, d in results if not ok]
    assert len(results) >= 50, f"only {len(results)} requests in 5 s"
    assert failures == [], f"{len(failures)}/{len(results)} failed: {failures[:5]}"

    wait_until("a request after the load", lambda: edge.get().status_code == 200)
    serials = sidecar.serials()
    names = {portico_wl.serial: "old", new.serial: "new", None: "no cert"}
    seen = collections.Counter(names.get(x, f"{x:x}") for x in serials)
    assert serials[0] == portico_wl.serial
    assert new.serial in serials, f"the new certificate was never presented: {dict(seen)}"
    assert serials[-10:] == [new.serial] * 10, \
        f"the old certificate is still presented: last 10 {[names.get(x) for x in serials[-10:]]}"
    assert set(seen) == {"old", "new"}, dict(seen)


@needs_tls
def test_mismatched_key_keeps_the_old_pair_and_is_reported(edges, sidecar, mesh, portico_wl):
    edge = edges(sidecar, wl=portico_wl)
    assert edge.get().status_code == 200
    b, c = issue_workload(mesh, "default", "portico"), issue_workload(mesh, "default", "portico")
    key, chain = mismatched_pair(b, c)
    write_istio_dir(edge.istio_dir, key, chain, mesh.root_pem)
    seen_before = len(sidecar.entries())

    # Three times Emissary's 500 ms debounce: the bad pair has been seen by now.
    time.sleep(1.5)
    for _ in range(5):
        r = edge.get()
        assert r.status_code == 200, r.text
    sidecar.wait_requests(seen_before + 5)
    assert set(sidecar.serials()[seen_before:]) == {portico_wl.serial}

    def diag_error():
        for e in edge.diag().get("errors", []):
            text = json.dumps(e)
            if ("istio-certs" in text or str(edge.istio_dir) in text) and re.search(
                    r"(?i)match|private key", e.get("message", "")):
                return e
        return None

    wait_until("a diag error about the istio-certs pair (errors[] naming istio-certs, "
               "saying the key does not match)", diag_error, timeout=3)

    # A good pair replaces it, and the error goes away.
    good = issue_workload(mesh, "default", "portico")
    write_workload(edge.istio_dir, good, delay=0.3)
    wait_until("the new serial at the sidecar",
               lambda: edge.get().status_code == 200 and sidecar.serials()[-1] == good.serial)
    wait_until("the diag error cleared", lambda: diag_error() is None)


@needs_tls
def test_empty_istio_dir_at_start_then_certs_arrive(edges, sidecar, portico_wl):
    """The emptyDir is empty until istio-agent's first write: Portico is ready anyway, and the
    mTLS route works once the files appear, without a restart."""
    edge = edges(sidecar, wl=None)
    assert edge.ready_status() == 200
    r = edge.get()
    assert r.status_code == 503, r.text     # the route exists; its upstream cannot be used yet
    assert [s for s in sidecar.serials() if s is not None] == []

    pid = edge.proc.pid
    write_workload(edge.istio_dir, portico_wl, delay=0.3)
    wait_until("200 once the certs are written", lambda: edge.get().status_code == 200,
               timeout=5)
    assert edge.proc.pid == pid and edge.proc.running
    assert sidecar.serials()[-1] == portico_wl.serial
    status, body = edge.curl_https()
    assert status == 200 and is_quote(body)


def test_check_reads_the_istio_dir(tmp_path, mesh, portico_wl):
    """`portico check` sees what `run` would: the seed's mTLS Mapping is valid once Istio has
    written its certificates to AMBASSADOR_ISTIO_SECRET_DIR, and says why it is not before."""
    cfg, istio_dir = tmp_path / "config", tmp_path / "istio-certs"
    cfg.mkdir()
    istio_dir.mkdir()
    (cfg / "istio-upstream.yaml").write_text(SEED_TLSCONTEXT)
    (cfg / "quote-backend.yaml").write_text(SEED_MAPPING_MTLS)

    def check():
        env = dict(os.environ, AMBASSADOR_ISTIO_SECRET_DIR=str(istio_dir),
                   AMBASSADOR_NAMESPACE="default")
        return subprocess.run([str(binary("portico")), "check", str(cfg)], capture_output=True,
                              text=True, timeout=30, env=env)

    r = check()
    assert r.returncode == 1
    assert f"AMBASSADOR_ISTIO_SECRET_DIR {istio_dir}: " in r.stdout
    assert "secret istio-certs not found" in r.stdout
    write_workload(istio_dir, portico_wl)
    r = check()
    assert (r.returncode, r.stdout) == (0, ""), r.stdout + r.stderr
