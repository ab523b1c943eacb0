"""Shared helpers and fixtures for Portico's integration tests (pytest, real binaries).

Run with the system Python, which has pytest, requests and yaml:

    /usr/bin/python3 -m pytest -q tests/integration

Binaries are taken from the directory in ``PORTICO_BUILD`` (default ``build``; relative paths are
relative to the repository root), so ``make asan`` runs the same tests on ``build-asan``.

Helpers (import them with ``from conftest import ...``):

``binary(name)``
    Path of a built binary (``binary("portico")``); fails the test clearly if it was not built.
``free_port(host="127.0.0.1")``
    A TCP port that is free right now, below the kernel's ephemeral range (so no outgoing
    connection takes it before the test's server listens), never handed out twice in a run.
``connections_on_port(port)``
    States of the kernel's TCP sockets on that local port, listeners aside (FIN_WAIT1 is "04").
``wait_for_port(port, host="127.0.0.1", timeout=10, proc=None)``
    Waits until the port accepts connections; fails early with the log if ``proc`` died.
``Process(args, log_path, env=None, cwd=None)``
    One child process with stdout+stderr in ``log_path``: ``start(wait_port=...)``, ``stop()``
    (SIGTERM, then SIGKILL after a timeout; returns the exit status), ``send_signal(sig)``,
    ``log()``, ``wait_log(regex, timeout)``, ``pid``, ``running``, ``returncode``.
``RawConn(port, host="127.0.0.1", timeout=5)``
    A plain socket for what ``requests`` hides: ``send(bytes)``, ``request(method, path,
    headers=..., body=...)``, ``read_response(head=False)`` -> ``Response``, ``recv_all()``,
    ``closed_by_peer()``. Use it for keep-alive, pipelining, 100-continue and malformed input.
``Response``
    ``status``, ``reason``, ``version``, ``headers`` (list of (name, value) as received),
    ``header(name)`` (first value, case-insensitive, or None), ``body`` (bytes; chunked bodies
    are decoded, ``chunks`` lists the chunk sizes), ``json()``.

Fixtures:

``processes``
    A factory: ``processes.start(args, name="portico", port=None, env=None)`` starts a
    ``Process`` with its log in the test's tmp dir, waits for ``port`` if given, and stops it at
    teardown. At teardown the test fails if a process wrote a sanitizer report, and the tail of
    every log is printed when the test failed.
``quote_backend``
    A running ``build/portico-quote`` on a free port: ``.port``, ``.url``, ``.name``, ``.proc``.
    Start other variants with ``start_quote(processes, *extra_args)``.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("PORTICO_BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD

def shared_path(rel):
    """A file of the project's shared/ folder (beside the repository, as CI lays it out; else
    this workplace's /work/shared)."""
    for base in (REPO.parent / "shared", Path("/work/shared")):
        if (base / rel).exists():
            return base / rel
    return REPO.parent / "shared" / rel


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def binary(name):
    """Path of build/<name>; fails the test if it has not been built."""
    path = BUILD / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make` (or set PORTICO_BUILD)", pytrace=False)
    return path


_handed_out = set()


def _listen_ports():
    """The ports free_port hands out: those below the kernel's ephemeral range, which the kernel
    never gives to an outgoing connection. A port taken from bind(("", 0)) lies inside that range
    and an outgoing connection of another test could take it before the process that was handed
    it listens (seen in CI as "cannot listen on port ...: it is in use by another process"). The
    walk starts at a place drawn from the pid so that two runs side by side rarely meet."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = 10000
    if low - first < 2000:
        return None
    span = low - first
    start = (os.getpid() * 7919) % span
    return iter([first + (start + i) % span for i in range(span)])


_PORTS = _listen_ports()


def _bindable(family, port):
    """Whether nothing holds <port>: bound on the family's wildcard address without
    SO_REUSEADDR, which conflicts with any socket on that port (listening, connected, in
    TIME_WAIT) on any address of the family."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            return True
        except OSError:
            return False


def free_port(host="127.0.0.1"):
    """A TCP port free right now on <host>, never one handed out before in this run, and below
    the kernel's ephemeral range (see _listen_ports): nothing but a test takes it meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in _PORTS or ():
        if port not in _handed_out and _bindable(family, port):
            _handed_out.add(port)
            return port
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def connections_on_port(port):
    """States (hex, as /proc/net/tcp writes them: 01 ESTABLISHED, 04 FIN_WAIT1...) of this
    machine's TCP sockets whose local port is <port>, listeners aside: what Portico's side of
    its client connections left in the kernel."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].split(":")[-1], 16) == port and fields[3] != "0A":
                    states.append(fields[3])
    return states


def wait_for_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Waits until <host>:<port> accepts a TCP connection. Fails at once if <proc> (a Process)
    exits meanwhile, showing its log."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.running:
            pytest.fail(f"{proc.name} exited with {proc.returncode} before listening on "
                        f"{port}:\n{proc.log_tail()}", pytrace=False)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                tail = proc.log_tail() if proc is not None else ""
                pytest.fail(f"nothing listening on {host}:{port} after {timeout}s\n{tail}",
                            pytrace=False)
            time.sleep(0.02)


class Process:
    """A child process under test, its stdout and stderr appended to <log_path>."""

    def __init__(self, args, log_path, env=None, cwd=None, name=None):
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.name = name or Path(self.args[0]).name
        self.popen = None

    def start(self, wait_port=None, host="127.0.0.1", timeout=10.0):
        """Starts the process; with <wait_port>, returns once that port accepts connections."""
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, cwd=self.cwd)
        if wait_port is not None:
            wait_for_port(wait_port, host, timeout, proc=self)
        return self

    @property
    def pid(self):
        return self.popen.pid

    @property
    def running(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self):
        return None if self.popen is None else self.popen.poll()

    def send_signal(self, sig):
        if self.running:
            self.popen.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends <sig>, waits up to <timeout> s, then SIGKILL. Returns the exit status
        (negative: killed by that signal)."""
        if self.popen is None:
            return None
        if self.running:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        tail = self.log().splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)

    def wait_log(self, pattern, timeout=10.0):
        """Waits until the log matches the regex <pattern>; returns the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if not self.running:
                pytest.fail(f"{self.name} exited ({self.returncode}) before logging "
                            f"/{pattern}/\n{self.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not log /{pattern}/ in {timeout}s\n"
                            f"{self.log_tail()}", pytrace=False)
            time.sleep(0.02)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Response:
    def __init__(self, version, status, reason, headers, body, chunks=None):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.chunks = chunks

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class RawConn:
    """One TCP connection speaking raw HTTP/1.x."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.host = host
        self.port = port
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=None, body=b"", version="HTTP/1.1"):
        """Sends one request; Host is added unless given, Content-Length when there is a body
        and no framing header was given."""
        headers = list(headers or [])
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            headers.insert(0, ("Host", f"{self.host}:{self.port}"))
        if body and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
        head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.send(head.encode("latin-1") + b"\r\n" + body)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by peer")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head=False):
        """Reads one response (interim 1xx responses are returned like any other). <head>: the
        request was HEAD, so no body follows whatever the headers say."""
        version, status, reason = (self._line().decode("latin-1").split(" ", 2) + [""])[:3]
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.decode("latin-1").split(":", 1)
            headers.append((k, v.strip()))
        r = Response(version, int(status), reason, headers, b"")
        code = r.status
        if head or code < 200 or code in (204, 304):
            return r
        if (r.header("transfer-encoding") or "").lower() == "chunked":
            r.chunks = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailer section
                        pass
                    return r
                r.chunks.append(size)
                r.body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        if r.header("content-length") is not None:
            r.body = self._exact(int(r.header("content-length")))
            return r
        r.body = self.recv_all()  # close-delimited
        return r

    def recv_all(self):
        """Everything until the peer closes (or the timeout raises)."""
        data, self.buf = self.buf, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def closed_by_peer(self, timeout=2.0):
        """True when the peer closes (EOF or reset) within <timeout> with no more data."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


class Processes:
    """The `processes` fixture: starts Process objects and stops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def start(self, args, name=None, port=None, host="127.0.0.1", env=None, cwd=None,
              timeout=10.0):
        name = name or Path(str(args[0])).name
        log = self.tmp_path / f"{name}-{len(self.procs)}.log"
        proc = Process(args, log, env=env, cwd=cwd, name=name)
        self.procs.append(proc)
        return proc.start(wait_port=port, host=host, timeout=timeout)

    def stop_all(self):
        for proc in reversed(self.procs):
            proc.stop()

    def sanitizer_reports(self):
        return [p for p in self.procs if any(m in p.log() for m in SANITIZER_MARKERS)]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def processes(request, tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for p in procs.procs:
            print(p.log_tail())
    bad = procs.sanitizer_reports()
    if bad:
        pytest.fail("sanitizer report:\n" + "\n".join(p.log_tail(200) for p in bad),
                    pytrace=False)


class QuoteBackend:
    def __init__(self, proc, port, host, name):
        self.proc = proc
        self.port = port
        self.host = host
        self.name = name
        h = f"[{host}]" if ":" in host else host
        self.url = f"http://{h}:{port}"


def start_quote(processes, *extra, name="quote-test", host="127.0.0.1", threads=1):
    """Starts build/portico-quote on a free port with --name <name> and <extra> flags."""
    port = free_port(host)
    args = [binary("portico-quote"), "--port", port, "--bind", host, "--threads", threads]
    if name is not None:
        args += ["--name", name]
    proc = processes.start(args + list(extra), name="portico-quote", port=port, host=host)
    return QuoteBackend(proc, port, host, name)


@pytest.fixture
def quote_backend(processes):
    return start_quote(processes)


# ---- skip policy: with PORTICO_NO_SKIP=1 (set by .ci/run) a skip is a failure unless its
# reason matches one of these patterns (re.search). Everything else a test needs in CI is
# installed by `make deps` (scripts/deps.sh: haproxy, prometheus with promtool, openssl, dpkg)
# or lies beside the repository (shared/seed/), so a skip for it means CI lost coverage.
ALLOWED_SKIPS = {
    # test_quote_backend.test_ipv6: container runtimes often give no IPv6 loopback; nothing
    # to install, and the IPv4 paths are the same code.
    r"^no IPv6 loopback$": "the machine has no ::1",
    # test_routing.test_service_hostname_from_etc_hosts: needs a name other than localhost
    # that /etc/hosts maps to 127.0.0.1 only; CI does not control /etc/hosts.
    r"^no IPv4-only name for 127\.0\.0\.1 in /etc/hosts$": "/etc/hosts is the runner's",
    # test_tracing.test_service_name: the test sets AMBASSADOR_ID/AMBASSADOR_NAMESPACE itself,
    # it cannot when the caller exported them (CI does not).
    r"^AMBASSADOR_(ID|NAMESPACE) is set in the test environment$": "caller's environment",
}

_skips = []


def _skip_reason(report):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _note_skip(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not any(re.search(p, reason) for p in ALLOWED_SKIPS):
            _skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get("PORTICO_NO_SKIP") == "1" and _skips:
        terminalreporter.section("skipped tests not allowed in CI (PORTICO_NO_SKIP=1)", red=True)
        for nodeid, reason in _skips:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)
        terminalreporter.line(f"{len(_skips)} test(s) skipped for a reason not in conftest.py "
                              f"ALLOWED_SKIPS: install what they need (make deps) or fix them")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PORTICO_NO_SKIP") == "1" and _skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
