"""A fake Kubernetes API server for Portico's tests: the parts of the real protocol that a
LIST + WATCH client sees, served over TLS with its own CA and a bearer token.

What it does as the real API server does:

* HTTPS only, with a CA and a server certificate for 127.0.0.1/localhost generated at start-up
  (``cryptography``); ``Authorization: Bearer <token>`` or 401 with a ``Status`` body.
* Paths ``/api/v1[/namespaces/NS]/RESOURCE[/NAME]`` and
  ``/apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME]`` for the kinds in ``KINDS``; anything else
  is a 404 ``Status`` (as for a CRD that is not installed; see ``uninstall``).
* LIST: ``{"kind":"MappingList","apiVersion":...,"metadata":{"resourceVersion":"N"},"items":[...]}``
  whose items, as in the real server, carry no ``kind``/``apiVersion``; ``fieldSelector`` on
  ``type``, ``metadata.name`` and ``metadata.namespace`` with ``=``, ``==`` and ``!=``; pages with
  ``limit`` and an opaque ``continue`` token (each page from the first page's snapshot, at its
  resourceVersion; an expired token is a 410 ``Expired`` Status).
* WATCH (``?watch=true``): a chunked stream of newline-delimited
  ``{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`` from ``resourceVersion``
  on; bookmarks every ``bookmark_interval`` seconds with ``allowWatchBookmarks=true``; the stream
  ends cleanly after ``timeoutSeconds``. A resourceVersion older than the bounded event history
  gets an ``ERROR`` event with a 410 ``Expired`` Status (or, with ``gone_as_http``, an HTTP 410),
  as does a watcher that falls behind the history.
* One global resourceVersion counter as etcd's; every object gets ``uid``, ``resourceVersion``,
  ``creationTimestamp``, ``generation``, ``managedFields``; Services a ``clusterIP`` and ``status``.
* POST (create, 409 when it exists), PUT (replace, 404 when missing, 409 on a stale
  resourceVersion), DELETE, GET of one object: so kubectl-like clients can drive it too.

The test API (Python, thread-safe): ``apply(obj)``, ``apply_many(objs)``, ``delete(kind, ns,
name)``, ``expire()`` (compacts the history and ends every watch with ERROR 410),
``drop_watches()`` (cuts every watch connection), ``expire_continue_tokens()`` and
``expire_next_continue`` (410 for stale list pages), ``list_pages`` (LIST pages served), ``stop()``/``start()``/``restart()`` on the same
port (objects and resourceVersions survive, as etcd would), ``uninstall(resource)``,
``set_token(t)``, ``requests`` (the last requests, for assertions), ``kubeconfig(path)``.
Everything is bounded: history, connections (``max_connections``), request bodies, and each watch
by ``timeoutSeconds``. Run it alone with ``python3 fake_apiserver.py --port N --kubeconfig F``.
"""

import argparse
import base64
import collections
import copy
import datetime
import json
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

AMB = "getambassador.io/v3alpha1"

# Kind -> (apiVersion, plural resource)
KINDS = {
    "Listener": (AMB, "listeners"),
    "Host": (AMB, "hosts"),
    "Mapping": (AMB, "mappings"),
    "TLSContext": (AMB, "tlscontexts"),
    "TracingService": (AMB, "tracingservices"),
    "Module": (AMB, "modules"),
    "AuthService": (AMB, "authservices"),
    "RateLimitService": (AMB, "ratelimitservices"),
    "LogService": (AMB, "logservices"),
    "TCPMapping": (AMB, "tcpmappings"),
    "KubernetesEndpointResolver": (AMB, "kubernetesendpointresolvers"),
    "KubernetesServiceResolver": (AMB, "kubernetesserviceresolvers"),
    "ConsulResolver": (AMB, "consulresolvers"),
    "DevPortal": (AMB, "devportals"),
    "Service": ("v1", "services"),
    "Endpoints": ("v1", "endpoints"),
    "EndpointSlice": ("discovery.k8s.io/v1", "endpointslices"),
    "Secret": ("v1", "secrets"),
}
RESOURCES = {res: (kind, api) for kind, (api, res) in KINDS.items()}

PATH_RX = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                     r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?/?$")

MAX_BODY = 8 << 20


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def make_tls(workdir):
    """A CA and a server certificate for 127.0.0.1, ::1 and localhost, written to <workdir>.
    Returns (ca_pem_bytes, cert_path, key_path)."""
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("fake-kubernetes-ca")).issuer_name(name("fake-kubernetes-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.IPAddress(ipaddress.ip_address("::1"))])
    cert = (x509.CertificateBuilder().subject_name(name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    workdir = Path(workdir)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (workdir / "ca.crt").write_bytes(ca_pem)
    (workdir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return ca_pem, workdir / "server.crt", workdir / "server.key"


def parse_field_selector(sel):
    """[(field, op, value)] from "type!=x,metadata.name=y"; op is "=" or "!="."""
    out = []
    for part in filter(None, (sel or "").split(",")):
        m = re.match(r"^([A-Za-z.]+)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise ValueError(f"invalid field selector: {part}")
        out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return out


def field_value(obj, field):
    md = obj.get("metadata", {})
    return {"metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
            "type": obj.get("type")}.get(field)


def selector_matches(sel, obj):
    for field, op, value in sel:
        v = field_value(obj, field)
        if (op == "=") != (v == value):
            return False
    return True


class Watcher:
    def __init__(self, resource, ns, selector, pos, bookmarks):
        self.resource = resource
        self.ns = ns
        self.selector = selector
        self.pos = pos          # every event with rv <= pos was handled
        self.bookmarks = bookmarks
        self.closing = None     # None, "drop" (cut the connection) or "gone" (ERROR 410)
        self.sock = None

    def wants(self, ev):
        _, res, ns, _, obj = ev
        return res == self.resource and (self.ns is None or ns == self.ns) and \
            selector_matches(self.selector, obj)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, api):
        self.api = api
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        if not self.api._slots.acquire(blocking=False):  # bounded: refuse beyond max_connections
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.api._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.api._slots.release()

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            tls = self.api._ctx.wrap_socket(request, server_side=True)  # handshake in this thread
        except (ssl.SSLError, OSError):
            return
        self.api._track(tls, True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.api._track(tls, False)
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    timeout = 30

    def log_message(self, fmt, *args):
        pass

    @property
    def api(self):
        return self.server.api

    def _json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.api._log_request(self.command, self.path, code)

    def _status(self, code, reason, message):
        self._json(code, status_body(code, reason, message))

    def _authorized(self):
        want = "Bearer " + self.api.token
        if self.headers.get("Authorization") == want:
            return True
        self._status(401, "Unauthorized", "Unauthorized")
        return False

    def _route(self):
        """(resource, namespace, name, query) or None after answering 404."""
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        m = PATH_RX.match(u.path)
        if m and m.group("res") in RESOURCES and m.group("res") not in self.api._uninstalled:
            api = "v1" if m.group("core") else f"{m.group('group')}/{m.group('version')}"
            if RESOURCES[m.group("res")][1] == api:
                return m.group("res"), m.group("ns"), m.group("name"), q
        self._status(404, "NotFound", "the server could not find the requested resource")
        return None

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("request body too large")
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        if self.path.split("?")[0] in ("/healthz", "/readyz", "/livez"):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        if not self._authorized():
            return
        r = self._route()
        if r is None:
            return
        res, ns, name, q = r
        if name is not None:
            obj = self.api._get(res, ns, name)
            if obj is None:
                self._status(404, "NotFound", f'{res} "{name}" not found')
            else:
                self._json(200, obj)
            return
        try:
            sel = parse_field_selector(q.get("fieldSelector"))
        except ValueError as e:
            self._status(400, "BadRequest", str(e))
            return
        if q.get("watch") in ("true", "1"):
            self.api._serve_watch(self, res, ns, sel, q)
            return
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            self._status(400, "BadRequest", "limit: not an integer")
            return
        body = self.api._list(res, ns, sel, limit, q.get("continue"))
        if body is None:
            self._status(410, "Expired", "The provided continue parameter is too old to display a "
                                         "consistent list result. You can start a new list without "
                                         "the continue parameter.")
        else:
            self._json(200, body)

    def _write(self, method):
        if not self._authorized():
            return
        r = self._route()
        if r is None:
            return
        res, ns, name, _ = r
        try:
            code, body = method(res, ns, name, None if self.command == "DELETE" else self._body())
        except (ValueError, json.JSONDecodeError) as e:
            code, body = 400, status_body(400, "BadRequest", str(e))
        self._json(code, body)

    def do_POST(self):
        if self.path.startswith("/fake/"):  # the test API over HTTP, for standalone use
            if self._authorized():
                action = {"/fake/expire": self.api.expire, "/fake/drop-watches": self.api.drop_watches}.get(self.path)
                if action:
                    action()
                    self._json(200, {"ok": True})
                else:
                    self._status(404, "NotFound", "no such fake action")
            return
        self._write(self.api._http_create)

    def do_PUT(self):
        self._write(self.api._http_replace)

    def do_DELETE(self):
        self._write(self.api._http_delete)


class FakeApiServer:
    def __init__(self, token="test-token", port=0, host="127.0.0.1", history=5000, bookmark_interval=1.0,
                 max_connections=64, gone_as_http=False, workdir=None):
        self.token = token
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.gone_as_http = gone_as_http
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-apiserver-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.ca_pem, cert, key = make_tls(self.workdir)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self._cond = threading.Condition()
        self._objects = {res: {} for res in RESOURCES}
        self._rv = 100
        self._history = collections.deque(maxlen=history)  # (rv, resource, ns, type, obj)
        self._first_rv = self._rv  # every event after this one is in the history
        self._watchers = set()
        self._conns = set()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._uninstalled = set()
        self._snapshots = {}  # continue token id -> (resourceVersion, items)
        self._snapshot_id = 0
        self.list_pages = 0
        self.expire_next_continue = False  # the next continue token is answered 410, once
        self._ip = 0
        self.requests = collections.deque(maxlen=2000)
        self._server = None
        self._thread = None

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    def start(self):
        self._server = _TLSServer((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening and cuts every connection; objects and history stay."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._server = None
        with self._cond:
            for w in self._watchers:
                w.closing = "drop"
            self._cond.notify_all()
            conns = list(self._conns)
        for c in conns:
            try:
                socket.socket.shutdown(c, socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self, downtime=0.3, forget_history=False):
        """stop(), <downtime> seconds, start() on the same port. <forget_history>: like a real API
        server restart, the watch cache starts at the current resourceVersion, so older ones get
        410."""
        self.stop()
        time.sleep(downtime)
        if forget_history:
            with self._cond:
                self._history.clear()
                self._first_rv = self._rv
        self.start()

    def close(self):
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def kubeconfig(self, path, token=None, server=None):
        """Writes a kubeconfig for this server (CA inline, bearer token) to <path>."""
        ca = base64.b64encode(self.ca_pem).decode()
        Path(path).write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            "clusters:\n- name: fake\n  cluster:\n"
            f"    server: {server or self.url}\n    certificate-authority-data: {ca}\n"
            "users:\n- name: tester\n  user:\n"
            f"    token: {token if token is not None else self.token}\n"
            "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n"
            "    namespace: default\n")
        return path

    # ---- the test API ------------------------------------------------------------------------

    def set_token(self, token):
        self.token = token

    def uninstall(self, resource):
        """Serves 404 for <resource> from now on (its CRD is not installed)."""
        self._uninstalled.add(resource)

    def install(self, resource):
        self._uninstalled.discard(resource)

    def apply(self, obj, notify=True):
        """Creates or replaces <obj> (kind, metadata.name, optional metadata.namespace). Returns the
        stored object. <notify>=False stores it without a watch event, as if the event were lost
        (only a relist finds it)."""
        kind = obj["kind"]
        res = KINDS[kind][1]
        with self._cond:
            return self._store(res, obj["metadata"].get("namespace") or "default", copy.deepcopy(obj), notify)

    def apply_many(self, objs):
        """apply() for each object, one event each, as fast as the lock allows."""
        return [self.apply(o) for o in objs]

    def delete(self, kind, ns, name):
        res = KINDS[kind][1]
        with self._cond:
            return self._remove(res, ns, name)

    def get(self, kind, ns, name):
        return self._get(KINDS[kind][1], ns, name)

    def expire(self):
        """Compacts: every resourceVersion so far is too old; open watches get ERROR 410."""
        with self._cond:
            self._history.clear()
            self._first_rv = self._rv
            for w in self._watchers:
                w.closing = "gone"
            self._cond.notify_all()

    def drop_watches(self):
        """Cuts every watch connection without a word (a proxy or load balancer resetting)."""
        with self._cond:
            for w in self._watchers:
                w.closing = "drop"
            self._cond.notify_all()

    def watch_count(self):
        with self._cond:
            return len(self._watchers)

    def wait_watches(self, n, timeout=10.0):
        """Waits until at least <n> watches are open; returns the count."""
        deadline = time.monotonic() + timeout
        while self.watch_count() < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.watch_count()

    @property
    def resource_version(self):
        return self._rv

    # ---- the store (callers hold self._cond) -------------------------------------------------

    def _event(self, res, ns, typ, obj):
        if len(self._history) == self._history.maxlen:
            self._first_rv = self._history[0][0]
        self._history.append((self._rv, res, ns, typ, obj))
        self._cond.notify_all()

    def _store(self, res, ns, obj, notify=True):
        kind, api = RESOURCES[res]
        md = obj.setdefault("metadata", {})
        name = md["name"]
        old = self._objects[res].get((ns, name))
        self._rv += 1
        obj["kind"], obj["apiVersion"] = kind, api
        md["namespace"] = ns
        md["resourceVersion"] = str(self._rv)
        md["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        md["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else _now()
        md["managedFields"] = [{"manager": "fake", "operation": "Update", "apiVersion": api, "time": _now()}]
        if kind not in ("Endpoints", "Secret"):
            md["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
        if kind == "Service":
            spec = obj.setdefault("spec", {})
            if "clusterIP" not in spec:
                spec["clusterIP"] = old["spec"].get("clusterIP") if old else self._cluster_ip()
            obj.setdefault("status", {"loadBalancer": {}})
        self._objects[res][(ns, name)] = obj
        if notify:
            self._event(res, ns, "MODIFIED" if old else "ADDED", copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def _cluster_ip(self):
        self._ip += 1
        return f"10.96.{self._ip // 250}.{self._ip % 250 + 1}"

    def _remove(self, res, ns, name):
        obj = self._objects[res].pop((ns, name), None)
        if obj is None:
            return None
        self._rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._event(res, ns, "DELETED", gone)
        return gone

    def _get(self, res, ns, name):
        with self._cond:
            obj = self._objects[res].get((ns or "default", name))
            return copy.deepcopy(obj)

    def _list(self, res, ns, sel, limit=0, cont=None):
        """A LIST page; None when <cont> names an expired (or unknown) snapshot."""
        kind, api = RESOURCES[res]
        with self._cond:
            if cont and self.expire_next_continue:
                self.expire_next_continue = False
                return None
            if cont:
                try:
                    tok = json.loads(base64.b64decode(cont))
                    rv, items = self._snapshots[tok["id"]]
                    off = int(tok["off"])
                except (ValueError, KeyError, TypeError):
                    return None
            else:
                items = []
                for (ons, _), obj in sorted(self._objects[res].items()):
                    if (ns is None or ons == ns) and selector_matches(sel, obj):
                        item = copy.deepcopy(obj)
                        del item["kind"], item["apiVersion"]  # only the list has them
                        items.append(item)
                rv, off = str(self._rv), 0
            md = {"resourceVersion": rv}
            page = items[off:off + limit] if limit > 0 else items[off:]
            if limit > 0 and off + limit < len(items):
                if not cont:
                    self._snapshot_id += 1
                    self._snapshots[self._snapshot_id] = (rv, items)
                    tok = {"id": self._snapshot_id}
                # opaque and in need of URL escaping, as the real tokens are
                md["continue"] = base64.b64encode(json.dumps({"id": tok["id"], "off": off + limit,
                                                              "pad": "?&=+/"}).encode()).decode()
            self.list_pages += 1
            return {"kind": kind + "List", "apiVersion": api, "metadata": md, "items": page}

    def expire_continue_tokens(self):
        """Every continue token handed out so far is too old from now on (410)."""
        with self._cond:
            self._snapshots.clear()

    # ---- HTTP writes -------------------------------------------------------------------------

    def _http_create(self, res, ns, name, body):
        kind = RESOURCES[res][0]
        if body.get("kind", kind) != kind or not body.get("metadata", {}).get("name"):
            return 400, status_body(400, "BadRequest", "kind or metadata.name is wrong")
        ns = ns or body["metadata"].get("namespace") or "default"
        with self._cond:
            if (ns, body["metadata"]["name"]) in self._objects[res]:
                return 409, status_body(409, "AlreadyExists", f'{res} "{body["metadata"]["name"]}" already exists')
            return 201, self._store(res, ns, body)

    def _http_replace(self, res, ns, name, body):
        ns = ns or "default"
        with self._cond:
            old = self._objects[res].get((ns, name))
            if old is None:
                return 404, status_body(404, "NotFound", f'{res} "{name}" not found')
            rv = body.get("metadata", {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                return 409, status_body(409, "Conflict", "the object has been modified")
            body.setdefault("metadata", {})["name"] = name
            return 200, self._store(res, ns, body)

    def _http_delete(self, res, ns, name, body):
        with self._cond:
            gone = self._remove(res, ns or "default", name)
        if gone is None:
            return 404, status_body(404, "NotFound", f'{res} "{name}" not found')
        return 200, gone

    # ---- WATCH -------------------------------------------------------------------------------

    def _track(self, sock, add):
        with self._cond:
            (self._conns.add if add else self._conns.discard)(sock)

    def _log_request(self, method, path, code):
        self.requests.append((time.monotonic(), method, path, code))

    def _pending(self, w):
        """Events for <w> after w.pos, and advances w.pos; None when w fell behind the history.
        Caller holds self._cond."""
        if w.pos < self._first_rv:
            return None
        out = []
        for ev in reversed(self._history):
            if ev[0] <= w.pos:
                break
            if w.wants(ev):
                out.append(ev)
        out.reverse()
        w.pos = self._rv
        return out

    @staticmethod
    def _chunk(handler, obj):
        data = json.dumps(obj).encode() + b"\n"
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _gone_event(self, rv):
        return {"type": "ERROR", "object": status_body(
            410, "Expired", f"too old resource version: {rv} ({self._first_rv})")}

    def _serve_watch(self, handler, res, ns, sel, q):
        kind, api = RESOURCES[res]
        rv_param = q.get("resourceVersion", "")
        timeout = min(float(q.get("timeoutSeconds") or 1800), 1800)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        initial = []
        with self._cond:
            if rv_param in ("", "0"):  # "from now", with the current objects as ADDED first
                pos = self._rv
                for (ons, _), obj in sorted(self._objects[res].items()):
                    ev = (self._rv, res, ons, "ADDED", obj)
                    if (ns is None or ons == ns) and selector_matches(sel, obj):
                        initial.append(ev)
            else:
                pos = int(rv_param)
            too_old = pos < self._first_rv
            if too_old and self.gone_as_http:
                handler._json(410, status_body(410, "Expired", f"too old resource version: {pos} ({self._first_rv})"))
                return
            w = Watcher(res, ns, sel, pos, bookmarks)
            if not too_old:
                self._watchers.add(w)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        self._log_request("WATCH", handler.path, 200)
        try:
            if too_old:
                self._chunk(handler, self._gone_event(pos))
            else:
                for ev in initial:
                    self._chunk(handler, {"type": ev[3], "object": copy.deepcopy(ev[4])})
                if not self._stream(handler, w, kind, api, timeout):
                    return
            handler.wfile.write(b"0\r\n\r\n")
        finally:
            with self._cond:
                self._watchers.discard(w)

    def _stream(self, handler, w, kind, api, timeout):
        """Sends events until the timeout (True: end the response cleanly) or a drop (False)."""
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        while True:
            with self._cond:
                self._cond.wait_for(lambda: w.closing or self._rv > w.pos or time.monotonic() >= min(deadline, next_bookmark),
                                    timeout=max(0.0, min(deadline, next_bookmark) - time.monotonic()))
                closing, events, rv = w.closing, self._pending(w), self._rv
            if closing == "drop":
                socket.socket.shutdown(handler.connection, socket.SHUT_RDWR)
                handler.close_connection = True
                return False
            if closing == "gone" or events is None:
                self._chunk(handler, self._gone_event(w.pos))
                return True
            for ev in events:
                self._chunk(handler, {"type": ev[3], "object": ev[4]})
            now = time.monotonic()
            if now >= deadline:
                return True
            if now >= next_bookmark:
                next_bookmark = now + self.bookmark_interval
                if w.bookmarks:
                    self._chunk(handler, {"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api,
                        "metadata": {"resourceVersion": str(rv), "creationTimestamp": None}}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="test-token")
    ap.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    args = ap.parse_args()
    with FakeApiServer(token=args.token, port=args.port) as api:
        if args.kubeconfig:
            api.kubeconfig(args.kubeconfig)
        print(f"fake API server at {api.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
