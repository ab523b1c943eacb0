#!/usr/bin/python3
"""Measurement helper for bench/run.sh (system Python, standard library only).

Subcommands:
  wrk LABEL URL --pids P [--backend-pid B] [--metrics URL --metric NAME...]
                                             run wrk pinned to the client CPU; record req/s,
                                             p50/p99, and the CPU the process trees of P (the
                                             proxy) and B (the backend) used per request;
                                             --metrics: also the growth of the Prometheus
                                             counters NAME (summed) per request, e.g. Portico's
                                             auth checks per request
  ab LABEL URL --pids P [--backend-pid B]    full TLS handshakes: `ab` without -k (one new
                                             connection, one full handshake and one request per
                                             request; ab never resumes a session); record
                                             handshakes/s and the CPU of P per handshake
  h2load LABEL URL --pids P [--backend-pid B] [--upstream-port N]
                                             HTTP/2 (h2c, prior knowledge): h2load -c50 -m10
                                             after a 2 s warm-up, a fixed -n per run; record
                                             req/s, mean latency and CPU per request as for
                                             wrk; a run where a request failed or was not 2xx
                                             is INVALID
  strace LABEL URL --pids P                  count the syscalls of P during an `ab -k` run
  idle LABEL URL --pid P [--conns N] [--window W] [--workers-only]
                                             user-space memory per idle keep-alive connection:
                                             Rss growth of P (or of its children alone) over N
                                             connections that each made one request and stay
                                             open (method: the comment above cmd_idle)
  haproxy-info SOCKET                        a few counters of HAProxy's `show info` as JSON
  wait-http URL [--timeout S] [--pid P] [--h2]
                                             wait until URL answers 200 (exit 1 if not,
                                             or as soon as P exits); --h2: over HTTP/2 with
                                             prior knowledge (curl)
  portico-config DIR --port N --backend-port N [--mappings N] [--mode M] [--certs DIR]
                 [--upstream-port N] [--collector-port N] [--auth-port N]
                 [--auth-path-prefix P] [--rls-port N]
                                             write a Portico config for the benchmark; M is
                                             http (default), https (TLS termination with
                                             DIR/server.crt), mtls (TLS with DIR/client.crt to
                                             the upstream port), tracing (Zipkin collector),
                                             auth (an HTTP AuthService on --auth-port) or
                                             ratelimit (a RateLimitService on --rls-port and a
                                             generic_key label on the Mapping)
  keepalive-check URL [--requests N]         N GETs on one keep-alive connection; all 200?
  note LABEL MESSAGE                         record why a target was skipped
  table                                      print the results table and the ratios

Results are JSON lines appended to $BENCH_RESULTS (one object per measurement).
CPU time is utime+stime from /proc/PID/stat, summed over the process and its descendants
(nginx runs its worker as a child of the master), in clock ticks (usually 10 ms): runs of a few
seconds give per-request figures good to about 1%.
"""

import argparse
import json
import os
import re
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULTS = os.environ.get("BENCH_RESULTS", "/tmp/portico-bench-results.jsonl")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")
PROXY_CPU = os.environ.get("BENCH_PROXY_CPU", "0")


# ---- CPU accounting ----

def proc_stat(pid):
    """(ppid, utime+stime in ticks) of <pid>, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name is in parentheses and may contain spaces
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def alive(pid):
    """Whether <pid> runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(")") + 2:].split()[0] != "Z"


def tree_pids(root):
    """<root> and all its live descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_lines():
    """{"cpu": [...], "cpu0": [...], ...} from /proc/stat, in ticks: user nice system idle iowait
    irq softirq steal."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                t = line.split()
                out[t[0]] = [int(x) for x in t[1:9]]
    return out


def busy_ticks(v):
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def tree_cpu_seconds(roots):
    ticks = 0
    for root in roots:
        for p in tree_pids(root):
            st = proc_stat(p)
            if st:
                ticks += st[1]
    return ticks / CLK_TCK


# ---- wrk ----

def to_us(value, unit):
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def parse_wrk(text):
    r = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
        r["wrk_seconds"] = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(3)]
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)", text, re.M)
        if m:
            r[f"p{pct}_us"] = to_us(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def run(cmd, timeout):
    """Runs <cmd>; returns (returncode or -1 on timeout, combined output)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return -1, out
    return p.returncode, out


def run_measured(cmd, timeout, pids, backend_pids):
    """Runs client <cmd> (bounded by <timeout> s) and measures around it: returns (returncode,
    output, acct) where acct holds the wall time and the CPU seconds the process trees of
    <pids> (the proxy) and <backend_pids> used, the client's own CPU and /proc/stat before and
    after, for cpu_per_request()."""
    before_children = os.times()  # the client's own CPU arrives in children_* once it is reaped
    stat0 = cpu_lines()
    cpu0 = tree_cpu_seconds(pids)
    bcpu0 = tree_cpu_seconds(backend_pids) if backend_pids else 0.0
    t0 = time.monotonic()
    rc, out = run(cmd, timeout=timeout)
    wall = time.monotonic() - t0
    cpu1 = tree_cpu_seconds(pids)
    bcpu1 = tree_cpu_seconds(backend_pids) if backend_pids else 0.0
    stat1 = cpu_lines()
    after_children = os.times()
    client_cpu = ((after_children.children_user + after_children.children_system) -
                  (before_children.children_user + before_children.children_system))
    return rc, out, {"wall": wall, "cpu": cpu1 - cpu0, "bcpu": bcpu1 - bcpu0,
                     "has_backend": bool(backend_pids), "client_cpu": client_cpu,
                     "stat0": stat0, "stat1": stat1}


def cpu_per_request(acct, n):
    """The per-request CPU fields of a result from run_measured()'s <acct> and <n> requests."""
    wall, cpu, bcpu, client_cpu = acct["wall"], acct["cpu"], acct["bcpu"], acct["client_cpu"]
    stat0, stat1 = acct["stat0"], acct["stat1"]
    r = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "cpu_us_per_req": cpu * 1e6 / n,
        "cpu_util": cpu / wall,
        "backend_cpu_us_per_req": bcpu * 1e6 / n if acct["has_backend"] else None,
        "client_cpu_us_per_req": client_cpu * 1e6 / n,
        "client_side_util": (client_cpu + bcpu) / wall,
    }
    # Softirq time (loopback TCP processing) is charged to no process. It runs on the sending
    # core, so the proxy core's softirq is mostly the proxy's own traffic.
    core = f"cpu{PROXY_CPU}"
    if core in stat0:
        soft = (stat1[core][6] + stat1[core][5] - stat0[core][6] - stat0[core][5]) / CLK_TCK
        r["core_softirq_us_per_req"] = soft * 1e6 / n
    # Everything busy on the machine that is not ours: other processes share the CPUs.
    irq_all = sum(stat1["cpu"][i] - stat0["cpu"][i] for i in (5, 6)) / CLK_TCK
    busy_all = (busy_ticks(stat1["cpu"]) - busy_ticks(stat0["cpu"])) / CLK_TCK
    ours = cpu + bcpu + client_cpu + irq_all
    r["others_util"] = max(0.0, busy_all - ours) / wall
    return r


def wrk_once(url, seconds, connections, pids, backend_pids):
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "--latency", url]
    rc, out, acct = run_measured(cmd, seconds + 30, pids, backend_pids)
    if rc != 0:
        raise RuntimeError(f"wrk failed ({rc}):\n{out}")
    r = parse_wrk(out)
    if not r.get("requests"):
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    r.update(cpu_per_request(acct, r["requests"]))
    return r


def cmd_wrk(a):
    pids = [int(p) for p in a.pids.split(",")]
    bpids = [int(p) for p in a.backend_pid.split(",")] if a.backend_pid else []
    cpids = [int(p) for p in a.collector_pid.split(",")] if a.collector_pid else []
    runs = []
    for i in range(a.runs):
        if a.collector:
            c0, ccpu0 = collector_stats(a.collector), tree_cpu_seconds(cpids)
        if a.metrics:
            m0 = counter_sum(a.metrics, a.metric)
        r = wrk_once(a.url, a.seconds, a.connections, pids, bpids)
        if a.collector:
            span_accounting(r, a.collector, c0, ccpu0, cpids, a.spans_per_req)
        if a.metrics:
            # requests still in flight when wrk stops were checked but are not counted by
            # wrk: up to --connections more than one per request
            r["policy_calls"] = counter_sum(a.metrics, a.metric) - m0
            r["policy_calls_per_req"] = r["policy_calls"] / r["requests"]
        runs.append(r)
        print(f"  {a.label:<14} run {i + 1}/{a.runs}: {r['rps']:>9.0f} req/s  "
              f"p50 {r.get('p50_us', 0):7.0f} us  p99 {r.get('p99_us', 0):7.0f} us  "
              f"cpu {r['cpu_us_per_req']:6.2f} us/req ({r['cpu_util'] * 100:3.0f}% of a core)"
              f"  others {r['others_util'] * 100:3.0f}%"
              + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else "")
              + (f"  socket errors {r['socket_errors']}" if r["socket_errors"] else "")
              + (f"  {'+'.join(a.metric)} {r['policy_calls']:.0f} "
                 f"({r['policy_calls_per_req']:.3f}/req)" if a.metrics else ""),
              flush=True)
        if a.collector:
            print(f"  {a.label:<14} run {i + 1}/{a.runs}: collector got {r['spans_received']} of "
                  f"{r['spans_expected']} spans ({r['spans_missing']} missing, "
                  f"{r['spans_missing_pct']:.1f}%) in {r['span_posts']} POSTs "
                  f"({r['spans_per_post']:.1f} spans/POST), collector CPU "
                  f"{r['collector_cpu_us_per_req']:.2f} us/req", flush=True)
    keys = ["rps", "p50_us", "p99_us", "cpu_us_per_req", "cpu_util", "backend_cpu_us_per_req",
            "client_cpu_us_per_req", "client_side_util", "core_softirq_us_per_req",
            "others_util", "spans_expected", "spans_received", "spans_missing",
            "spans_missing_pct", "span_posts", "spans_per_post", "collector_cpu_us_per_req",
            "policy_calls_per_req"]
    result = {"label": a.label, "kind": "wrk", "runs": len(runs), "url": a.url,
              "connections": a.connections, "seconds": a.seconds,
              "requests": sum(r["requests"] for r in runs),
              "non2xx": sum(r["non2xx"] for r in runs),
              "socket_errors": sum(r["socket_errors"] for r in runs)}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        result[k] = statistics.median(vals) if vals else None
    if a.metrics:
        result["policy_metrics"] = a.metric
        result["policy_calls"] = sum(r["policy_calls"] for r in runs)
    if a.extra:
        result.update(json.loads(a.extra))
    append(result)
    return 0


def counter_sum(url, names):
    """The sum of the Prometheus counters <names> (every label set) in the text at <url>."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, 1)[0]
        if name in names:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- HTTP/2 from clients: h2load (the h2 row) ----

def parse_h2load(text):
    """The counts of an h2load run: requests (done), started, succeeded, failed, errored,
    timeout, status codes 2xx..5xx, seconds, rps, the mean and max time for a request in us,
    and the application protocol it spoke."""
    r = {}
    m = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text, re.M)
    if m:
        r["h2load_seconds"] = to_us(m.group(1), m.group(2)) / 1e6
        r["rps"] = float(m.group(3))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if m:
        for k, v in zip(("total", "started", "requests", "succeeded", "failed", "errored",
                         "timeout"), m.groups()):
            r[k] = int(v)
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        for k, v in zip(("s2xx", "s3xx", "s4xx", "s5xx"), m.groups()):
            r[k] = int(v)
    m = re.search(r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+"
                  r"([\d.]+)(us|ms|s)", text, re.M)
    if m:
        r["max_us"] = to_us(m.group(3), m.group(4))
        r["mean_us"] = to_us(m.group(5), m.group(6))
    m = re.search(r"^Application protocol: (\S+)", text, re.M)
    r["protocol"] = m.group(1) if m else None
    return r


def h2load_problem(r, n):
    """Why h2load run <r> of <n> requests does not count (not every request answered 2xx over
    h2c), or None."""
    if r.get("protocol") != "h2c":
        return f"protocol {r.get('protocol')!r}, not h2c"
    if "succeeded" not in r or "s2xx" not in r:
        return "h2load printed no request counts"
    if r["succeeded"] != n or r["s2xx"] != n:
        return (f"{r['succeeded']} of {n} requests succeeded, {r['s2xx']} 2xx "
                f"({r.get('failed', 0)} failed, {r.get('errored', 0)} errored, "
                f"{r.get('timeout', 0)} timeout; 3xx/4xx/5xx {r.get('s3xx', 0)}/"
                f"{r.get('s4xx', 0)}/{r.get('s5xx', 0)})")
    return None


def h2load_cmd(a, url, volume):
    """h2load on the client CPU: <a.clients> connections x <a.streams> concurrent streams, h2c
    with prior knowledge (http:// URL), one thread; <volume> is ["-n", N] or ["-D", S]."""
    return ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{a.clients}", f"-m{a.streams}",
            *volume, url]


def upstream_conns(port):
    """Established connections to 127.0.0.1:<port> (the proxy's to its upstream)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def cmd_h2load(a):
    """Warm-up (h2load -D <warmup>), then <runs> measured runs of a fixed request count: -n
    from the warm-up's rate x <seconds> (or --requests), so that every request started is also
    finished and checked (a -D run stops with up to clients x streams requests in flight, which
    the proxy served but h2load does not count). A run counts when h2load spoke h2c and every
    request succeeded with a 2xx; otherwise it is INVALID (kept, and the row is marked)."""
    pids = [int(p) for p in a.pids.split(",")]
    bpids = [int(p) for p in a.backend_pid.split(",")] if a.backend_pid else []
    rc, out = run(h2load_cmd(a, a.url, ["-D", str(a.warmup)]), timeout=a.warmup + 30)
    w = parse_h2load(out)
    if rc != 0 or not w.get("requests"):
        raise RuntimeError(f"h2load warm-up failed ({rc}):\n{out[-2000:]}")
    n = a.requests or max(1000, int(round(w["rps"] * a.seconds, -3)))
    conns = upstream_conns(a.upstream_port) if a.upstream_port else None
    # A -D run stops with requests in flight: a response whose head arrived may be counted in
    # 2xx without being done, so only failures and non-2xx answers count here.
    wbad = sum(w.get(k, 0) for k in ("failed", "errored", "timeout", "s3xx", "s4xx", "s5xx"))
    werr = f"  (warm-up: {w.get('failed', 0)} failed, {w.get('errored', 0)} errored, " \
        f"{w.get('timeout', 0)} timeout, 3xx/4xx/5xx {w.get('s3xx', 0)}/{w.get('s4xx', 0)}/" \
        f"{w.get('s5xx', 0)}!)" if wbad else ""
    print(f"  {a.label:<14} warm-up {a.warmup} s: {w['rps']:.0f} req/s over {w.get('protocol')};"
          f" {fmt(conns, 'd')} upstream connections open; {n} requests per measured run{werr}",
          flush=True)
    runs = []
    for i in range(a.runs):
        timeout = max(60, 4 * a.seconds + 30)
        rc, out, acct = run_measured(h2load_cmd(a, a.url, ["-n", str(n)]), timeout, pids, bpids)
        r = parse_h2load(out)
        if rc != 0 or not r.get("requests"):
            r.setdefault("requests", 0)
            r["problem"] = f"h2load failed ({'timeout' if rc == -1 else rc}): {out[-300:]!r}"
            r["rps"] = r.get("rps", 0.0)
        else:
            r["problem"] = h2load_problem(r, n)
            r.update(cpu_per_request(acct, r["requests"]))
        r["n"] = n
        runs.append(r)
        if "cpu_us_per_req" in r:
            print(f"  {a.label:<14} run {i + 1}/{a.runs}: {r['rps']:>9.0f} req/s  "
                  f"mean {r.get('mean_us', 0):7.0f} us  max {r.get('max_us', 0):7.0f} us  "
                  f"cpu {r['cpu_us_per_req']:6.2f} us/req ({r['cpu_util'] * 100:3.0f}% of a core)"
                  f"  others {r['others_util'] * 100:3.0f}%  {r['succeeded']}/{n} succeeded, "
                  f"{r['s2xx']} 2xx" + (f"  INVALID: {r['problem']}" if r["problem"] else ""),
                  flush=True)
        else:
            print(f"  {a.label:<14} run {i + 1}/{a.runs}: INVALID: {r['problem']}", flush=True)
    measured = [r for r in runs if "cpu_us_per_req" in r]
    if not measured:
        raise RuntimeError(f"{a.label}: no h2load run completed")
    keys = ["rps", "mean_us", "max_us", "cpu_us_per_req", "cpu_util", "backend_cpu_us_per_req",
            "client_cpu_us_per_req", "client_side_util", "core_softirq_us_per_req",
            "others_util"]
    bad = [f"run {i + 1}: {r['problem']}" for i, r in enumerate(runs) if r["problem"]]
    result = {"label": a.label, "kind": "h2load", "runs": len(runs), "url": a.url,
              "clients": a.clients, "streams": a.streams, "requests_per_run": n,
              "warmup_seconds": a.warmup, "warmup": {k: w.get(k) for k in (
                  "rps", "requests", "succeeded", "s2xx", "protocol")},
              "upstream_conns": conns,
              "requests": sum(r["requests"] for r in runs),
              "succeeded": sum(r.get("succeeded", 0) for r in runs),
              "s2xx": sum(r.get("s2xx", 0) for r in runs),
              "invalid_runs": bad,
              "per_run_cpu_us_per_req": [r["cpu_us_per_req"] for r in measured]}
    for k in keys:
        vals = [r[k] for r in measured if r.get(k) is not None]
        result[k] = statistics.median(vals) if vals else None
    if a.extra:
        result.update(json.loads(a.extra))
    append(result)
    return 0


# ---- the Zipkin collector (bench/zipkin-sink.c) ----

def collector_stats(url):
    """{"posts", "spans", "bytes", "bad", "conns"} from zipkin-sink's GET /stats."""
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def span_accounting(r, url, c0, ccpu0, cpids, spans_per_req, settle=7.0):
    """Adds to wrk result <r> the spans the collector received for its requests. Portico sends
    what is pending at least every 5 s, so this waits until every expected span has arrived or
    for <settle> seconds. A few spans of the warm-up may land in the window, and requests still
    in flight when wrk stops are traced but not counted by wrk: both are a few dozen spans."""
    expected = r["requests"] * spans_per_req
    deadline = time.monotonic() + settle
    while True:
        c1 = collector_stats(url)
        if c1["spans"] - c0["spans"] >= expected or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    got = c1["spans"] - c0["spans"]
    posts = c1["posts"] - c0["posts"]
    r.update({
        "spans_expected": expected,
        "spans_received": got,
        "spans_missing": max(0, expected - got),
        "spans_missing_pct": 100.0 * max(0, expected - got) / expected if expected else 0.0,
        "span_posts": posts,
        "spans_per_post": got / posts if posts else 0.0,
        "collector_bad": c1["bad"] - c0["bad"],
        "collector_cpu_us_per_req": (tree_cpu_seconds(cpids) - ccpu0) * 1e6 / r["requests"]
        if cpids else None,
    })


# ---- full TLS handshakes: ab without keep-alive ----

def cmd_ab(a):
    pids = [int(p) for p in a.pids.split(",")]
    bpids = [int(p) for p in a.backend_pid.split(",")] if a.backend_pid else []
    runs = []
    for i in range(a.runs):
        # -t bounds the run; the -n after it lifts ab's implied 50000-request cap.
        cmd = ["taskset", "-c", CLIENT_CPU, "ab", "-f", "TLS1.3", "-l", "-q", "-r",
               "-c", str(a.concurrency), "-t", str(a.seconds), "-n", "100000000", a.url]
        before_children = os.times()
        stat0 = cpu_lines()
        cpu0 = tree_cpu_seconds(pids)
        bcpu0 = tree_cpu_seconds(bpids) if bpids else 0.0
        t0 = time.monotonic()
        rc, out = run(cmd, timeout=a.seconds + 30)
        wall = time.monotonic() - t0
        cpu1 = tree_cpu_seconds(pids)
        bcpu1 = tree_cpu_seconds(bpids) if bpids else 0.0
        stat1 = cpu_lines()
        after_children = os.times()
        m = re.search(r"Complete requests:\s+(\d+)", out)
        done = int(m.group(1)) if m else 0
        if rc != 0 or done == 0:
            raise RuntimeError(f"ab failed ({rc}):\n{out}")
        secs = float(re.search(r"Time taken for tests:\s+([\d.]+)", out).group(1))
        failed = re.search(r"Failed requests:\s+(\d+)", out)
        non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
        proto = re.search(r"SSL/TLS Protocol:\s+(\S+)", out)
        client_cpu = ((after_children.children_user + after_children.children_system) -
                      (before_children.children_user + before_children.children_system))
        r = {"requests": done, "rps": done / secs,
             "failed": int(failed.group(1)) if failed else 0,
             "non2xx": int(non2xx.group(1)) if non2xx else 0,
             "tls": proto.group(1) if proto else None,
             "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / done,
             "cpu_util": (cpu1 - cpu0) / wall,
             "backend_cpu_us_per_req": (bcpu1 - bcpu0) * 1e6 / done if bpids else None,
             "client_cpu_us_per_req": client_cpu * 1e6 / done,
             "client_side_util": (client_cpu + bcpu1 - bcpu0) / wall}
        core = f"cpu{PROXY_CPU}"
        if core in stat0:
            soft = (stat1[core][6] + stat1[core][5] - stat0[core][6] - stat0[core][5]) / CLK_TCK
            r["core_softirq_us_per_req"] = soft * 1e6 / done
        irq_all = sum(stat1["cpu"][i] - stat0["cpu"][i] for i in (5, 6)) / CLK_TCK
        busy_all = (busy_ticks(stat1["cpu"]) - busy_ticks(stat0["cpu"])) / CLK_TCK
        ours = (cpu1 - cpu0) + (bcpu1 - bcpu0) + client_cpu + irq_all
        r["others_util"] = max(0.0, busy_all - ours) / wall
        runs.append(r)
        print(f"  {a.label:<14} run {i + 1}/{a.runs}: {r['rps']:>9.0f} handshakes/s  "
              f"cpu {r['cpu_us_per_req']:7.1f} us/handshake ({r['cpu_util'] * 100:3.0f}% of a core)"
              f"  client {r['client_cpu_us_per_req']:6.1f} us  ({r['client_side_util'] * 100:3.0f}%"
              f" of CPU {CLIENT_CPU} with the backend)  others {r['others_util'] * 100:3.0f}%"
              f"  {r['tls']}"
              + (f"  failed {r['failed']}" if r["failed"] else "")
              + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else ""), flush=True)
    keys = ["rps", "cpu_us_per_req", "cpu_util", "backend_cpu_us_per_req",
            "client_cpu_us_per_req", "client_side_util", "core_softirq_us_per_req",
            "others_util"]
    result = {"label": a.label, "kind": "ab", "runs": len(runs), "url": a.url,
              "concurrency": a.concurrency, "seconds": a.seconds,
              "requests": sum(r["requests"] for r in runs),
              "failed": sum(r["failed"] for r in runs),
              "non2xx": sum(r["non2xx"] for r in runs), "tls": runs[-1]["tls"]}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        result[k] = statistics.median(vals) if vals else None
    if a.extra:
        result.update(json.loads(a.extra))
    append(result)
    return 0


def cmd_haproxy_info(a):
    """Prints {"CumSslConns": N, ...} from HAProxy's stats socket (the mTLS sidecar's)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(a.socket)
    s.sendall(b"show info\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    out = {}
    for line in data.decode(errors="replace").splitlines():
        k, _, v = line.partition(":")
        if k in ("CumSslConns", "CumConns", "CumReq", "SslFrontendKeyRate",
                 "SslFrontendSessionReuse_pct"):
            try:
                out[k] = int(v.strip())
            except ValueError:
                out[k] = v.strip()
    print(json.dumps(out))
    return 0


# ---- strace ----

def parse_strace_summary(text):
    """({syscall: calls}, total calls) from `strace -c` output, whose rows are
    "% time, seconds, usecs/call, calls, [errors], syscall" and end with a "total" row."""
    calls, total = {}, None
    for line in text.splitlines():
        t = line.split()
        if len(t) < 5 or not re.match(r"^[\d.]+$", t[0]) or not t[3].isdigit():
            continue
        if t[-1] == "total":
            total = int(t[3])
        else:
            calls[t[-1]] = int(t[3])
    if total is None:
        total = sum(calls.values())
    return calls, total


def cmd_strace(a):
    pids = []
    for root in [int(p) for p in a.pids.split(",")]:
        pids.extend(tree_pids(root))
    out_file = os.path.join(os.environ.get("BENCH_RUN", "/tmp"), f"strace-{a.label}.txt")
    st_cmd = ["strace", "-c", "-f", "-o", out_file]
    for p in pids:
        st_cmd += ["-p", str(p)]
    st = subprocess.Popen(st_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let strace attach to every thread
    if st.poll() is not None:
        raise RuntimeError(f"strace exited: {st.stderr.read()}")
    ab = ["taskset", "-c", CLIENT_CPU, "ab", "-k", "-l", "-q", "-n", str(a.requests), "-c",
          str(a.concurrency), a.url]
    try:
        res = subprocess.run(ab, capture_output=True, text=True, timeout=a.timeout)
        ab_out = res.stdout + res.stderr
    except subprocess.TimeoutExpired:
        ab_out = "timeout"
    time.sleep(0.2)
    st.send_signal(signal.SIGINT)
    try:
        st.wait(timeout=30)
    except subprocess.TimeoutExpired:
        st.kill()
        st.wait()
    m = re.search(r"Complete requests:\s+(\d+)", ab_out)
    done = int(m.group(1)) if m else 0
    failed = re.search(r"Failed requests:\s+(\d+)", ab_out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", ab_out)
    if done == 0:
        raise RuntimeError(f"ab completed no request:\n{ab_out}")
    with open(out_file) as f:
        calls, total = parse_strace_summary(f.read())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
    per = {k: v / done for k, v in top}
    result = {"label": a.label, "kind": "strace", "requests": done,
              "failed": int(failed.group(1)) if failed else 0,
              "non2xx": int(non2xx.group(1)) if non2xx else 0,
              "syscalls_per_req": total / done, "top": per}
    append(result)
    print(f"  {a.label:<14} strace: {total / done:6.2f} syscalls/req over {done} requests ("
          + ", ".join(f"{k} {v:.2f}" for k, v in per.items()) + ")"
          + (f"  ab: {result['failed']} failed, {result['non2xx']} non-2xx"
             if result["failed"] or result["non2xx"] else ""), flush=True)
    return 0


# ---- idle keep-alive connections: user-space memory per connection (the `idle` row) ----
#
# Method (issue 10 point 2; nginx 1.22 reads ~1.1 KiB and HAProxy 2.6 ~1.4 KiB by it):
#  1. run.sh starts the proxy fresh for every run (one worker, the http row's configuration),
#     since memory a process has freed stays in its allocator and would hide the next run's growth.
#  2. Warm-up: IDLE_WARMUP_CONNS connections with IDLE_WARMUP_REQS keep-alive GETs each, closed,
#     so that lazy start-up work (the upstream connection, first allocations) is not counted.
#  3. Read the RSS of the serving processes (below), after IDLE_SETTLE seconds of quiet.
#  4. One client process on the client CPU opens <conns> connections ONE AFTER THE OTHER; on each
#     it sends "GET / HTTP/1.1" and reads the whole response (200 and its Content-Length body or
#     chunks), then leaves it open and idle. Sequential on purpose: at most one request is in
#     flight, so what is measured is what an idle connection keeps after its request, not the
#     peak of <conns> requests in flight at once (--window N, BENCH_IDLE_WINDOW, sends N GETs
#     at a time before reading their answers, to see that peak too: memory a proxy freed stays
#     in its allocator and in its Rss).
#  5. IDLE_SETTLE seconds later, read the RSS again and check that every connection is still
#     open (a peek that would block; EOF or a reset counts as closed).
#  6. (after - before) / <conns> = bytes of user-space memory per idle keep-alive connection.
#     The client closes with SO_LINGER 0 (RST), leaving no TIME_WAIT to exhaust local ports.
# RSS is Rss from /proc/PID/smaps_rollup (the kernel walks the page tables: exact; VmRSS of
# /proc/PID/status may lag by per-thread batches) summed over the serving processes: Portico
# and HAProxy are one process each (threads included); for nginx the worker(s) alone, since the
# master never holds a client connection (its Rss is read too, and its change reported, to show
# that nothing is hidden there). Kernel memory (socket buffers, struct sock) is not user-space
# memory and is not counted; memory a proxy preallocates at start (nginx's array of
# worker_connections connection and event structs, HAProxy's fd table for maxconn) is in
# "before" and so not counted either: that is a choice each design makes, at start-up.

IDLE_WARMUP_CONNS = 4
IDLE_WARMUP_REQS = 5
IDLE_SETTLE = 1.0


def rss_kib(pid):
    """Rss of <pid> in KiB from /proc/PID/smaps_rollup (VmRSS from status when there is no
    smaps_rollup), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    except ProcessLookupError:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def read_http_response(s, deadline):
    """Reads one whole HTTP/1.1 response from blocking socket <s> (Content-Length or chunked
    body); returns its status code. Raises RuntimeError on EOF, a malformed head or the deadline."""
    buf = b""

    def more():
        nonlocal buf
        if time.monotonic() > deadline:
            raise RuntimeError("timed out reading a response")
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response was complete")
        buf += chunk

    while b"\r\n\r\n" not in buf:
        more()
        if len(buf) > 65536:
            raise RuntimeError("response head larger than 64 KiB")
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise RuntimeError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            while b"\r\n" not in buf:
                more()
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                more()
            buf = buf[size + 2:]
            if size == 0:  # bench backends send no trailers
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            more()
        buf = buf[length:]
    if buf:
        raise RuntimeError(f"{len(buf)} unexpected bytes after the response")
    return status


def idle_connect(host, port, request):
    """A new blocking connection (5 s timeouts) to host:port that has sent <request>; it closes
    with a reset (SO_LINGER 0)."""
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
    except BaseException:
        s.close()
        raise
    return s


def still_open(s):
    """Whether the peer has neither closed nor reset <s> (a non-blocking peek would block)."""
    try:
        s.setblocking(False)
        return s.recv(1, socket.MSG_PEEK) != b""  # data on an idle connection: open, but odd
    except BlockingIOError:
        return True
    except OSError:
        return False


def serving_pids(root, workers_only):
    """The processes whose Rss is the proxy's: <root>'s tree, or only its descendants."""
    pids = tree_pids(root)
    return [p for p in pids if p != root] if workers_only else pids


def cmd_idle(a):
    from urllib.parse import urlsplit
    u = urlsplit(a.url)
    host, port = u.hostname, u.port
    request = (f"GET {u.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").encode()
    root = int(a.pid)
    try:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    except (OSError, ValueError):
        pass
    import resource
    need = a.conns + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} < {need} for {a.conns} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    deadline = time.monotonic() + a.timeout
    # warm-up
    for _ in range(IDLE_WARMUP_CONNS):
        s = idle_connect(host, port, request)
        try:
            read_http_response(s, deadline)
            for _ in range(IDLE_WARMUP_REQS - 1):
                s.sendall(request)
                read_http_response(s, deadline)
        finally:
            s.close()
    time.sleep(IDLE_SETTLE)
    pids = serving_pids(root, a.workers_only)
    if not pids:
        raise RuntimeError(f"no serving process under pid {root}")
    before = {p: rss_kib(p) for p in pids}
    root_before = rss_kib(root)
    socks, statuses, t0 = [], {}, time.monotonic()
    try:
        # <window> connections at a time send their GET, then read their responses
        for start in range(0, a.conns, a.window):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {start} of {a.conns} connections")
            batch = []
            for _ in range(min(a.window, a.conns - start)):
                batch.append(idle_connect(host, port, request))
                socks.append(batch[-1])
            for s in batch:
                status = read_http_response(s, deadline)
                statuses[status] = statuses.get(status, 0) + 1
        open_secs = time.monotonic() - t0
        time.sleep(IDLE_SETTLE)
        after = {p: rss_kib(p) for p in pids}
        root_after = rss_kib(root)
        n_open = sum(1 for s in socks if still_open(s))
    finally:
        for s in socks:
            s.close()
    if any(v is None for v in list(before.values()) + list(after.values())):
        raise RuntimeError(f"a serving process exited during the run (pids {pids})")
    rss0, rss1 = sum(before.values()), sum(after.values())
    r = {"label": a.label, "kind": "idle", "run": a.run, "url": a.url, "conns": a.conns,
         "window": a.window,
         "statuses": {str(k): v for k, v in statuses.items()}, "still_open": n_open,
         "open_seconds": open_secs, "pids": pids, "workers_only": a.workers_only,
         "rss_before_kib": rss0, "rss_after_kib": rss1,
         "rss_per_pid_kib": {str(p): [before[p], after[p]] for p in pids},
         "bytes_per_conn": (rss1 - rss0) * 1024 / a.conns}
    if a.workers_only and root_before is not None and root_after is not None:
        r["master_rss_delta_kib"] = root_after - root_before
    if a.extra:
        r.update(json.loads(a.extra))
    append(r)
    bad = ("" if statuses == {200: a.conns} else f"  statuses {statuses}!") + \
        ("" if n_open == a.conns else f"  only {n_open} still open!")
    print(f"  {a.label:<14} run {a.run}: {a.conns} idle connections opened in {open_secs:.1f} s, "
          f"Rss {rss0} -> {rss1} KiB ({len(pids)} process{'es' if len(pids) > 1 else ''}"
          + (f"; master {r['master_rss_delta_kib']:+d} KiB, not counted"
             if "master_rss_delta_kib" in r else "")
          + f"): {r['bytes_per_conn']:.0f} bytes ({r['bytes_per_conn'] / 1024:.2f} KiB) "
          f"per idle connection{bad}", flush=True)
    return 0


# ---- helpers for run.sh ----

def cmd_wait_http(a):
    deadline = time.monotonic() + a.timeout
    last = None
    while time.monotonic() < deadline:
        if a.pid and not alive(a.pid):
            print(f"  process {a.pid} exited before {a.url} answered", file=sys.stderr)
            return 1
        if a.h2:
            # HTTP/2 with prior knowledge: the h2 row's nginx and HAProxy listeners speak no
            # HTTP/1.1, and a 200 over HTTP/1.1 would not show that h2c works.
            rc, out = run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "1",
                           "-o", "/dev/null", "-w", "%{http_code} %{http_version}", a.url], 5)
            if rc == 0 and out.strip() == "200 2":
                return 0
            last = f"curl --http2-prior-knowledge: {out.strip()!r} (exit {rc})"
            time.sleep(0.1)
            continue
        try:
            ctx = ssl._create_unverified_context() if a.url.startswith("https:") else None
            with urllib.request.urlopen(a.url, timeout=1, context=ctx) as r:
                if r.status == 200:
                    return 0
                last = f"status {r.status}"
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = str(e)
        time.sleep(0.1)
    print(f"  {a.url} did not answer 200 within {a.timeout}s ({last})", file=sys.stderr)
    return 1


def cmd_keepalive_check(a):
    """Sends <n> GETs on ONE keep-alive connection (TLS for https URLs, certificate not checked)
    and prints {"statuses": [...], "ok": bool}; the heads of the answers go to --evidence. wrk
    counts 3xx as success, so a proxy that redirects or mis-serves reused connections would
    otherwise look fast and healthy."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(a.url)
    if u.scheme == "https":
        ctx = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    statuses, lines, last_headers = [], [], {}
    try:
        for i in range(a.requests):
            conn.request("GET", u.path or "/")
            r = conn.getresponse()
            body = r.read()
            statuses.append(r.status)
            last_headers = {k.lower(): v for k, v in r.getheaders()}
            lines.append(f"request {i + 1} on the same connection: GET {u.path or '/'} -> "
                         f"HTTP {r.status} {r.reason}")
            lines += [f"  {k}: {v}" for k, v in r.getheaders()]
            lines.append(f"  body: {body[:200]!r}")
    except Exception as e:  # noqa: BLE001 - a broken connection is a finding too
        statuses.append(f"error: {e}")
        lines.append(f"request {len(statuses)}: {e}")
    finally:
        conn.close()
    if a.evidence:
        with open(a.evidence, "w") as f:
            f.write("\n".join(lines) + "\n")
    out = {"statuses": statuses, "ok": all(x == 200 for x in statuses)}
    if a.header and last_headers.get(a.header.lower()) is not None:
        out[a.header.lower()] = last_headers[a.header.lower()]
    print(json.dumps(out))
    return 0


# ab speaks HTTP/1.0 (the syscall count and the handshake row): Portico serves it, as nginx and
# HAProxy do, only with the Module's enable_http10 (its default is Emissary's 426).
MODULE_HTTP10 = """---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata:
  name: ambassador
spec:
  config:
    enable_http10: true
"""

LISTENER = """apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata:
  name: bench-http
spec:
  port: {port}
  protocol: HTTP
  securityModel: XFP
  hostBinding:
    namespace:
      from: ALL
"""

MAPPING = """---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: {name}
spec:
  hostname: "*"
  prefix: {prefix}
  rewrite: ""
  service: 127.0.0.1:{backend}
"""


TLS_SECRET = """---
apiVersion: v1
kind: Secret
metadata:
  name: {name}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
"""

# HTTPS rows: the Listener terminates TLS with the Host's tlsSecret for every hostname.
HTTPS_HOST = """---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata:
  name: bench
spec:
  hostname: "*"
  tlsSecret:
    name: bench-tls
"""

# mTLS row: the Istio seed's TLSContext, with the run's client certificate.
MTLS_CONTEXT = """---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata:
  name: istio-upstream
spec:
  secret: client-cert
  alpn_protocols: istio
"""

TRACING = """---
apiVersion: getambassador.io/v3alpha1
kind: TracingService
metadata:
  name: tracing
spec:
  driver: zipkin
  service: 127.0.0.1:{collector}
  config: {{}}
"""


# auth row: an HTTP AuthService (Envoy's ext_authz over HTTP); the check request for GET / is
# GET <path_prefix>/ to the auth server (portico-quote: /size/0/ answers 200 with an empty body,
# / a 200 with a quote). A failed check answers 403, which wrk counts as non-2xx.
AUTH = """---
apiVersion: getambassador.io/v3alpha1
kind: AuthService
metadata:
  name: bench-auth
spec:
  auth_service: "127.0.0.1:{auth}"
  proto: http
  path_prefix: "{prefix}"
  timeout_ms: 5000
"""

# ratelimit row: a RateLimitService (ShouldRateLimit over h2c) and, on the catch-all Mapping,
# one label group with one generic_key: one descriptor per request. failure_mode_deny makes a
# failed call a 500 (wrk's non-2xx) instead of a silent pass; timeout_ms is large so that a
# slow answer on this shared machine is not an error.
RATELIMIT = """---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata:
  name: bench-ratelimit
spec:
  service: "127.0.0.1:{rls}"
  protocol_version: v3
  timeout_ms: 1000
  failure_mode_deny: true
"""

RATELIMIT_LABELS = """  labels:
    ambassador:
    - bench:
      - generic_key:
          value: bench
"""


def b64_file(path):
    import base64
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def cmd_portico_config(a):
    os.makedirs(a.dir, exist_ok=True)
    upstream = a.upstream_port or a.backend_port
    with open(os.path.join(a.dir, "bench.yaml"), "w") as f:
        listener = LISTENER.format(port=a.port)
        if a.mode == "https":
            listener = listener.replace("protocol: HTTP\n", "protocol: HTTPS\n")
            f.write(listener)
            f.write(HTTPS_HOST)
            f.write(TLS_SECRET.format(name="bench-tls",
                                      crt=b64_file(os.path.join(a.certs, "server.crt")),
                                      key=b64_file(os.path.join(a.certs, "server.key"))))
        else:
            f.write(listener)
        if a.mode == "mtls":
            f.write(MTLS_CONTEXT)
            f.write(TLS_SECRET.format(name="client-cert",
                                      crt=b64_file(os.path.join(a.certs, "client.crt")),
                                      key=b64_file(os.path.join(a.certs, "client.key"))))
        if a.mode == "tracing":
            f.write(TRACING.format(collector=a.collector_port))
        if a.mode == "auth":
            f.write(AUTH.format(auth=a.auth_port, prefix=a.auth_path_prefix))
        if a.mode == "ratelimit":
            f.write(RATELIMIT.format(rls=a.rls_port))
        for i in range(a.mappings - 1):
            f.write(MAPPING.format(name=f"svc-{i}", prefix=f"/svc-{i}/", backend=upstream))
        m = MAPPING.format(name="catch-all", prefix="/", backend=upstream)
        if a.mode == "mtls":
            m += "  tls: istio-upstream\n"
        if a.mode == "ratelimit":
            m += RATELIMIT_LABELS
        f.write(m)
        f.write(MODULE_HTTP10)
    return 0


# ---- the table ----

def append(result):
    with open(RESULTS, "a") as f:
        f.write(json.dumps(result) + "\n")


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


ROW_SUFFIXES = (("-https", "https"), ("-hs", "handshake"), ("-h2", "h2"), ("-mtls", "mtls"),
                ("-idle", "idle"), ("-nostats", "tracing"), ("-notrace", "tracing"), ("-trace", "tracing"),
                ("-noauth", "auth"), ("-auth", "auth"), ("-authbody", "auth"),
                ("-norl", "ratelimit"), ("-rl", "ratelimit"))


def group_of(label):
    """The row of a result label: portico/nginx/haproxy/direct/portico-10k are the plain HTTP
    row; <proxy>-https, -hs, -h2, -mtls, portico-notrace/-trace, <proxy>-noauth/-auth and
    portico-norl/-rl the TLS, HTTP/2, tracing, auth and rate-limit rows."""
    for suffix, group in ROW_SUFFIXES:
        if label.endswith(suffix):
            return group
    return "http"


def ratio_lines(rows, notes, suffix, what="CPU us/req", rate="req/s"):
    p = rows.get("portico" + suffix)
    for other in ("nginx", "haproxy"):
        o = rows.get(other + suffix)
        if p and o:
            bad = invalid(p) or invalid(o)
            print(f"portico/{other} {what}: {p['cpu_us_per_req'] / o['cpu_us_per_req']:.2f}"
                  f"   {rate}: {p['rps'] / o['rps']:.2f}"
                  + (f"   (not comparable: {'portico' if invalid(p) else other} {bad})"
                     if bad else ""))
        else:
            missing = "portico" + suffix if not p else other + suffix
            why = notes.get(missing, {}).get("message", "not measured")
            print(f"portico/{other} {what}: n/a ({missing}: {why})")


def invalid(r):
    """Why result <r> does not measure proxying (a failed keep-alive check, an h2load run with
    a failed or non-2xx request), or None."""
    if r.get("invalid_runs"):
        return "INVALID: " + "; ".join(r["invalid_runs"])
    c = r.get("keepalive_check")
    if c and not c.get("ok"):
        return f"INVALID: 3 GETs on one keep-alive connection were answered {c['statuses']}"
    return None


def wrk_row(label, r, s, upstream_label="upstream"):
    soft = r.get("core_softirq_us_per_req")
    bad = invalid(r)
    return (f"{label:<16} {r['rps']:>8.0f} {fmt(r['p50_us'], '7.0f'):>7} "
            f"{fmt(r['p99_us'], '7.0f'):>7} {r['cpu_us_per_req']:>10.2f} "
            f"{r['cpu_util'] * 100:>4.0f}% {fmt(soft, '8.2f'):>8} "
            f"{fmt(s and s['syscalls_per_req'], '12.2f'):>12} "
            f"{fmt(r['backend_cpu_us_per_req'], '14.2f'):>14} "
            f"{fmt(r.get('upstream_conns'), '8d'):>8} "
            f"{fmt(r.get('others_util') is not None and r['others_util'] * 100, '7.0f')}%"
            + ("  (non-2xx or socket errors!)" if r["non2xx"] or r["socket_errors"] else "")
            + (f"\n{'':<16} {bad}" if bad else ""))


def print_section(title, labels, rows, strace, notes, backend_hdr="backend us/req",
                  upstream_hdr="upstream"):
    present = [lb for lb in labels if lb in rows or lb in notes]
    if not present:
        return False
    print()
    print(title)
    hdr = (f"{'target':<16} {'req/s':>8} {'p50 us':>7} {'p99 us':>7} {'CPU us/req':>10} "
           f"{'CPU %':>5} {'+softirq':>8} {'syscalls/req':>12} {backend_hdr:>14} "
           f"{upstream_hdr:>8} {'others %':>8}")
    print(hdr)
    print("-" * len(hdr))
    for label in present:
        if label not in rows:
            print(f"{label:<16} skipped: {notes[label]['message']}")
        else:
            print(wrk_row(label, rows[label], strace.get(label)))
    return True


def cmd_table(a):
    rows, ab, strace, notes, idle, rows_h2 = {}, {}, {}, {}, {}, {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            for line in f:
                r = json.loads(line)
                if r["kind"] == "wrk":
                    rows[r["label"]] = r
                elif r["kind"] == "ab":
                    ab[r["label"]] = r
                elif r["kind"] == "h2load":
                    rows_h2[r["label"]] = r
                elif r["kind"] == "strace":
                    strace[r["label"]] = r
                elif r["kind"] == "note":
                    notes[r["label"]] = r
                elif r["kind"] == "idle":
                    idle.setdefault(r["label"], []).append(r)
    proxies = ("portico", "nginx", "haproxy")
    http_rows = {k: v for k, v in rows.items() if group_of(k) == "http"}
    http_notes = {k: v for k, v in notes.items() if group_of(k) == "http"}
    if http_rows or http_notes:
        print()
        print("Results (medians; closed-loop wrk at saturation, so latency includes queueing)")
        hdr = (f"{'target':<12} {'req/s':>8} {'p50 us':>7} {'p99 us':>7} {'CPU us/req':>10} "
               f"{'CPU %':>5} {'+softirq':>8} {'syscalls/req':>12} {'backend us/req':>14} "
               f"{'upstream':>8} {'others %':>8}")
        print(hdr)
        print("-" * len(hdr))
        order = ["direct", "portico", "nginx", "haproxy", "portico-10k"]
        for label in order + sorted(set(http_rows) - set(order)):
            if label not in http_rows and label not in http_notes:
                continue
            if label not in http_rows:
                print(f"{label:<12} skipped: {http_notes[label]['message']}")
                continue
            r = http_rows[label]
            s = strace.get(label)
            soft = None if label == "direct" else r.get("core_softirq_us_per_req")
            print(f"{label:<12} {r['rps']:>8.0f} {fmt(r['p50_us'], '7.0f'):>7} "
                  f"{fmt(r['p99_us'], '7.0f'):>7} {r['cpu_us_per_req']:>10.2f} "
                  f"{r['cpu_util'] * 100:>4.0f}% {fmt(soft, '8.2f'):>8} "
                  f"{fmt(s and s['syscalls_per_req'], '12.2f'):>12} "
                  f"{fmt(r['backend_cpu_us_per_req'], '14.2f'):>14} "
                  f"{fmt(r.get('upstream_conns'), '8d'):>8} "
                  f"{fmt(r.get('others_util') is not None and r['others_util'] * 100, '7.0f')}%"
                  + ("  (non-2xx or socket errors!)" if r["non2xx"] or r["socket_errors"] else ""))
            if invalid(r):
                print(f"{'':<12} {invalid(r)}")
        print()
        print("CPU us/req   utime+stime of the proxy's processes per request (for 'direct': the "
              "backend's).\n"
              "CPU %        of the proxy's core; near 100% means the proxy was the bottleneck.\n"
              "+softirq     softirq time on the proxy's core per request: loopback TCP work that "
              "the kernel\n"
              "             charges to no process (add it for the full kernel cost).\n"
              "upstream     proxy->backend connections open after warm-up (keep-alive works when "
              "<= ~50).\n"
              "others %     CPU used meanwhile by processes that are not part of the benchmark; "
              "when high,\n"
              "             req/s and latency are not comparable, CPU us/req mostly still is.")
        print()
        p = http_rows.get("portico")
        print()
        for other in ("nginx", "haproxy"):
            o = http_rows.get(other)
            if p and o:
                print(f"portico/{other} CPU us/req: {p['cpu_us_per_req'] / o['cpu_us_per_req']:.2f}"
                      f"   req/s: {p['rps'] / o['rps']:.2f}")
            else:
                print(f"portico/{other} CPU us/req: n/a ({'portico' if not p else other} not measured)")
        p10 = http_rows.get("portico-10k")
        if p and p10:
            print(f"portico 10k Mappings vs 1: CPU us/req x{p10['cpu_us_per_req'] / p['cpu_us_per_req']:.2f}"
                  f", compile {p10.get('compile_ms', 'n/a')} ms")
        elif "portico-10k" in http_notes:
            print(f"portico 10k Mappings: {http_notes['portico-10k']['message']}")

    # 1. HTTPS termination, keep-alive
    labels = [f"{p}-https" for p in proxies]
    tls = next((rows[lb].get("tls") for lb in labels if lb in rows and rows[lb].get("tls")), "")
    if print_section("HTTPS termination, keep-alive (wrk -t1 -c50 https://, TLS 1.3"
                     + (f": {tls}" if tls else "") + "; plaintext keep-alive to the backend)",
                     labels, rows, strace, notes):
        for lb in labels:
            if lb in rows and rows[lb].get("tls") and rows[lb]["tls"] != tls:
                print(f"  note: {lb} negotiated {rows[lb]['tls']}")
        ratio_lines(rows, notes, "-https")

    # 2. Full handshakes
    labels = [f"{p}-hs" for p in proxies]
    present = [lb for lb in labels if lb in ab or lb in notes]
    if present:
        conc = next((ab[lb]["concurrency"] for lb in present if lb in ab), "?")
        print()
        print(f"Full TLS handshakes (ab -c{conc} without -k: a new TCP connection, a full TLS 1.3 "
              f"handshake\nand one proxied request each; ab never resumes a session)")
        hdr = (f"{'target':<16} {'handshakes/s':>12} {'CPU us/handshake':>16} {'CPU %':>5} "
               f"{'+softirq':>8} {'client us':>9} {'CPU1 %':>6} {'failed':>6} {'others %':>8}  TLS")
        print(hdr)
        print("-" * len(hdr))
        for lb in present:
            if lb not in ab:
                print(f"{lb:<16} skipped: {notes[lb]['message']}")
                continue
            r = ab[lb]
            print(f"{lb:<16} {r['rps']:>12.0f} {r['cpu_us_per_req']:>16.1f} "
                  f"{r['cpu_util'] * 100:>4.0f}% {fmt(r.get('core_softirq_us_per_req'), '8.1f'):>8} "
                  f"{r['client_cpu_us_per_req']:>9.1f} {r['client_side_util'] * 100:>5.0f}% "
                  f"{r['failed'] + r['non2xx']:>6d} "
                  f"{fmt(r.get('others_util') is not None and r['others_util'] * 100, '7.0f')}%"
                  f"  {r.get('tls') or '-'}")
        print("client us    ab's CPU per handshake (on CPU 1 with the backend); CPU1 % is ab + "
              "backend.\n"
              "             When CPU1 % is near 100 and CPU % is not, the client was the "
              "bottleneck:\n"
              "             handshakes/s is then the client's limit, CPU us/handshake still "
              "holds.")
        hs = {lb: ab[lb] for lb in present if lb in ab}
        ratio_lines(hs, notes, "-hs", "CPU us/handshake", "handshakes/s")

    # 2b. HTTP/2 from clients
    h2 = rows_h2
    labels = [f"{p}-h2" for p in proxies]
    present = [lb for lb in labels if lb in h2 or lb in notes]
    if present:
        first = next((h2[lb] for lb in present if lb in h2), {})
        print()
        print(f"HTTP/2 from clients (h2load -c{first.get('clients', '?')} "
              f"-m{first.get('streams', '?')}: h2c with prior knowledge, "
              f"{first.get('clients', '?')} connections x {first.get('streams', '?')} streams;\n"
              f"HTTP/1.1 keep-alive to the backend; a fixed -n of requests per run, all checked)")
        hdr = (f"{'target':<16} {'req/s':>8} {'mean us':>7} {'max us':>7} {'CPU us/req':>10} "
               f"{'CPU %':>5} {'+softirq':>8} {'backend us/req':>14} {'upstream':>8} "
               f"{'others %':>8} {'2xx/requests':>16}")
        print(hdr)
        print("-" * len(hdr))
        for lb in present:
            if lb not in h2:
                print(f"{lb:<16} skipped: {notes[lb]['message']}")
                continue
            r = h2[lb]
            print(f"{lb:<16} {r['rps']:>8.0f} {fmt(r['mean_us'], '7.0f'):>7} "
                  f"{fmt(r['max_us'], '7.0f'):>7} {r['cpu_us_per_req']:>10.2f} "
                  f"{r['cpu_util'] * 100:>4.0f}% {fmt(r.get('core_softirq_us_per_req'), '8.2f'):>8} "
                  f"{fmt(r['backend_cpu_us_per_req'], '14.2f'):>14} "
                  f"{fmt(r.get('upstream_conns'), '8d'):>8} "
                  f"{fmt(r.get('others_util') is not None and r['others_util'] * 100, '7.0f')}% "
                  f"{str(r['s2xx']) + '/' + str(r['requests']):>16}"
                  + (f"\n{'':<16} {invalid(r)}" if invalid(r) else ""))
        print("mean/max us  h2load's time for a request (no percentiles); latency includes "
              "queueing.\n"
              "upstream     proxy->backend connections open after the warm-up.")
        ratio_lines(h2, notes, "-h2")

    # 3. mTLS to the upstream
    labels = [f"{p}-mtls" for p in proxies]
    if print_section("mTLS to the upstream (wrk -t1 -c50 plaintext keep-alive; proxy -> HAProxy "
                     "sidecar on CPU 1 with a client\ncertificate, verify required, ALPN istio)",
                     labels, rows, strace, notes, backend_hdr="sidecar+be us", upstream_hdr="tls up"):
        for lb in labels:
            r = rows.get(lb)
            if r and r.get("sidecar_tls_conns") is not None:
                print(f"  {lb}: {r['sidecar_tls_conns']} TLS connections accepted by the sidecar "
                      f"while it was measured (warm-up included)")
        print("sidecar+be us  CPU of the sidecar and the backend per request (CPU 1, not the "
              "proxy's).\n"
              "tls up         proxy->sidecar connections open after warm-up.")
        ratio_lines(rows, notes, "-mtls")

    # 4. Tracing
    labels = ["portico-nostats", "portico-notrace", "portico-trace"]
    if print_section("Tracing cost, Portico only (the plain HTTP row without, then with, a "
                     "TracingService at 100% sampling;\nZipkin collector bench/zipkin-sink.c on "
                     "CPU 1 answering 202)", labels, rows, strace, notes):
        off, on = rows.get("portico-notrace"), rows.get("portico-trace")
        bare = rows.get("portico-nostats")
        if bare and off:
            x = off["cpu_us_per_req"] / bare["cpu_us_per_req"]
            print(f"portico metrics/no metrics CPU us/req: {x:.2f} (target < 1.03: "
                  f"{'met' if x < 1.03 else 'NOT met'})")
        if on and on.get("spans_expected") is not None:
            print(f"spans: {on['spans_expected']:.0f} expected (2 per request), "
                  f"{on['spans_received']:.0f} received by the collector, "
                  f"{on['spans_missing']:.0f} dropped or lost ({on['spans_missing_pct']:.1f}%), "
                  f"{on['span_posts']:.0f} POSTs ({on['spans_per_post']:.1f} spans/POST), "
                  f"collector CPU {fmt(on.get('collector_cpu_us_per_req'), '.2f')} us/req")
        if off and on:
            x = on["cpu_us_per_req"] / off["cpu_us_per_req"]
            print(f"portico tracing/no tracing CPU us/req: {x:.2f} (target < 1.15: "
                  f"{'met' if x < 1.15 else 'NOT met'})   req/s: {on['rps'] / off['rps']:.2f}"
                  + ("   (not comparable: a keep-alive check failed)"
                     if invalid(on) or invalid(off) else ""))
            if on.get("spans_missing_pct", 0) > 1:
                print("  note: the ratio covers only the spans Portico actually encoded and sent")

    # 5. External authorization over HTTP, 6. rate limiting
    policy_tables(rows, strace, notes)

    # 7. Idle keep-alive connections
    idle_table([f"{p}-idle" for p in proxies], idle, notes)
    return 0


def added_cost(rows, name, off_label, on_label, what):
    """Prints <name>'s CPU us/req without (<off_label>) and with (<on_label>) <what> and the
    difference; returns the difference, or None when one of them is missing or invalid."""
    off, on = rows.get(off_label), rows.get(on_label)
    if not off or not on:
        return None
    bad = invalid(off) or invalid(on) or (
        "non-2xx or socket errors" if off["non2xx"] or off["socket_errors"] or on["non2xx"]
        or on["socket_errors"] else None)
    d = on["cpu_us_per_req"] - off["cpu_us_per_req"]
    calls = on.get("policy_calls_per_req")
    print(f"{name}: {off['cpu_us_per_req']:.2f} us/req without, {on['cpu_us_per_req']:.2f} with "
          f"{what}: +{d:.2f} us per request (x{on['cpu_us_per_req'] / off['cpu_us_per_req']:.2f})"
          + (f"; {calls:.3f} calls per request" if calls is not None else "")
          + (f"   (not comparable: {bad})" if bad else ""))
    return None if bad else d


def policy_tables(rows, strace, notes):
    """The auth and ratelimit rows: CPU per request without and with the policy call, and the
    added cost."""
    labels = ["portico-noauth", "portico-auth", "portico-authbody", "nginx-noauth",
              "nginx-auth", "nginx-authbody", "haproxy-auth"]
    if print_section("External authorization over HTTP (wrk -t1 -c50; each proxy without, then "
                     "with, a check of every request\nby a local auth server: Portico's "
                     "AuthService, nginx's auth_request, keep-alive to it; -auth: the server\n"
                     "answers 200 with an empty body, -authbody: 200 with a ~100-byte body)",
                     labels, rows, strace, notes, backend_hdr="be+auth us/req",
                     upstream_hdr="auth up"):
        p = added_cost(rows, "portico", "portico-noauth", "portico-auth", "an HTTP AuthService")
        n = added_cost(rows, "nginx", "nginx-noauth", "nginx-auth", "auth_request")
        if p is not None and n:
            print(f"portico-added/nginx-added CPU us per checked request: {p / n:.2f}")
        else:
            print("portico-added/nginx-added: n/a")
        pb = added_cost(rows, "portico", "portico-noauth", "portico-authbody",
                        "an AuthService answering with a body")
        nb = added_cost(rows, "nginx", "nginx-noauth", "nginx-authbody",
                        "auth_request answered with a body")
        if pb is not None and nb:
            print(f"portico-added/nginx-added CPU us per checked request, 200 with a body: "
                  f"{pb / nb:.2f}")
        print("be+auth us/req  CPU of the backend and the auth server per request (CPU 1).\n"
              "auth up         proxy->auth server connections open after the warm-up (the "
              "backend's for -noauth).\n"
              "                nginx does not read the body of an auth_request answer, so it "
              "cannot keep that\n"
              "                connection: with a body, a new connection per check.")
    labels = ["portico-norl", "portico-rl"]
    if print_section("Rate limiting, Portico only (wrk -t1 -c50; without, then with, a "
                     "RateLimitService: one ShouldRateLimit\ncall over h2c per request to "
                     "bench/ratelimit-sink.c on CPU 1 answering OK)",
                     labels, rows, strace, notes, backend_hdr="be+rls us/req"):
        added_cost(rows, "portico", "portico-norl", "portico-rl", "a RateLimitService")
        print("be+rls us/req   CPU of the backend and the rate-limit service per request (CPU 1).")


def idle_valid(r):
    """Whether idle run <r> measured what it claims: every GET answered 200 and every
    connection still open when the Rss was read."""
    return r["statuses"] == {"200": r["conns"]} and r["still_open"] == r["conns"]


def idle_table(labels, idle, notes, target_kib=1.5):
    """Prints the idle row: medians over the valid runs of each label in <idle>."""
    present = [lb for lb in labels if lb in idle or lb in notes]
    if not present:
        return
    first = next(idle[lb][0] for lb in present if lb in idle) if any(
        lb in idle for lb in present) else {}
    conns, window = first.get("conns", "?"), first.get("window", 1)
    how = "one after the other" if window == 1 else f"{window} GETs in flight at once"
    print()
    print(f"Idle keep-alive connections: Rss growth of the proxy over {conns} connections that "
          f"each made one GET\n({how}) and then stay open idle; a fresh proxy per "
          f"run, 1 worker (nginx: the worker's Rss)")
    hdr = (f"{'target':<16} {'bytes/conn':>10} {'KiB/conn':>8} {'min-max KiB':>13} {'runs':>4} "
           f"{'Rss before KiB':>14} {'Rss after KiB':>13} {'open':>5}")
    print(hdr)
    print("-" * len(hdr))
    med = {}
    for lb in present:
        runs = idle.get(lb, [])
        if not runs:
            print(f"{lb:<16} skipped: {notes[lb]['message']}")
            continue
        ok = [r for r in runs if idle_valid(r)]
        if not ok:
            r = runs[-1]
            print(f"{lb:<16} INVALID: statuses {r['statuses']}, {r['still_open']} of "
                  f"{r['conns']} still open")
            continue
        b = statistics.median(r["bytes_per_conn"] for r in ok)
        med[lb] = b
        lo = min(r["bytes_per_conn"] for r in ok) / 1024
        hi = max(r["bytes_per_conn"] for r in ok) / 1024
        print(f"{lb:<16} {b:>10.0f} {b / 1024:>8.2f} {f'{lo:.2f}-{hi:.2f}':>13} {len(ok):>4} "
              f"{statistics.median(r['rss_before_kib'] for r in ok):>14.0f} "
              f"{statistics.median(r['rss_after_kib'] for r in ok):>13.0f} "
              f"{min(r['still_open'] for r in ok):>5}"
              + (f"  ({len(runs) - len(ok)} invalid run(s) left out)" if len(ok) < len(runs)
                 else ""))
    print("bytes/conn   (Rss after - Rss before) / connections, median of the runs; Rss from "
          "/proc/PID/smaps_rollup.\n"
          "open         connections the proxy still held open when Rss was read (all of them, "
          "or the run is invalid).")
    p = med.get("portico-idle")
    for other in ("nginx", "haproxy"):
        o = med.get(f"{other}-idle")
        if p is not None and o:
            print(f"portico/{other} bytes per idle connection: {p / o:.2f}")
    if p is not None:
        print(f"portico: {p / 1024:.2f} KiB per idle connection (target <= {target_kib} KiB: "
              f"{'met' if p <= target_kib * 1024 else 'NOT met'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wrk")
    w.add_argument("label")
    w.add_argument("url")
    w.add_argument("--pids", required=True, help="comma-separated root pids of the target")
    w.add_argument("--backend-pid", default="")
    w.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 10)))
    w.add_argument("--connections", type=int, default=50)
    w.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 1)))
    w.add_argument("--extra", default="", help="JSON object merged into the result")
    w.add_argument("--collector", default="", help="zipkin-sink /stats URL: count the spans")
    w.add_argument("--collector-pid", default="")
    w.add_argument("--spans-per-req", type=int, default=2)
    w.add_argument("--metrics", default="", help="Prometheus URL: count --metric per request")
    w.add_argument("--metric", action="append", default=[],
                   help="a counter's name (repeatable: summed)")
    b = sub.add_parser("ab")
    b.add_argument("label")
    b.add_argument("url")
    b.add_argument("--pids", required=True)
    b.add_argument("--backend-pid", default="")
    b.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 10)))
    b.add_argument("--concurrency", type=int, default=20)
    b.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 1)))
    b.add_argument("--extra", default="")
    i = sub.add_parser("idle")
    i.add_argument("label")
    i.add_argument("url")
    i.add_argument("--pid", required=True, help="root pid of the proxy")
    i.add_argument("--conns", type=int, default=2000)
    i.add_argument("--workers-only", action="store_true",
                   help="count the root's descendants only (nginx: the workers, not the master)")
    i.add_argument("--run", type=int, default=1, help="run number, for the table's median")
    i.add_argument("--window", type=int, default=1,
                   help="requests in flight at once while opening (1: one connection after "
                        "the other, the row's method)")
    i.add_argument("--timeout", type=float, default=120, help="bound on the whole measurement")
    i.add_argument("--extra", default="")
    hi = sub.add_parser("haproxy-info")
    hi.add_argument("socket")
    s = sub.add_parser("strace")
    s.add_argument("label")
    s.add_argument("url")
    s.add_argument("--pids", required=True)
    s.add_argument("--requests", type=int, default=20000)
    s.add_argument("--concurrency", type=int, default=50)
    s.add_argument("--timeout", type=int, default=300)
    h = sub.add_parser("wait-http")
    h.add_argument("url")
    h.add_argument("--timeout", type=float, default=10)
    h.add_argument("--pid", type=int, default=0, help="give up as soon as this process exits")
    h.add_argument("--h2", action="store_true",
                   help="HTTP/2 with prior knowledge (curl): 200 over HTTP/2 required")
    h2 = sub.add_parser("h2load")
    h2.add_argument("label")
    h2.add_argument("url")
    h2.add_argument("--pids", required=True, help="comma-separated root pids of the target")
    h2.add_argument("--backend-pid", default="")
    h2.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 10)),
                    help="target length of a measured run (sets -n from the warm-up's rate)")
    h2.add_argument("--requests", type=int, default=int(os.environ.get("BENCH_H2_REQUESTS", 0)),
                    help="fixed -n per measured run (default: from --seconds)")
    h2.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (h2load -D)")
    h2.add_argument("--clients", type=int, default=50)
    h2.add_argument("--streams", type=int, default=10, help="concurrent streams per connection")
    h2.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 1)))
    h2.add_argument("--upstream-port", type=int, default=0,
                    help="count established connections to it after the warm-up")
    h2.add_argument("--extra", default="", help="JSON object merged into the result")
    c = sub.add_parser("portico-config")
    c.add_argument("dir")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--backend-port", type=int, required=True)
    c.add_argument("--mappings", type=int, default=1)
    c.add_argument("--mode", choices=("http", "https", "mtls", "tracing", "auth", "ratelimit"),
                   default="http")
    c.add_argument("--certs", default="", help="directory with server.* and client.*")
    c.add_argument("--upstream-port", type=int, default=0, help="default: --backend-port")
    c.add_argument("--collector-port", type=int, default=0)
    c.add_argument("--auth-port", type=int, default=0, help="the auth server (mode auth)")
    c.add_argument("--auth-path-prefix", default="", help="the AuthService's path_prefix")
    c.add_argument("--rls-port", type=int, default=0, help="the rate-limit service (ratelimit)")
    k = sub.add_parser("keepalive-check")
    k.add_argument("url")
    k.add_argument("--requests", type=int, default=3)
    k.add_argument("--evidence", default="")
    k.add_argument("--header", default="", help="also print this response header's value")
    n = sub.add_parser("note")
    n.add_argument("label")
    n.add_argument("message")
    sub.add_parser("table")
    a = ap.parse_args()
    if a.cmd == "note":
        append({"label": a.label, "kind": "note", "message": a.message})
        return 0
    return {"wrk": cmd_wrk, "ab": cmd_ab, "h2load": cmd_h2load, "idle": cmd_idle, "haproxy-info": cmd_haproxy_info,
            "keepalive-check": cmd_keepalive_check,
            "strace": cmd_strace, "wait-http": cmd_wait_http,
            "portico-config": cmd_portico_config, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"measure.py: {e}", file=sys.stderr)
        sys.exit(1)
