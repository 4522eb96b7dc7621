//! The transmission phase of one connection: requests are read in order, reads run
//! concurrently (a bounded number per connection) and each reply is written whole under one
//! lock, so replies may come back out of order as the protocol allows.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use super::SessionError;
use super::proto::{self, MAX_PAYLOAD, Request};
use crate::archive::{ArchiveReader, Error as ArchiveError};

/// Reads in flight per connection; more requests wait in the socket buffer.
const MAX_IN_FLIGHT: usize = 16;

/// Where replies go, and in which form.
struct Replies<S> {
    writer: Mutex<WriteHalf<S>>,
    structured: bool,
}

impl<S: AsyncWrite> Replies<S> {
    async fn done(&self, error: u32, cookie: u64, message: &str) -> std::io::Result<()> {
        let bytes = proto::final_reply(self.structured, error, cookie, message);
        self.writer.lock().await.write_all(&bytes).await
    }

    /// A successful read: one simple reply, or one OFFSET_DATA chunk flagged DONE.
    async fn data(&self, req: &Request, data: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        if self.structured {
            let header = proto::chunk_header(
                proto::REPLY_FLAG_DONE,
                proto::REPLY_TYPE_OFFSET_DATA,
                req.cookie,
                8 + data.len() as u32,
            );
            w.write_all(&header).await?;
            w.write_all(&req.offset.to_be_bytes()).await?;
        } else {
            w.write_all(&proto::simple_reply(0, req.cookie)).await?;
        }
        w.write_all(data).await
    }
}

pub(super) async fn serve<S>(
    stream: S,
    reader: Arc<ArchiveReader>,
    structured: bool,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let wr = Arc::new(Replies {
        writer: Mutex::new(wr),
        structured,
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut reads = JoinSet::new();
    let result = loop {
        let mut header = [0u8; Request::LEN];
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!("client closed without NBD_CMD_DISC");
                break Ok(());
            }
            Err(e) => break Err(e.into()),
        }
        let req = Request::parse(&header);
        if req.magic != proto::REQUEST_MAGIC {
            break Err(SessionError::Protocol(format!(
                "request magic {:#x} is not {:#x}",
                req.magic,
                proto::REQUEST_MAGIC
            )));
        }
        let size = reader.size();
        let in_range = req
            .offset
            .checked_add(u64::from(req.length))
            .is_some_and(|end| end <= size);
        let step = match req.kind {
            proto::CMD_READ if !in_range || req.length > MAX_PAYLOAD => {
                tracing::warn!(
                    offset = req.offset,
                    length = req.length,
                    size,
                    "read outside the export"
                );
                wr.done(proto::EINVAL, req.cookie, "request outside the export")
                    .await
            }
            proto::CMD_READ => {
                // Waiting for a permit here stops reading requests: back-pressure to the client.
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break Ok(());
                };
                let (reader, wr) = (Arc::clone(&reader), Arc::clone(&wr));
                reads.spawn(async move {
                    let _permit = permit;
                    read(&reader, &wr, req).await
                });
                Ok(())
            }
            proto::CMD_WRITE => {
                if req.length > MAX_PAYLOAD {
                    break Err(SessionError::Protocol(format!(
                        "write payload of {} bytes",
                        req.length
                    )));
                }
                // The payload follows the header; it must be consumed to stay in sync.
                let mut sink = tokio::io::sink();
                let copied =
                    tokio::io::copy(&mut (&mut rd).take(u64::from(req.length)), &mut sink).await?;
                if copied != u64::from(req.length) {
                    break Ok(());
                }
                tracing::debug!(offset = req.offset, "write refused: read-only export");
                wr.done(proto::EPERM, req.cookie, "read-only export").await
            }
            proto::CMD_TRIM | proto::CMD_WRITE_ZEROES => {
                wr.done(proto::EPERM, req.cookie, "read-only export").await
            }
            // Nothing is ever written, so there is nothing to make durable.
            proto::CMD_FLUSH => wr.done(0, req.cookie, "").await,
            proto::CMD_DISC => break Ok(()),
            // Known commands without payload whose extension was not negotiated.
            proto::CMD_CACHE | proto::CMD_BLOCK_STATUS => {
                wr.done(proto::EINVAL, req.cookie, "not negotiated").await
            }
            other => {
                // An unknown command might carry a payload of unknown length: the stream
                // cannot be resynchronised.
                break Err(SessionError::Protocol(format!("unknown command {other}")));
            }
        };
        if let Err(e) = step {
            break Err(e.into());
        }
    };
    // Answer every read already accepted before closing (NBD_CMD_DISC semantics).
    while reads.join_next().await.is_some() {}
    let _ = wr.writer.lock().await.shutdown().await;
    result
}

async fn read<S: AsyncWrite>(reader: &ArchiveReader, wr: &Replies<S>, req: Request) {
    let written = match reader.read(req.offset, u64::from(req.length)).await {
        Ok(data) => wr.data(&req, &data).await,
        Err(e) => {
            let errno = match e {
                ArchiveError::OutOfRange { .. } => proto::EINVAL,
                _ => proto::EIO,
            };
            // The archive logged which stripe and columns; tie it to this request.
            tracing::error!(
                volume = reader.volume(),
                offset = req.offset,
                length = req.length,
                error = %e,
                "read failed, answering EIO"
            );
            wr.done(errno, req.cookie, &e.to_string()).await
        }
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "reply not delivered");
    }
}
