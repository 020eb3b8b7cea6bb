//! Login → notification latency: logs in through auth, one login at a time, and waits for
//! notify's webhook request for that login. `latency` counts from sending the login (so it
//! includes the bcrypt check), `after_answer` from auth's answer. Each login carries its own `User-Agent`, which
//! notify puts in the notification's message, so a webhook is matched to its login even when
//! one arrives late or twice. With several `--login-url`s (auth replicas), logins take turns
//! among them; `duplicates` counts webhook requests beyond the first for a login.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use skiff_bench::Percentiles;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// auth's login URL, e.g. http://127.0.0.1:4001/auth-ms/auth/login; repeat for replicas.
    #[arg(long, required = true)]
    login_url: Vec<String>,
    /// Where to receive notify's webhook requests (its `webhook_url` points here).
    #[arg(long)]
    webhook_listen: SocketAddr,
    #[arg(long)]
    email: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Logins before measuring: connections, caches, JIT-free but cold paths.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
}

/// Arrival times of webhook requests, by the login's tag.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashMap<String, Instant>>,
    /// Webhook requests for a login already seen.
    duplicates: Mutex<usize>,
    changed: Notify,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let arrivals = Arc::new(Arrivals::default());
    let app = Router::new().route("/webhook", post(webhook)).with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind(args.webhook_listen).await?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let body = serde_json::json!({"email": args.email, "password": args.password}).to_string();
    // From sending the login (bcrypt included), and from its answer (the event is committed).
    let (mut from_request, mut from_answer) = (Vec::with_capacity(args.count), Vec::with_capacity(args.count));
    for index in 0..args.warmup + args.count {
        let tag = format!("skiff-bench-login-{index}");
        let started = Instant::now();
        let response = client
            .post(&args.login_url[index % args.login_url.len()])
            .header("content-type", "application/json")
            .header("user-agent", &tag)
            .body(body.clone())
            .send()
            .await?;
        let answered = Instant::now();
        anyhow::ensure!(response.status() == 200, "login {index} answered {}", response.status());
        let arrived = wait_for(&arrivals, &tag, Duration::from_secs(10)).await?;
        if index >= args.warmup {
            from_request.push(arrived - started);
            from_answer.push(arrived.saturating_duration_since(answered));
        }
    }
    // Late copies would arrive shortly after their login: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let duplicates = arrivals.duplicates.lock().map(|d| *d).unwrap_or_default();
    let report = serde_json::json!({
        "logins": args.count,
        "auth_replicas": args.login_url.len(),
        "duplicates": duplicates,
        "latency": Percentiles::of(&mut from_request),
        "after_answer": Percentiles::of(&mut from_answer),
    });
    println!("{report}");
    Ok(())
}

async fn webhook(State(arrivals): State<Arc<Arrivals>>, body: String) -> StatusCode {
    let now = Instant::now();
    let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let text = message["message"].as_str().unwrap_or_default();
    if let Some(start) = text.find("skiff-bench-login-") {
        let tag: String = text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if let Ok(mut seen) = arrivals.seen.lock() {
            match seen.entry(tag) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    if let Ok(mut duplicates) = arrivals.duplicates.lock() {
                        *duplicates += 1;
                    }
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(now);
                }
            }
        }
        arrivals.changed.notify_waiters();
    }
    StatusCode::OK
}

async fn wait_for(arrivals: &Arrivals, tag: &str, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Registered before the check, so a webhook between the check and the wait still wakes us.
        let changed = arrivals.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Some(at) = arrivals.seen.lock().ok().and_then(|seen| seen.get(tag).copied()) {
            return Ok(at);
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            anyhow::bail!("no notification for {tag} within {} s", timeout.as_secs());
        }
    }
}
