"""The figures behind docs/guarantees.md, measured by the suite (`bench/run --only guarantees`).

The host tests (`host/tests/all/`) assert what must hold under hostile requests, slow clients,
overload, kill -9, a bad canary and Postgres and RabbitMQ outages; this module measures how it
holds: the latency next to hostile requests, when a slow client is cut off, how much of an
overload is shed, what survives kill -9, how many requests a bad canary gets, how fast
readiness follows the database, how a broker outage delays events. Each scenario starts its own `skiff serve` on loopback.
"""

import json
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import suite

TESTBED = suite.TARGET / "wasm32-wasip2" / "testbed"
ADMIN_TOKEN = "bench-admin-token"


def serve(name, component, logs, data, *args, **env):
    """`skiff serve` on a free port; returns the process and its base URL once ready."""
    port = suite.free_port()
    process = suite.Process(name, [suite.SKIFF, "serve", "--component", component, "--data-dir", data, *args],
                            suite.skiff_env(f"127.0.0.1:{port}", **env), logs)
    base = f"http://127.0.0.1:{port}"
    suite.wait_ready(process, f"{base}/readyz")
    return process, base


def status_of(url, method="GET", body=None, timeout=30):
    try:
        return suite.http(method, url, body, timeout=timeout)[0]
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return None


def latencies(url, count):
    """`count` GETs one after another; returns p50 and p99 in ms."""
    taken = []
    for _ in range(count):
        started = time.perf_counter()
        assert status_of(url) == 200
        taken.append((time.perf_counter() - started) * 1000)
    taken.sort()
    return round(taken[len(taken) // 2 - 1], 2), round(taken[int(len(taken) * 0.99) - 1], 2)


def in_threads(count, work):
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads


def hostile_neighbours_and_slow_clients(logs):
    """/hello p50/p99 alone and next to two spinning loops, a memory bomb, a stack overflow and a
    trap (as `limits::hostile_requests…`); then how long a client that never finishes its
    headers keeps its connection (as `limits::oversized_headers_and_slow_clients…`)."""
    data = tempfile.mkdtemp(prefix="skiff-bench-hostile-")
    host, base = serve("hostile", TESTBED / "testbed.wasm", logs, data, SKIFF_REQUEST_TIMEOUT_MS="2000",
                       SKIFF_MAX_INSTANCES="16", SKIFF_MAX_MEMORY_MB="32")
    try:
        quiet = latencies(f"{base}/hello", 100)
        statuses = []

        def hostile(n):
            for _ in range(3):
                statuses.append(status_of(f"{base}{['/spin', '/spin', '/grow', '/recurse', '/trap'][n]}"))

        threads = in_threads(5, hostile)
        time.sleep(0.1)
        busy = latencies(f"{base}/hello", 100)
        for thread in threads:
            thread.join()
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as slow:
            slow.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            slow.settimeout(30)
            try:
                slow.recv(1024)
            except (ConnectionError, socket.timeout):
                pass
            cut_after = time.monotonic() - started
    finally:
        host.stop()
    result = {
        "hello_p50_ms": {"quiet": quiet[0], "hostile": busy[0]},
        "hello_p99_ms": {"quiet": quiet[1], "hostile": busy[1]},
        "hostile_statuses": sorted(set(statuses), key=str),
        "slow_client_cut_after_s": round(cut_after, 1),
    }
    suite.log(f"hostile neighbours and slow clients: {result}")
    return result


def overload(logs, clients=64, seconds=5):
    """64 clients creating users as fast as they can, bcrypt cost 10, 4 instance slots, 50 ms
    queue (as `reliability::under_overload…`): created, shed, anything else, slowest /livez."""
    data = tempfile.mkdtemp(prefix="skiff-bench-overload-")
    host, base = serve("overload", suite.WASM / "users.wasm", logs, data, "--config", "bcrypt_cost=10",
                       SKIFF_MAX_INSTANCES="4", SKIFF_QUEUE_TIMEOUT_MS="50")
    counts = {"created": 0, "shed_503": 0, "other": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n):
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            body = {"name": "Load", "surname": "Test", "email": f"load-{n}-{sent}@example.org",
                    "password": "long enough"}
            status = status_of(f"{base}/users-ms/users", "POST", body)
            kind = {201: "created", 503: "shed_503"}.get(status, "other")
            with lock:
                counts[kind] += 1

    try:
        threads = in_threads(clients, client)
        slowest = 0.0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert status_of(f"{base}/livez") == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.1)
        for thread in threads:
            thread.join()
        rss_after_mb = round(host.rss_mb(), 1)
    finally:
        host.stop()
    result = {"clients": clients, "seconds": seconds, **counts, "slowest_livez_ms": round(slowest * 1000, 1),
              "host_rss_mb_after": rss_after_mb}
    suite.log(f"overload: {result}")
    return result


def kill_9_durability(logs, writers=8):
    """SIGKILL during a write load on SQLite, restart: how many acknowledged writes are missing
    (as `reliability::acknowledged_writes_survive_kill_9…`)."""
    data = tempfile.mkdtemp(prefix="skiff-bench-kill9-")
    component = suite.WASM / "users.wasm"
    host, base = serve("kill9", component, logs, data, "--config", "bcrypt_cost=4")
    acknowledged = []

    def writer(n):
        sent = 0
        while True:
            sent += 1
            body = {"name": "Kill", "surname": "Nine", "email": f"k-{n}-{sent}@example.org", "password": "long enough"}
            try:
                status, answer = suite.http("POST", f"{base}/users-ms/users", body, timeout=10)
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                return
            if status == 201:
                acknowledged.append(json.loads(answer)["id"])

    threads = in_threads(writers, writer)
    time.sleep(1.5)
    host.popen.kill()
    host.popen.wait()
    host.stop()
    for thread in threads:
        thread.join()
    # The restarted host recovers the database; then the rows are counted in the file itself.
    again, _ = serve("kill9-restarted", component, logs, data, "--config", "bcrypt_cost=4")
    again.stop()
    with sqlite3.connect(Path(data) / "users.db") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM users")}
    missing = sum(1 for id_ in acknowledged if id_ not in stored)
    result = {"backend": "sqlite", "acknowledged": len(acknowledged), "missing_after_restart": missing}
    suite.log(f"kill -9 durability: {result}")
    return result


def admin(base, path, method="GET", data=None, content_type=None):
    request = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    if content_type:
        request.add_header("content-type", content_type)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def bad_canary(logs, clients=4):
    """A canary that traps on every request, at 25 %, under 4 clients (as
    `swap::a_canary_that_traps…`): how many requests reached it before the automatic rollback."""
    data = tempfile.mkdtemp(prefix="skiff-bench-canary-")
    admin_port = suite.free_port()
    host, base = serve("canary", TESTBED / "testbed.wasm", logs, data, SKIFF_ADMIN_TOKEN=ADMIN_TOKEN,
                       SKIFF_ADMIN_LISTEN=f"127.0.0.1:{admin_port}")
    admin_base = f"http://127.0.0.1:{admin_port}"
    stop = threading.Event()
    outcomes = []

    def client(_):
        while not stop.is_set():
            outcomes.append(status_of(f"{base}/hello"))

    try:
        admin(admin_base, "/admin/services/testbed/versions?label=faulty&canary=25", "POST",
              (TESTBED / "faulty.wasm").read_bytes(), "application/wasm")
        threads = in_threads(clients, client)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            versions = admin(admin_base, "/admin/services/testbed/versions")["versions"]
            faulty = next(v for v in versions if v["label"] == "faulty")
            if faulty["state"] == "rolled-back":
                break
            time.sleep(0.02)
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        faulty = next(v for v in admin(admin_base, "/admin/services/testbed/versions")["versions"]
                      if v["label"] == "faulty")
    finally:
        host.stop()
    result = {"state": faulty["state"], "canary_requests": faulty["requests"],
              "failed_requests": sum(1 for status in outcomes if status != 200), "requests": len(outcomes)}
    suite.log(f"bad canary: {result}")
    return result


class Proxy:
    """A TCP proxy the scenario can take down (cutting its connections) and bring back."""

    def __init__(self, target):
        self.target, self.up, self.open = target, True, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take_down(self):
        self.up = False
        for connection in self.open:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open = []

    def bring_up(self):
        self.up = True


def postgres_outage(logs):
    """Postgres cut off behind a proxy (as `reliability::a_postgres_outage…`): when readiness
    turns false, how fast a request gets its 503, when readiness comes back."""
    database = suite.fresh_database("skiff_bench_outage")
    proxy = Proxy(("127.0.0.1", 5432))
    through_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    data = tempfile.mkdtemp(prefix="skiff-bench-pg-outage-")
    host, base = serve("pg-outage", suite.WASM / "users.wasm", logs, data, "--database-url", through_proxy,
                       "--config", "bcrypt_cost=4")

    def until(condition, timeout=30):
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise RuntimeError("the host did not change state within 30 s")
            time.sleep(0.01)
        return round((time.monotonic() - started) * 1000)

    body = {"name": "Out", "surname": "Age", "email": "outage@example.org", "password": "long enough"}
    try:
        assert status_of(f"{base}/users-ms/users", "POST", body) == 201
        proxy.take_down()
        not_ready_after = until(lambda: status_of(f"{base}/readyz") == 503)
        started = time.monotonic()
        refused = status_of(f"{base}/users-ms/users", "POST", dict(body, email="second@example.org"))
        answered_ms = round((time.monotonic() - started) * 1000)
        proxy.bring_up()
        ready_again_after = until(lambda: status_of(f"{base}/readyz") == 200)
    finally:
        host.stop()
        suite.psql('DROP DATABASE IF EXISTS "skiff_bench_outage" WITH (FORCE)')
    result = {"not_ready_after_ms": not_ready_after, "request_status": refused, "request_answered_ms": answered_ms,
              "ready_again_after_ms": ready_again_after}
    suite.log(f"postgres outage: {result}")
    return result


# RFC 8032's published Ed25519 test key pair (as the Kubernetes dev overlay uses): auth signs
# the tokens and the login events with it, notify checks them.
TOKEN_SIGNING_KEY = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
TOKEN_PUBLIC_KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def broker_outage(logs, logins=1000, outage_s=30):
    """RabbitMQ cut off from auth (behind a proxy) for 30 s while 1000 logins go through (as
    `rabbitmq::a_broker_outage…`): how long the logins took, and once the broker is back, how
    many notifications arrive, how many distinct, and how soon."""
    vhost_url = suite.rabbitmq_vhost("skiff-bench-outage")
    broker = vhost_url.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = broker.rsplit(":", 1)
    proxy = Proxy((host, int(port)))
    via_proxy = vhost_url.replace(f"@{broker}/", f"@127.0.0.1:{proxy.port}/")
    dirs = {name: tempfile.mkdtemp(prefix=f"skiff-bench-outage-{name}-") for name in ("users", "auth", "notify")}
    internal = suite.free_port()
    started = []
    try:
        users, users_base = serve("outage-users", suite.WASM / "users.wasm", logs, dirs["users"], "--config",
                                  "bcrypt_cost=4", "--config", f"token_public_key={TOKEN_PUBLIC_KEY}",
                                  SKIFF_INTERNAL_LISTEN=f"127.0.0.1:{internal}")
        started.append(users)
        notify, _ = serve("outage-notify", suite.WASM / "notify.wasm", logs, dirs["notify"], "--config",
                          f"token_public_key={TOKEN_PUBLIC_KEY}", SKIFF_AMQP_URL=vhost_url)
        started.append(notify)
        auth, auth_base = serve("outage-auth", suite.WASM / "auth.wasm", logs, dirs["auth"], "--config",
                                f"token_signing_key={TOKEN_SIGNING_KEY}", SKIFF_AMQP_URL=via_proxy,
                                SKIFF_SERVICES=f"users=127.0.0.1:{internal}")
        started.append(auth)

        def counted():
            with sqlite3.connect(Path(dirs["notify"]) / "notify.db") as db:
                return db.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM notifications").fetchone()

        def until(condition, timeout):
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker outage: still {counted()} notifications after {timeout} s")
                time.sleep(0.05)

        credentials = {"email": "outage@example.org", "password": "long enough"}
        assert status_of(f"{users_base}/users-ms/users", "POST",
                         dict(credentials, name="Out", surname="Age")) == 201
        login = f"{auth_base}/auth-ms/auth/login"
        assert status_of(login, "POST", credentials) == 200
        until(lambda: counted()[0] == 1, 30)

        proxy.take_down()
        outage = time.monotonic()
        failed = []

        def client(_):
            for _ in range(logins // 4):
                if status_of(login, "POST", credentials) != 200:
                    failed.append(1)

        for thread in in_threads(4, client):
            thread.join()
        logins_took = time.monotonic() - outage
        time.sleep(max(0.0, outage_s - (time.monotonic() - outage)))
        during = counted()[0] - 1
        proxy.bring_up()
        back = time.monotonic()
        until(lambda: counted()[0] >= logins + 1, 120)
        delivered_in = time.monotonic() - back
        time.sleep(0.5)
        total, distinct = counted()
    finally:
        for process in started:
            process.stop()
    result = {"outage_s": outage_s, "logins": logins, "failed_logins": len(failed),
              "logins_took_ms": round(logins_took * 1000), "notifications_during_outage": during,
              "notifications_after": total - 1, "distinct_after": distinct - 1,
              "delivered_within_ms_of_return": round(delivered_in * 1000)}
    suite.log(f"broker outage: {result}")
    return result


def run(args, logs):
    """Every scenario above; the RabbitMQ and Postgres ones only where those answer."""
    raw = {
        "hostile_neighbours": hostile_neighbours_and_slow_clients(logs),
        "overload": overload(logs),
        "kill_9_durability": kill_9_durability(logs),
        "bad_canary": bad_canary(logs),
    }
    if shutil.which("rabbitmqctl"):
        raw["broker_outage"] = broker_outage(logs)
    else:
        suite.log("broker outage: skipped, no rabbitmqctl to make a vhost with")
    try:
        suite.psql("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means no Postgres to measure on
        suite.log(f"postgres outage: skipped, Postgres does not answer ({error})")
    else:
        raw["postgres_outage"] = postgres_outage(logs)
    return raw
