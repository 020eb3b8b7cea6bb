use anyhow::Context;
use clap::Parser;

use skiff::cli::{Cli, Command};
use skiff::launch::{Host, HostSpec, ServiceSpec, components_in, service_name, sqlite_url};
use skiff::{server, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "skiff stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let spec = match command {
        Command::Serve(args) => {
            let name = match args.name {
                Some(name) => name,
                None => service_name(&args.component)?,
            };
            prepare_data_dir(&args.common.data_dir, args.database_url.is_none())?;
            let database_url = args
                .database_url
                .unwrap_or_else(|| sqlite_url(&args.common.data_dir, &name));
            let service = ServiceSpec {
                name,
                component: args.component,
                version_label: args.component_version,
                database_url,
            };
            HostSpec::new(args.listen, vec![service], &args.common)
        }
        Command::Dev(args) => {
            prepare_data_dir(&args.common.data_dir, true)?;
            let services = components_in(&args.components_dir)?
                .iter()
                .map(|component| ServiceSpec::embedded(component, &args.common.data_dir))
                .collect::<anyhow::Result<Vec<_>>>()?;
            HostSpec::new(args.listen, services, &args.common)
        }
    };
    for service in &spec.services {
        tracing::info!(service = %service.name, component = %service.component.display(), "mounting");
    }
    let host = Host::build(spec).await?;
    host.serve(server::shutdown_signal()).await;
    Ok(())
}

fn prepare_data_dir(dir: &std::path::Path, needed: bool) -> anyhow::Result<()> {
    if needed {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    Ok(())
}
