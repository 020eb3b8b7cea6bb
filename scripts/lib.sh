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
