#!/usr/bin/env python3
"""Strict schema checks for the custom resources the manifests use, with the schemas of the
operator versions the docs pin (kubernetes-validate knows only Kubernetes' own kinds).

    scripts/crd_schemas.py extract SOURCE CRD.yaml...   write k8s/schemas/<group>_<kind>_<version>.json
    scripts/crd_schemas.py validate RENDERED.yaml...     validate every custom resource found

`extract` keeps each served version's openAPIV3Schema without its descriptions, and records
SOURCE (operator and version) in the file. `validate` checks every object whose apiVersion
and kind have a schema there, strictly: an object schema that lists properties and does not
say x-kubernetes-preserve-unknown-fields accepts no other field (so a misspelt field fails,
where the API server would drop it silently). A custom resource without a schema fails.
Prints one PASS/FAIL line per object; the last line counts them. Needs PyYAML and jsonschema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

SCHEMAS = Path(__file__).resolve().parent.parent / "k8s" / "schemas"
CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
               "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io"}


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def strict(node):
    """additionalProperties: false wherever the schema lists its properties."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def extract(source: str, files: list[str]) -> int:
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for f in files:
        for crd in yaml.safe_load_all(open(f)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if not v.get("served"):
                    continue
                out = SCHEMAS / f"{group}_{kind}_{v['name']}.json"
                schema = strip(v["schema"]["openAPIV3Schema"])
                out.write_text(json.dumps({"source": source, "schema": schema}, sort_keys=True, separators=(",", ":")) + "\n")
                print(f"wrote {out.relative_to(SCHEMAS.parent.parent)} ({source})")
    return 0


def validate(files: list[str]) -> int:
    import jsonschema

    passed = failed = 0
    for f in files:
        overlay = Path(f).stem
        for d in yaml.safe_load_all(open(f)):
            if not d:
                continue
            group, _, version = d["apiVersion"].rpartition("/")
            if group in CORE_GROUPS:
                continue
            name = f"{overlay}: {d['kind']} {d['metadata']['name']} ({d['apiVersion']})"
            path = SCHEMAS / f"{group}_{d['kind']}_{version}.json"
            if not path.is_file():
                print(f"FAIL crd-schema {name}: no schema in {path.parent} (scripts/crd_schemas.py extract)")
                failed += 1
                continue
            stored = json.loads(path.read_text())
            errors = sorted(jsonschema.Draft7Validator(strict(stored["schema"])).iter_errors(d), key=lambda e: list(e.path))
            if errors:
                failed += 1
                print(f"FAIL crd-schema {name} against {stored['source']}:")
                for e in errors[:5]:
                    print(f"    {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message[:300]}")
            else:
                passed += 1
                print(f"PASS crd-schema {name} against {stored['source']}")
    print(f"crd-schema: {passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "extract":
        return extract(argv[1], argv[2:])
    if len(argv) >= 2 and argv[0] == "validate":
        return validate(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
