#!/usr/bin/env python3
"""Releases survive `kubectl apply -k`: on a copy of k8s/, runs the documented release commands
(scripts/k8s-release) step by step and renders the overlay after each, checking what the next
`kubectl apply -k` would send: which pods each users Service selects, how many pods each track
or slot has, and that every pod's version label is its image tag.

    scripts/k8s_release_check.py KUBECTL

Prints one PASS/FAIL line per step; the last line counts them. Needs PyYAML.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def render(kubectl: str, overlay: Path) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def users_state(docs: list[dict]) -> dict:
    """{deployment: (tag, replicas, version label)} and {service: [deployments it selects]}."""
    deps = {}
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("users"):
            t = d["spec"]["template"]
            image = t["spec"]["containers"][0]["image"]
            deps[d["metadata"]["name"]] = (image.rpartition(":")[2], d["spec"].get("replicas"),
                                           t["metadata"]["labels"].get("app.kubernetes.io/version"), t["metadata"]["labels"])
    services = {}
    for d in docs:
        if d["kind"] == "Service" and d["metadata"]["name"] in ("users-cluster-ip-service", "users-node-port-service", "users-preview-service"):
            sel = d["spec"]["selector"]
            services[d["metadata"]["name"]] = sorted(n for n, v in deps.items() if all(v[3].get(k) == x for k, x in sel.items()))
    return {"deployments": {n: v[:3] for n, v in deps.items()}, "services": services}


def main() -> int:
    kubectl = sys.argv[1] if len(sys.argv) > 1 else "kubectl"
    passed = failed = 0

    def expect(step: str, got, want) -> None:
        nonlocal passed, failed
        if got == want:
            passed += 1
            print(f"PASS release {step}")
        else:
            failed += 1
            print(f"FAIL release {step}:\n  got  {got}\n  want {want}")

    with tempfile.TemporaryDirectory() as tmp:
        k8s = Path(tmp) / "k8s"
        shutil.copytree(REPO / "k8s", k8s)

        def release(*args: str) -> None:
            subprocess.run([sys.executable, str(REPO / "scripts" / "k8s-release"), "--k8s", str(k8s), *args],
                           check=True, capture_output=True, text=True)

        def state(overlay: str) -> dict:
            return users_state(render(kubectl, k8s / "overlays" / overlay))

        # ---- blue-green: as shipped, stage, switch, roll back, retire
        bg = lambda blue, green, live, idle: {  # noqa: E731
            "deployments": {"users-blue": (blue[0], blue[1], blue[0]), "users-green": (green[0], green[1], green[0])},
            "services": {"users-cluster-ip-service": [f"users-{live}"], "users-node-port-service": [f"users-{live}"],
                         "users-preview-service": [f"users-{idle}"]},
        }
        expect("blue-green as shipped: blue live (0.1.0), green staged (0.2.0)", state("blue-green"),
               bg(("0.1.0", 2), ("0.2.0", 2), "blue", "green"))
        release("blue-green", "switch")
        expect("blue-green switch: green live, blue behind the preview Service", state("blue-green"),
               bg(("0.1.0", 2), ("0.2.0", 2), "green", "blue"))
        release("blue-green", "switch")
        expect("blue-green switch again (roll back): blue live", state("blue-green"), bg(("0.1.0", 2), ("0.2.0", 2), "blue", "green"))
        release("blue-green", "switch")
        release("blue-green", "retire")
        expect("blue-green retire: the idle blue slot has 0 pods", state("blue-green"), bg(("0.1.0", 0), ("0.2.0", 2), "green", "blue"))
        release("blue-green", "stage", "0.3.0")
        expect("blue-green stage 0.3.0: into the idle blue slot, as many pods as green", state("blue-green"),
               bg(("0.3.0", 2), ("0.2.0", 2), "green", "blue"))

        # ---- canary: as shipped, abort, start, promote
        cn = lambda stable, canary: {  # noqa: E731
            "deployments": {"users": (stable[0], stable[1], stable[0]), "users-canary": (canary[0], canary[1], canary[0])},
            "services": {"users-cluster-ip-service": ["users", "users-canary"], "users-node-port-service": ["users", "users-canary"]},
        }
        expect("canary as shipped: 3 stable pods (0.1.0), 1 canary pod (0.2.0)", state("canary"), cn(("0.1.0", 3), ("0.2.0", 1)))
        release("canary", "abort")
        expect("canary abort: the canary has 0 pods", state("canary"), cn(("0.1.0", 3), ("0.2.0", 0)))
        release("canary", "start", "0.2.1", "3")
        expect("canary start 0.2.1 3: half the pods", state("canary"), cn(("0.1.0", 3), ("0.2.1", 3)))
        release("canary", "promote")
        expect("canary promote: stable runs 0.2.1, the canary 0 pods", state("canary"), cn(("0.2.1", 3), ("0.2.1", 0)))
        release("image", "canary", "users", "0.1.0")
        expect("canary roll back the stable tag (image canary users 0.1.0)", state("canary"), cn(("0.1.0", 3), ("0.2.1", 0)))

        # ---- rolling: production and dev image tags follow into the version label
        for overlay in ("production", "dev"):
            release("image", overlay, "users", "0.2.0")
            d = state(overlay)["deployments"]["users"]
            expect(f"{overlay} image users 0.2.0: image and version label", (d[0], d[2]), ("0.2.0", "0.2.0"))

    print(f"release: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
