use clap::{Parser, Subcommand};

/// Repository chores for CoucheStor.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write deploy/crds/*.yaml (and the Helm chart's crds/) from the Rust types (or check them with --check).
    Crds {
        /// Fail instead of writing when the committed files differ.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { check } => xtask::crds(check),
    }
}
