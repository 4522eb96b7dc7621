//! Slot I/O on column files: O_DIRECT with 4 KiB-aligned buffers where the filesystem
//! accepts it, buffered I/O where it does not (tmpfs refuses O_DIRECT with EINVAL).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::shard::BLOCK_BYTES;

/// A zeroed byte buffer whose start is 4 KiB-aligned, as O_DIRECT requires. It over-allocates
/// one block and starts at the first aligned address inside, which needs no `unsafe`.
#[derive(Debug)]
pub(super) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes, aligned; `len` is rounded up to whole blocks.
    pub(super) fn zeroed(len: usize) -> Self {
        let len = len.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let storage = vec![0u8; len + BLOCK_BYTES];
        let start = storage.as_ptr().align_offset(BLOCK_BYTES);
        Self {
            storage,
            start,
            len,
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Opens a column file for reading and writing, with O_DIRECT when `direct`.
pub(super) fn open(path: &Path, direct: bool, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(create);
    if direct {
        options.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
    }
    options.open(path)
}

/// Writes `buf` at `offset` (not yet durable: the caller syncs the file).
pub(super) fn write_at(file: &File, offset: u64, buf: &[u8]) -> io::Result<()> {
    file.write_all_at(buf, offset)
}

/// Reads `len` bytes at `offset`; `Ok(None)` when the file ends before that (a hole past
/// the end, e.g. a slot never written).
pub(super) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Option<AlignedBuf>> {
    let mut buf = AlignedBuf::zeroed(len);
    match file.read_exact_at(buf.as_mut_slice(), offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory so a created or removed entry in it survives a crash.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether files in `dir` accept O_DIRECT: opens a probe file with it and writes one aligned
/// block. EINVAL at open or write means no (tmpfs, some FUSE filesystems).
pub(super) fn supports_direct(dir: &Path) -> io::Result<bool> {
    let probe = dir.join(".direct-probe");
    let result = match open(&probe, true, true) {
        Ok(file) => match file.write_all_at(AlignedBuf::zeroed(BLOCK_BYTES).as_slice(), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                Ok(false)
            }
            Err(e) => Err(e),
        },
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    };
    match std::fs::remove_file(&probe) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_start_on_a_4_kib_boundary_and_cover_whole_blocks() {
        for len in [1, 4096, 5000, 1 << 20] {
            let buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.as_slice().as_ptr() as usize % BLOCK_BYTES, 0);
            assert_eq!(buf.as_slice().len() % BLOCK_BYTES, 0);
            assert!(buf.as_slice().len() >= len);
        }
    }
}
