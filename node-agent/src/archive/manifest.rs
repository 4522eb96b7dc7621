//! The record of one archived volume: layout, size, where each column lives and how far the
//! destage got. It has the shape of an `EcVolume` object (DESIGN §4) so the operator can apply
//! it as is; outside a cluster (the lab, the CLI) it is a JSON file, replaced atomically.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArchiveLayout;
use crate::rpc::pb;
use crate::store::VolumeLayout;

/// What went wrong reading or writing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {path}: not an EcVolume manifest: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest of {volume}: {reason}")]
    Invalid { volume: String, reason: String },
}

/// `EcVolume.status.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveState {
    Destaging,
    Ready,
    Degraded,
    Rebuilding,
    Rehydrating,
    Failed,
}

/// `EcVolume.spec.layout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    pub data_shards: u32,
    pub parity_shards: u32,
    pub stripe_size_bytes: u64,
    pub codec_id: String,
}

/// Where one column lives (`EcVolume.status.placement[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub column: u32,
    /// Node (or lab agent) name.
    pub node: String,
    /// The node agent's gRPC address, `host:port`.
    pub endpoint: String,
    #[serde(default = "yes")]
    pub healthy: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    /// Unique per archive (a new destage of the same volume id gets a new one); caches key
    /// on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Where the bytes came from (a path or an NBD URI).
    pub source_volume_id: String,
    pub size_bytes: u64,
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub state: ArchiveState,
    pub placement: Vec<Placement>,
    pub stripe_count: u64,
    /// Stripes `0..destaged_stripes` are durable on every column (destage resumes here).
    pub destaged_stripes: u64,
}

/// An archived volume, EcVolume-shaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
    pub status: Status,
}

impl Manifest {
    /// A manifest for a destage that has not written anything yet.
    pub fn new(
        volume: &str,
        source: &str,
        size_bytes: u64,
        layout: Layout,
        placement: Vec<Placement>,
    ) -> Result<Self, ManifestError> {
        let mut m = Self {
            api_version: "couchestor.io/v1alpha1".into(),
            kind: "EcVolume".into(),
            metadata: Metadata {
                name: volume.to_owned(),
                uid: Some(new_uid()),
            },
            spec: Spec {
                source_volume_id: source.to_owned(),
                size_bytes,
                layout,
            },
            status: Status {
                state: ArchiveState::Destaging,
                placement,
                stripe_count: 0,
                destaged_stripes: 0,
            },
        };
        m.status.stripe_count = m.archive_layout()?.stripes();
        m.check()?;
        Ok(m)
    }

    pub fn volume(&self) -> &str {
        &self.metadata.name
    }

    /// The bucket this archive's stripes are cached under: the volume id and its uid, or
    /// (for a manifest without one) a digest of everything that determines its bytes.
    pub fn cache_bucket(&self) -> String {
        match &self.metadata.uid {
            Some(uid) => format!("{}.{uid}", self.metadata.name),
            None => {
                let spec = serde_json::to_vec(&self.spec).unwrap_or_default();
                format!("{}.spec-{:08x}", self.metadata.name, crc32c::crc32c(&spec))
            }
        }
    }

    fn invalid<T>(&self, reason: impl Into<String>) -> Result<T, ManifestError> {
        Err(ManifestError::Invalid {
            volume: self.metadata.name.clone(),
            reason: reason.into(),
        })
    }

    /// The read/write geometry.
    pub fn archive_layout(&self) -> Result<ArchiveLayout, ManifestError> {
        let l = &self.spec.layout;
        let layout = ArchiveLayout {
            volume_size: self.spec.size_bytes,
            data_shards: l.data_shards as usize,
            parity_shards: l.parity_shards as usize,
            stripe_size: l.stripe_size_bytes,
        };
        match layout.validate() {
            Ok(()) => Ok(layout),
            Err(e) => self.invalid(e.to_string()),
        }
    }

    /// The layout as the shard store records it.
    pub fn store_layout(&self) -> VolumeLayout {
        let l = &self.spec.layout;
        VolumeLayout {
            data_shards: l.data_shards as u16,
            parity_shards: l.parity_shards as u16,
            stripe_size_bytes: l.stripe_size_bytes,
            codec_id: l.codec_id.clone(),
        }
    }

    /// Every column placed exactly once, on distinct nodes.
    pub fn check(&self) -> Result<(), ManifestError> {
        let layout = self.archive_layout()?;
        if self.spec.size_bytes == 0 {
            return self.invalid("size is 0");
        }
        let columns = layout.columns();
        let mut seen = vec![false; columns];
        let mut nodes = std::collections::BTreeSet::new();
        for p in &self.status.placement {
            let Some(slot) = seen.get_mut(p.column as usize) else {
                return self.invalid(format!("column {} ≥ k + m = {columns}", p.column));
            };
            if std::mem::replace(slot, true) {
                return self.invalid(format!("column {} placed twice", p.column));
            }
            if !nodes.insert(p.node.as_str()) {
                return self.invalid(format!(
                    "node {} holds two columns; one node's loss would cost two",
                    p.node
                ));
            }
        }
        if let Some(c) = seen.iter().position(|s| !s) {
            return self.invalid(format!("column {c} has no placement"));
        }
        Ok(())
    }

    /// Placement of column `c`.
    pub fn placement(&self, column: u32) -> Option<&Placement> {
        self.status.placement.iter().find(|p| p.column == column)
    }

    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Io {
            path: shown.clone(),
            source,
        })?;
        let m: Self = serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse {
            path: shown,
            source,
        })?;
        m.check()?;
        Ok(m)
    }

    /// Replaces `path` atomically and durably: a temporary file, fsync, rename, fsync of the
    /// directory. A crash leaves the old manifest or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile_in(dir, path).map_err(io)?;
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        tmp.1.write_all(&bytes).map_err(io)?;
        tmp.1.sync_all().map_err(io)?;
        std::fs::rename(&tmp.0, path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    pub fn to_pb(&self) -> pb::ArchiveManifest {
        pb::ArchiveManifest {
            json: serde_json::to_string(self).unwrap_or_default(),
        }
    }

    pub fn from_pb(m: Option<&pb::ArchiveManifest>) -> Result<Self, ManifestError> {
        let json = m.map(|m| m.json.as_str()).unwrap_or_default();
        let m: Self = serde_json::from_str(json).map_err(|source| ManifestError::Parse {
            path: "(request)".into(),
            source,
        })?;
        m.check()?;
        Ok(m)
    }
}

/// 128 random bits (std's hasher keys come from the OS's random source) as hex.
fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

fn tempfile_in(dir: &Path, target: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let f = std::fs::File::create(&tmp)?;
    Ok((tmp, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let placement = (0..6)
            .map(|c| Placement {
                column: c,
                node: format!("node-{c}"),
                endpoint: format!("127.0.0.{}:7400", c + 1),
                healthy: true,
            })
            .collect();
        Manifest::new(
            "vol-1",
            "/tmp/image",
            10 << 20,
            Layout {
                data_shards: 4,
                parity_shards: 2,
                stripe_size_bytes: 1 << 20,
                codec_id: crate::codec::CODEC_ID.into(),
            },
            placement,
        )
        .expect("valid manifest")
    }

    #[test]
    fn a_manifest_survives_a_save_and_load_and_is_ecvolume_shaped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vol-1.json");
        let m = manifest();
        m.save(&path).expect("save");
        assert_eq!(Manifest::load(&path).expect("load"), m);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(v["kind"], "EcVolume");
        assert_eq!(v["spec"]["layout"]["dataShards"], 4);
        assert_eq!(v["status"]["stripeCount"], 10);
        assert_eq!(v["status"]["placement"][5]["endpoint"], "127.0.0.6:7400");
    }

    #[test]
    fn two_columns_on_one_node_or_a_missing_column_are_refused() {
        let mut m = manifest();
        m.status.placement[1].node = "node-0".into();
        assert!(
            m.check()
                .unwrap_err()
                .to_string()
                .contains("holds two columns")
        );
        let mut m = manifest();
        m.status.placement.pop();
        assert!(
            m.check()
                .unwrap_err()
                .to_string()
                .contains("column 5 has no placement")
        );
    }
}
