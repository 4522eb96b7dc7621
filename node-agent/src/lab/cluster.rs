//! Node-agent processes on loopback addresses, each with its own directory-backed disk,
//! index and certificate — the lab's stand-in for a cluster's nodes (also used by tests).
//! Every process is killed when its [`AgentProcess`] is dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::archive::Placement;
use crate::certs::{self, Authority};
use crate::rpc::AgentClient;
use crate::tls::{self, TlsFiles, TlsMaterial};

/// The lab's CA and the client identity the lab uses.
pub struct Cluster {
    pub dir: PathBuf,
    bin: PathBuf,
    ca: Authority,
    pub client_tls: TlsFiles,
    client: TlsMaterial,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("bin", &self.bin)
            .finish_non_exhaustive()
    }
}

/// One agent process (or its slot when stopped).
#[derive(Debug)]
pub struct AgentProcess {
    pub name: String,
    pub host: String,
    pub addr: String,
    pub root: PathBuf,
    tls: TlsFiles,
    child: Option<Child>,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on `host`.
pub fn free_port(host: &str) -> anyhow::Result<u16> {
    let l =
        TcpListener::bind((host, 0)).with_context(|| format!("bind a probe socket on {host}"))?;
    Ok(l.local_addr()?.port())
}

impl AgentProcess {
    /// Where this agent is, as a manifest places a column.
    pub fn placement(&self, column: u32) -> Placement {
        Placement {
            column,
            node: self.name.clone(),
            endpoint: self.addr.clone(),
            healthy: true,
        }
    }

    /// SIGKILL, as a crashed node.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The directory holding this agent's shard files.
    pub fn disk(&self) -> PathBuf {
        self.root.join("disk")
    }

    pub fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
}

impl Cluster {
    /// A cluster rooted at `dir`, running agents from `bin` (the `couchestor-node-agent`
    /// executable).
    pub fn new(dir: &Path, bin: &Path) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ca = Authority::generate("couchestor-lab-ca").context("generate the lab CA")?;
        let issued = ca
            .issue_client("couchestor-lab")
            .context("client certificate")?;
        let client_tls = certs::write_files(&dir.join("client"), &issued, &ca.cert_pem)
            .context("write the client certificate")?;
        let client = TlsMaterial::read(&client_tls)?;
        Ok(Self {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            ca,
            client_tls,
            client,
        })
    }

    /// The `couchestor-node-agent` executable next to the running one.
    pub fn sibling_binary() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("locate this executable")?;
        let bin = exe
            .parent()
            .map(|d| d.join("couchestor-node-agent"))
            .context("executable directory")?;
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p couchestor-node-agent --bins`",
                bin.display()
            );
        }
        Ok(bin)
    }

    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        self.client.client_config()
    }

    /// A client of `agent`.
    pub async fn client(&self, agent: &AgentProcess) -> anyhow::Result<AgentClient> {
        Ok(AgentClient::connect(&agent.addr, self.client_config()).await?)
    }

    /// Mints a certificate for `host` and starts an agent named `name` there.
    pub async fn start_agent(&self, name: &str, host: &str) -> anyhow::Result<AgentProcess> {
        let root = self.dir.join(name);
        let issued = self
            .ca
            .issue_agent(&format!("agent-{name}"), &[host.to_owned()])
            .context("agent certificate")?;
        let tls = certs::write_files(&root.join("tls"), &issued, &self.ca.cert_pem)
            .context("write agent certificate")?;
        let mut agent = AgentProcess {
            name: name.to_owned(),
            host: host.to_owned(),
            addr: format!("{host}:{}", free_port(host)?),
            root,
            tls,
            child: None,
        };
        self.restart(&mut agent).await?;
        Ok(agent)
    }

    /// (Re)starts `agent`'s process on its directories and address; waits for `Health`.
    pub async fn restart(&self, agent: &mut AgentProcess) -> anyhow::Result<()> {
        agent.kill();
        let log = File::options()
            .create(true)
            .append(true)
            .open(agent.log())
            .with_context(|| format!("open {}", agent.log().display()))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .args(["--listen", &agent.addr])
            .args(["--node-name", &agent.name])
            .args(["--agent-id", &agent.name])
            .arg("--disk")
            .arg(agent.disk())
            .arg("--index")
            .arg(agent.root.join("index.redb"))
            .arg("--tls-cert")
            .arg(&agent.tls.cert)
            .arg("--tls-key")
            .arg(&agent.tls.key)
            .arg("--tls-ca")
            .arg(&agent.tls.ca)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        agent.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                agent.child = None;
                bail!(
                    "agent {} exited with {status}; see {}",
                    agent.name,
                    agent.log().display()
                );
            }
            if let Ok(c) = self.client(agent).await
                && c.health().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "agent {} not ready after 30 s; see {}",
                    agent.name,
                    agent.log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `couchestor-node-agent export` serving the manifests on a free port of
    /// 127.0.0.1; returns the process and the NBD URI base (`nbd://127.0.0.1:PORT`).
    pub async fn start_export(
        &self,
        manifests: &[&Path],
    ) -> anyhow::Result<(ExportProcess, String)> {
        self.start_export_with(manifests, &[]).await
    }

    /// [`start_export`](Self::start_export) with extra flags (e.g. `--cache-ram 0`).
    pub async fn start_export_with(
        &self,
        manifests: &[&Path],
        extra: &[&str],
    ) -> anyhow::Result<(ExportProcess, String)> {
        let port = free_port("127.0.0.1")?;
        let addr = format!("127.0.0.1:{port}");
        let log_path = self.dir.join(format!("export-{port}.log"));
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("export").args(["--listen", &addr]);
        for m in manifests {
            cmd.arg("--manifest").arg(m);
        }
        cmd.args(extra);
        let child = cmd
            .arg("--tls-cert")
            .arg(&self.client_tls.cert)
            .arg("--tls-key")
            .arg(&self.client_tls.key)
            .arg("--tls-ca")
            .arg(&self.client_tls.ca)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} export", self.bin.display()))?;
        let mut export = ExportProcess {
            child: Some(child),
            log: log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if let Some(status) = export
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "NBD export exited with {status}; see {}",
                    export.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "NBD export not listening after 30 s; see {}",
                    export.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((export, format!("nbd://{addr}")))
    }
}

/// A running `couchestor-node-agent export`; killed on drop.
#[derive(Debug)]
pub struct ExportProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Drop for ExportProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
