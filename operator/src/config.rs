//! Command line and environment, parsed once into typed values. The flags marked
//! *contract* are what the deploy bundle sets; they keep their names and env vars.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use couchestor_core::duration::parse_duration;

/// CoucheStor operator: tiers Mayastor volumes by their IOPS (StoragePolicy).
#[derive(Debug, Clone, Parser)]
#[command(name = "couchestor-operator", version, about)]
pub struct Config {
    /// Prometheus base URL, e.g. `http://prometheus-server.monitoring:80` (contract).
    #[arg(long, env = "COUCHESTOR_PROMETHEUS_URL")]
    pub prometheus_url: String,
    /// Mayastor REST API base URL, e.g. `http://mayastor-api-rest.mayastor:8081`
    /// (contract).
    #[arg(long, env = "COUCHESTOR_MAYASTOR_URL")]
    pub mayastor_url: String,
    /// Address of the admin server: /healthz /readyz /metrics (contract).
    #[arg(long, env = "COUCHESTOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Name of the coordination.k8s.io Lease used for leader election (contract).
    #[arg(
        long,
        env = "COUCHESTOR_LEASE_NAME",
        default_value = "couchestor-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; the pod's own namespace in a cluster (contract).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events; the pod name (contract).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,
    /// Log format (contract).
    #[arg(long, env = "COUCHESTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// How long a Lease lasts without renewal before a standby takes over.
    #[arg(long, env = "COUCHESTOR_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// How often each policy is re-evaluated when nothing changed.
    #[arg(long, env = "COUCHESTOR_REQUEUE_INTERVAL", default_value = "60s", value_parser = duration)]
    pub requeue_interval: Duration,
    /// Timeout of one Prometheus query.
    #[arg(long, env = "COUCHESTOR_PROMETHEUS_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub prometheus_timeout: Duration,
    /// Timeout of one Mayastor REST request.
    #[arg(long, env = "COUCHESTOR_MAYASTOR_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub mayastor_timeout: Duration,
    /// `/readyz` fails when Prometheus or Mayastor last answered longer ago.
    #[arg(long, env = "COUCHESTOR_READY_MAX_AGE", default_value = "2m", value_parser = duration)]
    pub ready_max_age: Duration,
    /// Counter of read operations per volume.
    #[arg(
        long,
        env = "COUCHESTOR_METRIC_READ_OPS",
        default_value = "volume_num_read_ops"
    )]
    pub metric_read_ops: String,
    /// Counter of write operations per volume.
    #[arg(
        long,
        env = "COUCHESTOR_METRIC_WRITE_OPS",
        default_value = "volume_num_write_ops"
    )]
    pub metric_write_ops: String,
    /// Label of those counters carrying the PersistentVolume name.
    #[arg(
        long,
        env = "COUCHESTOR_METRIC_VOLUME_LABEL",
        default_value = "pv_name"
    )]
    pub metric_volume_label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

fn duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 9] = [
        "couchestor-operator",
        "--prometheus-url",
        "http://prom:9090",
        "--mayastor-url",
        "http://rest:8081",
        "--lease-namespace",
        "couchestor-system",
        "--identity",
        "op-0",
    ];

    #[test]
    fn the_contract_flags_parse_with_their_defaults() {
        let c = Config::try_parse_from(REQUIRED).expect("parses");
        assert_eq!(c.http_addr, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.lease_name, "couchestor-operator");
        assert_eq!(c.log_format, LogFormat::Plain);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        let mut args = REQUIRED.to_vec();
        args.extend(["--log-format", "json", "--http-addr", "127.0.0.1:9000"]);
        let c = Config::try_parse_from(args).expect("parses");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.http_addr.port(), 9000);
    }

    #[test]
    fn bad_input_is_refused_with_the_flag_named() {
        let e = Config::try_parse_from(&REQUIRED[..7]).expect_err("no identity");
        assert!(e.to_string().contains("--identity"), "{e}");
        let mut args = REQUIRED.to_vec();
        args.extend(["--log-format", "xml"]);
        let e = Config::try_parse_from(args).expect_err("bad format");
        assert!(e.to_string().contains("--log-format"), "{e}");
        let mut args = REQUIRED.to_vec();
        args.extend(["--lease-duration", "soon"]);
        let e = Config::try_parse_from(args).expect_err("bad duration");
        assert!(e.to_string().contains("--lease-duration"), "{e}");
        let mut args = REQUIRED.to_vec();
        args.extend(["--http-addr", "nowhere"]);
        assert!(Config::try_parse_from(args).is_err());
    }
}
