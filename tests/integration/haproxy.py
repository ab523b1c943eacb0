"""HAProxy terminating TLS in front of a backend and logging what it saw, for the TLS tests: the
common part of istio.py's STRICT sidecar and tlsenv.py's TLS upstream.

Import with ``from haproxy import ...`` (tests/integration is on sys.path through conftest.py).

``haproxy_config(tag, frontend, port, bind, log_format, backend, backend_port, maxconn=1000,
tune="", extra="")``
    An HAProxy configuration: one ``mode http`` frontend on 127.0.0.1:<port> (``bind ... <bind>``,
    the TLS options) forwarding to ``server <backend> 127.0.0.1:<backend_port>``. It logs on
    stdout one line per request, ``<tag> <log_format>``, and one line per connection that failed
    before a request (TLS handshake errors and the like), ``<tag>_ERR client=<ip:port> msg=<...>
    ssl_err=<hex>``. <tune> is added to ``global``, <extra> to the frontend (indented lines).
``start_haproxy(processes, cfg_path, name, port)``
    ``haproxy -db -f <cfg_path>`` under <processes>, waiting for <port>; skips the test when
    HAProxy is not installed (``PORTICO_HAPROXY``, default /usr/sbin/haproxy).
``LoggedHAProxy(proc, port)``
    The running HAProxy and its log; subclasses set ``TAG`` and ``WHAT`` (the name failure
    messages use). ``.entries()`` (dicts, "" for "-"), ``.errors()`` (raw ``<TAG>_ERR`` lines,
    leaving out the start-up port probe), ``.wait_requests(n)``, ``.wait_errors(n)``.
"""

import os
import re
import time

import pytest

HAPROXY = os.environ.get("PORTICO_HAPROXY", "/usr/sbin/haproxy")

_CFG = """\
global
    log stdout format raw local0 info
    nbthread 1
    maxconn {maxconn}
{tune}
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 5s
    timeout http-keep-alive 10s

frontend {frontend}
    bind 127.0.0.1:{port} {bind}
    log-format "{tag} {log_format}"
    error-log-format "{tag}_ERR client=%ci:%cp msg=%{{+Q}}[fc_err_str] ssl_err=%[ssl_fc_err,hex]"
{extra}
    default_backend {backend}

backend {backend}
    server {backend} 127.0.0.1:{backend_port}
"""

_KV_RX = re.compile(r"(\w+)=(\S*)")


def haproxy_config(tag, frontend, port, bind, log_format, backend, backend_port, maxconn=1000,
                   tune="", extra=""):
    """The configuration text of a TLS-terminating HAProxy that logs ``<tag>`` lines."""
    return _CFG.format(tag=tag, frontend=frontend, port=port, bind=bind, log_format=log_format,
                       backend=backend, backend_port=backend_port, maxconn=maxconn, tune=tune,
                       extra=extra)


def require_haproxy():
    """Skips the test when there is no HAProxy to run."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip(f"{HAPROXY} is not installed (apt-get install haproxy)")


def start_haproxy(processes, cfg_path, name, port):
    """Runs ``haproxy -db -f <cfg_path>`` and waits until it listens on <port>; returns the
    Process."""
    require_haproxy()
    return processes.start([HAPROXY, "-db", "-f", cfg_path], name=name, port=port)


class LoggedHAProxy:
    """A running HAProxy configured by haproxy_config(TAG, ...), read through its log."""

    TAG = None
    WHAT = "haproxy"

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self._log_rx = re.compile(rf"^{self.TAG} (.*)$", re.M)
        self._err_rx = re.compile(rf"^{self.TAG}_ERR .*$", re.M)
        self._err_base = 0

    def _settle_probe(self, timeout=2.0):
        """wait_for_port's probe connection is logged as a handshake error; leave it out."""
        deadline = time.monotonic() + timeout
        while not self._err_rx.findall(self.proc.log()) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._err_base = len(self._err_rx.findall(self.proc.log()))

    def entries(self):
        """One dict per request logged, in order: the logged fields as strings ("" when unset)."""
        return [{k: ("" if v == "-" else v) for k, v in _KV_RX.findall(m.group(1))}
                for m in self._log_rx.finditer(self.proc.log())]

    def errors(self):
        """Connections that failed before a request (TLS handshake errors and the like), raw
        lines, leaving out the start-up port probe."""
        return self._err_rx.findall(self.proc.log())[self._err_base:]

    def wait_requests(self, n, timeout=5.0):
        """Waits until at least <n> requests are logged (HAProxy logs after the response)."""
        return self._wait("requests", self.entries, n, timeout)

    def wait_errors(self, n, timeout=5.0):
        """Waits until at least <n> connection errors are logged."""
        return self._wait("connection errors", self.errors, n, timeout)

    def _wait(self, what, fn, n, timeout):
        deadline = time.monotonic() + timeout
        while len(fn()) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.WHAT} logged {len(fn())} {what}, expected {n}\n"
                            f"{self.proc.log_tail()}", pytrace=False)
            time.sleep(0.02)
        return fn()
