"""Every skiff metric the alerts, their tests and the Grafana dashboard name is one the host
registers (host/src/metrics.rs), so a renamed metric cannot leave an alert that never fires
or a panel that stays empty. Counters are exposed with `_total`, histograms with `_bucket`,
`_sum` and `_count`; the registry adds the `skiff_` prefix."""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MONITORING = ROOT / "k8s/components/monitoring"
SOURCES = [
    MONITORING / "prometheus-rule.yaml",
    MONITORING / "grafana-dashboard.json",
    *sorted((MONITORING / "tests").glob("*.test.yaml")),
]
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")


def registered() -> set[str]:
    source = (ROOT / "host/src/metrics.rs").read_text()
    names = re.findall(r'register\(\s*"([a-z0-9_]+)"', source)
    if not names:
        sys.exit("k8s_monitoring_check: no registry.register(\"…\") calls found in host/src/metrics.rs")
    return {f"skiff_{name}{suffix}" for name in names for suffix in SUFFIXES}


def main() -> int:
    known = registered()
    unknown = []
    used = set()
    for path in SOURCES:
        for name in set(re.findall(r"\bskiff_[a-z0-9_]+", path.read_text())):
            used.add(name)
            if name not in known:
                unknown.append(f"{path.relative_to(ROOT)}: {name}")
    if unknown:
        print("metrics the host does not register:\n  " + "\n  ".join(sorted(unknown)))
        return 1
    print(f"k8s_monitoring_check: {len(used)} metric names in the alerts, their tests and the dashboard, all registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
