//! What the wasm side of a request costs, without a network: `instantiate` is the
//! instantiation alone (store ready, `InstancePre` instantiated, nothing called);
//! `request` is the whole per-request path skiff runs for each HTTP request — host state, store,
//! instance, the `wasi:http` handler call and the response body — through `Service::handle`,
//! the same function the listener calls.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use skiff::capability::config::ComponentConfig;
use skiff::capability::crypto::Crypto;
use skiff::capability::outbound_http::OutboundPolicy;
use skiff::capability::sql::{Database, DatabaseOptions};
use skiff::runtime::{Capabilities, Runtime, RuntimeOptions};
use skiff::server::metrics::Metrics;
use skiff::service::{RequestLimits, Service, ServiceContext, SwapOptions};
use skiff_bench::Percentiles;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let sql = Database::connect(&format!("sqlite://{}/bench.db", data.display()), &DatabaseOptions::default()).await?;
    let ctx = ServiceContext {
        runtime: runtime.clone(),
        capabilities: Capabilities {
            sql,
            config: ComponentConfig::from_pairs(Vec::new()),
            crypto: Arc::new(Crypto::new(&[], Crypto::bcrypt_pool())),
            outbox: None,
            outbound: Arc::new(OutboundPolicy::new(Vec::new(), Vec::new())),
        },
        limits: RequestLimits::default(),
        instances: Arc::new(Semaphore::new(RuntimeOptions::default().max_instances as usize)),
        metrics: Arc::new(Metrics::default()),
        swap: SwapOptions::default(),
    };
    let bytes = std::fs::read(&args.component)?;
    let service = Arc::new(Service::load("hello", bytes, None, ctx).await?);

    // On a runtime worker, as the listener's connection tasks run, not on the main thread.
    let (iterations, probe) = (args.iterations, Probe { path: args.path, expect_body: args.expect_body });
    let (mut instantiate, mut whole) =
        tokio::spawn(async move { measure(&service, &probe, iterations).await }).await??;
    std::fs::remove_dir_all(&data)?;
    let report = serde_json::json!({
        "iterations": iterations,
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
        service.measure_instantiation().await?;
        request(service, probe).await?;
    }
    let mut instantiate = Vec::with_capacity(iterations);
    let mut whole = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        instantiate.push(service.measure_instantiation().await?);
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
    let response = service.handle(request).await;
    anyhow::ensure!(response.status() == 200, "the component answered {} to {}", response.status(), probe.path);
    let body = response.into_body().collect().await.map_err(|e| anyhow::anyhow!("{e:?}"))?.to_bytes();
    if let Some(expected) = &probe.expect_body {
        anyhow::ensure!(body == expected.as_bytes(), "unexpected body {body:?}");
    }
    Ok(())
}
