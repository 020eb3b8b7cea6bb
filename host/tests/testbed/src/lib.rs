//! A `wasi:http/proxy` component whose routes misbehave on purpose: the host's limit tests
//! use it to show that one bad request fails alone.
//!
//! - `/hello` answers at once; `/sleep?ms=N` waits N ms without using CPU.
//! - `/healthcheck` (also under `/testbed-ms/`) answers 200: the hot-swap smoke test calls it.
//! - `/spin` never returns; `/trap` panics; `/grow` allocates until memory runs out;
//!   `/recurse` overflows the stack; `/big?bytes=N` answers with N bytes.
//! - `/log` writes one record through `wasi:logging` (the component-logs test looks for it).
//! - `/count` answers how many requests this instance has counted, itself included: what one
//!   request leaves in memory, as the isolation tests see it. `/leak` keeps a resource open
//!   past its request (a header map), as a careless component might.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package skiff:testbed;
            world testbed {
                include wasi:http/proxy@0.2.12;
                import wasi:logging/logging;
            }
        ",
        path: "../../../wit",
        world: "skiff:testbed/testbed",
        generate_all,
    });

    use super::Testbed;
    export!(Testbed);
}

mod respond;

use std::sync::atomic::{AtomicU64, Ordering};

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::types::{Fields, IncomingRequest, ResponseOutparam};
use bindings::wasi::logging::logging::{self, Level};
use respond::respond;

struct Testbed;

/// Requests this instance has counted on `/count`.
static COUNTED: AtomicU64 = AtomicU64::new(0);

impl Guest for Testbed {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query.split_once('?').unwrap_or((&path_with_query, ""));
        let number = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match path {
            "/hello" | "/testbed/hello" => respond(out, 200, b"hello"),
            "/healthcheck" | "/testbed-ms/healthcheck" => respond(out, 200, b"ok"),
            "/sleep" => {
                monotonic_clock::subscribe_duration(number("ms") * 1_000_000).block();
                respond(out, 200, b"slept");
            }
            "/spin" => spin(),
            "/trap" => panic!("the testbed traps on purpose"),
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                }
            }
            "/recurse" => {
                let depth = recurse(u64::MAX);
                respond(out, 200, depth.to_string().as_bytes());
            }
            "/log" => {
                logging::log(Level::Warn, "testbed", "a record from inside the component");
                respond(out, 200, b"logged");
            }
            "/count" => {
                let count = COUNTED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(out, 200, count.to_string().as_bytes());
            }
            "/leak" => {
                std::mem::forget(Fields::new());
                respond(out, 200, b"leaked");
            }
            "/big" => respond(out, 200, &vec![b'x'; usize::try_from(number("bytes")).unwrap_or(0)]),
            _ => respond(out, 404, b"not found"),
        }
    }
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { std::hint::black_box(recurse(n - 1)) + 1 }
}
