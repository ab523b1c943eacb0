"""A stand-in Istio mesh for Portico's integration tests: a mesh CA, workload certificates issued
the way istiod issues them, the OUTPUT_CERTS directory written the way istio-agent writes it,
and a STRICT-mTLS "sidecar" (HAProxy) in front of the quote backend.

Import with ``from istio import ...`` (tests/integration is on sys.path through conftest.py).

Mesh and workload certificates (envoy-compat.md §5.2, Istio ``security/pkg/pki/util``):

``make_mesh(dir, trust_domain="cluster.local") -> Mesh``
    Self-signed root (RSA-2048, 10 years, ``O=<trust domain>``, CA:TRUE critical, keyCertSign|cRLSign
    critical, SKI). Writes ``<dir>/root-cert.pem``. ``mesh.root_pem``, ``mesh.root_path``,
    ``mesh.trust_domain``.
``issue_workload(ca, ns, sa, serial=None, not_after_hours=24) -> Workload``
    ``ca`` is a Mesh. Empty Subject; URI SAN ``spiffe://<td>/ns/<ns>/sa/<sa>`` marked critical;
    KeyUsage digitalSignature|keyEncipherment (critical, as Go writes it); EKU serverAuth+clientAuth;
    BasicConstraints CA:FALSE (critical, Go's BasicConstraintsValid); AKI from the root;
    NotBefore = now - 2 min; RSA-2048 key in PKCS#1 (``BEGIN RSA PRIVATE KEY``); random 128-bit
    serial unless ``serial`` is given. ``.key_pem``, ``.cert_pem``, ``.chain_pem`` (leaf + root,
    as istiod returns it), ``.root_pem``, ``.serial`` (int), ``.spiffe_id``, ``.cert`` (x509
    object), ``.write(dir, name)`` -> paths of ``<name>.key``/``<name>.crt``/``<name>.pem``
    (cert+key).
``mismatched_pair(a, b) -> (key_pem, chain_pem)``
    The key of workload ``a`` with the chain of workload ``b``: a pair no TLS stack will load.

The Istio agent's output directory (``OutputKeyCertToDir``, emissary.md §1):

``write_istio_dir(dir, key, chain, root, order=("key.pem", "cert-chain.pem", "root-cert.pem"),
delay=0, only_if_changed=True, mode=0o644)``
    Each file is written to ``<name>.tmp.<random>`` in the same directory, fsynced and renamed
    over ``<name>`` (atomic per file; the pair is *not* atomic). ``delay`` seconds pass between
    consecutive files. A file whose content is unchanged is not rewritten (as the agent does).
    ``key``/``chain``/``root`` are bytes or str; a name in ``order`` that maps to None is skipped.
``write_workload(dir, wl, **kw)``: ``write_istio_dir(dir, wl.key_pem, wl.chain_pem, wl.root_pem, **kw)``.

The STRICT sidecar (envoy-compat.md §5.1, §5.3):

``start_sidecar(processes, tmp, backend_port, mesh, close=False, ns="default", sa="quote") -> Sidecar``
    HAProxy on a free 127.0.0.1 port: TLS only (plaintext gets the connection closed, no HTTP
    answer), client certificate required and verified against the mesh root, TLS 1.2-1.3 with
    Istio's cipher list, server ALPN ``istio,istio-peer-exchange,istio-http/1.0,istio-http/1.1,
    istio-h2,h2,http/1.1``, mode http, ``server quote 127.0.0.1:<backend_port>``. Its own server
    certificate is a workload cert for ns ``default``/sa ``quote``. ``close=True`` adds
    ``option httpclose``: one request per connection, so every request shows the client
    certificate of a fresh handshake (use it when a test must see which identity is in use *now*).
    One log line per request on HAProxy's stdout (in ``processes``' log file):
    ``SIDECAR serial=<hex> alpn=<proto> resumed=<0|1> verify=<n> proto=<TLSv1.x> method=<m>
    path=<p> status=<s>``, and ``SIDECAR_ERR ...`` for connections that failed (handshakes).
    ``.port``, ``.cert`` (its Workload), ``.proc``, ``.entries()`` (dicts), ``.serials()`` (ints,
    one per request, in order; None when no client cert), ``.alpns()`` (strings, "" when none),
    ``.errors()`` (raw SIDECAR_ERR lines), ``.wait_requests(n, timeout)``,
    ``.wait_errors(n, timeout)`` (a haproxy.LoggedHAProxy).

Python TLS client for the self-tests: ``mesh_client_context(mesh, wl=None, alpn=("istio",), tmp=None)``
and ``https_get(port, ctx, path="/")`` -> (status, headers dict, body) through a raw socket.

``portico_has_tls()``: whether the Portico under test can originate TLS, for ``skipif``. See its
docstring for the rule.
"""

import datetime
import functools
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BUILD, free_port
from haproxy import LoggedHAProxy, haproxy_config, require_haproxy, start_haproxy
from pki import cert_pem, self_signed_ca, utc_now, write_key_and_chain

# Istio's alpn lists (pilot/pkg/networking/core/listener.go) plus what its inbound TLS offers.
SIDECAR_ALPN = "istio,istio-peer-exchange,istio-http/1.0,istio-http/1.1,istio-h2,h2,http/1.1"
# BuildInboundTLS's TLS 1.2 ciphers (envoy-compat.md §5.1).
SIDECAR_CIPHERS = ("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                   "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                   "AES256-GCM-SHA384:AES128-GCM-SHA256")


# ---- does the Portico under test speak TLS? -------------------------------------------------

@functools.lru_cache(maxsize=None)
def portico_has_tls():
    """True when ``build/portico --version`` prints the feature word ``tls`` (a whole word, any
    case, e.g. ``portico 0.2.0 (tls)`` or ``features: tls istio``).

    Chosen over ``portico check`` on a directory with a ``tls:`` Mapping: ``check`` only loads
    resources and does not compile Mappings, so today it exits 0 with no "not supported" error
    even though ``portico run`` rejects the same Mapping ("TLS origination (tls) is not
    supported by this build yet"): it would un-skip the tests before TLS exists.

    ``PORTICO_TLS_TESTS=1`` forces the TLS tests to run (to watch them fail while developing),
    ``PORTICO_TLS_TESTS=0`` forces them to skip."""
    forced = os.environ.get("PORTICO_TLS_TESTS")
    if forced in ("0", "1"):
        return forced == "1"
    exe = BUILD / "portico"
    if not os.access(exe, os.X_OK):
        return False
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"\btls\b", out, re.I) is not None


# ---- mesh CA and workload certificates ------------------------------------------------------

def _key_pem_pkcs1(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


class Mesh:
    def __init__(self, dir, trust_domain, key, cert):
        self.dir = Path(dir)
        self.trust_domain = trust_domain
        self.key = key
        self.cert = cert
        self.root_pem = cert_pem(cert)
        self.root_path = self.dir / "root-cert.pem"

    def spiffe_id(self, ns, sa):
        return f"spiffe://{self.trust_domain}/ns/{ns}/sa/{sa}"


def make_mesh(dir, trust_domain="cluster.local"):
    """A mesh root CA as istiod's self-signed CA makes it; writes <dir>/root-cert.pem."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    now = utc_now()
    cert = self_signed_ca(key, name, now, now + datetime.timedelta(days=3650))
    mesh = Mesh(dir, trust_domain, key, cert)
    mesh.root_path.write_bytes(mesh.root_pem)
    return mesh


class Workload:
    def __init__(self, mesh, ns, sa, key, cert):
        self.mesh = mesh
        self.ns = ns
        self.sa = sa
        self.key = key
        self.cert = cert
        self.serial = cert.serial_number
        self.spiffe_id = mesh.spiffe_id(ns, sa)
        self.key_pem = _key_pem_pkcs1(key)
        self.cert_pem = cert_pem(cert)
        self.chain_pem = self.cert_pem + mesh.root_pem
        self.root_pem = mesh.root_pem

    def write(self, dir, name):
        """Writes <name>.key, <name>.crt (chain) and <name>.pem (chain + key, HAProxy's crt
        format) under <dir>; returns the three paths."""
        return write_key_and_chain(dir, name, self.key_pem, self.chain_pem, mode=0o600)

    def __repr__(self):
        return f"<Workload {self.spiffe_id} serial={self.serial:x}>"


def issue_workload(ca, ns, sa, serial=None, not_after_hours=24):
    """A workload certificate for spiffe://<td>/ns/<ns>/sa/<sa>, signed by the Mesh <ca>."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = utc_now()
    not_before = now - datetime.timedelta(minutes=2)
    if serial is None:
        serial = int.from_bytes(os.urandom(16), "big") or 1   # genSerialNum: [0, 2^128)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([]))
               .issuer_name(ca.cert.subject)
               .public_key(key.public_key())
               .serial_number(serial)
               .not_valid_before(not_before)
               .not_valid_after(now + datetime.timedelta(hours=not_after_hours))
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=True, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False)
               # RFC 5280 4.2.1.6: an empty Subject requires the SAN to be critical.
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier(ca.spiffe_id(ns, sa))]), critical=True))
    cert = builder.sign(ca.key, hashes.SHA256())
    return Workload(ca, ns, sa, key, cert)


def mismatched_pair(a, b):
    """(key_pem, chain_pem): the key of workload <a> with the certificate chain of <b>."""
    assert a.key.public_key().public_numbers() != b.cert.public_key().public_numbers()
    return a.key_pem, b.chain_pem


# ---- the istio-agent OUTPUT_CERTS directory -------------------------------------------------

def _atomic_write(path, data, mode):
    """Istio's file.AtomicWrite: temp file in the same dir, write, fsync, chmod, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _bytes(x):
    return x.encode() if isinstance(x, str) else x


def write_istio_dir(dir, key, chain, root, order=("key.pem", "cert-chain.pem", "root-cert.pem"),
                    delay=0, only_if_changed=True, mode=0o644):
    """Writes key.pem / cert-chain.pem / root-cert.pem into <dir> as istio-agent does: one file at
    a time in <order>, each atomically, <delay> seconds apart. Returns the names written."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    content = {"key.pem": key, "cert-chain.pem": chain, "root-cert.pem": root}
    written = []
    for i, name in enumerate(order):
        data = content[name]
        if data is None:
            continue
        data = _bytes(data)
        target = dir / name
        if only_if_changed and target.exists() and target.read_bytes() == data:
            continue
        if written and delay:
            time.sleep(delay)
        _atomic_write(target, data, mode)
        written.append(name)
    return written


def write_workload(dir, wl, **kw):
    return write_istio_dir(dir, wl.key_pem, wl.chain_pem, wl.root_pem, **kw)


# ---- the STRICT sidecar (HAProxy) -----------------------------------------------------------

LOG_FIELDS = ("serial", "alpn", "resumed", "verify", "proto", "method", "path", "status")
SIDECAR_LOG_FORMAT = ("serial=%[ssl_c_serial,hex] alpn=%[ssl_fc_alpn] resumed=%[ssl_fc_is_resumed] "
                      "verify=%[ssl_c_verify] proto=%[ssl_fc_protocol] method=%HM path=%HP "
                      "status=%ST")


class Sidecar(LoggedHAProxy):
    TAG = "SIDECAR"
    WHAT = "sidecar"

    def __init__(self, proc, port, cert, mesh, config_path):
        super().__init__(proc, port)
        self.cert = cert
        self.mesh = mesh
        self.config_path = config_path

    def serials(self):
        """Client certificate serial of each request's connection (int), None without one."""
        return [int(e["serial"], 16) if e.get("serial") else None for e in self.entries()]

    def alpns(self):
        """Negotiated ALPN of each request's connection ("" when none)."""
        return [e.get("alpn", "") for e in self.entries()]


def start_sidecar(processes, tmp, backend_port, mesh, close=False, ns="default", sa="quote"):
    """Starts the STRICT sidecar in front of 127.0.0.1:<backend_port>; returns a Sidecar."""
    require_haproxy()
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    cert = issue_workload(mesh, ns, sa)
    _, _, pem = cert.write(tmp, f"sidecar-{ns}-{sa}")
    port = free_port()
    cfg = tmp / f"sidecar-{port}.cfg"
    cfg.write_text(haproxy_config(
        "SIDECAR", "quote_inbound_strict", port,
        f"ssl crt {pem} ca-file {mesh.root_path} verify required alpn {SIDECAR_ALPN} "
        f"ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 ciphers {SIDECAR_CIPHERS}",
        SIDECAR_LOG_FORMAT, "quote", backend_port, maxconn=2000,
        tune="    tune.ssl.default-dh-param 2048\n",
        extra="    option httpclose" if close else ""))
    proc = start_haproxy(processes, cfg, "sidecar-haproxy", port)
    sidecar = Sidecar(proc, port, cert, mesh, cfg)
    sidecar._settle_probe()
    return sidecar


# ---- a Python mesh client (for the fixture self-tests) --------------------------------------

def mesh_client_context(mesh, wl=None, alpn=("istio",), tmp=None):
    """An SSLContext verifying the server against the mesh root (no hostname check: Istio
    identities are URI SANs), presenting workload <wl> when given, offering <alpn>."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=mesh.root_pem.decode())
    if wl is not None:
        d = Path(tmp or tempfile.mkdtemp(prefix="mesh-client-"))
        key, crt, _ = wl.write(d, f"client-{wl.serial:x}")
        ctx.load_cert_chain(str(crt), str(key))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def https_get(port, ctx, path="/", host="127.0.0.1", timeout=5.0):
    """One GET over TLS with Connection: close; returns (status, headers, body, alpn)."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: quote\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            alpn = s.selected_alpn_protocol()
    if not data:
        raise ConnectionError("closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body, alpn


def openssl_x509_text(pem_path):
    return subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(pem_path)],
                          capture_output=True, text=True, check=True, timeout=10).stdout


def have_openssl():
    return shutil.which("openssl") is not None
