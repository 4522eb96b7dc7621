//! `couchestor-lab`: the local archive lab (see `couchestor_node_agent::lab`).

use clap::Parser;
use couchestor_node_agent::lab::{self, LabConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = LabConfig::parse();
    // The lab talks to the user through progress bars and its summary; logs only on demand.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match lab::run(config).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("some checks failed");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lab failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
