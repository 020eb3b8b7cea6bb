use anyhow::Context;
use clap::Parser;

use skiff::admin::watch::WatchSpec;
use skiff::capability::crypto::{TOKEN_PUBLIC_KEY, TOKEN_SIGNING_KEY};
use skiff::capability::messaging::{EVENT_SIGNING_KEY, EVENT_TRUSTED_KEYS};
use skiff::cli::{Cli, Command, CommonArgs, CompileArgs, DevArgs, PushArgs, ServeArgs, config_from_env};
use skiff::launch::{Host, HostSpec, ServiceSpec, components_in, generate_token_keys, service_name, sqlite_url};
use skiff::release::{PullLimits, Registry, RegistryOptions, ReleaseSpec, default_auth_file, registry_of};
use skiff::runtime::{Runtime, RuntimeOptions};
use skiff::service::{component_interfaces, precompile};
use skiff::{admin_shell, server, telemetry};
use std::time::Duration;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Kept to the end of main: dropping it writes the log lines still waiting.
    let _logs = telemetry::init(cli.log_format);
    let spec = match cli.command {
        Command::Admin(command) => return shell_outcome(admin_shell::run(command).await),
        Command::Compile(args) => return shell_outcome(compile(&args)),
        Command::Push(args) => return shell_outcome(push(args).await),
        Command::Serve(args) => serve_spec(args),
        Command::Dev(args) => dev_spec(args),
    };
    let outcome = match spec {
        Ok(spec) => run(spec).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "skiff stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A shell command's refusal is its output, not a log line.
fn shell_outcome(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `skiff compile`: the component's machine code for this skiff's engine.
fn compile(args: &CompileArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
    // Compiling needs the engine only, not the capabilities a serving host links.
    let runtime = Runtime::compile_only(RuntimeOptions::default())?;
    let compiled = precompile(&runtime, &bytes).with_context(|| format!("compiling {}", args.component.display()))?;
    std::fs::write(&args.output, &compiled).with_context(|| format!("writing {}", args.output.display()))?;
    println!("{}: {} bytes of machine code", args.output.display(), compiled.len());
    Ok(())
}

/// `skiff push`: the component as a Wasm OCI artifact; prints the digest reference.
async fn push(args: PushArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
    // The interfaces go into the artifact's config; compiling also refuses what no host loads.
    let runtime = Runtime::compile_only(RuntimeOptions::default())?;
    let (imports, exports) = component_interfaces(&runtime, &bytes)
        .with_context(|| format!("{} is not a component skiff can push", args.component.display()))?;
    let insecure = if args.insecure { vec![registry_of(&args.reference)?] } else { Vec::new() };
    let auth_file = args.registry.registry_auth_file.or_else(default_auth_file);
    let limits = PullLimits {
        timeout: Duration::from_millis(args.registry.registry_timeout_ms.max(1)),
        ..PullLimits::default()
    };
    let registry = Registry::new(RegistryOptions { insecure, auth_file, limits }, None);
    let pushed = registry.push(&args.reference, bytes, imports, exports).await?;
    eprintln!("pushed {} (component {})", args.component.display(), pushed.component_digest);
    println!("{}", pushed.reference);
    Ok(())
}

/// `skiff serve`: one component, as a pod runs it.
fn serve_spec(mut args: ServeArgs) -> anyhow::Result<HostSpec> {
    let name = match args.name {
        Some(name) => name,
        None => service_name(&args.component)?,
    };
    add_config_from_env(&mut args.common);
    std::fs::create_dir_all(&args.common.data_dir)
        .with_context(|| format!("creating data directory {}", args.common.data_dir.display()))?;
    let database_url = args.database_url.unwrap_or_else(|| sqlite_url(&args.common.data_dir, &name));
    let service = ServiceSpec { name, component: args.component, version_label: args.component_version, database_url };
    let mut spec = args.common.host_spec(args.listen, vec![service]);
    spec.internal_listen = args.internal_listen;
    spec.watch =
        args.watch.map(|path| WatchSpec { path, interval: Duration::from_millis(args.watch_interval_ms.max(50)) });
    let cache_dir = args.release_cache_dir.unwrap_or_else(|| args.common.data_dir.join("components"));
    spec.release = args.release_file.map(|file| ReleaseSpec {
        file,
        interval: Duration::from_millis(args.release_interval_ms.max(50)),
        cache_dir,
        registry: RegistryOptions {
            insecure: args.insecure_registries,
            auth_file: args.registry.registry_auth_file.or_else(default_auth_file),
            limits: PullLimits {
                max_component_bytes: args.release_max_component_bytes,
                timeout: Duration::from_millis(args.registry.registry_timeout_ms.max(1)),
                deadline: Duration::from_millis(args.release_pull_deadline_ms.max(1)),
            },
        },
        fallback: args.release_fallback,
    });
    Ok(spec)
}

/// `skiff dev`: every built component in one process, on embedded storage.
fn dev_spec(mut args: DevArgs) -> anyhow::Result<HostSpec> {
    add_config_from_env(&mut args.common);
    add_dev_token_keys(&mut args.common.config)?;
    std::fs::create_dir_all(&args.common.data_dir)
        .with_context(|| format!("creating data directory {}", args.common.data_dir.display()))?;
    let services = components_in(&args.components_dir)?
        .iter()
        .map(|component| ServiceSpec::embedded(component, &args.common.data_dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names: Vec<&str> = services.iter().map(|service| service.name.as_str()).collect();
    add_dev_event_keys(&mut args.common.config, &names)?;
    Ok(args.common.host_spec(args.listen, services))
}

async fn run(spec: HostSpec) -> anyhow::Result<()> {
    for service in &spec.services {
        tracing::info!(service = %service.name, component = %service.component.display(), "mounting");
    }
    let host = Host::build(spec).await?;
    host.serve(server::shutdown_signal()).await;
    Ok(())
}

/// `SKIFF_CONFIG_<KEY>` variables first, so that explicit `--config` pairs override them.
fn add_config_from_env(common: &mut CommonArgs) {
    let mut pairs = config_from_env(std::env::vars());
    pairs.append(&mut common.config);
    common.config = pairs;
}

/// In `skiff dev`, every service signs its events with one key made at start-up, and every
/// service trusts it under each service's name, unless event keys are configured: the
/// signatures are checked on the embedded queue exactly as in production.
fn add_dev_event_keys(config: &mut Vec<(String, String)>, services: &[&str]) -> anyhow::Result<()> {
    let has = |key: &str| config.iter().any(|(k, _)| k == key);
    if has(EVENT_SIGNING_KEY) || has(EVENT_TRUSTED_KEYS) {
        return Ok(());
    }
    let (private, public) = generate_token_keys()?;
    let trusted: Vec<String> = services.iter().map(|name| format!("{name}={public}")).collect();
    config.push((EVENT_SIGNING_KEY.into(), private));
    config.push((EVENT_TRUSTED_KEYS.into(), trusted.join(",")));
    Ok(())
}

/// In `skiff dev`, the host signs (for auth) and verifies (for users and notify) with a key pair made at start-up,
/// unless one is configured. Tokens do not outlive the process.
fn add_dev_token_keys(config: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    let has = |key: &str| config.iter().any(|(k, _)| k == key);
    if has(TOKEN_SIGNING_KEY) || has(TOKEN_PUBLIC_KEY) {
        return Ok(());
    }
    let (private, public) = generate_token_keys()?;
    config.push((TOKEN_SIGNING_KEY.into(), private));
    config.push((TOKEN_PUBLIC_KEY.into(), public));
    tracing::info!(
        "generated a development token key pair (set token_signing_key and token_public_key to keep tokens across restarts)"
    );
    Ok(())
}
