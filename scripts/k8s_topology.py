#!/usr/bin/env python3
"""The original's database topology, per service, in every rendered overlay.

    scripts/k8s_topology.py RENDERED.yaml...     (the output of `kubectl kustomize` per overlay)

For each service S of users, auth and notify:
  * S's database is reached at S-db-cluster-ip-service:5432: a Service of that name whose
    selector finds a workload labelled app.kubernetes.io/name=S-db with a 5432 port, one
    replica, mounting the pre-defined claim S-db-persistent-volume-claim (ReadWriteOncePod);
    or a CloudNativePG Cluster S-db whose managed rw service has that name, whose pods carry
    that label and whose claims are ReadWriteOncePod;
  * a NetworkPolicy lets S's pods reach S-db on 5432 and no rule lets any other pod of the
    namespace in (rules for the Cluster's own instances and the operator's namespace aside,
    and, in dev only, the node-port rule);
  * where the overlay renders S's database URL (dev's generated Secrets), its host is
    S-db-cluster-ip-service and its database is S;
  * dev: S-db also has a NodePort Service;
  * every skiff container's memory limit holds the host plus the instance pool at its largest,
    64 MiB + (SKIFF_MAX_INSTANCES + SKIFF_MAX_WARM_INSTANCES + 16) x SKIFF_MAX_MEMORY_MB
    (SKIFF_MAX_WARM_INSTANCES defaults to SKIFF_MAX_INSTANCES, as in the host);
  * every overlay: users answers on NodePort 30400, except production.
Prints one PASS/FAIL line per overlay and check; the last line counts them. Needs PyYAML.
"""

from __future__ import annotations

import base64
import sys
import urllib.parse
from pathlib import Path

import yaml

SERVICES = ("users", "auth", "notify")
# The host's own resident memory counted per pod (measured: ~36 MiB idle and ~44 MiB after 64
# concurrent sign-ups, users on SQLite), and the pool slots the host adds to
# SKIFF_MAX_INSTANCES and SKIFF_MAX_WARM_INSTANCES for smoke tests and migrations
# (host/src/runtime/mod.rs, pooling()).
HOST_BASELINE_MIB = 64
EXTRA_POOL_SLOTS = 16


def mebibytes(quantity: str) -> int:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1000 / 1048576, "M": 1e6 / 1048576, "G": 1e9 / 1048576}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(int(quantity) / 1048576)
OPERATOR_NAMESPACE_RULE = {"kubernetes.io/metadata.name": "cnpg-system"}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_selector_matches(sel: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for e in sel.get("matchExpressions") or []:
        value = labels.get(e["key"])
        if e["operator"] == "In" and value not in e["values"]:
            return False
        if e["operator"] == "NotIn" and value in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
        if e["operator"] == "DoesNotExist" and e["key"] in labels:
            return False
    return True


def check_overlay(name: str, docs: list[dict]) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str]] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
    claims = {d["metadata"]["name"]: d for d in by_kind.get("PersistentVolumeClaim", [])}
    clusters = {d["metadata"]["name"]: d for d in by_kind.get("Cluster", []) if d["apiVersion"].startswith("postgresql.cnpg.io/")}
    workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])
    policies = by_kind.get("NetworkPolicy", [])
    secrets = {}
    for d in by_kind.get("Secret", []):
        data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
        data.update(d.get("stringData") or {})
        secrets[d["metadata"]["name"]] = data

    def check(ok: bool, what: str) -> None:
        results.append((ok, f"{name}: {what}"))

    for s in SERVICES:
        db, svc_name, claim_name = f"{s}-db", f"{s}-db-cluster-ip-service", f"{s}-db-persistent-volume-claim"
        db_labels = {"app.kubernetes.io/name": db}
        if db in clusters:
            c = clusters[db]["spec"]
            additional = ((c.get("managed") or {}).get("services") or {}).get("additional") or []
            rw_names = [a["serviceTemplate"]["metadata"]["name"] for a in additional if a.get("selectorType") == "rw"]
            labels = ((c.get("inheritedMetadata") or {}).get("labels") or {})
            modes = (((c.get("storage") or {}).get("pvcTemplate") or {}).get("accessModes")) or []
            initdb = ((c.get("bootstrap") or {}).get("initdb") or {})
            check(svc_name in rw_names and svc_name not in services,
                  f"{db} is a CloudNativePG Cluster whose primary is served as {svc_name}")
            check(labels.get("app.kubernetes.io/name") == db, f"{db}'s instances are labelled app.kubernetes.io/name={db}")
            check(modes == ["ReadWriteOncePod"], f"{db}'s claims are ReadWriteOncePod (found {modes})")
            check(initdb.get("database") == s and initdb.get("owner") == s, f"{db} creates database {s} owned by role {s}")
        else:
            svc = services.get(svc_name)
            check(svc is not None and any(p["port"] == 5432 for p in svc["spec"]["ports"]), f"Service {svc_name} serves 5432")
            found = [w for w in workloads if svc and selects(svc["spec"].get("selector") or {}, w["spec"]["template"]["metadata"].get("labels") or {})]
            check(len(found) == 1 and found[0]["metadata"]["name"] == db and found[0]["kind"] == "StatefulSet",
                  f"{svc_name} selects exactly the StatefulSet {db} (found {[w['metadata']['name'] for w in found]})")
            if len(found) == 1:
                w = found[0]
                tmpl = w["spec"]["template"]
                ports = [p["containerPort"] for c in tmpl["spec"]["containers"] for p in c.get("ports") or []]
                check((tmpl["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == db, f"{db}'s pods are labelled {db}")
                check(w["spec"].get("replicas") == 1 and 5432 in ports, f"{db} runs one replica with port 5432")
                claim_refs = [v["persistentVolumeClaim"]["claimName"] for v in tmpl["spec"].get("volumes") or [] if "persistentVolumeClaim" in v]
                check(claim_refs == [claim_name] and not w["spec"].get("volumeClaimTemplates"),
                      f"{db} mounts the pre-defined claim {claim_name} (found {claim_refs})")
            claim = claims.get(claim_name)
            check(claim is not None and claim["spec"].get("accessModes") == ["ReadWriteOncePod"],
                  f"claim {claim_name} exists and is ReadWriteOncePod")

        # Network policy: s's pods in, no other pod of the namespace.
        allowed_from_service = False
        others: list[str] = []
        for p in policies:
            if not pod_selector_matches(p["spec"].get("podSelector") or {}, {**db_labels, "cnpg.io/cluster": db} if db in clusters else db_labels):
                continue
            for rule in p["spec"].get("ingress") or []:
                ports = [x.get("port") for x in rule.get("ports") or []]
                if ports and 5432 not in ports:
                    continue
                for peer in rule.get("from") or [{}]:
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        sel = peer["podSelector"]
                        if sel == {"matchLabels": {"app.kubernetes.io/name": s}}:
                            allowed_from_service = True
                        elif db in clusters and sel == {"matchLabels": {"cnpg.io/cluster": db}}:
                            pass  # replication between the Cluster's own instances
                        else:
                            others.append(f"{p['metadata']['name']}: pods {sel}")
                    elif peer.get("namespaceSelector", {}).get("matchLabels") == OPERATOR_NAMESPACE_RULE and db in clusters:
                        pass  # the operator
                    elif name == "dev" and p["metadata"]["name"] == "databases-from-node-ports":
                        pass  # dev's node ports, on purpose
                    else:
                        others.append(f"{p['metadata']['name']}: {peer or 'everyone'}")
        check(allowed_from_service and not others,
              f"only {s} pods reach {db}:5432" + (f" (also: {others})" if others else "" if allowed_from_service else " (no rule lets them)"))

        # The database URL, where the overlay renders it.
        url = (secrets.get(f"{s}-secrets") or {}).get("database-url")
        if url is not None:
            u = urllib.parse.urlsplit(url)
            check(u.hostname == svc_name and u.port == 5432 and u.path == f"/{s}",
                  f"{s}'s database URL names {svc_name}:5432/{s} (found {u.hostname}:{u.port}{u.path})")

        if name == "dev":
            np = [d for d in services.values() if d["spec"].get("type") == "NodePort" and selects(d["spec"].get("selector") or {}, db_labels)]
            check(len(np) == 1, f"{db} has a NodePort Service")

    # Memory: every skiff container's limit holds the host plus the instance pool at its largest.
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    for w in by_kind.get("Deployment", []):
        for c in w["spec"]["template"]["spec"]["containers"]:
            if not c.get("image", "").startswith("registry.example/skiff-"):
                continue
            env = {}
            for src in c.get("envFrom") or []:
                env.update(configmaps.get((src.get("configMapRef") or {}).get("name"), {}))
            env.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
            instances = int(env.get("SKIFF_MAX_INSTANCES", 64))
            warm = int(env.get("SKIFF_MAX_WARM_INSTANCES", instances))
            per_instance = int(env.get("SKIFF_MAX_MEMORY_MB", 64))
            need = HOST_BASELINE_MIB + (instances + warm + EXTRA_POOL_SLOTS) * per_instance
            limit = mebibytes(((c.get("resources") or {}).get("limits") or {}).get("memory", "0"))
            check(limit >= need, f"{w['metadata']['name']}: memory limit {limit} MiB >= {HOST_BASELINE_MIB} + "
                                 f"({instances} + {warm} + {EXTRA_POOL_SLOTS}) x {per_instance} = {need} MiB")

    if name != "production":
        np = [d for d in services.values() if d["spec"].get("type") == "NodePort"
              and (d["spec"].get("selector") or {}).get("app.kubernetes.io/name") == "users"
              and any(p.get("nodePort") == 30400 for p in d["spec"]["ports"])]
        check(len(np) == 1, "users answers on NodePort 30400")
    return results


def main() -> int:
    passed = failed = 0
    for path in sys.argv[1:]:
        name = Path(path).stem
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        for ok, what in check_overlay(name, docs):
            print(f"{'PASS' if ok else 'FAIL'} topology {what}")
            passed += ok
            failed += not ok
    print(f"topology: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
