# Shared by scripts/dev and scripts/test: one target folder, the pinned toolchain, the builds.

# CI may keep the target folder outside the clone; everyone else gets ./target.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# The components `skiff dev` serves.
COMPONENTS=(users auth notify)

ensure_toolchain() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
        exit 1
    fi
    # Installs the toolchain, wasm32-wasip2 target and components pinned in rust-toolchain.toml.
    rustup toolchain install >/dev/null
}

build_components() {
    local packages=()
    for component in "${COMPONENTS[@]}"; do packages+=(-p "$component"); done
    cargo build --release --target wasm32-wasip2 "${packages[@]}"
}

build_host() {
    cargo build --release -p skiff
}

# Stage times for scripts/test. `stage NAME` ends the stage before and starts NAME;
# `stage_report` (on exit, failed or not) prints each stage's time against its budget from the
# table in docs/testing.md, the one place budgets are written, and warns of a stage over it. A
# budget is a warning, never a failure.
STAGE_NAMES=()
STAGE_SECONDS=()
STAGE_CURRENT=""
STAGE_STARTED=0

stage() {
    stage_end
    STAGE_CURRENT="$1"
    STAGE_STARTED=$SECONDS
    echo "== $1"
}

stage_end() {
    if [ -n "$STAGE_CURRENT" ]; then
        STAGE_NAMES+=("$STAGE_CURRENT")
        STAGE_SECONDS+=($((SECONDS - STAGE_STARTED)))
        STAGE_CURRENT=""
    fi
}

# The budget of stage $1 in seconds, from the row `| `$1` | … | N min |` of docs/testing.md.
stage_budget() {
    awk -F'|' -v name="\`$1\`" '
        { gsub(/^ +| +$/, "", $2) }
        $2 == name { budget = $(NF - 1); gsub(/[^0-9]/, "", budget); print budget * 60; exit }
    ' "${STAGE_BUDGETS:-docs/testing.md}"
}

stage_report() {
    stage_end
    [ ${#STAGE_NAMES[@]} -gt 0 ] || return 0
    local total=0 over=0 i name took budget mark
    echo "== stage times (budgets: docs/testing.md)"
    for i in "${!STAGE_NAMES[@]}"; do
        name="${STAGE_NAMES[$i]}"
        took="${STAGE_SECONDS[$i]}"
        total=$((total + took))
        budget="$(stage_budget "$name")"
        mark=""
        if [ -z "$budget" ]; then
            mark="  (no budget)"
        elif [ "$took" -gt "$budget" ]; then
            mark="  WARNING: over its budget of $((budget / 60)) min"
            over=$((over + 1))
        fi
        printf '  %-28s %4d min %02d s%s\n' "$name" $((took / 60)) $((took % 60)) "$mark"
    done
    printf '  %-28s %4d min %02d s\n' "total" $((total / 60)) $((total % 60))
    if [ "$over" -gt 0 ]; then
        echo "warning: $over stage(s) over budget (a warning only; see docs/testing.md)" >&2
    fi
}
