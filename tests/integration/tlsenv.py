"""Helpers for the TLS termination and origination tests (test_tls_termination.py,
test_tls_origination.py): certificates, Secrets, a Portico with an HTTP and an HTTPS Listener, a
Python TLS client that reports what was negotiated, and an HAProxy that terminates TLS in front
of the quote backend and logs what it saw of Portico's handshake.

Import with ``from tlsenv import ...`` (tests/integration is on sys.path through conftest.py).

Certificates (ECDSA P-256, so that generating a few per test costs milliseconds):

``make_ca(cn) -> Cert``
    A self-signed CA (CA:TRUE, keyCertSign). ``.cert_pem``, ``.key_pem``, ``.cert``, ``.serial``.
``issue(ca, cn, dns=(), ips=(), client=False) -> Cert``
    A leaf signed by <ca>: subject CN=<cn>, SANs <dns> and <ips>, EKU serverAuth (+clientAuth
    when <client>). ``.chain_pem`` is leaf + CA. ``.write(dir, name)`` writes ``<name>.key``,
    ``<name>.crt`` (chain) and ``<name>.pem`` (chain + key, HAProxy's crt format).
``secret_yaml(name, crt=None, key=None, ca=None, namespace=None, type=...)``
    A v1 Secret with base64 ``data``: tls.crt / tls.key / ca.crt.

Portico:

``start_portico(processes, tmp, *docs, workers=1, env=None, args=()) -> Edge``
    Writes the two Listeners (HTTP and HTTPS on free ports, securityModel XFP, all namespaces)
    and each YAML text of <docs> into its own file, starts ``portico run`` and waits until it is
    ready. ``Edge.http``, ``.https``, ``.admin``, ``.cfg``, ``.proc``; ``.get(path, host=None)``
    over cleartext (HTTP Listener, or ``port=edge.https`` for cleartext on the HTTPS port);
    ``.diag()``; ``.diag_errors()``; ``.ready_status()``; ``.curl(args)``; ``.access_lines()``.

Python TLS client:

``client_ctx(minv=None, maxv=None, alpn=None, cert=None, tmp=None, verify_ca=None)``
    An SSLContext: no verification unless <verify_ca> (a Cert) is given, versions as
    ``ssl.TLSVersion``, ALPN list, client certificate (a Cert, written under <tmp>).
``tls_get(port, ctx, sni=None, host=None, path="/backend/", session=None, request=True)``
    Connects, handshakes, sends one GET with ``Connection: close`` and reads to EOF. Never raises
    for TLS or connection errors: ``.error`` holds them (``None`` when all went well).
    ``.status``, ``.headers`` (dict, lower-case names), ``.body``, ``.version``, ``.alpn``,
    ``.peer`` (x509 of the server certificate), ``.subject_cn``, ``.session``, ``.reused``,
    ``.handshake_ok``.

HAProxy as a TLS upstream:

``start_tls_upstream(processes, tmp, backend_port, server_cert, client_ca=None, verify="none",
close=False, alpn="istio,h2,http/1.1", max_ver=None) -> Upstream``
    HAProxy on a free port terminating TLS with <server_cert>, forwarding to
    127.0.0.1:<backend_port>. <verify>: ``none``, ``optional`` or ``required`` (client
    certificates checked against <client_ca>). ``close=True`` adds ``option httpclose`` (one
    request per connection, so each request is a new handshake). One log line per request:
    ``UPSTREAM sni=<ssl_fc_sni> alpn=<ssl_fc_alpn> resumed=<ssl_fc_is_resumed> proto=<...>
    serial=<client cert serial hex> verify=<n> path=<p> status=<s>`` and ``UPSTREAM_ERR ...``
    for connections that failed before a request. ``.entries()`` (dicts, "" for "-"),
    ``.errors()``, ``.wait_requests(n)``, ``.wait_errors(n)``, ``.port`` (a haproxy.LoggedHAProxy).
"""

import base64
import datetime
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import binary, free_port, wait_for_port
from haproxy import LoggedHAProxy, haproxy_config, require_haproxy, start_haproxy
from pki import cert_pem, self_signed_ca, utc_now, write_key_and_chain

RESET_PREFIX = "upstream connect error or disconnect/reset before headers. reset reason: "


# ---- certificates -----------------------------------------------------------------------------

class Cert:
    def __init__(self, key, cert, ca=None):
        self.key = key
        self.cert = cert
        self.ca = ca
        self.serial = cert.serial_number
        self.key_pem = key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        self.cert_pem = cert_pem(cert)
        self.chain_pem = self.cert_pem + (ca.cert_pem if ca is not None else b"")

    @property
    def cn(self):
        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return attrs[0].value if attrs else None

    def write(self, dir, name):
        return write_key_and_chain(dir, name, self.key_pem, self.chain_pem)


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = utc_now()
    cert = self_signed_ca(key, name, now - datetime.timedelta(hours=1),
                          now + datetime.timedelta(days=30), digital_signature=True)
    return Cert(key, cert)


def issue(ca, cn, dns=(), ips=(), client=False, days=30):
    key = ec.generate_private_key(ec.SECP256R1())
    now = utc_now()
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    ekus = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca.cert.subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                        critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Cert(key, b.sign(ca.key, hashes.SHA256()), ca)


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def secret_yaml(name, crt=None, key=None, ca=None, namespace=None, type="kubernetes.io/tls"):
    """A v1 Secret. <crt>/<key>/<ca> are PEM bytes (tls.crt, tls.key, ca.crt)."""
    lines = ["---", "apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    lines += [f"type: {type}", "data:"]
    for k, v in (("tls.crt", crt), ("tls.key", key), ("ca.crt", ca)):
        if v is not None:
            lines.append(f"  {k}: {_b64(v)}")
    return "\n".join(lines) + "\n"


# ---- Portico ------------------------------------------------------------------------------------

# {prefix}: "portico-" names them as createDefaultListeners does.
LISTENERS = """\
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata:
  name: {prefix}http-listener
spec:
  port: {http}
  protocol: HTTP
  securityModel: XFP
  hostBinding:
    namespace:
      from: ALL
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata:
  name: {prefix}https-listener
spec:
  port: {https}
  protocol: HTTPS
  securityModel: XFP
  hostBinding:
    namespace:
      from: ALL
"""


def mapping_yaml(name, service, prefix="/backend/", hostname="*", tls=None, extra=""):
    text = f"""\
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: {name}
spec:
  hostname: "{hostname}"
  prefix: {prefix}
  service: {service}
"""
    if tls is not None:
        text += f"  tls: {tls}\n"
    return text + extra


def host_yaml(name, hostname, spec_extra=""):
    """A Host; <spec_extra> is indented YAML (two spaces) added under spec."""
    return f"""\
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata:
  name: {name}
spec:
  hostname: "{hostname}"
{spec_extra}"""


def tlscontext_yaml(name, **fields):
    """A TLSContext; list values become YAML lists, others are written with json.dumps (valid
    YAML scalars)."""
    lines = ["---", "apiVersion: getambassador.io/v3alpha1", "kind: TLSContext", "metadata:",
             f"  name: {name}", "spec:"]
    for k, v in fields.items():
        if isinstance(v, (list, tuple)):
            lines.append(f"  {k}:")
            lines += [f"    - {json.dumps(x)}" for x in v]
        else:
            lines.append(f"  {k}: {json.dumps(v)}")
    return "\n".join(lines) + "\n"


class Edge:
    def __init__(self, proc, cfg, http, https, admin):
        self.proc = proc
        self.cfg = cfg
        self.http = http
        self.https = https
        self.admin = admin

    def get(self, path="/backend/", host=None, port=None):
        headers = {"Host": host} if host else {}
        return requests.get(f"http://127.0.0.1:{port or self.http}{path}", headers=headers,
                            timeout=5, allow_redirects=False)

    def diag(self):
        r = requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/diag/?json=true",
                         timeout=5)
        r.raise_for_status()
        return r.json()

    def diag_errors(self):
        return self.diag().get("errors", [])

    def ready_status(self):
        """check_ready's status code, None when the admin port does not answer."""
        try:
            return requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/check_ready",
                                timeout=2).status_code
        except requests.RequestException:
            return None

    def curl(self, *args):
        """curl -s with <args>; returns (http_code, body, stderr)."""
        r = subprocess.run(["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", *args],
                           capture_output=True, text=True, timeout=10)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body, r.stderr

    def access_lines(self):
        return [l for l in self.proc.log().splitlines() if l.startswith("ACCESS ")]


def metric(edge, name, label=""):
    """The sum of every series of metric <name> on <edge>'s /metrics whose labels contain
    <label> (e.g. 'envoy_cluster_name="quote"')."""
    import requests
    text = requests.get(f"http://127.0.0.1:{edge.admin}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def start_portico(processes, tmp, *docs, workers=1, env=None, args=()):
    tmp = Path(tmp)
    cfg = tmp / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    ports = set()
    while len(ports) < 3:       # free_port releases its port: three calls may repeat one
        ports.add(free_port())
    http, https, admin = list(ports)
    (cfg / "listeners.yaml").write_text(LISTENERS.format(http=http, https=https, prefix=""))
    for i, doc in enumerate(docs):
        (cfg / f"doc{i:02d}.yaml").write_text(doc)
    penv = {"AMBASSADOR_NAMESPACE": "default"}
    penv.update(env or {})
    proc = processes.start([binary("portico"), "run", "--config", cfg, "--admin-port", admin,
                            "--workers", str(workers), *args], name="portico", port=http,
                           env=penv)
    wait_for_port(https, proc=proc)
    edge = Edge(proc, cfg, http, https, admin)
    deadline = time.monotonic() + 5
    while edge.ready_status() != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"portico not ready after 5 s\n{proc.log_tail()}", pytrace=False)
        time.sleep(0.02)
    return edge


# ---- Python TLS client ------------------------------------------------------------------------

def client_ctx(minv=None, maxv=None, alpn=None, cert=None, tmp=None, verify_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify_ca is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=verify_ca.cert_pem.decode())
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert is not None:
        key, crt, _ = cert.write(tmp, f"client-{cert.serial:x}")
        ctx.load_cert_chain(str(crt), str(key))
    return ctx


class TLSResult:
    def __init__(self):
        self.error = None
        self.handshake_ok = False
        self.status = None
        self.headers = {}
        self.body = b""
        self.version = None
        self.alpn = None
        self.peer = None
        self.session = None
        self.reused = None

    @property
    def subject_cn(self):
        if self.peer is None:
            return None
        attrs = self.peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return attrs[0].value if attrs else None

    def __repr__(self):
        return (f"<TLSResult status={self.status} error={self.error!r} version={self.version} "
                f"alpn={self.alpn} cn={self.subject_cn} reused={self.reused} "
                f"body={self.body[:300]!r}>")


def tls_get(port, ctx, sni=None, host=None, path="/backend/", session=None, timeout=5.0,
            request=True):
    """<request>=False: handshake, then only read (what the server sends by itself, e.g. an
    alert after the client's Finished)."""
    res = TLSResult()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False,
                            session=session)
        try:
            s.do_handshake()
            res.handshake_ok = True
            res.version = s.version()
            res.alpn = s.selected_alpn_protocol()
            der = s.getpeercert(binary_form=True)
            res.peer = x509.load_der_x509_certificate(der) if der else None
            res.reused = s.session_reused
            if request:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni or '127.0.0.1'}\r\n"
                          f"Connection: close\r\n\r\n".encode())
            else:
                s.settimeout(min(timeout, 1.0)) # an alert comes at once; an h2 server just waits
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            res.session = s.session
        except (ssl.SSLError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"
            return res
        finally:
            s.close()
    finally:
        raw.close()
    if not data:
        res.error = "closed without a response"
        return res
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    res.status = int(lines[0].split(" ")[1])
    for line in lines[1:]:
        k, _, v = line.partition(":")
        res.headers[k.strip().lower()] = v.strip()
    res.body = body
    return res


def openssl_s_client(port, servername=None, extra=()):
    """`openssl s_client` against 127.0.0.1:<port>; returns (subject line, full stdout)."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *extra]
    if servername:
        args += ["-servername", servername]
    else:
        args += ["-noservername"]
    r = subprocess.run(args, input="", capture_output=True, text=True, timeout=10)
    m = re.search(r"^subject=(.*)$", r.stdout, re.M)
    return (m.group(1).strip() if m else None), r.stdout + r.stderr


# ---- HAProxy as a TLS upstream ---------------------------------------------------------------

UPSTREAM_LOG_FORMAT = ("sni=%[ssl_fc_sni] alpn=%[ssl_fc_alpn] resumed=%[ssl_fc_is_resumed] "
                       "proto=%[ssl_fc_protocol] serial=%[ssl_c_serial,hex] verify=%[ssl_c_verify] "
                       "path=%HP status=%ST")


class Upstream(LoggedHAProxy):
    TAG = "UPSTREAM"
    WHAT = "upstream"

    def __init__(self, proc, port, cert):
        super().__init__(proc, port)
        self.cert = cert


def start_tls_upstream(processes, tmp, backend_port, server_cert, client_ca=None, verify="none",
                       close=False, alpn="istio,h2,http/1.1", max_ver=None):
    require_haproxy()
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    _, _, pem = server_cert.write(tmp, f"upstream-{server_cert.serial:x}")
    vparts = f"verify {verify}"
    if client_ca is not None:
        ca_path = tmp / f"client-ca-{client_ca.serial:x}.pem"
        ca_path.write_bytes(client_ca.cert_pem)
        vparts += f" ca-file {ca_path}"
    maxver = f"ssl-max-ver {max_ver}" if max_ver else ""
    port = free_port()
    cfg = tmp / f"upstream-{port}.cfg"
    cfg.write_text(haproxy_config(
        "UPSTREAM", "tls_in", port, f"ssl crt {pem} {vparts} alpn {alpn} {maxver}",
        UPSTREAM_LOG_FORMAT, "app", backend_port,
        extra="    option httpclose" if close else ""))
    proc = start_haproxy(processes, cfg, "upstream-haproxy", port)
    up = Upstream(proc, port, server_cert)
    up._settle_probe()
    return up
