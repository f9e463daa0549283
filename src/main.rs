use std::process::ExitCode;

use clap::Parser;
use dmf_broker::config::{Cli, Command};
use dmf_broker::{app, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            telemetry::init(&args.log.filter, &args.log.format);
            let app = match app::Application::build(args).await {
                Ok(app) => app,
                Err(app::StartError::Config(msg)) => {
                    eprintln!("dmf-broker: {msg}");
                    return ExitCode::from(2);
                }
                Err(app::StartError::Runtime(e)) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e, "start failed");
                    return ExitCode::from(1);
                }
            };
            let token = CancellationToken::new();
            shutdown::cancel_on_signal(token.clone());
            match app.run_until_stopped(token).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e, "service failed");
                    ExitCode::from(1)
                }
            }
        }
        Command::Migrate(args) => {
            telemetry::init(&args.log.filter, &args.log.format);
            match app::migrate(&args.database).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e, "migration failed");
                    ExitCode::from(1)
                }
            }
        }
        Command::Healthcheck(args) => app::healthcheck(args.http_addr).await,
        Command::Bench(args) => dmf_broker::bench::run(args).await,
        Command::Simulate(args) => {
            telemetry::init(&args.log.filter, &args.log.format);
            if let Err(msg) = args.validate() {
                eprintln!("dmf-broker: {msg}");
                return ExitCode::from(2);
            }
            let token = CancellationToken::new();
            shutdown::cancel_on_signal(token.clone());
            match dmf_broker::sim::run(args, token).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e, "simulator failed");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo(args) => dmf_broker::demo::main(args).await,
    }
}
