//! Command line and environment, parsed once into a typed [`Config`].

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// CoucheStor CSI sidecar: a CSI proxy in front of Mayastor's CSI controller. Every
/// Identity and Controller call is forwarded byte for byte; CreateVolume gets the
/// volume's tier placement, ControllerPublishVolume of an archived volume asks for
/// rehydration, DeleteVolume of an archived volume deletes its EcVolume.
#[derive(Debug, Clone, Parser)]
#[command(name = "couchestor-csi-sidecar", version, about)]
pub struct Config {
    /// Socket to serve CSI on (what the external-provisioner and -attacher connect to):
    /// `unix:///path` or a plain path. A stale socket file is removed at start.
    #[arg(long, env = "COUCHESTOR_CSI_LISTEN", default_value = "unix:///csi/csi.sock", value_parser = parse_unix_endpoint)]
    pub listen: PathBuf,
    /// Socket of the backend CSI driver (Mayastor's CSI controller): `unix:///path` or
    /// a plain path. Connected lazily and reconnected when it goes away.
    #[arg(long, env = "COUCHESTOR_CSI_BACKEND", default_value = "unix:///csi/backend.sock", value_parser = parse_unix_endpoint)]
    pub backend: PathBuf,
    /// Largest request or response message accepted, in bytes (both directions).
    #[arg(long, env = "COUCHESTOR_CSI_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// Log format.
    #[arg(long, env = "COUCHESTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Accepts `unix:///abs/path`, `unix:/abs/path`, `unix:rel/path` or a plain path (what
/// CSI sidecars accept for `--csi-address`).
pub fn parse_unix_endpoint(s: &str) -> Result<PathBuf, String> {
    let path = match s.strip_prefix("unix://") {
        Some(rest) => rest,
        None => s.strip_prefix("unix:").unwrap_or(s),
    };
    if path.is_empty() {
        return Err(format!("{s:?}: no socket path"));
    }
    if s.contains("://") && !s.starts_with("unix://") {
        return Err(format!(
            "{s:?}: only unix sockets are supported (CSI endpoints are unix sockets)"
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_endpoints_are_accepted_in_every_spelling_and_tcp_is_refused() {
        for (input, want) in [
            ("unix:///csi/csi.sock", "/csi/csi.sock"),
            ("unix:/csi/csi.sock", "/csi/csi.sock"),
            ("/csi/csi.sock", "/csi/csi.sock"),
            ("unix:csi.sock", "csi.sock"),
        ] {
            assert_eq!(
                parse_unix_endpoint(input),
                Ok(PathBuf::from(want)),
                "{input}"
            );
        }
        assert!(parse_unix_endpoint("tcp://127.0.0.1:10000").is_err());
        assert!(parse_unix_endpoint("unix://").is_err());
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "--{id} has no environment variable"
            );
        }
    }
}
