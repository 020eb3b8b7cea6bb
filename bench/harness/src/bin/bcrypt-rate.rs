//! The native baseline of logins per second: how many bcrypt verifications this machine's
//! cores do per second at the users component's cost, one thread per core, natively.

use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The bcrypt cost, as the users component's `bcrypt_cost`.
    #[arg(long, default_value_t = 10)]
    cost: u32,
    /// Threads verifying at once; defaults to the number of cores.
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let password = "correct horse battery staple";
    let hash = bcrypt::hash(password, args.cost)?;
    let verified = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    // A wrong result would mean the benchmark measures nothing: stop loudly.
                    assert!(bcrypt::verify(password, &hash).unwrap_or(false), "bcrypt verify failed");
                    verified.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let count = verified.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "cost": args.cost,
        "threads": threads,
        "verifications": count,
        "seconds": elapsed,
        "verifications_per_sec": count as f64 / elapsed,
    });
    println!("{report}");
    Ok(())
}
