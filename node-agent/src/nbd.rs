//! A read-only NBD server (fixed newstyle handshake, simple or structured replies) exporting archived
//! volumes by name, so that qemu, nbdcopy or the kernel client can read an archive while its
//! columns are degraded. Behaviour and the tests behind it: `docs/nbd.md`.
//!
//! Handshake options: NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_ABORT, the old
//! NBD_OPT_EXPORT_NAME and NBD_OPT_STRUCTURED_REPLY (reads answered with one OFFSET_DATA
//! chunk, errors with an ERROR chunk carrying the message); any other option is answered
//! NBD_REP_ERR_UNSUP. Commands: READ,
//! FLUSH (nothing to flush), DISC; WRITE, TRIM and WRITE_ZEROES get EPERM. A stripe that cannot
//! be reconstructed answers EIO for that request only; a request beyond the end gets EINVAL;
//! a malformed request (bad magic, unknown command) closes the connection.

pub mod client;
mod proto;
mod transmission;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::archive::ArchiveReader;
pub use client::{ClientError, NbdAddress, NbdClient};
use proto::{InfoRequest, MAX_OPTION_LEN, MAX_PAYLOAD};

/// Why a client session ended abnormally (logged; never sent to the client).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

fn violation<T>(what: impl Into<String>) -> Result<T, SessionError> {
    Err(SessionError::Protocol(what.into()))
}

/// One exported volume.
#[derive(Debug, Clone)]
struct Export {
    reader: Arc<ArchiveReader>,
    description: String,
}

/// The outcome of a successful handshake.
struct Chosen {
    name: String,
    export: Export,
    /// Structured replies were negotiated (NBD_OPT_STRUCTURED_REPLY).
    structured: bool,
}

/// The exports of one node and the logic serving them to NBD clients.
#[derive(Debug, Default)]
pub struct NbdServer {
    exports: BTreeMap<String, Export>,
}

impl NbdServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports `reader` as `name` (replacing an export of that name).
    pub fn add_export(&mut self, name: impl Into<String>, reader: Arc<ArchiveReader>) {
        let description = format!(
            "CoucheStor archive {} (k={} m={}, read-only)",
            reader.volume(),
            reader.layout().data_shards,
            reader.layout().parity_shards
        );
        self.exports.insert(
            name.into(),
            Export {
                reader,
                description,
            },
        );
    }

    /// Serves TCP clients until `shutdown` completes, then drops every open session.
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        tracing::info!(addr = ?listener.local_addr()?, exports = self.exports.len(), "NBD server listening");
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small reads and replies: do not let Nagle hold a reply back.
                        let _ = stream.set_nodelay(true);
                        self.spawn_session(&mut sessions, stream, peer.to_string());
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        Ok(())
    }

    /// Serves clients on a Unix socket until `shutdown` completes.
    pub async fn serve_unix(
        self: Arc<Self>,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => self.spawn_session(&mut sessions, stream, "unix".into()),
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        Ok(())
    }

    fn spawn_session<S>(self: &Arc<Self>, sessions: &mut JoinSet<()>, stream: S, peer: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = Arc::clone(self);
        let span = tracing::info_span!("nbd_session", %peer);
        sessions.spawn(
            async move {
                match server.serve_connection(stream).await {
                    Ok(()) => tracing::debug!("session ended"),
                    Err(SessionError::Protocol(what)) => {
                        tracing::warn!(%what, "closing connection: protocol violation");
                    }
                    Err(SessionError::Io(e)) => tracing::debug!(error = %e, "connection lost"),
                }
            }
            .instrument(span),
        );
    }

    /// Runs the handshake and, when the client picks an export, the transmission phase on
    /// one connection.
    pub async fn serve_connection<S>(&self, mut stream: S) -> Result<(), SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self.handshake(&mut stream).await? {
            Some(chosen) => {
                tracing::info!(export = %chosen.name, structured = chosen.structured, "client attached");
                transmission::serve(stream, chosen.export.reader, chosen.structured).await
            }
            None => Ok(()),
        }
    }

    /// Option haggling; returns the export chosen by NBD_OPT_GO / NBD_OPT_EXPORT_NAME, or
    /// `None` when the client aborted.
    async fn handshake<S>(&self, s: &mut S) -> Result<Option<Chosen>, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut greeting = Vec::with_capacity(18);
        greeting.extend_from_slice(&proto::INIT_MAGIC.to_be_bytes());
        greeting.extend_from_slice(&proto::OPTION_MAGIC.to_be_bytes());
        greeting
            .extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
        s.write_all(&greeting).await?;
        let client_flags = s.read_u32().await?;
        if client_flags & !(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES) != 0 {
            return violation(format!("unknown client flags {client_flags:#x}"));
        }
        let no_zeroes = client_flags & proto::FLAG_C_NO_ZEROES != 0;
        let mut structured = false;
        loop {
            let magic = s.read_u64().await?;
            if magic != proto::OPTION_MAGIC {
                return violation(format!("option magic {magic:#x} is not IHAVEOPT"));
            }
            let option = s.read_u32().await?;
            let len = s.read_u32().await?;
            if len > MAX_OPTION_LEN {
                return violation(format!("option {option} carries {len} bytes"));
            }
            let mut data = vec![0u8; len as usize];
            s.read_exact(&mut data).await?;
            match option {
                proto::OPT_EXPORT_NAME => {
                    let name = String::from_utf8_lossy(&data).into_owned();
                    // This old option has no error reply: an unknown name can only close.
                    let Some(export) = self.exports.get(&name) else {
                        return violation(format!(
                            "NBD_OPT_EXPORT_NAME of unknown export {name:?}"
                        ));
                    };
                    let mut reply = export.reader.size().to_be_bytes().to_vec();
                    reply.extend_from_slice(&proto::EXPORT_FLAGS.to_be_bytes());
                    if !no_zeroes {
                        reply.extend_from_slice(&[0u8; 124]);
                    }
                    s.write_all(&reply).await?;
                    return Ok(Some(Chosen {
                        name,
                        export: export.clone(),
                        structured,
                    }));
                }
                proto::OPT_ABORT => {
                    s.write_all(&proto::option_reply(option, proto::REP_ACK, &[]))
                        .await?;
                    return Ok(None);
                }
                proto::OPT_STRUCTURED_REPLY if data.is_empty() => {
                    // Needed by qemu when the size is not a multiple of 512: with simple
                    // replies it reads the tail request's whole (sector-rounded) buffer.
                    structured = true;
                    s.write_all(&proto::option_reply(option, proto::REP_ACK, &[]))
                        .await?;
                }
                proto::OPT_LIST | proto::OPT_STRUCTURED_REPLY if !data.is_empty() => {
                    let msg = b"this option takes no data";
                    s.write_all(&proto::option_reply(option, proto::REP_ERR_INVALID, msg))
                        .await?;
                }
                proto::OPT_LIST => {
                    let mut out = Vec::new();
                    for name in self.exports.keys() {
                        let mut entry = (name.len() as u32).to_be_bytes().to_vec();
                        entry.extend_from_slice(name.as_bytes());
                        out.extend(proto::option_reply(option, proto::REP_SERVER, &entry));
                    }
                    out.extend(proto::option_reply(option, proto::REP_ACK, &[]));
                    s.write_all(&out).await?;
                }
                proto::OPT_INFO | proto::OPT_GO => {
                    if let Some((name, export)) = self.answer_info(s, option, &data).await?
                        && option == proto::OPT_GO
                    {
                        return Ok(Some(Chosen {
                            name,
                            export,
                            structured,
                        }));
                    }
                }
                _ => {
                    tracing::debug!(option, "unsupported option");
                    let msg = format!("option {option} is not supported");
                    s.write_all(&proto::option_reply(
                        option,
                        proto::REP_ERR_UNSUP,
                        msg.as_bytes(),
                    ))
                    .await?;
                }
            }
        }
    }

    /// Answers NBD_OPT_INFO / NBD_OPT_GO; returns the export when the answer was positive.
    async fn answer_info<S>(
        &self,
        s: &mut S,
        option: u32,
        data: &[u8],
    ) -> Result<Option<(String, Export)>, SessionError>
    where
        S: AsyncWrite + Unpin,
    {
        let Some(req) = InfoRequest::parse(data) else {
            let msg = b"malformed export name or information request list";
            s.write_all(&proto::option_reply(option, proto::REP_ERR_INVALID, msg))
                .await?;
            return Ok(None);
        };
        let Some(export) = self.exports.get(&req.name) else {
            tracing::warn!(export = %req.name, "client asked for an unknown export");
            let msg = format!("no export named {:?}", req.name);
            s.write_all(&proto::option_reply(
                option,
                proto::REP_ERR_UNKNOWN,
                msg.as_bytes(),
            ))
            .await?;
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut info = proto::INFO_EXPORT.to_be_bytes().to_vec();
        info.extend_from_slice(&export.reader.size().to_be_bytes());
        info.extend_from_slice(&proto::EXPORT_FLAGS.to_be_bytes());
        out.extend(proto::option_reply(option, proto::REP_INFO, &info));
        // Any offset and length is served (minimum 1); a stripe is the natural unit, but
        // clients cap their requests at the preferred size, so advertise a page.
        let mut info = proto::INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [1u32, 4096, MAX_PAYLOAD] {
            info.extend_from_slice(&v.to_be_bytes());
        }
        out.extend(proto::option_reply(option, proto::REP_INFO, &info));
        if req.requests.contains(&proto::INFO_NAME) {
            let mut info = proto::INFO_NAME.to_be_bytes().to_vec();
            info.extend_from_slice(req.name.as_bytes());
            out.extend(proto::option_reply(option, proto::REP_INFO, &info));
        }
        if req.requests.contains(&proto::INFO_DESCRIPTION) {
            let mut info = proto::INFO_DESCRIPTION.to_be_bytes().to_vec();
            info.extend_from_slice(export.description.as_bytes());
            out.extend(proto::option_reply(option, proto::REP_INFO, &info));
        }
        out.extend(proto::option_reply(option, proto::REP_ACK, &[]));
        s.write_all(&out).await?;
        Ok(Some((req.name, export.clone())))
    }
}

/// Accept failures (EMFILE, a reset before accept) are transient: log, pause, go on.
async fn accept_failed(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
