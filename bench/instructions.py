"""Figures that the noise of shared cores cannot hide (`bench/run --only instructions`).

req/s on a shared machine moves by 10-20 % from run to run; the instructions a server executes
per request do not. For each comparison both servers run in the same run under valgrind's
callgrind, get the same warm-up, then a fixed number of sequential requests on one keep-alive
connection; instructions per request = the instructions every thread of the server executed
in that window (user space only) ÷ the requests. Beside it, the same servers without valgrind
under `strace -c -f`: system calls per request, by name. And for skiff's users GET, where its
instructions go: the inclusive cost of the functions that bound each stage of the request path.

skiff runs with `--instance-allocator on-demand` here (callgrind cannot run the pooling
allocator's address-space reservation) and `wasmtime serve` without its pooling allocator, so
both sides allocate the same way; with reuse neither side creates an instance per request.
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import suite

# Warm-up, then measured requests; a few thousand keep the run short (callgrind runs a server
# at about a fiftieth of its speed) while the figures stay stable to well under 1 %.
WARMUP = 300
REQUESTS = 2000

# The stages of skiff's request path: each stage is the inclusive instructions (callees
# included) of the functions that bound it, each function counted once at its largest entry
# (inlined code shows under several file names), summed over the stage's functions. Stages nest:
# `router` holds the request id, the spans, the access line, the metrics and the service; the
# service holds the instance and the guest call, which holds the host calls. The rest of a
# request (tokio's scheduling, epoll, the database connection's task) is the difference
# between the total and the outermost stages.
STAGES = [
    ("hyper: read and parse the request", [r"<hyper::proto::h1::role::Server as .*Http1Transaction>::parse$"]),
    ("hyper: encode and write the response", [r"<hyper::proto::h1::role::Server as .*Http1Transaction>::encode$",
                                              r"^hyper::proto::h1::io::Buffered<.*>::poll_flush$"]),
    ("router: all of the request (hyper's service call)", [r"^<hyper::proto::h1::dispatch::Server<.*>::poll_msg$"]),
    ("request id", [r"^skiff::server::router::request_id$"]),
    ("client address", [r"^skiff::server::client_address::client_address$"]),
    ("spans: create (fields formatted), enter, exit, close",
     [r"^<tracing_subscriber::fmt::Subscriber<.*>::new_span$", r"^<tracing_subscriber::fmt::Subscriber<.*>::enter$",
      r"^<tracing_subscriber::fmt::Subscriber<.*>::exit$", r"^<tracing_subscriber::fmt::Subscriber<.*>::try_close$"]),
    ("log records (the access line): format and write", [r"^<tracing_subscriber::fmt::Subscriber<.*>::event$"]),
    ("metrics: labelled counter and histogram", [r"^prometheus_client::metrics::family::Family<.*>::get_or_create$"]),
    ("service: Service::run (instance, guest call, response)",
     [r"^skiff::service::invoke::<impl skiff::service::Service>::run::\{\{closure\}\}::\{\{closure\}\}$"]),
    ("take and return of a warm instance",
     [r"^skiff::runtime::state::HostState::next_request$", r"^skiff::service::invoke::DrivenInstance<.*>::new$",
      r"^skiff::service::invoke::Keeper::keep$", r"^skiff::service::warm::.*$"]),
    ("guest call: the component's code with its host calls", [r"^wasmtime::runtime::fiber::resume_fiber$"]),
    ("host call: sql (lift, query, rows lowered)",
     [r"^skiff::capability::sql::bindings::.*add_to_linker_instance::\{\{closure\}\}::\{\{closure\}\}$"]),
    ("host call: crypto (token check, with its cache)",
     [r"^skiff::capability::crypto::bindings::.*add_to_linker_instance::\{\{closure\}\}::\{\{closure\}\}$"]),
    ("response: into_response", [r"^skiff::server::answer::into_response$"]),
    ("malloc, free, realloc (everywhere)", [r"^malloc$", r"^free$", r"^realloc$"]),
    ("memcpy (everywhere)", [r"^__memcpy_avx_unaligned_erms$", r"^__memmove_avx_unaligned_erms$"]),
]


def load(port, path, count, headers=None):
    """`count` sequential GETs on one keep-alive connection; every answer must be 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(count):
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} on {port}: {response.status} {body[:300]!r}")
    finally:
        connection.close()


def callgrind_control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


class Callgrind:
    """A server under callgrind; `measure` counts its instructions over a fixed load."""

    def __init__(self, name, argv, env, logs):
        self.output = Path(logs) / f"callgrind-{name}.out"
        self.process = suite.Process(f"callgrind-{name}", [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={self.output}", *argv], env, logs)

    def measure(self, port, path, headers=None):
        load(port, path, WARMUP, headers)
        callgrind_control(self.process.pid, "--zero")
        load(port, path, REQUESTS, headers)
        callgrind_control(self.process.pid, "--dump")
        dump = Path(f"{self.output}.1")
        deadline = time.monotonic() + 60
        while not (dump.exists() and re.search(r"^totals: \d+", dump.read_text(errors="replace"), re.M)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no callgrind dump at {dump}")
            time.sleep(0.2)
        total = int(re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M).group(1))
        return {"instructions_per_request": round(total / REQUESTS), "requests": REQUESTS, "dump": str(dump)}

    def stop(self):
        self.process.stop()


def syscalls(process, port, path, logs, name, headers=None):
    """System calls per request of `process` (not under valgrind) over the same fixed load."""
    load(port, path, WARMUP, headers)
    output = Path(logs) / f"strace-{name}.txt"
    strace = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", str(output), "-p", str(process.pid)],
                              stderr=subprocess.DEVNULL)
    time.sleep(1)  # until strace has attached to every thread
    load(port, path, REQUESTS, headers)
    strace.send_signal(signal.SIGINT)
    strace.wait(timeout=60)
    calls = {}
    for line in output.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    per_request = {call: round(count / REQUESTS, 2) for call, count in sorted(calls.items(), key=lambda c: -c[1])}
    return {"syscalls_per_request": round(sum(calls.values()) / REQUESTS, 2), "by_call": per_request}


def inclusive_costs(dump):
    """Every function's inclusive instructions in a callgrind dump."""
    output = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump], check=True,
                            capture_output=True, text=True).stdout
    costs = {}
    for line in output.splitlines():
        # "  1,234 (0.5%)  file:function [object]"; call lines ("=>") and recursion levels
        # ("function'2") are left out.
        match = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(?!=>)(?:[^:\s]*?:)?(.+?)(?: \[[^\]]*\])?\s*$", line)
        if match and not re.search(r"'\d+$", match.group(2)):
            name = match.group(2)
            costs[name] = max(costs.get(name, 0), int(match.group(1).replace(",", "")))
    return costs


def stages(dump):
    """Instructions per request of each stage of skiff's request path (see STAGES)."""
    costs = inclusive_costs(dump)
    table = []
    for stage, patterns in STAGES:
        total = sum(max((cost for name, cost in costs.items() if re.search(pattern, name)), default=0)
                    for pattern in patterns)
        table.append({"stage": stage, "instructions_per_request": round(total / REQUESTS)})
    # The component's compiled code has no symbols (callgrind names it by address): its own
    # instructions, without the host calls it makes.
    own = subprocess.run(["callgrind_annotate", "--threshold=100", dump], check=True, capture_output=True,
                         text=True).stdout
    guest = sum(int(match.group(1).replace(",", "")) for match in
                re.finditer(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?\?\?\?:0x[0-9a-f]+ \[\?\?\?\]", own, re.M))
    table.append({"stage": "the component's own compiled code (without its host calls)",
                  "instructions_per_request": round(guest / REQUESTS)})
    return table


def top_functions(dump, count=25):
    """The functions with the most instructions of their own (exclusive), per request."""
    output = subprocess.run(["callgrind_annotate", "--threshold=100", dump], check=True, capture_output=True,
                            text=True).stdout
    top = []
    for line in output.splitlines():
        match = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.+?)\s*$", line)
        if match and "PROGRAM TOTALS" not in line and ":" in match.group(2):
            top.append({"function": match.group(2)[-200:],
                        "instructions_per_request": round(int(match.group(1).replace(",", "")) / REQUESTS)})
        if len(top) == count:
            break
    return top


def hello(logs):
    """hello on skiff (reuse, no access log) and `wasmtime serve` (reuse 128, no pooling)."""
    data = tempfile.mkdtemp(prefix="skiff-bench-instr-")
    skiff_port, wasmtime_port = suite.free_port(), suite.free_port()
    skiff_argv = [suite.SKIFF, "serve", "--component", suite.HELLO]
    skiff_env = suite.skiff_env(f"127.0.0.1:{skiff_port}", SKIFF_DATA_DIR=data, RUST_LOG="warn",
                                SKIFF_INSTANCE_ALLOCATOR="on-demand")
    wasmtime_argv = [suite.WASMTIME, "serve", "-S", "cli=y", "--max-instance-reuse-count", "128", "--addr",
                     f"127.0.0.1:{wasmtime_port}", suite.HELLO]
    result = {}
    try:
        for side, argv, env, port, ready in (("skiff", skiff_argv, skiff_env, skiff_port, "/readyz"),
                                             ("wasmtime_serve", wasmtime_argv, {}, wasmtime_port, "/")):
            server = Callgrind(f"hello-{side}", argv, env, logs)
            try:
                suite.wait_ready(server.process, f"http://127.0.0.1:{port}{ready}", timeout=300)
                result[side] = server.measure(port, "/")
            finally:
                server.stop()
            # Without valgrind, as the req/s comparison runs them: both with their pooling allocator.
            plain_argv = argv[:2] + ["-O", "pooling-allocator=y"] + argv[2:] if side == "wasmtime_serve" else argv
            plain_env = {k: v for k, v in env.items() if k != "SKIFF_INSTANCE_ALLOCATOR"}
            plain = suite.Process(f"strace-hello-{side}", plain_argv, plain_env, logs)
            try:
                suite.wait_ready(plain, f"http://127.0.0.1:{port}{ready}")
                result[side].update(syscalls(plain, port, "/", logs, f"hello-{side}"))
            finally:
                plain.stop()
            suite.log(f"instructions, hello, {side}: {result[side]['instructions_per_request']} per request, "
                      f"{result[side]['syscalls_per_request']} syscalls per request")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    for side in result.values():
        side.pop("dump", None)
    result["wasmtime_serve"]["command"] = ("wasmtime serve -S cli=y --max-instance-reuse-count 128 --addr "
                                           "127.0.0.1:PORT hello.wasm")
    return result


def users_get(logs):
    """GET /users-ms/users/{id} with a bearer token: skiff's users (JSON access line, token cache
    on and off) against users-axum, on the same Postgres database."""
    data = Path(tempfile.mkdtemp(prefix="skiff-bench-instr-users-"))
    database = suite.fresh_database("skiff_bench_instructions")
    keys = suite.token_keys()
    component = suite.precompile("users", data)
    port = suite.free_port()
    env = suite.skiff_env(f"127.0.0.1:{port}", SKIFF_DATA_DIR=str(data), SKIFF_DATABASE_URL=database,
                          SKIFF_CONFIG_TOKEN_PUBLIC_KEY=keys["public_key"],
                          SKIFF_CONFIG_BCRYPT_COST=str(suite.BCRYPT_COST))
    argv = [suite.SKIFF, "serve", "--component", component]
    result = {}
    try:
        # The user, created through skiff (migrations run at its start), and a token for it.
        creator = suite.Process("instr-users-setup", argv, env, logs)
        try:
            suite.wait_ready(creator, f"http://127.0.0.1:{port}/readyz")
            status, body = suite.http("POST", f"http://127.0.0.1:{port}/users-ms/users", {
                "email": "instructions@example.org", "name": "Bench", "surname": "Mark",
                "password": "correct horse battery staple"})
            assert status == 201, (status, body)
            user_id = json.loads(body)["id"]
        finally:
            creator.stop()
        token = json.loads(subprocess.run([suite.HARNESS / "token-keys", "--sign", keys["signing_key"], "--sub",
                                           user_id], check=True, capture_output=True, text=True).stdout)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        path = f"/users-ms/users/{user_id}"
        axum_argv = [suite.HARNESS / "users-axum", "--listen", f"127.0.0.1:{port}", "--database-url", database,
                     "--token-public-key", keys["public_key"]]
        measuring = dict(env, SKIFF_INSTANCE_ALLOCATOR="on-demand")
        sides = (("skiff", argv, measuring),
                 ("skiff_no_token_cache", argv, dict(measuring, SKIFF_TOKEN_CACHE_ENTRIES="0")),
                 ("native_axum", axum_argv, {}))
        for side, side_argv, side_env in sides:
            server = Callgrind(f"users-{side}", side_argv, side_env, logs)
            try:
                wait_answer(server.process, port, path, headers, timeout=300)
                result[side] = server.measure(port, path, headers)
            finally:
                server.stop()
            if side != "skiff_no_token_cache":
                plain = suite.Process(f"strace-users-{side}", side_argv, env if side == "skiff" else {}, logs)
                try:
                    wait_answer(plain, port, path, headers)
                    result[side].update(syscalls(plain, port, path, logs, f"users-{side}", headers))
                finally:
                    plain.stop()
            suite.log(f"instructions, users GET, {side}: {result[side]['instructions_per_request']} per request"
                      + (f", {result[side]['syscalls_per_request']} syscalls per request"
                         if "syscalls_per_request" in result[side] else ""))
        result["skiff"]["stages"] = stages(result["skiff"]["dump"])
        result["skiff"]["top_functions"] = top_functions(result["skiff"]["dump"])
        result["native_axum"]["top_functions"] = top_functions(result["native_axum"]["dump"])
        for side in result.values():
            side.pop("dump", None)  # the dumps stay in the logs folder
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return result


def wait_answer(process, port, path, headers, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            load(port, path, 1, headers)
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            time.sleep(0.2)
    raise RuntimeError(f"{process.name}: GET {path} did not answer 200 within {timeout} s")


def run(args, logs):
    """Both comparisons; the ratios go beside the req/s ones (skiff ÷ baseline, lower is better)."""
    for tool in ("valgrind", "callgrind_annotate", "strace"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"--only instructions needs {tool} (Debian: valgrind, strace)")
    raw = {"warmup": WARMUP, "requests": REQUESTS}
    # `--only instructions` does not install wasmtime-cli (a 10-minute build); without it the
    # hello comparison is left out, and says so, rather than failing the users GET figures.
    if os.access(suite.WASMTIME, os.X_OK):
        raw["hello"] = hello(logs)
    else:
        print(f"== instructions: hello left out: no wasmtime-cli at {suite.WASMTIME} "
              "(./bench/run --only hello installs it)", flush=True)
    raw["users_get"] = users_get(logs)
    users = raw["users_get"]
    raw["ratios"] = {
        "users_get_instructions_vs_native_axum":
            users["skiff"]["instructions_per_request"] / users["native_axum"]["instructions_per_request"],
        "users_get_instructions_no_token_cache_vs_native_axum":
            users["skiff_no_token_cache"]["instructions_per_request"]
            / users["native_axum"]["instructions_per_request"],
    }
    if "hello" in raw:
        raw["ratios"]["hello_instructions_vs_wasmtime_serve"] = (
            raw["hello"]["skiff"]["instructions_per_request"] / raw["hello"]["wasmtime_serve"]["instructions_per_request"])
    return raw
