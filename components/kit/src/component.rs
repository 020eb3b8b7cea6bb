//! What every component's `lib.rs` wrote again before: its WIT bindings, whose imports are the
//! kit's, its `wasi:http` export and its `skiff:sql/migrations` export. A component's `lib.rs`
//! names its world, its request handler and its migration files, and implements the rest of
//! its world's exports (notify's consumer) itself:
//!
//! ```text
//! service_kit::component!("skiff:service/http-service", Component, http: api::handle);
//! service_kit::migrations!(Component: "0001_create_users", "0002_add_role");
//!
//! struct Component;
//! ```
//!
//! Both are invoked at the root of a component crate that lives in `components/<name>` (beside
//! the kit, so the workspace's WIT is at `../../wit`) and depends on `wit-bindgen` and on the kit
//! as `service_kit`: the generated code names both crates by those paths.

/// Generates a component's bindings as the module `bindings`, exports `$component` (a type in
/// the same module) through them and implements its `wasi:http/incoming-handler` with
/// [`serve`](crate::wasi_http::serve) and `$handler` (a `fn(&Request) -> Response`). The world is
/// one of `wit/service.wit`'s service worlds: `skiff:service/http-service`,
/// `skiff:service/publishing-service` or `skiff:service/consuming-service`.
///
/// Only the exports are generated: every import is mapped to the kit's
/// [`bindings`](crate::bindings) with wit-bindgen's `with`, so the kit's functions and the
/// component's exports share one set of types. wit-bindgen takes a `with` entry per interface
/// (its full name: no package-wide or wildcard keys) and refuses an entry the world does not
/// import, so the map follows the world: the messaging interfaces differ between the three,
/// and a world this macro does not know is a compile error until it gets its arm here.
#[macro_export]
macro_rules! component {
    ("skiff:service/http-service", $component:ident, http: $handler:path) => {
        $crate::__component!("skiff:service/http-service", $component, $handler, {});
    };
    ("skiff:service/publishing-service", $component:ident, http: $handler:path) => {
        $crate::__component!("skiff:service/publishing-service", $component, $handler, {
            "skiff:messaging/producer@0.3.0": service_kit::bindings::skiff::messaging::producer,
            "skiff:messaging/types@0.3.0": service_kit::bindings::skiff::messaging::types,
        });
    };
    ("skiff:service/consuming-service", $component:ident, http: $handler:path) => {
        $crate::__component!("skiff:service/consuming-service", $component, $handler, {
            "skiff:messaging/types@0.3.0": service_kit::bindings::skiff::messaging::types,
        });
    };
    ($world:literal, $component:ident, http: $handler:path) => {
        ::core::compile_error!(::core::concat!(
            "service_kit::component! does not know the world ",
            $world,
            ": give it an arm with the `with` entries of the messaging interfaces it imports"
        ));
    };
}

/// [`component!`] for one world, given the `with` entries of the messaging interfaces it
/// imports (the rest is the same for every service world).
#[doc(hidden)]
#[macro_export]
macro_rules! __component {
    ($world:tt, $component:ident, $handler:path, { $($messaging:tt)* }) => {
        // The generated canonical-ABI glue is the only unsafe code in the component. rustc does
        // not report lints in code expanded from another crate's macro, so `deny(unsafe_code)`
        // would pass without this `allow` too; it stays to say where unsafe code is allowed.
        #[allow(unsafe_code)]
        mod bindings {
            // Only the exports are generated here; every import is the kit's, so the kit's
            // functions and these exports share one set of types. The paths are spelled
            // `service_kit::…`, not `$crate::…`: wit-bindgen re-parses them from text.
            wit_bindgen::generate!({
                world: $world,
                path: "../../wit",
                with: {
                    "wasi:cli/stderr@0.2.12": service_kit::bindings::wasi::cli::stderr,
                    "wasi:cli/stdin@0.2.12": service_kit::bindings::wasi::cli::stdin,
                    "wasi:cli/stdout@0.2.12": service_kit::bindings::wasi::cli::stdout,
                    "wasi:clocks/monotonic-clock@0.2.12": service_kit::bindings::wasi::clocks::monotonic_clock,
                    "wasi:clocks/wall-clock@0.2.12": service_kit::bindings::wasi::clocks::wall_clock,
                    "wasi:config/store@0.2.0-rc.1": service_kit::bindings::wasi::config::store,
                    "wasi:logging/logging": service_kit::bindings::wasi::logging::logging,
                    "wasi:http/outgoing-handler@0.2.12": service_kit::bindings::wasi::http::outgoing_handler,
                    "wasi:http/types@0.2.12": service_kit::bindings::wasi::http::types,
                    "wasi:io/error@0.2.12": service_kit::bindings::wasi::io::error,
                    "wasi:io/poll@0.2.12": service_kit::bindings::wasi::io::poll,
                    "wasi:io/streams@0.2.12": service_kit::bindings::wasi::io::streams,
                    "wasi:random/random@0.2.12": service_kit::bindings::wasi::random::random,
                    "skiff:request/context@0.1.0": service_kit::bindings::skiff::request::context,
                    "skiff:crypto/issuing@0.1.0": service_kit::bindings::skiff::crypto::issuing,
                    "skiff:crypto/passwords@0.1.0": service_kit::bindings::skiff::crypto::passwords,
                    "skiff:crypto/tokens@0.1.0": service_kit::bindings::skiff::crypto::tokens,
                    "skiff:sql/client@0.2.0": service_kit::bindings::skiff::sql::client,
                    "skiff:sql/types@0.2.0": service_kit::bindings::skiff::sql::types,
                    $($messaging)*
                },
            });

            use super::$component;
            export!($component);
        }

        impl bindings::exports::wasi::http::incoming_handler::Guest for $component {
            fn handle(
                request: bindings::exports::wasi::http::incoming_handler::IncomingRequest,
                response_out: bindings::exports::wasi::http::incoming_handler::ResponseOutparam,
            ) {
                $crate::wasi_http::serve(request, response_out, $handler);
            }
        }
    };
}

/// Implements `skiff:sql/migrations` for `$component`, with one migration a file stem, in the
/// order given: the SQL is `migrations/<stem>.sql` in the component's crate, the version the
/// stem's leading number and the name the rest (`"0002_add_role"` is version 2, `add_role`).
/// A stem of another shape is a compile error that names it. Invoked beside the `bindings` module
/// of [`component!`].
#[macro_export]
macro_rules! migrations {
    ($component:ident: $($stem:literal),+ $(,)?) => {
        impl bindings::exports::skiff::sql::migrations::Guest for $component {
            fn all() -> ::std::vec::Vec<bindings::exports::skiff::sql::migrations::Migration> {
                ::std::vec![$({
                    const VERSION_AND_NAME: (u32, &str) = match $crate::component::split_migration_stem($stem) {
                        ::core::option::Option::Some(split) => split,
                        ::core::option::Option::None => ::core::panic!(::core::concat!(
                            "migration file stem `",
                            $stem,
                            "`: expected its version, an underscore and its name, as in `0001_create_users`"
                        )),
                    };
                    bindings::exports::skiff::sql::migrations::Migration {
                        version: VERSION_AND_NAME.0,
                        name: VERSION_AND_NAME.1.into(),
                        sql: ::core::include_str!(::core::concat!(
                            ::core::env!("CARGO_MANIFEST_DIR"),
                            "/migrations/",
                            $stem,
                            ".sql"
                        ))
                        .into(),
                    }
                }),+]
            }
        }
    };
}

/// Splits a migration file's stem into its version and name: `0003_refresh_tokens` is
/// `(3, "refresh_tokens")`. `None` unless the stem is one or more ASCII digits (a `u32`), an
/// underscore and a name that is not empty. A `const fn`, so [`migrations!`] checks
/// its stems when the component compiles.
pub const fn split_migration_stem(stem: &str) -> Option<(u32, &str)> {
    let bytes = stem.as_bytes();
    let mut version: u32 = 0;
    let mut digits = 0;
    while digits < bytes.len() && bytes[digits].is_ascii_digit() {
        version = match version.checked_mul(10) {
            Some(tens) => match tens.checked_add((bytes[digits] - b'0') as u32) {
                Some(next) => next,
                None => return None,
            },
            None => return None,
        };
        digits += 1;
    }
    if digits == 0 || digits + 1 >= bytes.len() || bytes[digits] != b'_' {
        return None;
    }
    Some((version, stem.split_at(digits + 1).1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stem_is_a_version_and_a_name() {
        assert_eq!(split_migration_stem("0001_create_users"), Some((1, "create_users")));
        assert_eq!(split_migration_stem("0004_password_changed_at"), Some((4, "password_changed_at")));
        assert_eq!(split_migration_stem("12_x"), Some((12, "x")));
        assert_eq!(split_migration_stem("4294967295_max"), Some((u32::MAX, "max")));
    }

    #[test]
    fn malformed_stems_have_no_version() {
        for stem in ["", "create_users", "_create_users", "0001", "0001_", "0001create", "0001-create", "4294967296_x"]
        {
            assert_eq!(split_migration_stem(stem), None, "{stem}");
        }
    }

    #[test]
    fn the_split_runs_at_compile_time() {
        const SPLIT: Option<(u32, &str)> = split_migration_stem("0002_add_role");
        assert_eq!(SPLIT, Some((2, "add_role")));
    }
}
