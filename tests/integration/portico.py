"""Helpers to run build/portico in integration tests.

``start_portico(processes, tmp_path, yaml_text, *extra_args, workers=2)``
    Writes <yaml_text> to a fresh config directory under <tmp_path>, starts
    ``portico run --config DIR --admin-port N --workers N`` and returns a ``Portico`` once
    ``/ambassador/v0/check_ready`` answers 200 and the listener accepts connections. The text may
    use ``$PORT`` for the listener port (a free port picked here, or <port>).
``listener_yaml(port)``, ``mapping_yaml(name, service, prefix="/backend/", **spec)``,
``service_yaml(name, port, target)``, ``endpoints_yaml(name, ips, port)``
    Kubernetes-style documents for the usual resources; join them with ``docs(...)``.
``ACCESS_RX`` / ``access_lines(portico)`` / ``wait_access_lines(portico, n)``
    Emissary's default access-log line (envoy-compat.md section 2.3) and the parsed lines so far.
``echo(portico, path, headers)`` / ``echo_headers(doc, name)``
    GET through the proxy to the quote backend's /echo; values of one header in its document.
``ClosingBackend()`` / ``RecordingBackend()``
    Tiny Python backends: one closes every connection without answering, the other records
    each request line it receives (``.requests``) and answers 200. ``.port``, ``.close()``.
Constants: ``UUID_RX``, ``REFUSED_BODY`` and ``TERMINATION_BODY`` (Envoy's exact 503 bodies),
``pattern(n)`` (the /size/ and /chunked/ body).
"""

import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import requests
import yaml

from conftest import binary, free_port, wait_for_port


UUID_RX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PATTERN = b"abcdefghijklmnopqrstuvwxyz"
REFUSED_BODY = (b"upstream connect error or disconnect/reset before headers. reset reason: remote "
                b"connection failure, transport failure reason: delayed connect error: "
                b"Connection refused")
TERMINATION_BODY = (b"upstream connect error or disconnect/reset before headers. reset reason: "
                    b"connection termination")


def pattern(n):
    """The body of the quote backend's /size/N and /chunked/N."""
    return (PATTERN * (n // 26 + 1))[:n]


def docs(*parts):
    return "\n---\n".join(p.strip("\n") for p in parts) + "\n"


def listener_yaml(port="$PORT", name="http"):
    return f"""apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: {name}}}
spec: {{port: {port}, protocol: HTTP, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}
"""


def mapping_yaml(name, service, prefix="/backend/", hostname="*", **spec):
    body = {"hostname": hostname, "prefix": prefix, "service": service}
    body.update(spec)
    doc = {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
           "metadata": {"name": name}, "spec": body}
    return yaml.safe_dump(doc, sort_keys=False)


def service_yaml(name, port=80, target=8080):
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                           "spec": {"ports": [{"name": "http", "port": port,
                                               "targetPort": target}]}}, sort_keys=False)


def endpoints_yaml(name, ips, port=8080):
    subsets = []
    if ips:
        subsets = [{"addresses": [{"ip": ip} for ip in ips],
                    "ports": [{"name": "http", "port": port}]}]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name},
                           "subsets": subsets}, sort_keys=False)


def basic_config(backend_port, **mapping_spec):
    """A Listener on $PORT and Mapping `quote` (prefix /backend/) to 127.0.0.1:<backend_port>."""
    return docs(listener_yaml(), mapping_yaml("quote", f"127.0.0.1:{backend_port}", **mapping_spec))


class Portico:
    def __init__(self, proc, port, admin_port, config_dir):
        self.proc = proc
        self.port = port
        self.admin_port = admin_port
        self.config_dir = config_dir

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path="/"):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def log(self):
        return self.proc.log()


def _ready(admin_port):
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{admin_port}/ambassador/v0/check_ready", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def start_portico(processes, tmp_path, yaml_text, *extra_args, workers=2, port=None,
                  timeout=15.0):
    port = port or free_port()
    admin_port = free_port()
    config_dir = Path(tmp_path) / f"portico-config-{port}"
    config_dir.mkdir(parents=True)
    (config_dir / "config.yaml").write_text(yaml_text.replace("$PORT", str(port)))
    args = [binary("portico"), "run", "--config", config_dir, "--admin-port", admin_port,
            "--workers", workers, *extra_args]
    proc = processes.start(args, name="portico")
    deadline = time.monotonic() + timeout
    while not _ready(admin_port):
        if not proc.running:
            pytest.fail(f"portico exited with {proc.returncode} before it was ready\n"
                        f"{proc.log_tail()}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"portico not ready after {timeout}s\n{proc.log_tail()}", pytrace=False)
        time.sleep(0.02)
    wait_for_port(port, timeout=timeout, proc=proc)
    proc.stop = lambda sig=signal.SIGTERM, timeout=10.0: _stop_portico(proc, sig, timeout)
    return Portico(proc, port, admin_port, config_dir)


def _stop_portico(proc, sig, timeout):
    """Teardown: SIGTERM, then SIGKILL if the process has not begun to exit after a short grace.
    Today an idle proxy does not leave its drain by itself (see
    test_sigterm_on_idle_proxy_exits_promptly); waiting for it would cost seconds per test.
    Once "stopped" is logged the process is exiting (a sanitizer may be writing its leak
    report), so it gets the full <timeout>."""
    popen = proc.popen
    if popen is None:
        return None
    if popen.poll() is None:
        popen.send_signal(sig)
        try:
            popen.wait(0.5)
        except subprocess.TimeoutExpired:
            if re.search(r"portico info: stopped$", proc.log(), re.M):
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if popen.poll() is None:
                popen.kill()
                popen.wait()
    return popen.returncode


# ACCESS [START] "METHOD PATH PROTO" CODE FLAGS RX TX DURATION UPSTREAM_TIME "XFF" "UA" "REQ-ID"
# "AUTHORITY" "UPSTREAM_HOST"
ACCESS_RX = re.compile(
    r'^ACCESS \[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>HTTP/1\.[01])" '
    r'(?P<code>\d{1,3}) (?P<flags>\S+) (?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) '
    r'(?P<ust>\d+|-) "(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" '
    r'"(?P<authority>[^"]*)" "(?P<upstream>[^"]*)"$')


def access_lines(portico):
    """Every ACCESS line logged so far, as (line, match-or-None)."""
    return [(line, ACCESS_RX.match(line)) for line in portico.log().splitlines()
            if line.startswith("ACCESS ")]


def wait_access_lines(portico, n, timeout=3.0):
    """Waits until at least <n> ACCESS lines are in the log; returns them all."""
    deadline = time.monotonic() + timeout
    while True:
        lines = access_lines(portico)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def echo_headers(doc, name):
    """Values of header <name> (case-insensitive) in a quote /echo document, in order."""
    name = name.lower()
    return [v for k, v in doc["headers"] if k.lower() == name]


def recv_head(sock, data=b""):
    """Reads from <sock> until a blank line ends a head: (head, what came after it), or None when
    the peer closes first. <data> is what was read already."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _ThreadedServer:
    """A listening socket on <host>:<port> (default 127.0.0.1 and a free port) served by one
    thread per connection (daemon threads; every socket has a timeout, so nothing outlives the
    test by more than a few seconds)."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.connections = 0
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(5)
            threading.Thread(target=self._serve_guarded, args=(conn,), daemon=True).start()

    def _serve_guarded(self, conn):
        try:
            self.serve(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


class ClosingBackend(_ThreadedServer):
    """Accepts, reads the request head, then closes without answering."""

    def serve(self, conn):
        recv_head(conn)


class StaleKeepAliveBackend(_ThreadedServer):
    """Answers the first request of each connection with keep-alive, then reads the next
    request's head and closes without answering: its keep-alive timeout crossing the proxy's
    reuse of the connection. Counts the request heads it read."""

    def __init__(self):
        self.heads = 0
        super().__init__()

    def serve(self, conn):
        data = b""
        for answer in (True, False):
            got = recv_head(conn, data)
            if got is None:
                return
            data = got[1]
            self.heads += 1
            if answer:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


class RecordingBackend(_ThreadedServer):
    """A minimal HTTP/1.1 backend that records the request line of every request it parses
    (bodies framed by Content-Length or chunked) and answers each with 200 "ok". `records`
    keeps each whole request: {"line", "headers" (name, value) as sent, "body" (de-chunked),
    "chunked"}."""

    def __init__(self):
        self.requests = []
        self.records = []
        super().__init__()

    def serve(self, conn):
        buf = b""

        def fill():
            nonlocal buf
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError
            buf += chunk

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                fill()
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        def exact(n):
            nonlocal buf
            while len(buf) < n:
                fill()
            data, buf = buf[:n], buf[n:]
            return data

        try:
            while True:
                request_line = line()
                if not request_line:
                    continue
                headers, raw = {}, []
                while True:
                    h = line()
                    if not h:
                        break
                    k, _, v = h.partition(b":")
                    headers[k.strip().lower()] = v.strip()
                    raw.append((k.decode("latin-1"), v.strip().decode("latin-1")))
                self.requests.append(request_line.decode("latin-1"))
                body, chunked = b"", False
                if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                    chunked = True
                    while True:
                        size = int(line().split(b";")[0], 16)
                        body += exact(size + 2)[:size] if size else b""
                        if size == 0:
                            while line():
                                pass
                            break
                elif b"content-length" in headers:
                    body = exact(int(headers[b"content-length"]))
                self.records.append({"line": request_line.decode("latin-1"), "headers": raw,
                                     "body": body, "chunked": chunked})
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (ConnectionError, ValueError):
            return


def echo(proxy, path="/backend/echo", headers=None, **kw):
    r = requests.get(proxy.url(path), headers=headers, timeout=5, **kw)
    assert r.status_code == 200, r.text
    return r.json()
