//! Command line of `couchestor-node-agent`, parsed once into [`Config`]. Every flag can also
//! come from an environment variable (shown in `--help`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Send a work order (destage, rebuild, scrub, rehydrate) to an agent and follow it.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Serve archived volumes read-only over NBD, reading their columns from the agents.
    Export(ExportConfig),
    /// Discover this machine's block devices and print them (a table, or JSON).
    Scan(ScanConfig),
}

/// Where discovery reads from (`scan` and `serve --publish-storage-node`).
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// The sysfs mount to read block devices from.
    #[arg(long, env = "COUCHESTOR_SYSFS_ROOT", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// The udev runtime directory (its `data/` is the udev database).
    #[arg(long, env = "COUCHESTOR_UDEV_ROOT", default_value = "/run/udev")]
    pub udev_root: PathBuf,
    /// The smartctl program (smartmontools); a bare name is looked up in PATH, then /usr/sbin.
    #[arg(long, env = "COUCHESTOR_SMARTCTL", default_value = "smartctl")]
    pub smartctl: OsString,
    /// Do not run smartctl (SMART is then reported absent, "SMART not requested").
    #[arg(long, env = "COUCHESTOR_NO_SMART")]
    pub no_smart: bool,
    /// Time allowed to one smartctl run, e.g. 30s.
    #[arg(long, env = "COUCHESTOR_SMART_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub smart_timeout: Duration,
}

impl DiscoveryArgs {
    pub fn options(&self, include_virtual: bool) -> crate::discovery::Options {
        crate::discovery::Options {
            sysfs_root: self.sysfs_root.clone(),
            udev_root: self.udev_root.clone(),
            include_virtual,
            smart: if self.no_smart {
                crate::discovery::SmartSource::Off
            } else {
                crate::discovery::SmartSource::Smartctl {
                    program: self.smartctl.clone(),
                    timeout: self.smart_timeout,
                }
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ScanConfig {
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Include loop, ram, zram and device-mapper devices.
    #[arg(long)]
    pub all: bool,
    /// Print JSON (the devices as published in StorageNode status) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Publishing the node's inventory in its `StorageNode` (`serve`).
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Publish this node's disk inventory, endpoint and heartbeat in its StorageNode
    /// status (needs a Kubernetes API: in-cluster config or KUBECONFIG).
    #[arg(long, env = "COUCHESTOR_PUBLISH_STORAGE_NODE")]
    pub publish_storage_node: bool,
    /// The endpoint other components reach this agent at (default: https://<--listen>);
    /// required when --listen is a wildcard address.
    #[arg(long, env = "COUCHESTOR_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    /// How often to rescan the devices; a change is published at once.
    #[arg(long, env = "COUCHESTOR_RESCAN_INTERVAL", default_value = "30s", value_parser = duration)]
    pub rescan_interval: Duration,
    /// How often to publish even without a change (the heartbeat); at least 1s, since
    /// `lastHeartbeat` is written with one-second precision.
    #[arg(long, env = "COUCHESTOR_HEARTBEAT_INTERVAL", default_value = "60s", value_parser = heartbeat)]
    pub heartbeat_interval: Duration,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

impl PublishArgs {
    /// The advertised endpoint: `--advertise`, else `https://<listen>` unless that is a
    /// wildcard address nobody can dial.
    pub fn endpoint(&self, listen: SocketAddr) -> Result<String, String> {
        match &self.advertise {
            Some(a) if a.contains("://") => Ok(a.clone()),
            Some(a) => Ok(format!("https://{a}")),
            None if listen.ip().is_unspecified() => Err(format!(
                "--listen {listen} is a wildcard address: give --advertise (e.g. the pod IP and port)"
            )),
            None => Ok(format!("https://{listen}")),
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    couchestor_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// A heartbeat interval: Kubernetes timestamps have one-second precision, so two
/// heartbeats less than a second apart could carry the same `lastHeartbeat`.
fn heartbeat(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "{s} is shorter than 1s: lastHeartbeat has one-second precision"
        ));
    }
    Ok(d)
}

/// The client side of mutual TLS towards agents.
#[derive(Debug, Clone, Args)]
pub struct ClientTlsArgs {
    /// Client certificate chain (PEM), issued by the cluster CA.
    #[arg(long, env = "COUCHESTOR_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "COUCHESTOR_TLS_KEY")]
    pub tls_key: PathBuf,
    /// The cluster CA (PEM).
    #[arg(long, env = "COUCHESTOR_TLS_CA")]
    pub tls_ca: PathBuf,
}

impl ClientTlsArgs {
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Archive a file, block device or nbd:// export as k + m shard columns on agents.
    Destage(DestageArgs),
    /// Recreate one column on another agent.
    Rebuild(RebuildArgs),
    /// Check every shard and parity; repair what is corrupt or missing.
    Scrub(ScrubArgs),
    /// Write an archived volume back to a file, block device or nbd:// export.
    Rehydrate(RehydrateArgs),
}

/// Flags every work order shares.
#[derive(Debug, Clone, Args)]
pub struct OrderArgs {
    /// The agent that coordinates the order (host:port).
    #[arg(long, env = "COUCHESTOR_AGENT")]
    pub agent: String,
    /// The manifest file (EcVolume JSON): read, and replaced with the result.
    #[arg(long)]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DestageArgs {
    #[command(flatten)]
    pub order: OrderArgs,
    /// Volume id (also the NBD export name).
    #[arg(long)]
    pub volume: String,
    /// A path on the coordinating agent's node, or nbd://host:port/export.
    #[arg(long)]
    pub source: String,
    /// Bytes to archive; default: the whole source (read here, so give it when the source
    /// is only reachable from the agent).
    #[arg(long)]
    pub size: Option<u64>,
    /// Data shards per stripe.
    #[arg(long, short = 'k', default_value_t = 4)]
    pub data_shards: u32,
    /// Parity shards per stripe.
    #[arg(long, short = 'm', default_value_t = 2)]
    pub parity_shards: u32,
    /// Data bytes per stripe (a multiple of k × 64).
    #[arg(long, default_value_t = 1 << 20)]
    pub stripe_size: u64,
    /// Column placement, in column order: NODE=HOST:PORT, k + m of them on distinct nodes.
    #[arg(long = "place", value_delimiter = ',', required = true)]
    pub placement: Vec<String>,
    /// Skip the read-back verification.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub order: OrderArgs,
    /// The column to rebuild.
    #[arg(long)]
    pub column: u32,
    /// The node that receives it: NODE=HOST:PORT.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Clone, Args)]
pub struct ScrubArgs {
    #[command(flatten)]
    pub order: OrderArgs,
    /// Only report; do not rewrite anything.
    #[arg(long)]
    pub report_only: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RehydrateArgs {
    #[command(flatten)]
    pub order: OrderArgs,
    /// A path on the coordinating agent's node, or nbd://host:port/export.
    #[arg(long)]
    pub target: String,
}

#[derive(Debug, Clone, Args)]
pub struct ExportConfig {
    /// Manifest of a volume to export (repeat for several); the export name is the volume id.
    #[arg(long = "manifest", required = true)]
    pub manifests: Vec<PathBuf>,
    /// TCP address to serve NBD on (10809 is NBD's port).
    #[arg(long, env = "COUCHESTOR_NBD_LISTEN", default_value = "127.0.0.1:10809")]
    pub listen: SocketAddr,
    /// RAM for decoded stripes (cache L1), bytes; 0 turns the tiered cache off.
    #[arg(long, env = "COUCHESTOR_NBD_CACHE_RAM", default_value_t = 256 << 20)]
    pub cache_ram: u64,
    /// Directory on a local disk for the cache's L2 (default: no L2).
    #[arg(long, env = "COUCHESTOR_NBD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bytes of --cache-dir the L2 may use.
    #[arg(long, env = "COUCHESTOR_NBD_CACHE_DISK", default_value_t = 4 << 30)]
    pub cache_disk: u64,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
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
    /// Where work-order state lives (destage watermarks); default: the --index directory.
    #[arg(long, env = "COUCHESTOR_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

impl ServeConfig {
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            self.index
                .parent()
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_under_one_second_is_refused_with_the_reason() {
        assert_eq!(heartbeat("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(heartbeat("1s"), Ok(Duration::from_secs(1)));
        let err = heartbeat("500ms").expect_err("sub-second heartbeat");
        assert!(err.contains("one-second precision"), "{err}");
        assert!(heartbeat("soon").is_err());
    }
}
