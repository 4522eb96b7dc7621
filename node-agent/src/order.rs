//! The caller's side of work orders: send one to an agent, draw its progress, and collect
//! the report and the updated manifest (`couchestor-node-agent archive …`, and the lab).

use std::path::Path;

use anyhow::{Context, bail};
use tonic::Streaming;

use crate::archive::{Device, Layout, Manifest, Placement, WorkReport};
use crate::config::{ArchiveCommand, ClientTlsArgs};
use crate::progress::Bar;
use crate::rpc::{AgentClient, pb};
use crate::tls::{self, TlsMaterial};

/// Follows a work order's stream to its end, drawing a bar per phase on stderr; returns the
/// report and the manifest of the final message, or the order's error status.
pub async fn follow(
    stream: Streaming<pb::WorkProgress>,
    label: &str,
) -> anyhow::Result<(WorkReport, Manifest)> {
    follow_with(stream, label, true).await
}

/// [`follow`] without drawing anything.
pub async fn follow_quietly(
    stream: Streaming<pb::WorkProgress>,
    label: &str,
) -> anyhow::Result<(WorkReport, Manifest)> {
    follow_with(stream, label, false).await
}

async fn follow_with(
    mut stream: Streaming<pb::WorkProgress>,
    label: &str,
    bars: bool,
) -> anyhow::Result<(WorkReport, Manifest)> {
    let mut bar: Option<(String, Bar)> = None;
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => bail!("{label}: the agent ended the order without a result"),
            Err(status) => {
                if let Some((_, b)) = bar.as_mut() {
                    b.finish();
                }
                bail!("{label} failed: {}: {}", status.code(), status.message());
            }
        };
        if message.phase == "done" {
            if let Some((_, b)) = bar.as_mut() {
                b.finish();
            }
            let manifest =
                Manifest::from_pb(message.manifest.as_ref()).context("the result's manifest")?;
            let report = crate::rpc::report_from_pb(message.report.unwrap_or_default());
            return Ok((report, manifest));
        }
        if !bars {
            continue;
        }
        if bar
            .as_ref()
            .is_none_or(|(phase, _)| *phase != message.phase)
        {
            if let Some((_, b)) = bar.as_mut() {
                b.finish();
            }
            bar = Some((message.phase.clone(), Bar::new(message.phase.clone())));
        }
        if let Some((_, b)) = bar.as_mut() {
            b.update(message.bytes_done, message.bytes_total);
        }
    }
}

/// Parses `NODE=HOST:PORT`.
pub fn parse_place(column: u32, spec: &str) -> anyhow::Result<Placement> {
    let Some((node, endpoint)) = spec.split_once('=') else {
        bail!("placement {spec:?} is not NODE=HOST:PORT");
    };
    if node.is_empty() || endpoint.is_empty() {
        bail!("placement {spec:?} is not NODE=HOST:PORT");
    }
    Ok(Placement {
        column,
        node: node.to_owned(),
        endpoint: endpoint.to_owned(),
        healthy: true,
    })
}

/// A client of `agent` with the identity in `tls`.
pub async fn connect(agent: &str, tls: &ClientTlsArgs) -> anyhow::Result<AgentClient> {
    tls::install_crypto_provider();
    let material = TlsMaterial::read(&tls.tls_files())?;
    AgentClient::connect(agent, material.client_config())
        .await
        .with_context(|| format!("connect to agent {agent}"))
}

fn print_report(what: &str, manifest: &Manifest, report: &WorkReport) {
    println!(
        "{what} {}: {} stripes, {:.1} MiB in {:.2} s ({:.1} MiB/s); shards checked {}, repaired {}; state {:?}",
        manifest.volume(),
        report.stripes,
        report.bytes as f64 / f64::from(1u32 << 20),
        report.elapsed.as_secs_f64(),
        report.mib_per_s(),
        report.shards_checked,
        report.shards_repaired,
        manifest.status.state,
    );
    for finding in &report.findings {
        println!("  finding: {finding}");
    }
}

/// `couchestor-node-agent archive …`.
pub async fn run(command: &ArchiveCommand) -> anyhow::Result<()> {
    match command {
        ArchiveCommand::Destage(a) => {
            let size = match a.size {
                Some(size) => size,
                None => Device::open_read(&a.source).await?.size().await?,
            };
            let placement = a
                .placement
                .iter()
                .enumerate()
                .map(|(c, p)| parse_place(c as u32, p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let layout = Layout {
                data_shards: a.data_shards,
                parity_shards: a.parity_shards,
                stripe_size_bytes: a.stripe_size,
                codec_id: crate::codec::CODEC_ID.into(),
            };
            let manifest = Manifest::new(&a.volume, &a.source, size, layout, placement)?;
            let client = connect(&a.order.agent, &a.order.tls).await?;
            let stream = client.destage(&manifest, !a.no_verify).await?;
            let (report, manifest) = follow(stream, "destage").await?;
            save(&manifest, &a.order.manifest)?;
            print_report("destaged", &manifest, &report);
        }
        ArchiveCommand::Rebuild(a) => {
            let manifest = Manifest::load(&a.order.manifest)?;
            let target = parse_place(a.column, &a.to)?;
            let client = connect(&a.order.agent, &a.order.tls).await?;
            let stream = client.rebuild(&manifest, a.column, &target).await?;
            let (report, manifest) = follow(stream, "rebuild").await?;
            save(&manifest, &a.order.manifest)?;
            print_report("rebuilt", &manifest, &report);
        }
        ArchiveCommand::Scrub(a) => {
            let manifest = Manifest::load(&a.order.manifest)?;
            let client = connect(&a.order.agent, &a.order.tls).await?;
            let stream = client.scrub(&manifest, !a.report_only).await?;
            let (report, manifest) = follow(stream, "scrub").await?;
            save(&manifest, &a.order.manifest)?;
            print_report("scrubbed", &manifest, &report);
        }
        ArchiveCommand::Rehydrate(a) => {
            let manifest = Manifest::load(&a.order.manifest)?;
            let client = connect(&a.order.agent, &a.order.tls).await?;
            let stream = client.rehydrate(&manifest, &a.target).await?;
            let (report, manifest) = follow(stream, "rehydrate").await?;
            print_report("rehydrated", &manifest, &report);
        }
    }
    Ok(())
}

fn save(manifest: &Manifest, path: &Path) -> anyhow::Result<()> {
    manifest
        .save(path)
        .with_context(|| format!("save the manifest to {}", path.display()))
}
