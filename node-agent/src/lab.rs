//! The local lab (`./scripts/lab`, binary `couchestor-lab`): the whole erasure-coded
//! archive life cycle on one machine, with real processes and real bytes, no cluster.
//!
//! 1. start N node agents on 127.0.0.x, each with a directory-backed disk (mTLS between all);
//! 2. make a sample volume image (mixed content: zeros, random, text, patterns);
//! 3. destage it k + m onto the agents (a work order to the first agent), verified;
//! 4. read it back through the NBD export with `nbdcopy` and compare — healthy, with m agents
//!    killed (degraded reads), and with m + 1 killed (must fail with a clear error);
//! 5. rebuild the lost columns onto replacement agents;
//! 6. flip bits in shard files on disk, scrub (found and repaired), scrub again (clean);
//! 7. rehydrate to a file and compare;
//!
//! then print a summary (throughputs, storage overhead, checks) and remove everything.

pub mod cluster;
mod image;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use crate::archive::{Layout, Manifest, WorkReport};
use crate::order::follow;
use crate::progress::Bar;
use cluster::{AgentProcess, Cluster};

/// CoucheStor lab: destage a volume k + m onto local node agents, lose some, read it back over
/// NBD, rebuild, scrub away bit rot, rehydrate — and check every byte.
#[derive(Debug, Clone, Parser)]
#[command(name = "couchestor-lab", version)]
pub struct LabConfig {
    /// Volume size, e.g. 1GiB, 256MiB.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Data shards per stripe.
    #[arg(short = 'k', long, default_value_t = 4)]
    pub data_shards: u32,
    /// Parity shards per stripe (agents killed for the degraded read).
    #[arg(short = 'm', long, default_value_t = 2)]
    pub parity_shards: u32,
    /// Node agents to start (at least k + m).
    #[arg(long, default_value_t = 6)]
    pub agents: usize,
    /// Data bytes per stripe, e.g. 1MiB (a multiple of k × 64).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub stripe_size: u64,
    /// Work directory (default: a new directory under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the work directory (images, shards, logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

/// Parses `1GiB`, `256MiB`, `4096`, `1G`, `64k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        other => return Err(format!("unknown unit {other:?} in {s:?}")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is zero or too large"))
}

/// One line of the final summary.
struct Check {
    what: String,
    passed: bool,
    detail: String,
}

struct Lab {
    config: LabConfig,
    cluster: Cluster,
    agents: Vec<AgentProcess>,
    checks: Vec<Check>,
    figures: Vec<(String, String)>,
}

fn mib_s(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{:.1} MiB/s",
        bytes as f64 / f64::from(1u32 << 20) / elapsed.as_secs_f64().max(1e-9)
    )
}

/// Runs the lab; `Ok(true)` when every check passed.
pub async fn run(config: LabConfig) -> anyhow::Result<bool> {
    let (k, m) = (config.data_shards as usize, config.parity_shards as usize);
    if k < 2 || m == 0 {
        bail!("the lab needs k ≥ 2 and m ≥ 1");
    }
    if config.agents < k + m {
        bail!("--agents {} is fewer than k + m = {}", config.agents, k + m);
    }
    if config.agents + m > 200 {
        bail!(
            "--agents {} is more than this lab's loopback addresses allow",
            config.agents
        );
    }
    require("nbdcopy", "libnbd-bin")?;
    let bin = Cluster::sibling_binary()?;
    let dir = match &config.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("couchestor-lab-{}", std::process::id())),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let keep = config.keep;
    let result = async {
        let cluster = Cluster::new(&dir, &bin)?;
        let mut lab = Lab {
            config,
            cluster,
            agents: Vec::new(),
            checks: Vec::new(),
            figures: Vec::new(),
        };
        lab.go().await?;
        Ok::<_, anyhow::Error>(lab.summary())
    };
    // Ctrl-C stops the lab: the agents (killed when dropped) and the work directory go too.
    let result = tokio::select! {
        r = result => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if keep {
        eprintln!("work directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    result
}

/// Fails with the install step when a peer program is missing.
pub fn require(program: &str, package: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        bail!(
            "`{program}` is not installed: run `sudo apt-get install -y {package}` (./scripts/lab does this)"
        );
    }
    Ok(())
}

impl Lab {
    fn check(&mut self, what: impl Into<String>, passed: bool, detail: impl Into<String>) {
        let (what, detail) = (what.into(), detail.into());
        eprintln!(
            "  {} {what}{}",
            if passed { "✔" } else { "✘" },
            if detail.is_empty() {
                String::new()
            } else {
                format!(" — {detail}")
            }
        );
        self.checks.push(Check {
            what,
            passed,
            detail,
        });
    }

    fn figure(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.figures.push((name.into(), value.into()));
    }

    fn step(&self, title: &str) {
        eprintln!("\n== {title}");
    }

    async fn go(&mut self) -> anyhow::Result<()> {
        let (k, m) = (self.config.data_shards, self.config.parity_shards);
        let size = self.config.size;
        let dir = self.cluster.dir.clone();

        self.step(&format!(
            "starting {} node agents on loopback",
            self.config.agents
        ));
        for i in 0..self.config.agents {
            let agent = self
                .cluster
                .start_agent(&format!("node-{i}"), &format!("127.0.0.{}", 10 + i))
                .await?;
            eprintln!(
                "  {} on {} (disk {})",
                agent.name,
                agent.addr,
                agent.disk().display()
            );
            self.agents.push(agent);
        }

        self.step(&format!(
            "making a {} MiB sample volume (mixed content)",
            size >> 20
        ));
        let image = dir.join("volume.img");
        let started = Instant::now();
        image::write_sample(&image, size)?;
        self.figure("sample image written", mib_s(size, started.elapsed()));

        let total = (k + m) as usize;
        self.step(&format!(
            "destaging k={k} m={m} onto {} agents (coordinator {})",
            total, self.agents[0].name
        ));
        let placement = (0..total)
            .map(|c| self.agents[c].placement(c as u32))
            .collect();
        let manifest = Manifest::new(
            "lab-volume",
            &image.display().to_string(),
            size,
            Layout {
                data_shards: k,
                parity_shards: m,
                stripe_size_bytes: self.config.stripe_size,
                codec_id: crate::codec::CODEC_ID.into(),
            },
            placement,
        )?;
        let manifest_path = dir.join("lab-volume.json");
        let coordinator = self.cluster.client(&self.agents[0]).await?;
        let started = Instant::now();
        let (report, manifest) =
            follow(coordinator.destage(&manifest, true).await?, "destage").await?;
        let elapsed = started.elapsed();
        manifest.save(&manifest_path)?;
        self.figure(
            "destage (encode + write + fsync)",
            mib_s(report.bytes, report.elapsed),
        );
        self.figure("destage incl. verify", mib_s(size, elapsed));
        self.check(
            "destage verified every shard",
            report.shards_checked == manifest.status.stripe_count * u64::from(k + m),
            format!("{} shards checked", report.shards_checked),
        );
        let stored = self.stored_bytes(&manifest).await?;
        let overhead = stored as f64 / size as f64;
        let expected = f64::from(k + m) / f64::from(k);
        self.figure(
            "storage overhead",
            format!(
                "{overhead:.3}× (stored {} MiB, k+m/k = {expected:.3}×)",
                stored >> 20
            ),
        );
        self.check(
            format!("storage overhead is (k+m)/k = {expected:.2}×"),
            (overhead - expected).abs() < 0.01,
            format!("{overhead:.3}×"),
        );

        self.step("reading the volume back over NBD (nbdcopy), healthy");
        // Each read goes through a new export process: an export caches decoded stripes
        // (256 MiB of RAM by default), and each read here must reach the agents.
        let (export, base) = self.cluster.start_export(&[&manifest_path]).await?;
        let uri = format!("{base}/lab-volume");
        let healthy =
            self.nbd_read_and_compare("healthy NBD read matches the source", &uri, &image)?;
        drop(export);

        let victims: Vec<usize> = degraded_victims(k as usize, m as usize);
        self.step(&format!(
            "killing {} agents ({}) and reading again (degraded)",
            victims.len(),
            victims
                .iter()
                .map(|v| self.agents[*v].name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for &v in &victims {
            self.agents[v].kill();
        }
        let (export, base) = self.cluster.start_export(&[&manifest_path]).await?;
        let uri = format!("{base}/lab-volume");
        let degraded = self.nbd_read_and_compare(
            &format!(
                "degraded NBD read with {} agents down matches the source",
                victims.len()
            ),
            &uri,
            &image,
        )?;
        if let (Some(h), Some(d)) = (healthy, degraded) {
            self.figure("NBD read healthy", mib_s(size, h));
            self.figure(format!("NBD read degraded ({m} down)"), mib_s(size, d));
            self.figure(
                "degraded / healthy",
                format!("{:.2}×", h.as_secs_f64() / d.as_secs_f64()),
            );
        }

        // One more down than parity can cover: the read must fail, clearly, not return zeros.
        let extra = (0..total)
            .find(|c| !victims.contains(c) && *c != 0)
            .unwrap_or(0);
        self.step(&format!(
            "killing a third agent ({}): more than m down must fail clearly",
            self.agents[extra].name
        ));
        self.agents[extra].kill();
        drop(export);
        let (export, base) = self.cluster.start_export(&[&manifest_path]).await?;
        let uri = format!("{base}/lab-volume");
        let out = Command::new("nbdcopy")
            .args([&uri, "null:"])
            .output()
            .context("run nbdcopy")?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let first_line = stderr.lines().next().unwrap_or("").to_owned();
        self.check(
            format!("with {} agents down the NBD read fails", m + 1),
            !out.status.success(),
            first_line,
        );
        self.cluster.restart(&mut self.agents[extra]).await?;
        drop(export);

        self.step("rebuilding the lost columns (onto spare agents, else new replacement agents)");
        let mut manifest = manifest;
        let mut spares = (total..self.agents.len()).collect::<Vec<_>>().into_iter();
        for &v in &victims {
            let index = match spares.next() {
                Some(spare) => spare,
                None => {
                    let n = self.agents.len();
                    let replacement = self
                        .cluster
                        .start_agent(&format!("node-{n}"), &format!("127.0.0.{}", 10 + n))
                        .await?;
                    eprintln!(
                        "  started replacement {} on {}",
                        replacement.name, replacement.addr
                    );
                    self.agents.push(replacement);
                    n
                }
            };
            let column = v as u32;
            let target = self.agents[index].placement(column);
            let (report, updated) = follow(
                coordinator.rebuild(&manifest, column, &target).await?,
                "rebuild",
            )
            .await?;
            self.figure(
                format!("rebuild column {column} → {}", target.node),
                mib_s(report.bytes, report.elapsed),
            );
            manifest = updated;
        }
        manifest.save(&manifest_path)?;
        let (report, updated) =
            follow(coordinator.scrub(&manifest, false).await?, "verify").await?;
        manifest = updated;
        self.check(
            "after rebuild every column verifies",
            report.findings.is_empty()
                && report.shards_checked == manifest.status.stripe_count * u64::from(k + m),
            format!(
                "{} shards checked, {} findings",
                report.shards_checked,
                report.findings.len()
            ),
        );

        self.step("injecting bit rot into shard files on disk, then scrubbing");
        let flipped = self.flip_bits(&manifest)?;
        let started = Instant::now();
        let (report, updated) = follow(coordinator.scrub(&manifest, true).await?, "scrub").await?;
        manifest = updated;
        self.figure(
            "scrub (read + check every shard)",
            mib_s(size, started.elapsed()),
        );
        self.check(
            format!("scrub found the {flipped} corrupted shards"),
            report.findings.len() == flipped,
            report.findings.first().cloned().unwrap_or_default(),
        );
        self.check(
            format!("scrub repaired the {flipped} shards from parity"),
            report.shards_repaired == flipped as u64,
            format!("{} repaired", report.shards_repaired),
        );
        let (report, updated) =
            follow(coordinator.scrub(&manifest, false).await?, "verify").await?;
        manifest = updated;
        self.check(
            "a second scrub finds nothing",
            report.findings.is_empty(),
            format!("{} findings", report.findings.len()),
        );
        manifest.save(&manifest_path)?;

        self.step("rehydrating to a file and comparing");
        let target = dir.join("rehydrated.img");
        let (report, _) = follow(
            coordinator
                .rehydrate(&manifest, &target.display().to_string())
                .await?,
            "rehydrate",
        )
        .await?;
        self.figure("rehydrate", mib_s(report.bytes, report.elapsed));
        let same = compare_files(&image, &target)?;
        self.check(
            "rehydrated volume is byte-identical to the source",
            same.is_none(),
            same.unwrap_or_default(),
        );
        let _ = std::fs::remove_file(&target);
        let _: &WorkReport = &report;
        Ok(())
    }

    /// Total payload bytes the agents hold for the volume.
    async fn stored_bytes(&self, manifest: &Manifest) -> anyhow::Result<u64> {
        let mut total = 0;
        for p in &manifest.status.placement {
            let agent = self
                .agents
                .iter()
                .find(|a| a.addr == p.endpoint)
                .context("placement names an unknown agent")?;
            let stat = self
                .cluster
                .client(agent)
                .await?
                .stat(manifest.volume(), p.column, false)
                .await?;
            total += stat.bytes;
        }
        Ok(total)
    }

    /// Reads `uri` into a file with nbdcopy and compares it with `source`; returns the time
    /// the read took when it matched.
    fn nbd_read_and_compare(
        &mut self,
        what: &str,
        uri: &str,
        source: &Path,
    ) -> anyhow::Result<Option<Duration>> {
        let out = self.cluster.dir.join("readback.img");
        let started = Instant::now();
        let status = Command::new("nbdcopy")
            .arg("--progress")
            .arg(uri)
            .arg(&out)
            .status()
            .context("run nbdcopy")?;
        let elapsed = started.elapsed();
        if !status.success() {
            self.check(what, false, format!("nbdcopy exited with {status}"));
            return Ok(None);
        }
        let diff = compare_files(source, &out)?;
        let _ = std::fs::remove_file(&out);
        let passed = diff.is_none();
        self.check(
            what,
            passed,
            diff.unwrap_or_else(|| mib_s(self.config.size, elapsed)),
        );
        Ok(passed.then_some(elapsed))
    }

    /// Flips one byte in the payload of a few shards of two columns (data and parity);
    /// returns how many shards were damaged.
    fn flip_bits(&mut self, manifest: &Manifest) -> anyhow::Result<usize> {
        let layout = manifest.archive_layout()?;
        let stripes = layout.stripes();
        let columns = [0u32, layout.columns() as u32 - 1];
        let picks: Vec<u64> = [0, stripes / 3, stripes / 2, stripes - 1]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut flipped = 0;
        for column in columns {
            let p = manifest.placement(column).context("placement")?;
            let agent = self
                .agents
                .iter()
                .find(|a| a.addr == p.endpoint)
                .context("agent of column")?;
            let file =
                find_file(&agent.disk(), &format!("col-{column}.shards"))?.with_context(|| {
                    format!(
                        "shard file of column {column} under {}",
                        agent.disk().display()
                    )
                })?;
            let slot = crate::shard::slot_bytes(layout.shard_len(0) as u32);
            for &s in &picks {
                let offset = s * slot + crate::shard::BLOCK_BYTES as u64 + 17;
                flip_byte(&file, offset)?;
                flipped += 1;
            }
            eprintln!(
                "  flipped a byte in {} shards of column {column} ({})",
                picks.len(),
                file.display()
            );
        }
        Ok(flipped)
    }

    fn summary(&self) -> bool {
        let passed = self.checks.iter().filter(|c| c.passed).count();
        println!(
            "\nCoucheStor lab — k={} m={}, {} MiB volume, {} agents (+{} replacements)",
            self.config.data_shards,
            self.config.parity_shards,
            self.config.size >> 20,
            self.config.agents,
            self.agents.len() - self.config.agents
        );
        println!("\n  {:<40} value", "figure");
        for (name, value) in &self.figures {
            println!("  {name:<40} {value}");
        }
        println!("\n  checks: {passed} of {} passed", self.checks.len());
        for c in &self.checks {
            println!(
                "  {} {}{}",
                if c.passed { "PASS" } else { "FAIL" },
                c.what,
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.detail)
                }
            );
        }
        passed == self.checks.len()
    }
}

/// Columns whose agents the lab kills: a data column and then parity ones, `m` in all.
fn degraded_victims(k: usize, m: usize) -> Vec<usize> {
    let mut v = vec![1.min(k - 1)];
    v.extend((k..k + m).take(m - 1));
    v
}

fn find_file(root: &Path, name: &str) -> anyhow::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(root).with_context(|| format!("read {}", root.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name)? {
                return Ok(Some(found));
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn flip_byte(path: &Path, offset: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset)?;
    f.sync_all()?;
    Ok(())
}

/// `None` when the files are identical, else where they first differ.
pub fn compare_files(a: &Path, b: &Path) -> anyhow::Result<Option<String>> {
    use std::io::Read;
    let mut fa = std::fs::File::open(a).with_context(|| format!("open {}", a.display()))?;
    let mut fb = std::fs::File::open(b).with_context(|| format!("open {}", b.display()))?;
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    if la != lb {
        return Ok(Some(format!("sizes differ: {la} vs {lb} bytes")));
    }
    let mut bar = Bar::new("compare");
    let (mut ba, mut bb) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    let mut offset = 0u64;
    while offset < la {
        let n = ((la - offset) as usize).min(ba.len());
        fa.read_exact(&mut ba[..n])?;
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            bar.finish();
            return Ok(Some(format!(
                "first difference at byte {}",
                offset + i as u64
            )));
        }
        offset += n as u64;
        bar.update(offset, la);
    }
    bar.finish();
    Ok(None)
}
