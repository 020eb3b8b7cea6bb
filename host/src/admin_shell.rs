//! `skiff swap`, `rollback`, `promote`, `canary` and `versions`: the admin API from a shell.

use http::Method;
use serde_json::{Value, json};

use crate::admin::client::AdminClient;
use crate::cli::{AdminCommand, CanaryArgs, GrantArgs, ReleaseCommand, SwapArgs};

/// Runs one admin command and prints its outcome.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    let (target, action) = match &command {
        AdminCommand::Swap(args) => (&args.target, "swap"),
        AdminCommand::Rollback(target) => (target, "rollback"),
        AdminCommand::Promote(target) => (target, "promote"),
        AdminCommand::Versions(target) => (target, "versions"),
        AdminCommand::Canary(args) => (&args.target, "canary"),
        AdminCommand::GrantAdmin(args) => (&args.target, "admins"),
        AdminCommand::Release(ReleaseCommand::Status(target)) => (target, "release"),
    };
    let client = AdminClient::new(&target.admin_url, target.admin_token.clone(), target.tls_ca.as_deref())?;
    let base = format!("/admin/services/{}", target.service);
    let answer = match &command {
        AdminCommand::Swap(args) => swap(&client, &base, args).await?,
        AdminCommand::Canary(CanaryArgs { percent, .. }) => {
            let body = json!({ "percent": percent }).to_string().into_bytes();
            client.send(Method::POST, &format!("{base}/canary"), "application/json", body).await?
        }
        AdminCommand::GrantAdmin(GrantArgs { user, .. }) => {
            let body = json!({ "user_id": user }).to_string().into_bytes();
            let user = client.send(Method::POST, &format!("{base}/admins"), "application/json", body).await?;
            println!(
                "{}: {} is now {}",
                target.service,
                user["id"].as_str().unwrap_or("?"),
                user["role"].as_str().unwrap_or("?")
            );
            return Ok(());
        }
        AdminCommand::Release(ReleaseCommand::Status(_)) => {
            let answer = client.send(Method::GET, &format!("{base}/release"), "application/json", Vec::new()).await?;
            print_release(&target.service, &answer);
            return Ok(());
        }
        AdminCommand::Versions(_) => {
            client.send(Method::GET, &format!("{base}/versions"), "application/json", Vec::new()).await?
        }
        _ => client.send(Method::POST, &format!("{base}/{action}"), "application/json", Vec::new()).await?,
    };
    print_outcome(&target.service, &answer);
    print_versions(&answer);
    Ok(())
}

async fn swap(client: &AdminClient, base: &str, args: &SwapArgs) -> anyhow::Result<Value> {
    let bytes = tokio::fs::read(&args.component)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.component.display()))?;
    let mut query = Vec::new();
    if let Some(label) = &args.label {
        query.push(format!("label={label}"));
    }
    if let Some(percent) = args.canary {
        query.push(format!("canary={percent}"));
    }
    let path =
        if query.is_empty() { format!("{base}/versions") } else { format!("{base}/versions?{}", query.join("&")) };
    client.send(Method::POST, &path, "application/wasm", bytes).await
}

fn print_outcome(service: &str, answer: &Value) {
    let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
    if let Some(deployment) = answer.get("deployment") {
        let deployed = &deployment["deployed"];
        let (label, digest) = (text(&deployed["label"]), text(&deployed["digest"]));
        let took = format!(
            "rollout {} ms, switch {} µs",
            deployment["rollout_millis"].as_u64().unwrap_or_default(),
            deployment["switch_micros"].as_u64().unwrap_or_default()
        );
        match deployment["result"].as_str() {
            Some("canary") => println!(
                "{service}: {label} ({digest}) takes {}% of requests as a canary ({took}); \
                 `skiff promote` or `skiff rollback` when you have seen enough",
                deployed["percent"].as_u64().unwrap_or_default()
            ),
            _ => println!(
                "{service}: {label} ({digest}) is active; {} stays loaded for rollback ({took})",
                text(&deployment["previous"])
            ),
        }
    } else if let Some(from) = answer.get("rolled_back") {
        println!(
            "{service}: rolled back from {} (it served {} requests) to {}",
            text(from),
            answer["served"].as_u64().unwrap_or_default(),
            text(&answer["active"])
        );
    } else if let Some(promoted) = answer.get("promoted") {
        println!("{service}: {} promoted: it takes every request now", text(promoted));
    }
}

fn print_versions(answer: &Value) {
    let Some(versions) = answer["versions"].as_array() else { return };
    println!("{:<12} {:<20} {:<20} {:<26} {:>9} {:>7}", "STATE", "LABEL", "DIGEST", "LOADED AT", "REQUESTS", "ERRORS");
    for version in versions {
        let mut state = version["state"].as_str().unwrap_or("?").to_owned();
        if let Some(percent) = version["percent"].as_u64() {
            state = format!("{state} {percent}%");
        }
        let digest = version["digest"].as_str().unwrap_or("?");
        println!(
            "{:<12} {:<20} {:<20} {:<26} {:>9} {:>7}",
            state,
            version["label"].as_str().unwrap_or("?"),
            crate::service::short_digest(digest),
            version["loaded_at"].as_str().unwrap_or("?"),
            version["requests"].as_u64().unwrap_or_default(),
            version["errors"].as_u64().unwrap_or_default(),
        );
    }
}

/// `skiff release status`: one line for the release, one for what runs, then the versions.
fn print_release(service: &str, answer: &Value) {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let release = &answer["release"];
    if release.is_null() {
        println!("{service}: no release file (SKIFF_RELEASE_FILE is not set)");
    } else {
        let canary = match release["desired_canary"].as_str() {
            Some(canary) => format!(", canary {canary} at {}%", release["desired_canary_percent"]),
            None => String::new(),
        };
        let reason = release["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        let fallback = if release["fallback"] == true { " (serving the image's component)" } else { "" };
        println!(
            "{service}: desired {}{canary} (component {})",
            text(&release["desired"]),
            text(&release["desired_digest"])
        );
        println!("{service}: {}{reason}{fallback} since {}", text(&release["phase"]), text(&release["since"]));
    }
    let converged = if answer["converged"] == true { "converged" } else { "not converged" };
    println!(
        "{service}: active {} ({}), {converged}",
        text(&answer["active"]["label"]),
        text(&answer["active"]["digest"])
    );
    print_versions(answer);
}
