#!/usr/bin/env python3
"""Kubernetes conformance: run every rendered Deployment's container as the kubelet would.

For each overlay (default: dev), render it with `kubectl kustomize`, and for every container of
every Deployment start the real `skiff` binary with the container's command, args and env
(literal values, ConfigMaps and Secrets from the rendered output, stand-ins for Secrets that
are created outside the manifests, the downward API), then:

  * the startupProbe, readinessProbe and livenessProbe must succeed within their budgets
    (initialDelaySeconds + periodSeconds * failureThreshold), with kubelet semantics
    (HTTP 200-399, named ports resolved against the container's ports);
  * every declared containerPort must accept TCP connections;
  * the log must be one JSON object per line when SKIFF_LOG_FORMAT=json;
  * the pod's app.kubernetes.io/version label must be the image tag, and the component's
    version header (skiff-component-version) must equal it;
  * after the preStop hook, SIGTERM must make the process exit 0 within the rest of
    terminationGracePeriodSeconds;
  * nothing may be written outside the mounted volumes (readOnlyRootFilesystem);
  * a precompiled component (.cwasm) must load: the host's fallback to the .wasm beside it fails;
  * where a pod mounts a Secret that a cert-manager Certificate fills, the test issues that
    certificate itself (its dnsNames and ipAddresses, signed by a CA of the run's own, in the
    kubelet's `..data` layout, with ca.crt as a CA Issuer writes it); httpGet probes with
    `scheme: HTTPS` are sent over TLS without checking the certificate (as the kubelet does);
    and a pod whose listeners serve TLS (SKIFF_TLS_CERT) must present, to a client that trusts
    only that CA, a certificate for every Service name that leads to it, must not answer
    plain HTTP there, and must serve a renewed certificate (swapped in as the kubelet does)
    on the next connection without a restart; a pod that calls a service over TLS
    (`NAME=https://HOST:PORT` in SKIFF_SERVICES) must mount a CA, and every pod behind
    HOST:PORT must serve a certificate naming HOST from the same Issuer (pods run one at a
    time here, so the call itself is left to the host tests).

Local rewrites, consistently: the image's /usr/local/bin/skiff is $SKIFF_BIN, /app/components/X.wasm
is $SKIFF_COMPONENTS_DIR/X.wasm, every containerPort and listen port is a free local port,
Service DNS names (users-cluster-ip-service, ...svc.cluster.local) become 127.0.0.1 with the
local port behind that Service, volume mount paths become temporary folders, the database
URL is a fresh database on the local Postgres ($SKIFF_TEST_POSTGRES_URL, default
postgres://postgres@127.0.0.1:5432/postgres; empty = SQLite in a temporary folder), and AMQP
URLs are $SKIFF_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).

A Deployment whose component is not built is SKIPPED (loudly); everything else that is wrong
fails. Needs PyYAML and kubectl (KUBECTL or PATH).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGE_BIN = "/usr/local/bin/skiff"
IMAGE_COMPONENTS = "/app/components/"

# Host settings the manifests may set before the binary reads them: reported and not checked.
# Empty: the binary reads every setting the manifests use, so an unknown SKIFF_* variable (a
# typo, or a setting the binary dropped) fails. SKIFF_CONFIG_<KEY> are component settings.
PENDING_ENV: set[str] = set()
# The setting that opens each extra listener, for the "every declared port listens" check.
LISTEN_ENV = {"SKIFF_LISTEN", "SKIFF_INTERNAL_LISTEN", "SKIFF_ADMIN_LISTEN"}

# Stand-ins for Secrets created outside the manifests, by key name.
STANDIN_KEYS = {
    # RFC 8032 test vector 1: a public test key, valid Ed25519.
    "signing-key": "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
    "public-key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "database-url": "postgres://standin:standin@postgres:5432/standin",
    "amqp-url": "amqp://standin:standin@rabbitmq:5672/%2f",
}

RED, GREEN, YELLOW, BOLD, RESET = (
    ("\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


class Failure(Exception):
    pass


@dataclass
class Result:
    name: str
    status: str  # PASS | FAIL | SKIP
    notes: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(kubectl: str, overlay: Path) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"kubectl kustomize {overlay} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def binary_env_vars(skiff: str) -> set[str]:
    """The environment variables the binary reads, from its own help text (the admin commands'
    too: `kubectl exec … skiff swap` runs with the pod's environment)."""
    names: set[str] = set()
    for args in ([], ["serve"], ["swap"]):
        out = subprocess.run([skiff, *args, "--help"], capture_output=True, text=True)
        names |= set(re.findall(r"\[env: ([A-Z0-9_]+)", out.stdout))
    return names


def entrypoint_of_dockerfile() -> list[str]:
    """The image's ENTRYPOINT (used when a container sets no command)."""
    text = (REPO / "Dockerfile").read_text()
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    return json.loads(found[-1]) if found else [IMAGE_BIN]


# ---------------------------------------------------------------- test databases


class Databases:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.url = os.environ.get("SKIFF_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        self.created: list[str] = []
        if self.url and not shutil.which("psql"):
            raise Failure("SKIFF_TEST_POSTGRES_URL is set but psql is not installed")

    def describe(self) -> str:
        return f"Postgres at {re.sub(r'//[^@]*@', '//', self.url)}" if self.url else "SQLite (SKIFF_TEST_POSTGRES_URL is empty)"

    def fresh(self, name: str) -> str:
        if not self.url:
            return f"sqlite://{self.tmp / (name + '.db')}"
        db = f"skiff_k8s_{re.sub(r'[^a-z0-9]', '_', name.lower())}_{uuid.uuid4().hex[:8]}"
        self._psql(f'CREATE DATABASE "{db}"')
        self.created.append(db)
        return re.sub(r"/[^/?]*(\?|$)", f"/{db}\\1", self.url, count=1) if "://" in self.url else self.url

    def drop_all(self) -> None:
        for db in self.created:
            try:
                self._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            except Failure as e:
                log(f"  warning: {e}")

    def _psql(self, sql: str) -> None:
        out = subprocess.run(["psql", self.url, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True)
        if out.returncode != 0:
            raise Failure(f"psql {sql!r}: {out.stderr.strip()}")


# ---------------------------------------------------------------- cert-manager, locally


class Certificates:
    """Issues what cert-manager would put in a Certificate's Secret (tls.crt, tls.key, ca.crt),
    from one CA of this run's own, with openssl."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "pki"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca_crt = self.dir / "ca.key", self.dir / "ca.crt"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "2", "-subj", "/CN=skiff conformance CA",
                      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.serial = 0

    def issue(self, cert: dict) -> tuple[bytes, bytes]:
        """A leaf for the Certificate's dnsNames and ipAddresses: (tls.crt, tls.key) as PEM."""
        self.serial += 1
        base = self.dir / f"{cert['metadata']['name']}-{self.serial}"
        spec = cert["spec"]
        sans = [f"DNS:{n}" for n in spec.get("dnsNames") or []] + [f"IP:{a}" for a in spec.get("ipAddresses") or []]
        if not sans:
            raise Failure(f"Certificate {cert['metadata']['name']} names no DNS name or address")
        ext = base.with_suffix(".ext")
        ext.write_text(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        key, csr, crt = base.with_suffix(".key"), base.with_suffix(".csr"), base.with_suffix(".crt")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                      "-out", csr, "-subj", f"/CN={(spec.get('dnsNames') or ['skiff'])[0]}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key, "-set_serial",
                      str(self.serial), "-days", "1", "-extfile", ext, "-out", crt)
        return crt.read_bytes(), key.read_bytes()

    def publish(self, folder: Path, cert: dict) -> bytes:
        """Writes a fresh leaf into a mounted Secret's folder as the kubelet updates one: a new
        timestamped folder, then the `..data` symlink swapped in one rename. The leaf's PEM."""
        crt, key = self.issue(cert)
        version = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.serial}"
        (folder / version).mkdir(parents=True)
        for name, content in (("tls.crt", crt), ("tls.key", key), ("ca.crt", self.ca_crt.read_bytes())):
            (folder / version / name).write_bytes(content)
        staged = folder / "..data_tmp"
        if staged.is_symlink():
            staged.unlink()
        os.symlink(version, staged)
        os.replace(staged, folder / "..data")
        for name in ("tls.crt", "tls.key", "ca.crt"):
            if not (folder / name).is_symlink():
                os.symlink(f"..data/{name}", folder / name)
        return crt

    @staticmethod
    def _openssl(*args) -> None:
        out = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
        if out.returncode != 0:
            raise Failure(f"openssl {args[0]}: {out.stderr.strip()[:300]}")


def served_certificate(port: int, ca: Path, name: str) -> bytes:
    """The leaf certificate (DER) the listener presents to a client that trusts only `ca`,
    checked for `name`; raises ssl.SSLError when it does not verify."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


# ---------------------------------------------------------------- the cluster, locally


class Cluster:
    """The rendered objects, and one local port for every (Deployment, containerPort)."""

    def __init__(self, docs: list[dict]):
        self.docs = docs
        self.namespace = next((d["metadata"].get("namespace") for d in docs if d["metadata"].get("namespace")), "default")
        self.configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
        self.secrets: dict[str, dict[str, str]] = {}
        for d in docs:
            if d["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
                data.update(d.get("stringData") or {})
                self.secrets[d["metadata"]["name"]] = data
        self.deployments = [d for d in docs if d["kind"] == "Deployment"]
        self.ports: dict[tuple[str, int], int] = {}
        for dep in self.deployments:
            for c in containers(dep):
                for p in c.get("ports") or []:
                    self.ports[(dep["metadata"]["name"], p["containerPort"])] = free_port()
        self.services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        # cert-manager Certificates by the Secret they fill.
        self.certificates = {d["spec"]["secretName"]: d for d in docs
                             if d["kind"] == "Certificate" and d["apiVersion"].startswith("cert-manager.io/")}

    def services_of(self, deployment: str) -> list[tuple[str, int, int]]:
        """(Service name, its port, the containerPort behind it) for each Service port that
        leads to this Deployment's pods."""
        found = []
        dep = next(d for d in self.deployments if d["metadata"]["name"] == deployment)
        labels = dep["spec"]["template"]["metadata"].get("labels") or {}
        for name, svc in self.services.items():
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for sp in svc["spec"].get("ports", []):
                target = sp.get("targetPort", sp["port"])
                for c in containers(dep):
                    for p in c.get("ports") or []:
                        if target in (p["containerPort"], p.get("name")):
                            found.append((name, sp["port"], p["containerPort"]))
        return found

    def service_port(self, service: str, port: int) -> int | None:
        """The local port a connection to service:port reaches (its first matching pod)."""
        svc = self.services.get(service)
        if not svc:
            return None
        selector = svc["spec"].get("selector") or {}
        sp = next((p for p in svc["spec"].get("ports", []) if p["port"] == port), None)
        if sp is None:
            return None
        target = sp.get("targetPort", port)
        for dep in self.deployments:
            labels = dep["spec"]["template"]["metadata"].get("labels") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for c in containers(dep):
                for p in c.get("ports") or []:
                    if target in (p["containerPort"], p.get("name")):
                        return self.ports[(dep["metadata"]["name"], p["containerPort"])]
        return None

    def service_host_re(self) -> re.Pattern:
        names = "|".join(sorted((re.escape(n) for n in self.services), key=len, reverse=True)) or "$^"
        ns = re.escape(self.namespace)
        return re.compile(rf"\b({names})(?:\.{ns}(?:\.svc(?:\.cluster\.local)?)?)?:(\d+)\b")


def containers(dep: dict) -> list[dict]:
    return dep["spec"]["template"]["spec"].get("containers") or []


# ---------------------------------------------------------------- one container


@dataclass
class Pod:
    deployment: str
    container: dict
    spec: dict
    labels: dict
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]  # containerPort -> local port
    port_names: dict[str, int]  # name -> containerPort
    rootfs: Path
    notes: list[str]
    unchecked_ports: set[int]
    # Mounted Secrets that cert-manager fills: (local folder, the Certificate).
    tls_secrets: list[tuple[Path, dict]] = field(default_factory=list)


_AMQP_URL: str | None = None


def conformance_amqp_url() -> str:
    """$SKIFF_TEST_AMQP_URL on a vhost of this run's own (made with rabbitmqctl when it is
    there, removed at exit), so exchanges that earlier runs or releases declared, perhaps as
    another kind, never meet this one."""
    global _AMQP_URL
    if _AMQP_URL is None:
        base = os.environ.get("SKIFF_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        _AMQP_URL = base
        user = re.match(r"amqps?://([^:@/]+)", base)
        if shutil.which("rabbitmqctl") and user:
            vhost = f"skiff_conformance_{os.getpid()}"
            made = subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True)
            granted = subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user.group(1), ".*", ".*", ".*"],
                                     capture_output=True)
            if made.returncode == 0 and granted.returncode == 0:
                atexit.register(subprocess.run, ["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
                _AMQP_URL = base.rsplit("/", 1)[0] + "/" + vhost
    return _AMQP_URL


def resolve_env(cluster: Cluster, dep: dict, c: dict, notes: list[str]) -> dict[str, str]:
    name = dep["metadata"]["name"]
    meta = dep["spec"]["template"]["metadata"]
    env: dict[str, str] = {}

    def secret_value(secret: str, key: str, optional: bool) -> str | None:
        if secret in cluster.secrets:
            if key in cluster.secrets[secret]:
                return cluster.secrets[secret][key]
            if optional:
                return None
            raise Failure(f"{name}: Secret {secret} has no key {key}")
        value = STANDIN_KEYS.get(key, f"stand-in-{secret}-{key}")
        notes.append(f"Secret {secret}/{key} is created outside the manifests: stand-in used")
        return value

    for src in c.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref = src["configMapRef"]
            if ref["name"] not in cluster.configmaps:
                if ref.get("optional"):
                    continue
                raise Failure(f"{name}: envFrom ConfigMap {ref['name']} is not in the rendered output")
            env.update({prefix + k: str(v) for k, v in cluster.configmaps[ref["name"]].items()})
        if "secretRef" in src:
            ref = src["secretRef"]
            if ref["name"] in cluster.secrets:
                env.update({prefix + k: v for k, v in cluster.secrets[ref["name"]].items()})
            elif not ref.get("optional"):
                notes.append(f"envFrom Secret {ref['name']} is created outside the manifests: no variables from it")

    for e in c.get("env") or []:
        key = e["name"]
        if "value" in e:
            # $(VAR) expands to an earlier variable, $$ escapes, unknown references stay.
            env[key] = re.sub(
                r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                str(e["value"]),
            )
            continue
        vf = e.get("valueFrom") or {}
        value: str | None = None
        if "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = cluster.configmaps.get(ref["name"])
            if cm is None or ref["key"] not in cm:
                if ref.get("optional"):
                    continue
                raise Failure(f"{name}: {key}: ConfigMap {ref['name']} key {ref['key']} is not in the rendered output")
            value = str(cm[ref["key"]])
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            value = secret_value(ref["name"], ref["key"], bool(ref.get("optional")))
            if value is None:
                continue
        elif "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
            if m:
                value = (meta.get(m.group(1)) or {}).get(m.group(2), "")
            elif path == "metadata.name":
                value = f"{name}-conformance-0"
            elif path == "metadata.namespace":
                value = cluster.namespace
            elif path in ("status.podIP", "status.hostIP"):
                value = "127.0.0.1"
            elif path == "spec.serviceAccountName":
                value = dep["spec"]["template"]["spec"].get("serviceAccountName", "default")
            else:
                raise Failure(f"{name}: {key}: fieldRef {path} is not emulated here")
        elif "resourceFieldRef" in vf:
            raise Failure(f"{name}: {key}: resourceFieldRef is not emulated here")
        else:
            raise Failure(f"{name}: {key}: neither value nor a known valueFrom")
        env[key] = value
    return env


def prepare(cluster: Cluster, dep: dict, c: dict, skiff: str, components_dir: Path, dbs: Databases, tmp: Path,
            pki: Certificates) -> Pod | str:
    """A Pod ready to start, or the reason to skip it."""
    name = dep["metadata"]["name"]
    spec = dep["spec"]["template"]["spec"]
    notes: list[str] = []

    argv = list(c.get("command") or entrypoint_of_dockerfile()) + list(c.get("args") or [])
    if argv[0] != IMAGE_BIN:
        raise Failure(f"{name}: command {argv[0]} is not the image's {IMAGE_BIN}")
    env = resolve_env(cluster, dep, c, notes)

    component = None
    for i, a in enumerate(argv):
        if a.startswith(IMAGE_COMPONENTS):
            component = a
    component = component or env.get("SKIFF_COMPONENT")
    if not component or not component.startswith(IMAGE_COMPONENTS):
        raise Failure(f"{name}: no component under {IMAGE_COMPONENTS} in args or SKIFF_COMPONENT")
    local_component = components_dir / component[len(IMAGE_COMPONENTS):]

    # Local paths for the image's binary, the component and each volume mount.
    root = tmp / name
    rootfs = root / "rootfs"
    rootfs.mkdir(parents=True)
    mounts = {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    tls_secrets: list[tuple[Path, dict]] = []
    for m in c.get("volumeMounts") or []:
        local = root / "volumes" / m["name"]
        local.mkdir(parents=True, exist_ok=True)
        mounts[m["mountPath"].rstrip("/")] = str(local)
        secret = (volumes.get(m["name"]) or {}).get("secret") or {}
        certificate = cluster.certificates.get(secret.get("secretName", ""))
        if certificate is not None:
            pki.publish(local, certificate)
            tls_secrets.append((local, certificate))
            notes.append(f"Secret {secret['secretName']} is issued by cert-manager: a certificate of this run's CA used")

    def local_path(value: str) -> str:
        if value.startswith(IMAGE_COMPONENTS):
            return str(components_dir / value[len(IMAGE_COMPONENTS):])
        for path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value == path or value.startswith(path + "/"):
                return local + value[len(path):]
        return value

    # Ports: declared containerPorts get the cluster-wide mapping; other listen ports get
    # their own (so that two pods run locally never share, e.g., the admin port).
    ports = {cp: lp for (dn, cp), lp in cluster.ports.items() if dn == name}
    port_names = {p["name"]: p["containerPort"] for p in c.get("ports") or [] if p.get("name")}
    extra: dict[int, int] = {}
    service_re = cluster.service_host_re()

    def local_port(port: int) -> int:
        if port in ports:
            return ports[port]
        return extra.setdefault(port, free_port())

    def rewrite(key: str, value: str) -> str:
        if re.match(r"postgres(ql)?://", value):
            return dbs.fresh(f"{cluster.namespace}_{name}")
        if value.startswith(("amqp://", "amqps://")):
            return conformance_amqp_url()
        m = re.fullmatch(r"(0\.0\.0\.0|\[::\]|::|127\.0\.0\.1|localhost):(\d+)", value)
        if m:
            return f"127.0.0.1:{local_port(int(m.group(2)))}"

        def to_local(m: re.Match) -> str:
            lp = cluster.service_port(m.group(1), int(m.group(2)))
            if lp is None:
                raise Failure(f"{name}: {key} names {m.group(0)}, but no Service port leads to a declared containerPort")
            return f"127.0.0.1:{lp}"

        value = service_re.sub(to_local, value)
        return local_path(value)

    check_tls_routes(cluster, name, spec, c, env)
    env = {k: rewrite(k, v) for k, v in env.items()}
    env.setdefault("TMPDIR", mounts.get("/tmp", str(rootfs)))
    argv = [skiff] + [local_path(a) for a in argv[1:]]

    # Settings the binary does not read.
    known = binary_env_vars(skiff)
    unchecked_ports: set[int] = set()
    for key in sorted(env):
        if not key.startswith("SKIFF_") or key in known or key.startswith("SKIFF_CONFIG_"):
            continue
        if key in PENDING_ENV:
            notes.append(f"PENDING: the binary does not read {key} yet (ignored by it, not checked)")
            if key in LISTEN_ENV:
                m = re.search(r":(\d+)$", env[key])
                for cp, lp in ports.items():
                    if m and lp == int(m.group(1)):
                        unchecked_ports.add(cp)
        else:
            raise Failure(f"{name}: sets {key}, which `skiff serve` does not know (a typo?)")

    # The version the host reports comes from the pod label; it must be the image's tag.
    version = (dep["spec"]["template"]["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
    tag = c.get("image", "").rpartition(":")[2] if ":" in c.get("image", "").rpartition("/")[2] else None
    if version is not None and tag is not None and version != tag:
        raise Failure(f"{name}: pod label app.kubernetes.io/version {version} is not the image tag {tag} ({c['image']})")

    # Everything above is checked for every Deployment; only running needs the component.
    if not local_component.is_file():
        return f"component {local_component} is not built"
    return Pod(name, c, spec, dep["spec"]["template"]["metadata"].get("labels") or {}, argv, env, ports, port_names, rootfs, notes,
               unchecked_ports, tls_secrets)


# ---------------------------------------------------------------- probes


def probe_once(pod: Pod, probe: dict) -> tuple[bool, str, dict]:
    timeout = probe.get("timeoutSeconds", 1)
    if "httpGet" in probe:
        h = probe["httpGet"]
        port = h["port"]
        cp = pod.port_names.get(port) if isinstance(port, str) else port
        if cp is None:
            raise Failure(f"{pod.deployment}: probe port {port!r} is not a declared port name")
        lp = pod.ports.get(cp)
        if lp is None:
            raise Failure(f"{pod.deployment}: probe port {cp} is not a declared containerPort")
        scheme = h.get("scheme", "HTTP")
        if scheme not in ("HTTP", "HTTPS"):
            raise Failure(f"{pod.deployment}: probe scheme {scheme} is not emulated")
        try:
            if scheme == "HTTPS":
                # The kubelet does not verify a probe's certificate.
                conn = http.client.HTTPSConnection("127.0.0.1", lp, timeout=timeout, context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection("127.0.0.1", lp, timeout=timeout)
            headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.37")
            conn.request("GET", h.get("path", "/"), headers=headers)
            r = conn.getresponse()
            r.read()
            conn.close()
            return 200 <= r.status < 400, f"HTTP {r.status}", dict(r.getheaders())
        except OSError as e:
            return False, str(e), {}
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        cp = pod.port_names.get(port) if isinstance(port, str) else port
        try:
            socket.create_connection(("127.0.0.1", pod.ports[cp]), timeout=timeout).close()
            return True, "connected", {}
        except OSError as e:
            return False, str(e), {}
    raise Failure(f"{pod.deployment}: only httpGet and tcpSocket probes are emulated, not {sorted(probe)}")


def await_probe(pod: Pod, kind: str, proc: subprocess.Popen, since: float) -> tuple[float, dict]:
    """Succeed within the probe's budget, counted from `since`, as the kubelet would."""
    probe = pod.container.get(kind)
    if probe is None:
        raise Failure(f"{pod.deployment}: no {kind}")
    budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    need = probe.get("successThreshold", 1)
    deadline = since + budget
    last, successes = "never answered", 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"{pod.deployment}: exited with {proc.returncode} before {kind} succeeded (last: {last})")
        ok, last, headers = probe_once(pod, probe)
        successes = successes + 1 if ok else 0
        if successes >= need:
            return time.monotonic() - since, headers
        time.sleep(0.1)
    raise Failure(f"{pod.deployment}: {kind} did not succeed within its {budget}s budget (last: {last})")


def mounted_certificate(cluster: Cluster, spec: dict, c: dict, path: str) -> dict | None:
    """The cert-manager Certificate whose Secret the container mounts where `path` lies."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            secret = (volumes.get(m["name"]) or {}).get("secret") or {}
            return cluster.certificates.get(secret.get("secretName", ""))
    return None


def check_tls_routes(cluster: Cluster, name: str, spec: dict, c: dict, env: dict[str, str]) -> None:
    """Pods run one at a time here, so a call to another service over TLS is not made; what
    it depends on is checked instead: for every `NAME=https://HOST:PORT` route, the caller
    mounts a CA (SKIFF_TLS_CA in a cert-manager Secret), and the pods behind HOST:PORT mount a
    certificate from the same Issuer that names HOST, and serve TLS."""
    for route in filter(None, (env.get("SKIFF_SERVICES") or "").split(",")):
        service, _, target = route.partition("=")
        if not target.strip().startswith("https://"):
            continue
        host, _, port = target.strip()[len("https://"):].rstrip("/").rpartition(":")
        ca = env.get("SKIFF_TLS_CA")
        if not ca:
            raise Failure(f"{name}: the route {route} is https but the pod sets no SKIFF_TLS_CA")
        caller = mounted_certificate(cluster, spec, c, ca)
        if caller is None:
            raise Failure(f"{name}: SKIFF_TLS_CA {ca} is not in a mounted cert-manager Secret")
        short = host.split(".")[0]
        svc = cluster.services.get(short)
        if svc is None or not any(p["port"] == int(port) for p in svc["spec"].get("ports", [])):
            raise Failure(f"{name}: the route {route} names no Service port")
        selector = svc["spec"].get("selector") or {}
        targets = [d for d in cluster.deployments
                   if all((d["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
        if not targets:
            raise Failure(f"{name}: the route {route} leads to no Deployment")
        for dep in targets:
            for served in containers(dep):
                cert_path = next((e.get("value", "") for e in served.get("env") or [] if e["name"] == "SKIFF_TLS_CERT"), "")
                cert = mounted_certificate(cluster, dep["spec"]["template"]["spec"], served, cert_path)
                if cert is None:
                    raise Failure(f"{name}: calls {host} over TLS, but {dep['metadata']['name']} serves no cert-manager certificate")
                if host not in (cert["spec"].get("dnsNames") or []):
                    raise Failure(f"{name}: calls {host}, but {cert['metadata']['name']} names {cert['spec'].get('dnsNames')}")
                if cert["spec"]["issuerRef"] != caller["spec"]["issuerRef"]:
                    raise Failure(f"{name}: trusts {caller['spec']['issuerRef']}, but {cert['metadata']['name']} comes from {cert['spec']['issuerRef']}")
        log(f"    {service} over TLS: {host} is named by the certificate of every pod behind it, from the CA this pod trusts")


def check_tls(pod: Pod, cluster: Cluster, pki: Certificates) -> None:
    """A pod whose listeners serve TLS: the certificate verifies, against the mounted CA, for
    every Service name that leads to it; plain HTTP gets no answer; a renewal is served on the
    next connection."""
    if "SKIFF_TLS_CERT" not in pod.env:
        return
    folder = Path(pod.env["SKIFF_TLS_CERT"]).parent
    mounted = next((cert for local, cert in pod.tls_secrets if local == folder), None)
    if mounted is None:
        raise Failure(f"{pod.deployment}: SKIFF_TLS_CERT is not in a mounted cert-manager Secret")
    ca = Path(pod.env.get("SKIFF_TLS_CA") or folder / "ca.crt")
    services = cluster.services_of(pod.deployment)
    if not services:
        raise Failure(f"{pod.deployment}: serves TLS but no Service leads to it")
    current = None
    for service, port, cp in services:
        for name in (service, f"{service}.{cluster.namespace}.svc.cluster.local"):
            try:
                current = served_certificate(pod.ports[cp], ca, name)
            except (ssl.SSLError, ssl.CertificateError, OSError) as e:
                raise Failure(f"{pod.deployment}: {name}:{port} does not present a certificate for that name from the CA: {e}")
        log(f"    {service}:{port} presents a certificate for its names from the cluster's CA")
    _, _, cp = services[0]
    with socket.create_connection(("127.0.0.1", pod.ports[cp]), timeout=5) as plain:
        plain.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.settimeout(5)
        try:
            answer = plain.recv(64)
        except OSError:
            answer = b""
        if answer.startswith(b"HTTP/"):
            raise Failure(f"{pod.deployment}: port {cp} answers plain HTTP while serving TLS")
    log(f"    port {cp} does not answer plain HTTP")
    renewed = ssl.PEM_cert_to_DER_cert(pki.publish(folder, mounted).decode())
    served = served_certificate(pod.ports[cp], ca, services[0][0])
    if served != renewed or served == current:
        raise Failure(f"{pod.deployment}: after the Secret's certificate was renewed, a new connection got the old one")
    log("    a renewed certificate (..data swapped) is served on the next connection, no restart")


def run_pod(pod: Pod, logfile: Path, cluster: Cluster, pki: Certificates) -> None:
    c, spec = pod.container, pod.spec
    with open(logfile, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(pod.argv, env=pod.env, cwd=pod.rootfs, stdout=out, stderr=subprocess.STDOUT)
    try:
        took, _ = await_probe(pod, "startupProbe", proc, started)
        log(f"    startupProbe   ok after {took:.1f}s")
        after = time.monotonic()
        took, _ = await_probe(pod, "readinessProbe", proc, after)
        log(f"    readinessProbe ok after {took:.1f}s")
        took, headers = await_probe(pod, "livenessProbe", proc, after)
        log(f"    livenessProbe  ok after {took:.1f}s")
        # Liveness must hold: as many checks in a row as it takes to restart the pod.
        live = c["livenessProbe"]
        for _ in range(live.get("failureThreshold", 3)):
            ok, last, _ = probe_once(pod, live)
            if not ok:
                raise Failure(f"{pod.deployment}: livenessProbe failed again after succeeding ({last})")
            time.sleep(0.1)
        version = pod.labels.get("app.kubernetes.io/version")
        served = headers.get("skiff-component-version")
        if version and served is not None and served != version:
            raise Failure(f"{pod.deployment}: skiff-component-version is {served}, the pod label says {version}")
        if served is not None:
            log(f"    skiff-component-version {served} = the pod's app.kubernetes.io/version")

        for cp, lp in sorted(pod.ports.items()):
            if cp in pod.unchecked_ports:
                log(f"    {YELLOW}port {cp} not checked: its listen setting is not in the binary yet{RESET}")
                continue
            try:
                socket.create_connection(("127.0.0.1", lp), timeout=2).close()
            except OSError as e:
                raise Failure(f"{pod.deployment}: declared containerPort {cp} does not listen ({e})")
            log(f"    containerPort {cp} listens")
        check_tls(pod, cluster, pki)

        # Termination: preStop, then SIGTERM; exit 0 within the rest of the grace period.
        grace = spec.get("terminationGracePeriodSeconds", 30)
        pre = ((c.get("lifecycle") or {}).get("preStop") or {})
        if "exec" in pre or "httpGet" in pre:
            raise Failure(f"{pod.deployment}: preStop {sorted(pre)} is not emulated (the image has no shell)")
        sleep = (pre.get("sleep") or {}).get("seconds", 0)
        ok, last, _ = probe_once(pod, c["readinessProbe"])
        if not ok:
            raise Failure(f"{pod.deployment}: not ready before termination ({last})")
        budget = grace - sleep
        if budget <= 0:
            raise Failure(f"{pod.deployment}: preStop sleep {sleep}s leaves nothing of terminationGracePeriodSeconds {grace}")
        drain = pod.env.get("SKIFF_SHUTDOWN_GRACE_SECS")
        if drain is not None and int(drain) >= budget:
            raise Failure(f"{pod.deployment}: SKIFF_SHUTDOWN_GRACE_SECS {drain} does not fit in {budget}s (grace {grace} - preStop {sleep})")
        term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            raise Failure(f"{pod.deployment}: still running {budget}s after SIGTERM (the kubelet would SIGKILL it)")
        if code != 0:
            raise Failure(f"{pod.deployment}: exited with {code} after SIGTERM, expected 0")
        log(f"    SIGTERM -> exit 0 after {time.monotonic() - term:.1f}s (budget {budget}s = grace {grace} - preStop {sleep})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        written = [str(p.relative_to(pod.rootfs)) for p in pod.rootfs.rglob("*")]
        if written:
            raise Failure(f"{pod.deployment}: wrote outside its volumes (readOnlyRootFilesystem): {written[:5]}")
        log("    wrote nothing outside its volumes")
    # The image ships X.cwasm with X.wasm beside it; the host compiles the .wasm, slowly and with
    # only a warning, when the precompiled code is unusable. In a pod that is a broken image.
    fallback = [line for line in logfile.read_text(errors="replace").splitlines() if "precompiled component unusable" in line]
    if fallback:
        raise Failure(f"{pod.deployment}: the precompiled component was not used, the host compiled the .wasm: {fallback[0][:300]}")
    if any(a.endswith(".cwasm") for a in pod.argv):
        log("    served the precompiled component (no .wasm fallback)")
    if pod.env.get("SKIFF_LOG_FORMAT") == "json":
        for line in logfile.read_text(errors="replace").splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    raise Failure(f"{pod.deployment}: SKIFF_LOG_FORMAT=json but a log line is not JSON: {line[:200]}")
        log("    every log line is JSON")


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overlays", nargs="*", default=["k8s/overlays/dev"], help="kustomize directories (default: k8s/overlays/dev)")
    ap.add_argument("--kubectl", default=os.environ.get("KUBECTL", "kubectl"))
    ap.add_argument("--counts", help="write 'passed failed skipped' to this file")
    args = ap.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    skiff = os.environ.get("SKIFF_BIN", str(target / "release" / "skiff"))
    components_dir = Path(os.environ.get("SKIFF_COMPONENTS_DIR", target / "wasm32-wasip2" / "release"))
    if not os.access(skiff, os.X_OK):
        log(f"{RED}FAIL{RESET} the skiff binary {skiff} is not built (cargo build --release -p skiff, or set SKIFF_BIN)")
        if args.counts:
            Path(args.counts).write_text("0 1 0\n")
        return 1

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="skiff-k8s-") as tmpdir:
        tmp = Path(tmpdir)
        dbs = Databases(tmp)
        pki = Certificates(tmp)
        log(f"binary {skiff}\ncomponents {components_dir}\ndatabase {dbs.describe()}")
        try:
            for overlay in args.overlays:
                overlay_path = Path(overlay) if Path(overlay).is_absolute() else REPO / overlay
                log(f"\n{BOLD}== {overlay}{RESET}")
                try:
                    cluster = Cluster(render(args.kubectl, overlay_path))
                except Failure as e:
                    results.append(Result(f"{overlay}: render", "FAIL", [str(e)]))
                    log(f"{RED}FAIL{RESET} {e}")
                    continue
                if not cluster.deployments:
                    results.append(Result(f"{overlay}", "FAIL", ["no Deployment rendered"]))
                    continue
                for dep in cluster.deployments:
                    for c in containers(dep):
                        label = f"{overlay_path.name}/{dep['metadata']['name']}/{c['name']}"
                        log(f"-- {label}")
                        try:
                            pod = prepare(cluster, dep, c, skiff, components_dir, dbs, tmp / overlay_path.name, pki)
                            if isinstance(pod, str):
                                log(f"{YELLOW}{BOLD}SKIPPED {label}: {pod}. Build it to test this Deployment.{RESET}")
                                results.append(Result(label, "SKIP", [pod]))
                                continue
                            for note in pod.notes:
                                log(f"    note: {note}")
                            logfile = tmp / f"{overlay_path.name}-{dep['metadata']['name']}.log"
                            try:
                                run_pod(pod, logfile, cluster, pki)
                            except Failure:
                                log("    --- last log lines ---")
                                for line in logfile.read_text(errors="replace").splitlines()[-20:]:
                                    log(f"    {line}")
                                raise
                            results.append(Result(label, "PASS"))
                            log(f"{GREEN}PASS{RESET} {label}")
                        except Failure as e:
                            results.append(Result(label, "FAIL", [str(e)]))
                            log(f"{RED}FAIL{RESET} {label}: {e}")
        finally:
            dbs.drop_all()

    passed = sum(r.status == "PASS" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    skipped = sum(r.status == "SKIP" for r in results)
    log("")
    for r in results:
        if r.status == "SKIP":
            log(f"{YELLOW}{BOLD}SKIPPED{RESET} {r.name}: {'; '.join(r.notes)}")
    if args.counts:
        Path(args.counts).write_text(f"{passed} {failed} {skipped}\n")
    log(f"conformance: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
