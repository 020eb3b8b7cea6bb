#!/usr/bin/env python3
"""skiff's benchmark suite. `bench/run` builds everything, then runs it through bench/main.py.

Every scenario runs skiff and its baseline in the same run, on this machine, over loopback,
with wrk as the load generator. Where both sides serve HTTP (hello, users GET), they alternate
round by round and the median round counts; the native bcrypt rate is measured once, before
the login rounds. A full run writes bench/results/latest.json (raw figures, ratios, targets,
machine) and the table between the bench markers in docs/benchmarks.md; a run with --only writes
bench/results/partial.json, so the full results that page cites stay in place.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The page whose bench markers a full run rewrites with the table (a path under ROOT).
TABLE_PAGE = "docs/benchmarks.md"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
SKIFF = TARGET / "release" / "skiff"
HARNESS = TARGET / "release"
WASM = TARGET / "wasm32-wasip2" / "release"
HELLO = TARGET / "wasm32-wasip2" / "bench-wasm" / "hello.wasm"
WASMTIME = Path(os.environ.get("SKIFF_BENCH_WASMTIME", Path.home() / ".cache/skiff/tools/bin/wasmtime"))
POSTGRES_URL = os.environ.get("SKIFF_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SKIFF_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
BCRYPT_COST = 10  # the users component's default
PROFILE_OUTPUT = ROOT / "bench/results/users-get-profile.json"

# Targets from issues 6 and 16; "min" means the figure must be at least the target. Figures
# without a target (the default-against-default hello ratio, memory per warm instance) are
# reported beside them.
TARGETS = {
    "users_get_vs_native_axum": (0.90, "min"),
    "users_get_fresh_vs_native_axum": (0.70, "min"),
    "hello_vs_wasmtime_serve": (1.20, "min"),
    # Instructions per request, skiff ÷ baseline (issue 25): noise on shared cores cannot hide
    # these. hello's is what 1.20 × `wasmtime serve`'s req/s would take (1 / 1.20).
    "users_get_instructions_vs_native_axum": (1.15, "max"),
    "hello_instructions_vs_wasmtime_serve": (0.83, "max"),
    "login_vs_native_bcrypt": (0.85, "min"),
    "instantiate_us_p50": (10.0, "max"),
    "request_overhead_us_p50": (8.0, "max"),
    "request_overhead_fresh_us_p50": (25.0, "max"),
    "swap_switch_ms_max": (50.0, "max"),
    "swap_failed_requests": (0, "max"),
    "start_to_ready_ms": (1000.0, "max"),
    "idle_rss_mb": (40.0, "max"),
    "login_to_notification_p99_ms": (100.0, "max"),
    "login_to_notification_replicas_p99_ms": (100.0, "max"),
}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A server under test, its output in a log file, stopped with SIGTERM."""

    def __init__(self, name, argv, env=None, logs=None):
        self.name = name
        self.log_path = Path(logs or tempfile.gettempdir()) / f"{name}.log"
        self.log = open(self.log_path, "w")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
        full_env.update(env or {})
        self.started = time.monotonic()
        self.popen = subprocess.Popen(argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.popen.pid

    def rss_mb(self):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"{self.name}: no VmRSS")

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()

    def check_alive(self):
        if self.popen.poll() is not None:
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")


def http(method, url, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(process, url, timeout=120):
    """Polls `url` every 2 ms until it answers 200; returns the seconds since the process started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - process.started
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{process.name}: {url} not ready within {timeout} s; see {process.log_path}")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


# The latency distribution each wrk run reports (its `done` hook prints them), for the plots.
PERCENTILES = [1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 99.99]
PERCENTILES_LUA = ("done = function(summary, latency, requests)\n"
                   f"  for _, p in ipairs({{{', '.join(str(p) for p in PERCENTILES)}}}) do\n"
                   '    io.write(string.format("percentile %g %d\\n", p, latency:percentile(p)))\n'
                   "  end\nend\n")


def wrk(url, seconds, connections, threads=1, script=None):
    """Runs wrk; returns req/s, latency p50/p99 (ms), the latency distribution (µs), request and
    error counts."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    argv += ["-s", script or lua_script(Path(tempfile.gettempdir()) / "skiff-bench-plain.lua", "GET")]
    output = subprocess.run(argv + [url], check=True, capture_output=True, text=True).stdout

    def latency(percent):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return float(match.group(1)) * UNITS[match.group(2)]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_sec": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        "percentiles_us": {match.group(1): int(match.group(2))
                           for match in re.finditer(r"^percentile ([\d.]+) (\d+)$", output, re.M)},
    }


def lua_script(path, method, body=None, headers=None):
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(json.dumps(body))}")
    for name, value in (headers or {}).items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    Path(path).write_text("\n".join(lines) + "\n" + PERCENTILES_LUA)
    return str(path)


def compare(name, sides, url_of, args, script_of=lambda side: None, connections=16):
    """Loads each side in alternating rounds; keeps each side's median round (by req/s)."""
    rounds = {side: [] for side in sides}
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for side in order:
            wrk(url_of(side), 2, connections, script=script_of(side))  # warm-up
            result = wrk(url_of(side), args.seconds, connections, script=script_of(side))
            rss = sides[side].rss_mb()
            result["rss_mb"] = round(rss, 1)
            rounds[side].append(result)
            log(f"{name} round {round_index + 1} {side}: {result['requests_per_sec']:.0f} req/s, "
                f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors {result['non_2xx'] + result['socket_errors']}")
    summary = {}
    for side, results in rounds.items():
        ordered = sorted(results, key=lambda r: r["requests_per_sec"])
        median = dict(ordered[len(ordered) // 2])
        median["rounds_requests_per_sec"] = [r["requests_per_sec"] for r in results]
        median["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in results)
        summary[side] = median
    return summary


# Host settings every skiff process of this run gets, from the command line (--token-cache-entries).
HOST_SETTINGS = {}


def skiff_env(listen, **extra):
    # The log settings the Kubernetes manifests set: JSON lines, one access log line per request.
    env = {"SKIFF_LISTEN": listen, "RUST_LOG": "info,sqlx=warn,wasmtime=warn", "SKIFF_LOG_FORMAT": "json",
           # The load comes from one address and one account, many logins in flight at once: the
           # per-source throttles (sign-up, and login attempts, which count while in flight) would
           # measure themselves.
           "SKIFF_CONFIG_SIGNUP_MAX_PER_SOURCE": "1000000",
           "SKIFF_CONFIG_LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_SOURCE": "10000",
           "SKIFF_CONFIG_LOGIN_MAX_FAILURES_PER_ACCOUNT": "100000",
           "SKIFF_CONFIG_LOGIN_MAX_FAILURES_PER_SOURCE": "100000"}
    env.update(HOST_SETTINGS)
    env.update(extra)
    return env


def psql(sql, database_url=POSTGRES_URL):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", database_url, "-c", sql], check=True,
                   capture_output=True)


def fresh_database(name):
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def token_keys():
    output = subprocess.run([HARNESS / "token-keys"], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


# ---------------------------------------------------------------------------------------------
# Scenarios


def hello_vs_wasmtime_serve(args, logs):
    """hello on skiff and on `wasmtime serve`, each in both isolations: warm instances reused
    (skiff's default; `--max-instance-reuse-count 128` for wasmtime, its WASIp3 default) and an
    instance per request (skiff's `fresh`; `wasmtime serve`'s default for a WASIp2 component)."""
    hello = HELLO
    data = tempfile.mkdtemp(prefix="skiff-bench-")
    ports = {side: free_port() for side in ("skiff", "skiff_fresh", "wasmtime_serve", "wasmtime_serve_reuse")}
    # `wasmtime serve` with its pooling allocator on, and otherwise as it ships.
    wasmtime_argv = [WASMTIME, "serve", "-O", "pooling-allocator=y", "-S", "cli=y"]
    reuse_flag = ["--max-instance-reuse-count", "128"]
    # `wasmtime serve` writes no access log, so skiff writes none here either (warnings only): a
    # JSON access line costs about 26 µs of CPU per request, more than hello's whole wasm side.
    quiet = {"SKIFF_DATA_DIR": data, "RUST_LOG": "warn"}
    sides = {
        "skiff": Process("hello-skiff", [SKIFF, "serve", "--component", hello],
                         skiff_env(f"127.0.0.1:{ports['skiff']}", **quiet), logs),
        "skiff_fresh": Process("hello-skiff-fresh", [SKIFF, "serve", "--component", hello],
                               skiff_env(f"127.0.0.1:{ports['skiff_fresh']}", SKIFF_ISOLATION="fresh", **quiet), logs),
        "wasmtime_serve": Process("hello-wasmtime", wasmtime_argv + ["--addr", f"127.0.0.1:{ports['wasmtime_serve']}",
                                                                      hello], {}, logs),
        "wasmtime_serve_reuse": Process("hello-wasmtime-reuse", wasmtime_argv + reuse_flag + [
            "--addr", f"127.0.0.1:{ports['wasmtime_serve_reuse']}", hello], {}, logs),
    }
    try:
        for side, process in sides.items():
            wait_ready(process, f"http://127.0.0.1:{ports[side]}/" + ("readyz" if side.startswith("skiff") else ""))
        result = compare("hello", sides, lambda side: f"http://127.0.0.1:{ports[side]}/", args, connections=16)
    finally:
        for process in sides.values():
            process.stop()
        shutil.rmtree(data, ignore_errors=True)
    command = "wasmtime serve -O pooling-allocator=y -S cli=y --addr 127.0.0.1:PORT hello.wasm"
    result["wasmtime_serve"]["command"] = command
    result["wasmtime_serve_reuse"]["command"] = command.replace("--addr", " ".join(reuse_flag) + " --addr")
    rate = {side: result[side]["requests_per_sec"] for side in result}
    return result, {
        # The same isolation on both sides: warm instances reused.
        "hello_vs_wasmtime_serve": rate["skiff"] / rate["wasmtime_serve_reuse"],
        "hello_fresh_vs_wasmtime_serve_fresh": rate["skiff_fresh"] / rate["wasmtime_serve"],
        "hello_default_vs_wasmtime_serve_default": rate["skiff"] / rate["wasmtime_serve"],
    }


def precompile(name, folder):
    shutil.copy(WASM / f"{name}.wasm", folder / f"{name}.wasm")
    compiled = folder / f"{name}.cwasm"
    subprocess.run([SKIFF, "compile", "--component", WASM / f"{name}.wasm", "--output", compiled], check=True,
                   capture_output=True)
    return compiled


class Pods:
    """users, auth and notify as three hosts, the way the Kubernetes manifests run them
    (precompiled components, Postgres, RabbitMQ)."""

    def __init__(self, logs, webhook_url, vhost_url):
        keys = token_keys()
        # auth signs its events with a key of its own; notify checks them (as in the manifests).
        event_keys = token_keys()
        self.public_key = keys["public_key"]
        self.logs = logs
        self.data = tempfile.mkdtemp(prefix="skiff-bench-pods-")
        # As in the image: each component precompiled by `skiff compile`, its .wasm beside it.
        components = {name: precompile(name, Path(self.data)) for name in ("users", "auth", "notify")}
        self.users_port, self.users_internal, self.users_fresh_port = free_port(), free_port(), free_port()
        # users' operations listener: /metrics is not on the app port.
        self.users_ops = free_port()
        self.auth_port, self.notify_port = free_port(), free_port()
        self.users_db = fresh_database("skiff_bench_users")
        common = {"SKIFF_AMQP_URL": vhost_url, "SKIFF_DATA_DIR": self.data}
        self.users = Process("users", [SKIFF, "serve", "--component", components["users"]], skiff_env(
            f"127.0.0.1:{self.users_port}", SKIFF_INTERNAL_LISTEN=f"127.0.0.1:{self.users_internal}",
            SKIFF_OPS_LISTEN=f"127.0.0.1:{self.users_ops}", SKIFF_DATABASE_URL=self.users_db,
            SKIFF_CONFIG_TOKEN_PUBLIC_KEY=self.public_key, SKIFF_CONFIG_BCRYPT_COST=str(BCRYPT_COST), **common), logs)
        # The same users on the same database with an instance per request, for the fresh figures.
        self.users_fresh = Process("users-fresh", [SKIFF, "serve", "--component", components["users"]], skiff_env(
            f"127.0.0.1:{self.users_fresh_port}", SKIFF_DATABASE_URL=self.users_db, SKIFF_ISOLATION="fresh",
            SKIFF_CONFIG_TOKEN_PUBLIC_KEY=self.public_key, SKIFF_CONFIG_BCRYPT_COST=str(BCRYPT_COST), **common), logs)
        self.auth_env = dict(
            SKIFF_DATABASE_URL=fresh_database("skiff_bench_auth"),
            SKIFF_SERVICES=f"users=127.0.0.1:{self.users_internal}",
            SKIFF_CONFIG_TOKEN_SIGNING_KEY=keys["signing_key"],
            SKIFF_CONFIG_EVENT_SIGNING_KEY=event_keys["signing_key"], **common)
        self.notify_env = dict(
            SKIFF_DATABASE_URL=fresh_database("skiff_bench_notify"),
            SKIFF_CONFIG_TOKEN_PUBLIC_KEY=self.public_key, SKIFF_CONFIG_WEBHOOK_URL=webhook_url,
            SKIFF_CONFIG_EVENT_TRUSTED_KEYS=f"auth={event_keys['public_key']}",
            SKIFF_OUTBOUND_ALLOW="127.0.0.1", **common)
        self.components = components
        self.auth = Process("auth", [SKIFF, "serve", "--component", components["auth"]],
                            skiff_env(f"127.0.0.1:{self.auth_port}", **self.auth_env), logs)
        self.notify = Process("notify", [SKIFF, "serve", "--component", components["notify"]],
                              skiff_env(f"127.0.0.1:{self.notify_port}", **self.notify_env), logs)
        self.all = [self.users, self.users_fresh, self.auth, self.notify]
        self.auth_ports = [self.auth_port]
        for process, port in ((self.users, self.users_port), (self.users_fresh, self.users_fresh_port),
                              (self.auth, self.auth_port), (self.notify, self.notify_port)):
            wait_ready(process, f"http://127.0.0.1:{port}/readyz")

    def add_replicas(self):
        """A second auth and a second notify on the same databases and broker, as two-replica
        Deployments run: relays share auth's outbox, consumers share notify's queue."""
        auth_port, notify_port = free_port(), free_port()
        auth = Process("auth-2", [SKIFF, "serve", "--component", self.components["auth"]],
                       skiff_env(f"127.0.0.1:{auth_port}", **self.auth_env), self.logs)
        notify = Process("notify-2", [SKIFF, "serve", "--component", self.components["notify"]],
                         skiff_env(f"127.0.0.1:{notify_port}", **self.notify_env), self.logs)
        self.all += [auth, notify]
        wait_ready(auth, f"http://127.0.0.1:{auth_port}/readyz")
        wait_ready(notify, f"http://127.0.0.1:{notify_port}/readyz")
        self.auth_ports.append(auth_port)

    def login_urls(self):
        return [f"http://127.0.0.1:{port}/auth-ms/auth/login" for port in self.auth_ports]

    def url(self, service, path):
        port = {"users": self.users_port, "auth": self.auth_port, "notify": self.notify_port}[service]
        return f"http://127.0.0.1:{port}/{service}-ms{path}"

    def stop(self):
        for process in self.all:
            process.stop()
        shutil.rmtree(self.data, ignore_errors=True)


# Where a server's CPU goes, by the symbol perf saw: the first pattern that matches names it.
# (The components' compiled code, the kernel and libc are told by their shared object.)
CPU_CATEGORIES = [
    ("ed25519", re.compile(r"curve25519|ed25519|sha2::sha512")),
    ("wasmtime", re.compile(r"wasmtime|cranelift")),
    ("tokio", re.compile(r"tokio")),
    ("sqlx", re.compile(r"sqlx")),
    ("tracing", re.compile(r"tracing")),
    ("hyper_http_axum", re.compile(r"hyper|\bhttp::|axum|h2::")),
    ("serde_json", re.compile(r"serde_json")),
]


def cpu_category(dso, symbol):
    if dso.startswith("[JIT]") or dso.startswith("perf-"):
        return "component_code"
    if dso == "[kernel.kallsyms]":
        return "kernel"
    if dso.startswith("libc"):
        return "libc"
    for name, pattern in CPU_CATEGORIES:
        if pattern.search(symbol):
            return name
    return "other"


def cpu_profile(name, process, url, script, args, logs):
    """CPU per request of one server under the comparison's load, and where it goes.

    Two runs after the measured rounds, so sampling never slows a measured one: `perf stat`
    gives CPU time per request, `perf record` the share of each category, and the two make
    microseconds per request per category."""
    with open("/proc/sys/kernel/perf_event_paranoid") as paranoid:
        # Otherwise perf counts user time only and the kernel's share goes missing.
        if os.geteuid() != 0 and int(paranoid.read()) > 1:
            sys.exit("--profile needs root or kernel.perf_event_paranoid <= 1 to see kernel time")
    wrk(url, 2, 16, script=script)  # warm-up
    stat_file = Path(logs) / f"perf-stat-{name}.txt"
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "task-clock,context-switches", "-p", str(process.pid),
                             "-o", stat_file, "--", "sleep", str(args.seconds)])
    load = wrk(url, args.seconds, 16, script=script)
    perf.wait()
    counters = {}
    for line in stat_file.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in ("task-clock", "context-switches"):
            counters[fields[2]] = float(fields[0])
    cpu_us = counters["task-clock"] * 1000 / load["requests"]
    samples = Path(logs) / f"perf-{name}.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-p", str(process.pid), "-o", samples, "--",
                             "sleep", str(args.seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wrk(url, args.seconds, 16, script=script)
    perf.wait()
    report = subprocess.run(["perf", "report", "-i", samples, "--stdio", "--no-children", "--sort", "dso,symbol"],
                            capture_output=True, text=True, check=True).stdout
    shares, symbols = {}, []
    for line in report.splitlines():
        # perf pads the symbol and may add IPC columns ("-  -") after it.
        match = re.match(r"\s*([\d.]+)%\s+(.+?)\s+\[(?:\.|k)\]\s+(.*?)(?:\s+-)*\s*$", line)
        if not match:
            continue
        percent, dso, symbol = float(match.group(1)), match.group(2), match.group(3)
        category = cpu_category(dso, symbol)
        shares[category] = shares.get(category, 0.0) + percent
        if category != "component_code":  # unnamed JIT addresses, each tiny; their sum is above
            symbols.append({"percent": percent, "dso": dso, "symbol": symbol[:160]})
    top = sorted(symbols, key=lambda entry: -entry["percent"])[:20]
    total = sum(shares.values()) or 1.0
    breakdown = {category: round(cpu_us * share / total, 1)
                 for category, share in sorted(shares.items(), key=lambda item: -item[1])}
    log(f"{name}: {cpu_us:.0f} µs of CPU per request ({load['requests_per_sec']:.0f} req/s); "
        + ", ".join(f"{category} {us}" for category, us in breakdown.items()))
    return {
        "requests_per_sec": load["requests_per_sec"],
        "cpu_us_per_request": round(cpu_us, 1),
        "context_switches_per_request": round(counters.get("context-switches", 0) / load["requests"], 2),
        "cpu_us_per_request_by_category": breakdown,
        "top_symbols": top,
    }


def cpu_seconds(pids):
    """User and system CPU the processes `pids` have used so far (a process gone since is skipped)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # The fields after the command name, which may hold spaces: utime and stime are
                # the 14th and 15th of the whole line.
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pids_named(name):
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def cpu_by_process(pods):
    """CPU seconds so far of each process a login passes through: the three hosts, and every
    Postgres and RabbitMQ process on the machine (the bench's are the only clients)."""
    return {
        "users": cpu_seconds([pods.users.pid]),
        "auth": cpu_seconds([pods.auth.pid]),
        "notify": cpu_seconds([pods.notify.pid]),
        "postgres": cpu_seconds(pids_named("postgres")),
        "rabbitmq": cpu_seconds(pids_named("beam.smp")),
        "machine": machine_busy_seconds(),
    }


def machine_busy_seconds():
    """CPU the whole machine has spent outside idle so far (every process, interrupts included)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def rabbitmq_vhost(name):
    """A fresh vhost for the run, so events of earlier runs never reach this one."""
    if shutil.which("rabbitmqctl") is None:
        return AMQP_URL
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    user = re.match(r"amqp://([^:@]+)", AMQP_URL).group(1)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"], check=True,
                   capture_output=True)
    return AMQP_URL.rsplit("/", 1)[0] + "/" + name


def pods_scenarios(args, logs):
    """users GET vs axum, logins vs native bcrypt, login → notification latency, idle RSS."""
    webhook_port = free_port()
    vhost_url = rabbitmq_vhost("skiff-bench")
    pods = Pods(logs, f"http://127.0.0.1:{webhook_port}/webhook", vhost_url)
    raw, ratios = {}, {}
    axum = None
    # Until the latency harness takes the webhook's port, a sink answers notify at once, so that
    # no notification is retried with back-off while skiff is measured.
    sink = WebhookSink(webhook_port)
    try:
        time.sleep(2)
        raw["idle_rss_mb"] = {p.name: round(p.rss_mb(), 1) for p in pods.all}
        email, password = "bench@example.org", "correct horse battery staple"
        status, body = http("POST", pods.url("users", "/users"),
                            {"email": email, "name": "Bench", "surname": "Mark", "password": password})
        assert status == 201, (status, body)
        user_id = json.loads(body)["id"]
        status, body = http("POST", pods.url("auth", "/auth/login"), {"email": email, "password": password})
        assert status == 200, (status, body)
        token = json.loads(body)["access_token"]

        # GET /users-ms/users/{id}: skiff's users component vs axum + sqlx on the same database.
        axum_port = free_port()
        axum = Process("users-axum", [HARNESS / "users-axum", "--listen", f"127.0.0.1:{axum_port}",
                                      "--database-url", pods.users_db, "--token-public-key", pods.public_key],
                       {}, logs)
        wait_ready_status(axum, f"http://127.0.0.1:{axum_port}/users-ms/users/{user_id}", token)
        script = lua_script(Path(logs) / "get.lua", "GET", headers={"Authorization": f"Bearer {token}"})
        ports = {"skiff": pods.users_port, "skiff_fresh": pods.users_fresh_port, "native_axum": axum_port}
        sides = {"skiff": pods.users, "skiff_fresh": pods.users_fresh, "native_axum": axum}
        result = compare("users_get", sides, lambda side: f"http://127.0.0.1:{ports[side]}/users-ms/users/{user_id}",
                         args, script_of=lambda side: script, connections=16)
        raw["users_get"] = result
        ratios["users_get_vs_native_axum"] = (result["skiff"]["requests_per_sec"]
                                              / result["native_axum"]["requests_per_sec"])
        ratios["users_get_fresh_vs_native_axum"] = (result["skiff_fresh"]["requests_per_sec"]
                                                    / result["native_axum"]["requests_per_sec"])
        raw["warm_instances"] = warm_instance_memory(pods, user_id, script)
        if args.profile:
            raw["users_get_profile"] = {
                side: cpu_profile(side, process, f"http://127.0.0.1:{ports[side]}/users-ms/users/{user_id}", script,
                                  args, logs)
                for side, process in sides.items()}
        axum.stop()
        axum = None

        # Logins per second through auth → users (bcrypt) vs native bcrypt verifications per second.
        # The machine's speed drifts by several per cent within minutes, so each login round has
        # its own native run just before it, and the ratio is the median of the rounds' ratios.
        login_script = lua_script(Path(logs) / "login.lua", "POST", {"email": email, "password": password},
                                  {"Content-Type": "application/json"})
        logins, natives, round_ratios = [], [], []
        cpu_ms = {}
        for round_index in range(args.rounds):
            native = json.loads(subprocess.run(
                [HARNESS / "bcrypt-rate", "--cost", str(BCRYPT_COST), "--seconds", str(args.seconds)],
                check=True, capture_output=True, text=True).stdout)
            before = cpu_by_process(pods)
            result = wrk(pods.url("auth", "/auth/login"), args.seconds, 8, script=login_script)
            after = cpu_by_process(pods)
            for process in before:
                cpu_ms[process] = cpu_ms.get(process, 0) + (after[process] - before[process]) * 1000
            logins.append(result)
            natives.append(native)
            round_ratios.append(result["requests_per_sec"] / native["verifications_per_sec"])
            log(f"login round {round_index + 1}: {result['requests_per_sec']:.1f} logins/s, "
                f"errors {result['non_2xx'] + result['socket_errors']}; native bcrypt just before: "
                f"{native['verifications_per_sec']:.1f}/s on {native['threads']} threads")
        login = sorted(logins, key=lambda r: r["requests_per_sec"])[len(logins) // 2]
        native = sorted(natives, key=lambda r: r["verifications_per_sec"])[len(natives) // 2]
        login["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in logins)
        login["rss_mb"] = {p.name: round(p.rss_mb(), 1) for p in pods.all}
        login["round_ratios"] = [round(ratio, 3) for ratio in round_ratios]
        # Where a login's CPU goes, over all rounds: bcrypt in users, the rest beside it.
        total = sum(r["requests"] for r in logins)
        login["cpu_ms_per_login"] = {process: round(ms / total, 2) for process, ms in cpu_ms.items()}
        log(f"CPU per login (ms): {login['cpu_ms_per_login']}")
        raw["login"] = {"skiff": login, "native_bcrypt": native}
        ratios["login_vs_native_bcrypt"] = statistics.median(round_ratios)

        # Login → notification: one login at a time, until notify's webhook request for it.
        sink.stop()
        output = subprocess.run(
            [HARNESS / "login-latency", "--login-url", pods.url("auth", "/auth/login"), "--webhook-listen",
             f"127.0.0.1:{webhook_port}", "--email", email, "--password", password, "--count",
             str(args.logins)], check=True, capture_output=True, text=True).stdout
        raw["login_to_notification"] = json.loads(output)
        log(f"login → notification: {raw['login_to_notification']}")

        # The same with two auth and two notify replicas, logins alternating between the auths.
        pods.add_replicas()
        replica_args = [HARNESS / "login-latency", "--webhook-listen", f"127.0.0.1:{webhook_port}", "--email", email,
                        "--password", password, "--count", str(args.logins)]
        for url in pods.login_urls():
            replica_args += ["--login-url", url]
        output = subprocess.run(replica_args, check=True, capture_output=True, text=True).stdout
        raw["login_to_notification_replicas"] = json.loads(output)
        log(f"login → notification, 2 auth + 2 notify: {raw['login_to_notification_replicas']}")
    finally:
        sink.stop()
        if axum:
            axum.stop()
        pods.stop()
    return raw, ratios


def warm_instance_memory(pods, user_id, script):
    """Memory one warm users instance holds: the linear memory the host counts for its warm
    instances (`skiff_warm_instance_memory_bytes`) over their number, right after a short load.
    Beside it, the RSS of the reusing and the fresh users host after the same load (the pooling
    allocator keeps used slots' pages resident in both modes, so RSS hardly tells them apart)."""
    for port in (pods.users_port, pods.users_fresh_port):
        wrk(f"http://127.0.0.1:{port}/users-ms/users/{user_id}", 2, 16, script=script)
    _, metrics = http("GET", f"http://127.0.0.1:{pods.users_ops}/metrics")
    rss = {"reuse": pods.users.rss_mb(), "fresh": pods.users_fresh.rss_mb()}

    def gauge(name):
        return int(float(re.search(rf"^{name} (\S+)$", metrics.decode(), re.M).group(1)))

    warm, memory = gauge("skiff_warm_instances"), gauge("skiff_warm_instance_memory_bytes")
    per_instance = memory / warm / 2 ** 20 if warm else None
    log(f"warm instances: {warm} holding {memory / 2 ** 20:.1f} MiB of linear memory; "
        f"RSS reuse {rss['reuse']:.1f} MB vs fresh {rss['fresh']:.1f} MB")
    return {"warm_instances": warm, "linear_memory_mib": round(memory / 2 ** 20, 2),
            "rss_mb": {k: round(v, 1) for k, v in rss.items()},
            "mb_per_warm_instance": round(per_instance, 2) if per_instance is not None else None}


class WebhookSink:
    """Answers every webhook request with 204 on `port` until stopped."""

    def __init__(self, port):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def wait_ready_status(process, url, token, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            status, _ = http("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.name}: {url} did not answer 200")


def wasm_overhead(args, logs):
    """The figures are hello's, with warm instances reused (the default) and fresh; users (its
    health route, no database) shows what a component with more imports costs."""
    raw = {}
    for name, component, probe in (("hello", HELLO, ["--path", "/", "--expect-body", "hello"]),
                                   ("users", WASM / "users.wasm", ["--path", "/users-ms/healthcheck"])):
        for isolation, flags in (("reuse", []), ("fresh", ["--fresh"])):
            output = subprocess.run([HARNESS / "wasm-overhead", "--component", component, "--iterations",
                                     str(args.iterations)] + probe + flags, check=True, capture_output=True,
                                    text=True).stdout
            raw[f"{name}_{isolation}"] = json.loads(output)
            log(f"wasm overhead, {name}, {isolation}: {raw[f'{name}_{isolation}']}")
    return {**raw["hello_reuse"], "fresh": raw["hello_fresh"], "users": raw["users_reuse"],
            "users_fresh": raw["users_fresh"]}


def start_to_ready(args, logs):
    """Process start to /readyz 200 for users on SQLite: compiled at start vs precompiled."""
    compiled = Path(logs) / "users.cwasm"
    subprocess.run([SKIFF, "compile", "--component", WASM / "users.wasm", "--output", compiled], check=True,
                   capture_output=True)
    figures = {"wasm": [], "precompiled": []}
    for _ in range(args.starts):
        for kind, component in (("wasm", WASM / "users.wasm"), ("precompiled", compiled)):
            data = tempfile.mkdtemp(prefix="skiff-bench-start-")
            port = free_port()
            process = Process(f"start-{kind}", [SKIFF, "serve", "--component", component],
                              skiff_env(f"127.0.0.1:{port}", SKIFF_DATA_DIR=data), logs)
            try:
                figures[kind].append(wait_ready(process, f"http://127.0.0.1:{port}/readyz") * 1000)
                if kind == "precompiled":
                    time.sleep(1)
                    figures.setdefault("idle_rss_mb", []).append(process.rss_mb())
            finally:
                process.stop()
                shutil.rmtree(data, ignore_errors=True)
    raw = {kind: {"median_ms": round(statistics.median(values), 1), "runs_ms": [round(v, 1) for v in values]}
           for kind, values in figures.items() if kind != "idle_rss_mb"}
    raw["precompiled_idle_rss_mb"] = round(statistics.median(figures["idle_rss_mb"]), 1)
    log(f"start to ready: {raw}")
    return raw


def swap_under_load(args, logs):
    """hello under wrk while `skiff swap` alternates two versions; counts failed requests."""
    port, admin_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="skiff-bench-swap-")
    first = HELLO
    second = Path(data) / "hello-v2.wasm"
    # The same component with one more custom section: a new digest, so a real swap.
    name = b"skiff-bench"
    payload = bytes([len(name)]) + name + b"v2"
    second.write_bytes(first.read_bytes() + bytes([0, len(payload)]) + payload)
    token = "bench-admin-token"
    env = skiff_env(f"127.0.0.1:{port}", SKIFF_DATA_DIR=data, SKIFF_ADMIN_TOKEN=token,
                    SKIFF_ADMIN_LISTEN=f"127.0.0.1:{admin_port}")
    host = Process("swap-host", [SKIFF, "serve", "--component", first], env, logs)
    switches = []
    try:
        wait_ready(host, f"http://127.0.0.1:{port}/readyz")
        load = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{args.seconds + 4}s", "--latency", "--timeout", "10s",
                                 f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        swaps = 0
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            component = second if swaps % 2 == 0 else first
            out = subprocess.run([SKIFF, "swap", "--service", "hello", "--component", component, "--admin-url",
                                  f"http://127.0.0.1:{admin_port}", "--admin-token", token, "--label", f"v{swaps + 2}"],
                                 capture_output=True, text=True)
            match = re.search(r"switch (\d+) µs", out.stdout + out.stderr)
            if out.returncode != 0 or not match:
                raise RuntimeError(f"swap {swaps + 1} failed: {out.stdout}{out.stderr}")
            switches.append(int(match.group(1)) / 1000)
            swaps += 1
            time.sleep(0.5)
        output, _ = load.communicate(timeout=60)
    finally:
        host.stop()
        shutil.rmtree(data, ignore_errors=True)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    raw = {
        "swaps": len(switches),
        "switch_ms": [round(s, 3) for s in switches],
        "switch_ms_max": round(max(switches), 3),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "failed_requests": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    }
    log(f"swap under load: {raw}")
    return raw


# ---------------------------------------------------------------------------------------------
# Report


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        memory_kb = int(info.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_generator": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "note": "load generator, servers, Postgres and RabbitMQ share the same cores over loopback",
    }


def verdicts(figures):
    met = {}
    for name, (target, kind) in TARGETS.items():
        if name in figures and figures[name] is not None:
            met[name] = figures[name] >= target if kind == "min" else figures[name] <= target
    return met


def fmt(value, digits=2):
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(results):
    raw, ratios, met = results["raw"], results["ratios"], results["met"]
    rows = ["| Figure | skiff | Baseline | Ratio / figure | Target | Met |", "|---|---|---|---|---|---|"]

    def mark(name):
        return {True: "yes", False: "**no**"}.get(met.get(name), "")

    def throughput(name, key, baseline_key, unit, baseline_label, per_sec="requests_per_sec", side_key="skiff"):
        if key not in raw or name not in ratios:
            return
        side, base = raw[key][side_key], raw[key][baseline_key]
        base_rate = base.get(per_sec, base.get("verifications_per_sec"))
        latency = f", p50 {side['p50_ms']} ms, p99 {side['p99_ms']} ms" if "p50_ms" in side else ""
        base_latency = f", p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms" if "p50_ms" in base else ""
        target = f"≥ {TARGETS[name][0]}" if name in TARGETS else "—"
        rows.append(f"| `{name}` | {fmt(side['requests_per_sec'], 0)} {unit}{latency} | {baseline_label}: "
                    f"{fmt(base_rate, 0)} {unit}{base_latency} | **{ratios[name]:.2f}** | {target} | {mark(name)} |")

    throughput("users_get_vs_native_axum", "users_get", "native_axum", "req/s", "axum + sqlx")
    throughput("users_get_fresh_vs_native_axum", "users_get", "native_axum", "req/s", "axum + sqlx",
               side_key="skiff_fresh")
    throughput("hello_vs_wasmtime_serve", "hello", "wasmtime_serve_reuse", "req/s",
               "`wasmtime serve` 48.0.8, pooling, reuse 128")
    throughput("hello_default_vs_wasmtime_serve_default", "hello", "wasmtime_serve", "req/s",
               "`wasmtime serve` 48.0.8, pooling, its default (an instance per request)")
    throughput("hello_fresh_vs_wasmtime_serve_fresh", "hello", "wasmtime_serve", "req/s",
               "`wasmtime serve` 48.0.8, pooling, an instance per request", side_key="skiff_fresh")
    throughput("login_vs_native_bcrypt", "login", "native_bcrypt", "/s", "native bcrypt verify, cost 10")
    figures = results["figures"]
    counted = raw.get("instructions")
    if counted:
        def instructions_row(name, side, base, label):
            if name not in ratios:
                return
            a, b = counted[side[0]][side[1]], counted[base[0]][base[1]]
            calls = lambda r: f", {r['syscalls_per_request']} syscalls" if "syscalls_per_request" in r else ""
            target, kind = TARGETS[name]
            rows.append(f"| `{name}` | {fmt(a['instructions_per_request'])} instructions per request{calls(a)} | "
                        f"{label}: {fmt(b['instructions_per_request'])}{calls(b)} | **{ratios[name]:.2f}** | "
                        f"≤ {target} | {mark(name)} |")

        instructions_row("users_get_instructions_vs_native_axum", ("users_get", "skiff"), ("users_get", "native_axum"),
                         "axum + sqlx")
        if "users_get_instructions_no_token_cache_vs_native_axum" in ratios:
            a = counted["users_get"]["skiff_no_token_cache"]["instructions_per_request"]
            rows.append(f"| `users_get_instructions_no_token_cache_vs_native_axum` | without the token cache: {fmt(a)} "
                        f"instructions per request | axum + sqlx (no cache): "
                        f"{fmt(counted['users_get']['native_axum']['instructions_per_request'])} | "
                        f"**{ratios['users_get_instructions_no_token_cache_vs_native_axum']:.2f}** | — | |")
        instructions_row("hello_instructions_vs_wasmtime_serve", ("hello", "skiff"), ("hello", "wasmtime_serve"),
                         "`wasmtime serve` 48.0.8, reuse 128")

    def single(name, shown, baseline="—"):
        if name in figures and figures[name] is not None:
            target, kind = TARGETS[name]
            rows.append(f"| `{name}` | {shown} | {baseline} | {fmt(figures[name])} | "
                        f"{'≥' if kind == 'min' else '≤'} {target} | {mark(name)} |")

    overhead = raw.get("wasm_overhead", {})
    if overhead:
        single("instantiate_us_p50", f"p50 {overhead['instantiate']['p50_us']:.1f} µs, "
                                     f"p99 {overhead['instantiate']['p99_us']:.1f} µs")
        single("request_overhead_us_p50", f"reuse: p50 {overhead['request']['p50_us']:.1f} µs, "
                                          f"p99 {overhead['request']['p99_us']:.1f} µs")
        fresh = overhead["fresh"]["request"]
        single("request_overhead_fresh_us_p50", f"fresh: p50 {fresh['p50_us']:.1f} µs, p99 {fresh['p99_us']:.1f} µs")
    swap = raw.get("swap")
    if swap:
        single("swap_switch_ms_max", f"{swap['swaps']} swaps under load, max switch {swap['switch_ms_max']} ms")
        single("swap_failed_requests", f"{swap['failed_requests']} of {fmt(swap['requests'])} requests failed")
    start = raw.get("start_to_ready")
    if start:
        single("start_to_ready_ms", f"{start['precompiled']['median_ms']} ms precompiled (median)",
               f"{start['wasm']['median_ms']} ms compiling at start")
    if "idle_rss_mb" in figures:
        idle = raw["idle_rss_mb"]
        single("idle_rss_mb", ", ".join(f"{name} {mb} MB" for name, mb in idle.items()))
    warm = raw.get("warm_instances")
    if warm and warm.get("mb_per_warm_instance") is not None:
        rows.append(f"| `mb_per_warm_instance` | users after load: {warm['warm_instances']} warm instances holding "
                    f"{warm['linear_memory_mib']} MiB of linear memory; RSS {warm['rss_mb']['reuse']} MB | the "
                    f"same load on `fresh`: RSS {warm['rss_mb']['fresh']} MB | {fmt(warm['mb_per_warm_instance'])} "
                    f"MiB | — | |")
    latency = raw.get("login_to_notification", {}).get("latency")
    if latency:
        after = raw["login_to_notification"]["after_answer"]
        single("login_to_notification_p99_ms", f"from auth's answer: p50 {after['p50_us'] / 1000:.1f} ms, "
                                               f"p99 {after['p99_us'] / 1000:.1f} ms; from sending the login (bcrypt "
                                               f"included): p50 {latency['p50_us'] / 1000:.1f} ms, p99 "
                                               f"{latency['p99_us'] / 1000:.1f} ms ({latency['samples']} logins, one at "
                                               f"a time)")
    replicas = raw.get("login_to_notification_replicas")
    if replicas:
        after, latency = replicas["after_answer"], replicas["latency"]
        single("login_to_notification_replicas_p99_ms",
               f"2 auth + 2 notify replicas, logins alternating: from auth's answer p50 "
               f"{after['p50_us'] / 1000:.1f} ms, p99 {after['p99_us'] / 1000:.1f} ms; from sending the login p99 "
               f"{latency['p99_us'] / 1000:.1f} ms; {replicas['duplicates']} duplicate webhook requests for "
               f"{replicas['logins']} logins")
    return "\n".join(rows)


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def latency_svg(title, sides):
    """The latency distribution of each side's median round: latency (log scale) against the
    percentile, spread so the tail (99, 99.9, 99.99) gets as much room as the body."""
    import math
    width, height, left, right, top, bottom = 720, 420, 70, 200, 40, 50
    points = {side: sorted((float(p), us) for p, us in result.get("percentiles_us", {}).items())
              for side, result in sides.items()}
    points = {side: values for side, values in points.items() if values}
    if not points:
        return None
    nines = lambda p: -math.log10(1 - p / 100)  # 90 → 1, 99 → 2, 99.9 → 3
    all_us = [us for values in points.values() for _, us in values if us > 0]
    low, high = math.floor(math.log10(min(all_us))), math.ceil(math.log10(max(all_us)))
    high = max(high, low + 1)
    x_max = nines(max(p for values in points.values() for p, _ in values))
    x = lambda p: left + (width - left - right) * nines(p) / x_max
    y = lambda us: top + (height - top - bottom) * (1 - (math.log10(max(us, 1)) - low) / (high - low))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">{title}</text>']
    for exponent in range(low, high + 1):
        label = f"{10 ** exponent} µs" if exponent < 3 else f"{10 ** (exponent - 3)} ms"
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(10 ** exponent):.1f}" y2="{y(10 ** exponent):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y(10 ** exponent) + 4:.1f}" text-anchor="end">{label}</text>')
    for p in (50, 90, 99, 99.9, 99.99):
        if nines(p) <= x_max + 1e-9:
            out.append(f'<line x1="{x(p):.1f}" x2="{x(p):.1f}" y1="{top}" y2="{height - bottom}" stroke="#ddd"/>'
                       f'<text x="{x(p):.1f}" y="{height - bottom + 16}" text-anchor="middle">p{p:g}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">percentile of '
               f'requests (log scale of the tail)</text>')
    for index, (side, values) in enumerate(points.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x(p):.1f},{y(us):.1f}" for p, us in values)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out.append(f'<rect x="{width - right + 14}" y="{top + 20 * index}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{width - right + 32}" y="{top + 20 * index + 11}">{side}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plots(raw, output):
    """One SVG per throughput comparison, beside the results file (`latest-hello-latency.svg`)."""
    folder, stem = Path(output).parent, Path(output).stem
    titles = {"hello": "hello: latency distribution (median round, 16 connections)",
              "users_get": "GET /users-ms/users/{id}: latency distribution (median round, 16 connections)"}
    for key, title in titles.items():
        if key in raw:
            svg = latency_svg(title, {side: result for side, result in raw[key].items() if isinstance(result, dict)})
            if svg:
                path = folder / f"{stem}-{key}-latency.svg"
                path.write_text(svg)
                log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def stage_table(results):
    """Where skiff's instructions per users GET go (the instructions scenario), if it ran."""
    users = results["raw"].get("instructions", {}).get("users_get", {}).get("skiff", {})
    if "stages" not in users:
        return ""
    rows = ["", f"Where skiff's {fmt(users['instructions_per_request'])} instructions per users GET go (callgrind, "
                "inclusive: a stage holds the stages nested in it; `bench/instructions.py`):", "",
            "| Stage | Instructions per request |", "|---|---|"]
    rows += [f"| {stage['stage']} | {fmt(stage['instructions_per_request'])} |" for stage in users["stages"]]
    return "\n".join(rows) + "\n"


def write_table(results):
    page = ROOT / TABLE_PAGE
    text = page.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        log(f"{TABLE_PAGE} has no bench markers; table not written")
        return
    m = results["machine"]
    block = (f"{start}\nMeasured {results['generated_at']} at commit `{results['commit']}` by `bench/run` on "
             f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}; loader, servers, Postgres "
             f"and RabbitMQ on the same cores. Raw figures: `bench/results/latest.json`.\n\n{table(results)}\n"
             f"{stage_table(results)}{end}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    page.write_text(before + block + after)
    log(f"wrote the table in {TABLE_PAGE}")


def main(more_scenarios=None):
    """Runs the scenarios asked for; `more_scenarios` maps further scenario names to functions
    `run(args, logs)` whose results go under that name in the raw figures (bench/main.py passes
    the guarantees, which use this module's helpers)."""
    more_scenarios = more_scenarios or {}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--iterations", type=int, default=20000, help="instantiations for the overhead figures")
    parser.add_argument("--starts", type=int, default=5, help="process starts per start-to-ready figure")
    parser.add_argument("--logins", type=int, default=200, help="logins for the notification latency")
    parser.add_argument("--only", action="append", help="run only these scenarios (hello, pods, overhead, "
                                                          "start, swap, instructions, guarantees)")
    parser.add_argument("--output", help="where the results go (default: bench/results/latest.json, or "
                                          "bench/results/partial.json with --only)")
    # --no-readme is the flag's name from when the table lived in README.md.
    parser.add_argument("--no-table", "--no-readme", dest="no_table", action="store_true",
                        help=f"do not rewrite the table in {TABLE_PAGE}")
    parser.add_argument("--profile", action="store_true", help="after the users GET rounds, profile both servers "
                                                                "with perf: CPU per request and where it goes")
    parser.add_argument("--token-cache-entries", type=int, help="SKIFF_TOKEN_CACHE_ENTRIES for every skiff "
                        "host; 0 turns the verified-token cache off (the native baseline has none)")
    args = parser.parse_args()
    if args.token_cache_entries is not None:
        HOST_SETTINGS["SKIFF_TOKEN_CACHE_ENTRIES"] = str(args.token_cache_entries)
    args.output = args.output or str(ROOT / "bench/results" / ("partial.json" if args.only else "latest.json"))
    logs = tempfile.mkdtemp(prefix="skiff-bench-logs-")
    log(f"server logs in {logs}")
    wanted = set(args.only or ["hello", "pods", "overhead", "start", "swap", "instructions", "guarantees"])
    raw, ratios = {}, {}
    if "overhead" in wanted:
        raw["wasm_overhead"] = wasm_overhead(args, logs)
    if "hello" in wanted:
        raw["hello"], more = hello_vs_wasmtime_serve(args, logs)
        ratios.update(more)
    if "pods" in wanted:
        more_raw, more = pods_scenarios(args, logs)
        raw.update(more_raw)
        ratios.update(more)
    if "start" in wanted:
        raw["start_to_ready"] = start_to_ready(args, logs)
    if "swap" in wanted:
        raw["swap"] = swap_under_load(args, logs)
    for name, run in more_scenarios.items():
        if name in wanted:
            raw[name] = run(args, logs)
            # A scenario may add ratios of its own (the instruction counts do).
            ratios.update(raw[name].get("ratios", {}) if isinstance(raw[name], dict) else {})

    figures = dict(ratios)
    if "wasm_overhead" in raw:
        figures["instantiate_us_p50"] = raw["wasm_overhead"]["instantiate"]["p50_us"]
        figures["request_overhead_us_p50"] = raw["wasm_overhead"]["request"]["p50_us"]
        figures["request_overhead_fresh_us_p50"] = raw["wasm_overhead"]["fresh"]["request"]["p50_us"]
    if "swap" in raw:
        figures["swap_switch_ms_max"] = raw["swap"]["switch_ms_max"]
        figures["swap_failed_requests"] = raw["swap"]["failed_requests"]
    if "start_to_ready" in raw:
        figures["start_to_ready_ms"] = raw["start_to_ready"]["precompiled"]["median_ms"]
    if "idle_rss_mb" in raw:
        figures["idle_rss_mb"] = max(raw["idle_rss_mb"].values())
    if raw.get("warm_instances", {}).get("mb_per_warm_instance") is not None:
        figures["mb_per_warm_instance"] = raw["warm_instances"]["mb_per_warm_instance"]
    if "login_to_notification" in raw:
        # From auth's answer (the login and its event are committed) to notify's webhook request:
        # the event path. The figure from sending the login, bcrypt included, is in the table too.
        figures["login_to_notification_p99_ms"] = raw["login_to_notification"]["after_answer"]["p99_us"] / 1000
    if "login_to_notification_replicas" in raw:
        replicas = raw["login_to_notification_replicas"]
        figures["login_to_notification_replicas_p99_ms"] = replicas["after_answer"]["p99_us"] / 1000

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    # Uncommitted changes to code (not to the table's page or results, which this run rewrites).
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", f":!{TABLE_PAGE}",
                            ":!bench/results"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + ("+changes" if dirty else ""),
        "command": "bench/run " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {"seconds": args.seconds, "rounds": args.rounds, "iterations": args.iterations,
                     "bcrypt_cost": BCRYPT_COST, "wrk": "1 thread; 16 connections (8 for logins)",
                     "host_settings": dict(HOST_SETTINGS)},
        "ratios": {name: round(value, 3) for name, value in ratios.items()},
        "figures": {name: round(value, 3) for name, value in figures.items()},
        "targets": {name: {"target": target, "kind": kind} for name, (target, kind) in TARGETS.items()},
        "raw": raw,
    }
    results["met"] = verdicts(results["figures"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {args.output}")
    write_plots(raw, args.output)
    if "users_get_profile" in raw:
        # Kept apart from latest.json, so a later run without --profile leaves it in place.
        profile = {key: results[key] for key in ("generated_at", "commit", "command", "machine")}
        profile.update(users_get=raw["users_get"], cpu=raw["users_get_profile"])
        PROFILE_OUTPUT.write_text(json.dumps(profile, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {PROFILE_OUTPUT}")
    print(table(results))
    print(stage_table(results))
    if not args.no_table and not args.only:
        write_table(results)
    missed = [name for name, ok in results["met"].items() if not ok]
    if missed:
        log(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    sys.exit("run bench/run (or python3 bench/main.py): it adds the guarantees to this suite's scenarios")
