//! Writing an archive: a byte stream cut into stripes, each encoded into k + m shards and put
//! into the shard store of its column. Tests archive real images with it; destage will use
//! [`StripeEncoder`] with remote columns.

use std::io::{self, Read};
use std::sync::Arc;

use super::{ArchiveLayout, Error as LayoutError};
use crate::codec::{self, ErasureCodec};
use crate::store::{self, ShardStore, VolumeLayout};

/// What went wrong while archiving a stream.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("stripe {stripe}: {source}")]
    Codec {
        stripe: u64,
        #[source]
        source: codec::Error,
    },
    #[error("stripe {stripe}: got {got} data bytes, the layout says {expected}")]
    StripeLength {
        stripe: u64,
        got: usize,
        expected: u64,
    },
    #[error("reading the source at stripe {stripe}: {source}")]
    Source {
        stripe: u64,
        #[source]
        source: io::Error,
    },
    #[error("the source ended at byte {at}, before the volume size {size}")]
    ShortSource { at: u64, size: u64 },
    #[error("{stores} shard stores given for {columns} columns")]
    StoreCount { stores: usize, columns: usize },
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Encodes stripes of one layout into their k + m shards.
#[derive(Debug, Clone)]
pub struct StripeEncoder {
    layout: ArchiveLayout,
    codec: Arc<dyn ErasureCodec>,
}

impl StripeEncoder {
    pub fn new(layout: ArchiveLayout, codec: Arc<dyn ErasureCodec>) -> Result<Self, EncodeError> {
        layout.validate()?;
        if codec.data_shards() != layout.data_shards
            || codec.parity_shards() != layout.parity_shards
        {
            return Err(LayoutError::Layout {
                reason: "codec and layout disagree on k or m".into(),
            }
            .into());
        }
        Ok(Self { layout, codec })
    }

    /// The k + m shards (column order) of `stripe`, whose volume bytes are `data`
    /// (exactly [`ArchiveLayout::stripe_data_len`] bytes; zero-padded here).
    pub fn encode(&self, stripe: u64, data: &[u8]) -> Result<Vec<Vec<u8>>, EncodeError> {
        let expected = self.layout.stripe_data_len(stripe);
        if data.len() as u64 != expected || expected == 0 {
            return Err(EncodeError::StripeLength {
                stripe,
                got: data.len(),
                expected,
            });
        }
        let (k, m) = (self.layout.data_shards, self.layout.parity_shards);
        let shard_len = self.layout.shard_len(stripe);
        let mut padded = data.to_vec();
        padded.resize(k * shard_len, 0);
        let mut parity = vec![vec![0u8; shard_len]; m];
        {
            let data_refs: Vec<&[u8]> = padded.chunks(shard_len).collect();
            let mut parity_refs: Vec<&mut [u8]> =
                parity.iter_mut().map(Vec::as_mut_slice).collect();
            self.codec
                .encode(&data_refs, &mut parity_refs)
                .map_err(|source| EncodeError::Codec { stripe, source })?;
        }
        let mut shards: Vec<Vec<u8>> = padded.chunks(shard_len).map(<[u8]>::to_vec).collect();
        shards.extend(parity);
        Ok(shards)
    }
}

/// Archives `source` (exactly `layout.volume_size` bytes) as `volume`: registers the volume in
/// every store, then puts shard (column c, stripe s) into `stores[c]` (the same store may
/// appear for several columns) and records the destaged watermark. Returns the stripe count.
pub fn archive_into_stores(
    mut source: impl Read,
    volume: &str,
    layout: ArchiveLayout,
    codec: Arc<dyn ErasureCodec>,
    stores: &[Arc<ShardStore>],
) -> Result<u64, EncodeError> {
    if stores.len() != layout.columns() {
        return Err(EncodeError::StoreCount {
            stores: stores.len(),
            columns: layout.columns(),
        });
    }
    let store_layout = VolumeLayout {
        data_shards: layout.data_shards as u16,
        parity_shards: layout.parity_shards as u16,
        stripe_size_bytes: layout.stripe_size,
        codec_id: codec.codec_id().into(),
    };
    for store in stores {
        store.create_volume(volume, &store_layout)?;
    }
    let encoder = StripeEncoder::new(layout, codec)?;
    let stripes = layout.stripes();
    let mut buf = Vec::with_capacity(layout.stripe_size as usize);
    for stripe in 0..stripes {
        let len = layout.stripe_data_len(stripe);
        buf.clear();
        (&mut source)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|source| EncodeError::Source { stripe, source })?;
        if (buf.len() as u64) < len {
            return Err(EncodeError::ShortSource {
                at: stripe * layout.stripe_size + buf.len() as u64,
                size: layout.volume_size,
            });
        }
        for (column, shard) in encoder.encode(stripe, &buf)?.iter().enumerate() {
            stores[column].put(volume, column as u32, stripe, shard)?;
        }
    }
    for store in stores {
        store.set_destaged_stripes(volume, stripes)?;
    }
    Ok(stripes)
}
