//! Command line and environment, parsed once into typed values.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// CoucheStor admission webhook.
#[derive(Debug, Parser)]
#[command(name = "couchestor-webhook", version, about)]
pub struct Cli {
    /// Log format.
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
    /// Serve /validate, /mutate, /healthz and /readyz over HTTPS.
    Serve(ServeConfig),
    /// Write a self-signed CA and a serving certificate for the webhook Service
    /// (for clusters without cert-manager).
    BootstrapCerts(BootstrapConfig),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "COUCHESTOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM); re-read when it changes.
    #[arg(
        long,
        env = "COUCHESTOR_TLS_CERT",
        default_value = "/etc/couchestor/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); re-read when it changes.
    #[arg(
        long,
        env = "COUCHESTOR_TLS_KEY",
        default_value = "/etc/couchestor/tls/tls.key"
    )]
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for a change.
    #[arg(long, env = "COUCHESTOR_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// Largest request body accepted (bytes).
    #[arg(long, env = "COUCHESTOR_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408.
    #[arg(long, env = "COUCHESTOR_REQUEST_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Do not watch the cluster: cross-object rules see an empty cluster. For local
    /// trials only; never in a cluster.
    #[arg(long, env = "COUCHESTOR_NO_WATCH")]
    pub no_watch: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapConfig {
    /// Name of the webhook Service.
    #[arg(long, env = "COUCHESTOR_SERVICE", default_value = "couchestor-webhook")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(
        long,
        env = "COUCHESTOR_NAMESPACE",
        default_value = "couchestor-system"
    )]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, env = "COUCHESTOR_OUT_DIR")]
    pub out_dir: PathBuf,
    /// Also install them in the cluster: apply the Secret and patch caBundle.
    #[arg(long, env = "COUCHESTOR_APPLY")]
    pub apply: bool,
    /// Secret the webhook Deployment mounts.
    #[arg(
        long,
        env = "COUCHESTOR_SECRET",
        default_value = "couchestor-webhook-tls"
    )]
    pub secret: String,
    /// ValidatingWebhookConfiguration to patch.
    #[arg(
        long,
        env = "COUCHESTOR_VALIDATING_WEBHOOK",
        default_value = "couchestor-validating"
    )]
    pub validating_webhook: String,
    /// MutatingWebhookConfiguration to patch.
    #[arg(
        long,
        env = "COUCHESTOR_MUTATING_WEBHOOK",
        default_value = "couchestor-mutating"
    )]
    pub mutating_webhook: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    couchestor_core::duration::parse_duration(s).map_err(|e| e.to_string())
}
