//! A sample volume image with the kinds of content real volumes hold, so that every codec
//! path sees realistic bytes: zero runs (thin regions), incompressible random data, text,
//! and structured records. Deterministic: the same size always gives the same bytes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::progress::Bar;

const BLOCK: usize = 1 << 20;

/// The bytes of block `index` (1 MiB) of the sample image.
pub fn sample_block(index: u64, out: &mut [u8]) {
    match index % 4 {
        0 => out.fill(0),
        1 => {
            // xorshift64*, seeded per block.
            let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for chunk in out.chunks_mut(8) {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        2 => {
            let line = format!(
                "block {index:>8}: the quick brown fox jumps over the lazy dog; CoucheStor lab\n"
            );
            for (dst, src) in out.iter_mut().zip(line.bytes().cycle()) {
                *dst = src;
            }
        }
        _ => {
            for (i, chunk) in out.chunks_mut(16).enumerate() {
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&index.to_le_bytes());
                rec[8..].copy_from_slice(&(i as u64).to_le_bytes());
                chunk.copy_from_slice(&rec[..chunk.len()]);
            }
        }
    }
}

/// Writes a `size`-byte sample image to `path` (fsynced), drawing a progress bar.
pub fn write_sample(path: &Path, size: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(4 << 20, file);
    let mut block = vec![0u8; BLOCK];
    let mut bar = Bar::new("image");
    let mut written = 0u64;
    let mut index = 0u64;
    while written < size {
        let n = ((size - written) as usize).min(BLOCK);
        sample_block(index, &mut block);
        w.write_all(&block[..n])?;
        written += n as u64;
        index += 1;
        bar.update(written, size);
    }
    bar.finish();
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}
