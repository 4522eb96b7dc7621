//! Where a volume's bytes are read from (destage) or written back to (rehydrate): a regular
//! file, a block device, or an NBD export (`nbd://…`, `nbd+unix://…`).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::nbd::NbdClient;

/// A volume device could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {message}")]
pub struct DeviceError {
    pub device: String,
    pub message: String,
}

/// An open volume device.
#[derive(Debug)]
pub enum Device {
    File { path: String, file: Arc<File> },
    Nbd(Box<NbdClient>),
}

fn is_nbd(spec: &str) -> bool {
    spec.starts_with("nbd://") || spec.starts_with("nbd+unix://")
}

impl Device {
    /// Opens `spec` for reading.
    pub async fn open_read(spec: &str) -> Result<Self, DeviceError> {
        Self::open(spec, false, None).await
    }

    /// Opens `spec` for writing `size` bytes: a file is created (or truncated to `size`), a
    /// block device or NBD export must be at least `size` bytes.
    pub async fn open_write(spec: &str, size: u64) -> Result<Self, DeviceError> {
        Self::open(spec, true, Some(size)).await
    }

    async fn open(spec: &str, write: bool, size: Option<u64>) -> Result<Self, DeviceError> {
        let err = |message: String| DeviceError {
            device: spec.to_owned(),
            message,
        };
        if is_nbd(spec) {
            let client = NbdClient::connect(spec)
                .await
                .map_err(|e| err(e.to_string()))?;
            if write && client.read_only() {
                return Err(err("the NBD export is read-only".into()));
            }
            if let Some(size) = size
                && client.size() < size
            {
                return Err(err(format!(
                    "the NBD export holds {} bytes, {size} are needed",
                    client.size()
                )));
            }
            return Ok(Self::Nbd(Box::new(client)));
        }
        let path = spec.to_owned();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let meta = std::fs::metadata(&path).ok();
            let is_block = meta
                .as_ref()
                .is_some_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
            if !write {
                return File::open(&path);
            }
            let f = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .create(!is_block)
                .truncate(false)
                .open(&path)?;
            if let (false, Some(size)) = (is_block, size) {
                f.set_len(size)?;
            }
            Ok(f)
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))?;
        let dev = Self::File {
            path: spec.to_owned(),
            file: Arc::new(file),
        };
        if let Some(size) = size
            && dev.size().await? < size
        {
            return Err(err(format!("holds fewer than the {size} bytes needed")));
        }
        Ok(dev)
    }

    fn name(&self) -> String {
        match self {
            Self::File { path, .. } => path.clone(),
            Self::Nbd(c) => format!("{c:?}"),
        }
    }

    /// Size in bytes (a block device's too, where metadata says 0).
    pub async fn size(&self) -> Result<u64, DeviceError> {
        match self {
            Self::Nbd(c) => Ok(c.size()),
            Self::File { path, file } => {
                let file = Arc::clone(file);
                let r = tokio::task::spawn_blocking(move || (&*file).seek(SeekFrom::End(0))).await;
                match r {
                    Ok(Ok(size)) => Ok(size),
                    Ok(Err(e)) => Err(DeviceError {
                        device: path.clone(),
                        message: e.to_string(),
                    }),
                    Err(e) => Err(DeviceError {
                        device: path.clone(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }

    /// Fills `buf` from `offset`.
    pub async fn read_at(&mut self, offset: u64, mut buf: Vec<u8>) -> Result<Vec<u8>, DeviceError> {
        let name = self.name();
        let err = |message: String| DeviceError {
            device: name.clone(),
            message,
        };
        match self {
            Self::Nbd(c) => {
                c.read_at(offset, &mut buf)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                Ok(buf)
            }
            Self::File { file, .. } => {
                let file = Arc::clone(file);
                let len = buf.len();
                tokio::task::spawn_blocking(move || {
                    file.read_exact_at(&mut buf, offset).map(|()| buf)
                })
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(|e| err(format!("read {len} bytes at {offset}: {e}")))
            }
        }
    }

    /// Writes `data` at `offset`.
    pub async fn write_at(&mut self, offset: u64, data: Vec<u8>) -> Result<(), DeviceError> {
        let name = self.name();
        let err = |message: String| DeviceError {
            device: name.clone(),
            message,
        };
        match self {
            Self::Nbd(c) => c
                .write_at(offset, &data)
                .await
                .map_err(|e| err(e.to_string())),
            Self::File { file, .. } => {
                let file = Arc::clone(file);
                let len = data.len();
                tokio::task::spawn_blocking(move || file.write_all_at(&data, offset))
                    .await
                    .map_err(|e| err(e.to_string()))?
                    .map_err(|e| err(format!("write {len} bytes at {offset}: {e}")))
            }
        }
    }

    /// Makes every write durable (fsync / NBD_CMD_FLUSH).
    pub async fn sync(&mut self) -> Result<(), DeviceError> {
        let name = self.name();
        let err = |message: String| DeviceError {
            device: name.clone(),
            message,
        };
        match self {
            Self::Nbd(c) => c.flush().await.map_err(|e| err(e.to_string())),
            Self::File { file, .. } => {
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || file.sync_all())
                    .await
                    .map_err(|e| err(e.to_string()))?
                    .map_err(|e| err(format!("fsync: {e}")))
            }
        }
    }
}
