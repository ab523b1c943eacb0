"""Helpers for the configuration, routing, reload and admin integration tests.

``Portico`` runs ``build/portico run --config DIR`` on a temporary config directory that already
holds a Listener on a free port, and knows how to write, replace and remove resource files, talk
to the proxy and read the admin endpoints. YAML builders (``mapping``, ``host``, ``listener``,
``service``, ``endpoints``) produce Kubernetes-style documents as text, so a test reads like the
configuration a user would write.

    from portico_cfg import Portico, mapping

    def test_x(processes, quote_backend, tmp_path):
        px = Portico(processes, tmp_path)
        px.write("m.yaml", mapping("m", "/backend/", f"127.0.0.1:{quote_backend.port}"))
        px.start()
        assert px.get("/backend/").status == 200
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import binary, free_port, wait_for_port

READY_TIMEOUT = 10.0
# Teardown: SIGTERM, then SIGKILL after this long. The shutdown tests measure exit times
# themselves; every other test only needs the process gone, quickly.
TEARDOWN_STOP_TIMEOUT = 0.5


# ---- YAML builders ----

def doc(kind, name, spec, namespace=None, api="getambassador.io/v3alpha1", extra_meta=None):
    meta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if extra_meta:
        meta.update(extra_meta)
    d = {"apiVersion": api, "kind": kind, "metadata": meta}
    if spec is not None:
        d["spec"] = spec
    return d


def dump(*docs):
    """Multi-document YAML text of <docs> (dicts or already-rendered strings)."""
    parts = []
    for d in docs:
        parts.append(d if isinstance(d, str) else yaml.safe_dump(d, sort_keys=False))
    return "---\n" + "---\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


def mapping(name, prefix, service, hostname="*", namespace=None, **spec):
    """A v3alpha1 Mapping. hostname=None leaves hostname out."""
    s = {}
    if hostname is not None:
        s["hostname"] = hostname
    s["prefix"] = prefix
    s["service"] = service
    s.update(spec)
    return doc("Mapping", name, s, namespace)


def listener(port, name="http-listener", security_model="XFP", protocol="HTTP", **spec):
    s = {"port": port, "protocol": protocol, "securityModel": security_model,
         "hostBinding": {"namespace": {"from": "ALL"}}}
    s.update(spec)
    return doc("Listener", name, s)


def host(name, hostname, action=None, namespace=None, **spec):
    s = {"hostname": hostname}
    if action is not None:
        s["requestPolicy"] = {"insecure": {"action": action}}
    s.update(spec)
    return doc("Host", name, s, namespace)


def service(name, port, target_port, namespace=None, port_name="http"):
    s = {"ports": [{"name": port_name, "port": port, "targetPort": target_port}]}
    return doc("Service", name, s, namespace, api="v1")


def endpoints(name, ips, port, namespace=None, port_name="http"):
    d = doc("Endpoints", name, None, namespace, api="v1")
    d["subsets"] = [{"addresses": [{"ip": ip} for ip in ips],
                     "ports": [{"name": port_name, "port": port}]}]
    return d


# ---- HTTP clients ----

class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Reply {self.status} {self.body[:120]!r}>"


def http_get(port, path, host=None, headers=None, method="GET", timeout=5.0):
    """One request on a fresh connection (Connection: close)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Connection": "close"}
        if host is not None:
            h["Host"] = host
        h.update(headers or {})
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
    finally:
        conn.close()


def poll_until(fn, timeout, interval=0.005):
    """Calls fn() every <interval> s until it returns a true value; returns (value, seconds
    since the call) or (None, elapsed) on timeout."""
    t0 = time.monotonic()
    while True:
        try:
            v = fn()
        except (OSError, http.client.HTTPException):
            v = None
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None, time.monotonic() - t0
        time.sleep(interval)


# ---- the proxy under test ----

class Portico:
    """A config directory plus a `portico run` on it (not started until start())."""

    def __init__(self, processes, tmp_path, workers=2, env=None, listener_spec=None,
                 with_listener=True, log_level=None):
        self.processes = processes
        self.dir = Path(tmp_path) / "config"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.workers = workers
        self.env = dict(env or {})
        self.log_level = log_level
        self.proc = None
        if with_listener:
            self.write("00-listener.yaml", dump(listener(self.port, **(listener_spec or {}))))

    # -- files --
    def path(self, name):
        return self.dir / name

    def write(self, name, text):
        """Writes <name> in place (open, write, close), as `cat > file` would."""
        if not isinstance(text, str):
            text = dump(text)
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def write_atomic(self, name, text):
        """Writes a temp file outside the *.yaml pattern, then renames it over <name>."""
        if not isinstance(text, str):
            text = dump(text)
        p = self.dir / name
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(text)
        os.rename(tmp, p)
        return p

    def remove(self, name):
        (self.dir / name).unlink()

    # -- process --
    def args(self, *extra):
        a = [binary("portico"), "run", "--config", self.dir, "--admin-port", self.admin_port,
             "--workers", self.workers]
        if self.log_level:
            a += ["--log-level", self.log_level]
        return a + list(extra)

    def start(self, wait_ready=True, wait_listener=True):
        self.proc = self.processes.start(self.args(), name="portico", port=self.admin_port,
                                         env=self.env)
        orig_stop = self.proc.stop

        def bounded_stop(sig=signal.SIGTERM, timeout=TEARDOWN_STOP_TIMEOUT):
            return orig_stop(sig, min(timeout, TEARDOWN_STOP_TIMEOUT))
        self.proc.stop = bounded_stop  # the `processes` fixture calls proc.stop() at teardown
        if wait_ready:
            self.wait_ready()
        if wait_listener:
            wait_for_port(self.port, timeout=READY_TIMEOUT, proc=self.proc)
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        r, _ = poll_until(lambda: self.admin("/ambassador/v0/check_ready").status == 200,
                          timeout, 0.02)
        if not r:
            pytest.fail(f"portico not ready after {timeout}s\n{self.proc.log_tail()}",
                        pytrace=False)

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL after <timeout>: keeps teardown short even if draining hangs."""
        if self.proc is not None:
            return self.proc.stop(timeout=timeout)
        return None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log(self):
        return self.proc.log() if self.proc else ""

    def snapshots(self):
        """Generations of every `snapshot N compiled` line logged so far."""
        return [int(g) for g in re.findall(r"snapshot (\d+) compiled in", self.log())]

    # -- clients --
    def get(self, path, host=None, headers=None, method="GET", timeout=5.0):
        return http_get(self.port, path, host=host, headers=headers, method=method,
                        timeout=timeout)

    def status(self, path, host=None, headers=None):
        return self.get(path, host=host, headers=headers).status

    def admin(self, path, timeout=5.0):
        return http_get(self.admin_port, path, timeout=timeout)

    def diag(self):
        r = self.admin("/ambassador/v0/diag/?json=true")
        assert r.status == 200, r
        return r.json()

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def metric(self, name, **labels):
        """Sum of the samples of <name> whose labels include <labels>."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                   m.group(3) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
                found = True
        return total if found else None

    def wait_status(self, path, status, timeout=2.0, host=None, headers=None, interval=0.005):
        """Polls <path> until it answers <status>; returns the seconds it took. Fails on
        timeout with the last status seen."""
        last = []

        def probe():
            s = self.status(path, host=host, headers=headers)
            last.append(s)
            return s == status

        ok, dt = poll_until(probe, timeout, interval)
        if not ok:
            pytest.fail(f"{path} did not answer {status} within {timeout}s "
                        f"(last: {last[-1:] or 'no answer'})\n{self.proc.log_tail()}",
                        pytrace=False)
        return dt


def backend_name(reply):
    return reply.json()["server"]


def check(dirpath, env=None, timeout=10):
    """Runs `portico check DIR`; returns CompletedProcess with text stdout/stderr."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(binary("portico")), "check", str(dirpath)], capture_output=True,
                          text=True, timeout=timeout, env=e)


def line_of(path, needle, nth=1):
    """1-based line number of the <nth> line of <path> containing <needle>."""
    seen = 0
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(f"{needle!r} not in {path}")


def same_port_two_addrs(addrs=("127.0.0.1", "127.0.0.2"), tries=50):
    """A port free on every address in <addrs>."""
    for _ in range(tries):
        p = free_port(addrs[0])
        ok = True
        for a in addrs[1:]:
            with socket.socket() as s:
                try:
                    s.bind((a, p))
                except OSError:
                    ok = False
        if ok:
            return p
    raise AssertionError("no common free port")
