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

type Writer<S> = Arc<Mutex<WriteHalf<S>>>;

async fn reply<S: AsyncWrite>(w: &Writer<S>, error: u32, cookie: u64) -> std::io::Result<()> {
    w.lock()
        .await
        .write_all(&proto::simple_reply(error, cookie))
        .await
}

pub(super) async fn serve<S>(stream: S, reader: Arc<ArchiveReader>) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let wr: Writer<S> = Arc::new(Mutex::new(wr));
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
                reply(&wr, proto::EINVAL, req.cookie).await
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
                reply(&wr, proto::EPERM, req.cookie).await
            }
            proto::CMD_TRIM | proto::CMD_WRITE_ZEROES => reply(&wr, proto::EPERM, req.cookie).await,
            // Nothing is ever written, so there is nothing to make durable.
            proto::CMD_FLUSH => reply(&wr, 0, req.cookie).await,
            proto::CMD_DISC => break Ok(()),
            // Known commands without payload whose extension was not negotiated.
            proto::CMD_CACHE | proto::CMD_BLOCK_STATUS => {
                reply(&wr, proto::EINVAL, req.cookie).await
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
    let _ = wr.lock().await.shutdown().await;
    result
}

async fn read<S: AsyncWrite>(reader: &ArchiveReader, wr: &Writer<S>, req: Request) {
    let answer = reader.read(req.offset, u64::from(req.length)).await;
    let written = match answer {
        Ok(data) => {
            let mut w = wr.lock().await;
            match w.write_all(&proto::simple_reply(0, req.cookie)).await {
                Ok(()) => w.write_all(&data).await,
                Err(e) => Err(e),
            }
        }
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
            reply(wr, errno, req.cookie).await
        }
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "reply not delivered");
    }
}
