//! Command line of `couchestor-node-agent`, parsed once into [`Config`]. Every flag can also
//! come from an environment variable (shown in `--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::tls::TlsFiles;

/// CoucheStor node agent: stores erasure-coded shard columns and serves them over gRPC (mTLS).
#[derive(Debug, Parser)]
#[command(name = "couchestor-node-agent", version)]
pub struct Config {
    /// Log line format.
    #[arg(long, env = "COUCHESTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the node-agent API over mutual TLS until SIGTERM or Ctrl-C.
    Serve(ServeConfig),
    /// Mint a CA and agent/client certificates for tests and the local lab.
    Certs(CertsConfig),
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (e.g. 127.0.0.2:7400).
    #[arg(long, env = "COUCHESTOR_AGENT_LISTEN")]
    pub listen: SocketAddr,
    /// Name of the Kubernetes node this agent runs on.
    #[arg(long, env = "COUCHESTOR_NODE_NAME")]
    pub node_name: String,
    /// Stable id of this agent.
    #[arg(long, env = "COUCHESTOR_AGENT_ID")]
    pub agent_id: String,
    /// Directory on one disk holding shard files; repeat for several disks.
    #[arg(
        long = "disk",
        env = "COUCHESTOR_AGENT_DISKS",
        value_delimiter = ',',
        required = true
    )]
    pub disks: Vec<PathBuf>,
    /// The redb index file (on the node's most reliable device).
    #[arg(long, env = "COUCHESTOR_AGENT_INDEX")]
    pub index: PathBuf,
    /// This agent's certificate chain (PEM), issued by the cluster CA.
    #[arg(long, env = "COUCHESTOR_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "COUCHESTOR_TLS_KEY")]
    pub tls_key: PathBuf,
    /// The cluster CA (PEM): peers must present a certificate it issued.
    #[arg(long, env = "COUCHESTOR_TLS_CA")]
    pub tls_ca: PathBuf,
    /// Use buffered I/O even where O_DIRECT works.
    #[arg(long, env = "COUCHESTOR_AGENT_NO_DIRECT_IO")]
    pub no_direct_io: bool,
}

impl ServeConfig {
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CertsConfig {
    /// Output directory: `ca.pem`, then `<host>/{cert,key,ca}.pem` per host and
    /// `client/{cert,key,ca}.pem`.
    #[arg(long, env = "COUCHESTOR_CERTS_OUT_DIR")]
    pub out_dir: PathBuf,
    /// An agent address (IP or DNS name) to issue a server+client certificate for; repeat.
    #[arg(
        long = "host",
        env = "COUCHESTOR_CERTS_HOSTS",
        value_delimiter = ',',
        required = true
    )]
    pub hosts: Vec<String>,
}
