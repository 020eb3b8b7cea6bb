//! What the wasm side of a request costs, without a network: `instantiate` is the
//! instantiation alone (store ready, `InstancePre` instantiated, nothing called);
//! `request` is the whole per-request path skiff runs for each HTTP request — host state, store,
//! instance, the `wasi:http` handler call and the response body — through `Service::handle`
//! and `into_response`, the same functions the listener calls. With `--fresh`, every request
//! gets a new instance; by default warm instances are reused, as `skiff serve` does.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use skiff::launch::{Host, HostSpec, ServiceSpec, sqlite_url};
use skiff::server::into_response;
use skiff::service::{Isolation, Service};
use skiff_bench::Percentiles;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// A `wasi:http` component (the benchmark's hello), `.wasm` or precompiled `.cwasm`.
    #[arg(long)]
    component: PathBuf,
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// The route each request asks for; it must answer 200.
    #[arg(long, default_value = "/")]
    path: String,
    /// The body the route must answer with, if given.
    #[arg(long)]
    expect_body: Option<String>,
    /// A new instance for every request (`--isolation fresh`) instead of reused warm ones.
    #[arg(long)]
    fresh: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    // The service as a host loads it, with the host's defaults; its listener is never served.
    let hello = ServiceSpec {
        name: "hello".into(),
        component: args.component.clone(),
        version_label: None,
        database_url: sqlite_url(&data, "bench"),
    };
    let mut spec = HostSpec::with_services("127.0.0.1:0".parse()?, vec![hello], data.clone());
    spec.isolation = if args.fresh { Isolation::Fresh } else { Isolation::default() };
    let host = Host::build(spec).await?;
    let service = host.services().next().cloned().ok_or_else(|| anyhow::anyhow!("the host loaded no service"))?;

    // On a runtime worker, as the listener's connection tasks run, not on the main thread.
    let (iterations, probe) = (args.iterations, Probe { path: args.path, expect_body: args.expect_body });
    let (mut instantiate, mut whole) =
        tokio::spawn(async move { measure(&service, &probe, iterations).await }).await??;
    std::fs::remove_dir_all(&data)?;
    let report = serde_json::json!({
        "iterations": iterations,
        "isolation": if args.fresh { "fresh" } else { "reuse" },
        "instantiate": Percentiles::of(&mut instantiate),
        "request": Percentiles::of(&mut whole),
    });
    println!("{report}");
    Ok(())
}

/// What each request asks for, and the answer it must get.
struct Probe {
    path: String,
    expect_body: Option<String>,
}

async fn measure(
    service: &Arc<Service>,
    probe: &Probe,
    iterations: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    // Warm up: the pool's slots, the allocator, the branch predictors.
    for _ in 0..iterations / 10 {
        service.requests().measure_instantiation().await?;
        request(service, probe).await?;
    }
    let mut instantiate = Vec::with_capacity(iterations);
    let mut whole = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        instantiate.push(service.requests().measure_instantiation().await?);
        let started = Instant::now();
        request(service, probe).await?;
        whole.push(started.elapsed());
    }
    Ok((instantiate, whole))
}

async fn request(service: &Arc<Service>, probe: &Probe) -> anyhow::Result<()> {
    let request = http::Request::get(format!("http://localhost{}", probe.path))
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = into_response(service.handle(request).await);
    anyhow::ensure!(response.status() == 200, "the component answered {} to {}", response.status(), probe.path);
    let body = response.into_body().collect().await.map_err(|e| anyhow::anyhow!("{e:?}"))?.to_bytes();
    if let Some(expected) = &probe.expect_body {
        anyhow::ensure!(body == expected.as_bytes(), "unexpected body {body:?}");
    }
    Ok(())
}
