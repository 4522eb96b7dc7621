//! A small NBD client (fixed newstyle, NBD_OPT_GO, simple replies) so destage can read a
//! volume from an `nbd://` export (qemu-nbd, a Mayastor nexus) and rehydrate can write one
//! back. One request is in flight at a time per client; callers that want more open several.
//!
//! Addresses are NBD URIs as libnbd spells them:
//! - `nbd://HOST[:PORT][/EXPORT]` (TCP, port 10809 by default);
//! - `nbd+unix:///EXPORT?socket=PATH` (Unix socket).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::{TcpStream, UnixStream};

use super::proto;

/// Why an NBD client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "{uri:?} is not an NBD URI (nbd://host[:port][/export] or nbd+unix:///export?socket=path)"
    )]
    Uri { uri: String },
    #[error("NBD server {uri}: {source}")]
    Io {
        uri: String,
        #[source]
        source: io::Error,
    },
    #[error("NBD server {uri}: {what}")]
    Protocol { uri: String, what: String },
    #[error("NBD server {uri}: {command} of {len} bytes at {offset} failed with error {errno}")]
    Command {
        uri: String,
        command: &'static str,
        offset: u64,
        len: u32,
        errno: u32,
    },
    #[error("NBD server {uri}: export is read-only")]
    ReadOnly { uri: String },
}

/// Where an NBD export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddress {
    Tcp {
        host: String,
        port: u16,
        export: String,
    },
    Unix {
        socket: String,
        export: String,
    },
}

impl NbdAddress {
    /// Parses an NBD URI (see the module docs); `None` when `uri` is not one.
    pub fn parse(uri: &str) -> Option<Self> {
        if let Some(rest) = uri.strip_prefix("nbd+unix://") {
            let (path, query) = rest.split_once('?')?;
            let export = path.strip_prefix('/').unwrap_or(path).to_owned();
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))?
                .to_owned();
            return (!socket.is_empty()).then_some(Self::Unix { socket, export });
        }
        let rest = uri.strip_prefix("nbd://")?;
        let (authority, export) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 10809),
        };
        if host.is_empty() {
            return None;
        }
        Some(Self::Tcp {
            host: host.to_owned(),
            port,
            export: export.to_owned(),
        })
    }

    fn export(&self) -> &str {
        match self {
            Self::Tcp { export, .. } | Self::Unix { export, .. } => export,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A connection to one export, after the handshake.
pub struct NbdClient {
    uri: String,
    io: BufStream<Box<dyn Stream>>,
    size: u64,
    flags: u16,
    cookie: u64,
}

impl std::fmt::Debug for NbdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdClient")
            .field("uri", &self.uri)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl NbdClient {
    /// Connects to `uri` and selects its export with NBD_OPT_GO.
    pub async fn connect(uri: &str) -> Result<Self, ClientError> {
        let addr = NbdAddress::parse(uri).ok_or_else(|| ClientError::Uri { uri: uri.into() })?;
        let io_err = |source| ClientError::Io {
            uri: uri.into(),
            source,
        };
        let stream: Box<dyn Stream> = match &addr {
            NbdAddress::Tcp { host, port, .. } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(io_err)?;
                s.set_nodelay(true).map_err(io_err)?;
                Box::new(s)
            }
            NbdAddress::Unix { socket, .. } => {
                Box::new(UnixStream::connect(socket).await.map_err(io_err)?)
            }
        };
        let mut client = Self {
            uri: uri.to_owned(),
            io: BufStream::with_capacity(1 << 20, 1 << 20, stream),
            size: 0,
            flags: 0,
            cookie: 0,
        };
        client.handshake(addr.export()).await?;
        Ok(client)
    }

    fn protocol<T>(&self, what: impl Into<String>) -> Result<T, ClientError> {
        Err(ClientError::Protocol {
            uri: self.uri.clone(),
            what: what.into(),
        })
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            uri: self.uri.clone(),
            source,
        }
    }

    async fn handshake(&mut self, export: &str) -> Result<(), ClientError> {
        let greeting = async {
            let magic = self.io.read_u64().await?;
            let opt = self.io.read_u64().await?;
            let flags = self.io.read_u16().await?;
            Ok::<_, io::Error>((magic, opt, flags))
        }
        .await
        .map_err(|e| self.io(e))?;
        if greeting.0 != proto::INIT_MAGIC || greeting.1 != proto::OPTION_MAGIC {
            return self.protocol("not a newstyle NBD server");
        }
        if greeting.2 & proto::FLAG_FIXED_NEWSTYLE == 0 {
            return self.protocol("server does not speak fixed newstyle");
        }
        let mut client_flags = proto::FLAG_C_FIXED_NEWSTYLE;
        if greeting.2 & proto::FLAG_NO_ZEROES != 0 {
            client_flags |= proto::FLAG_C_NO_ZEROES;
        }
        // NBD_OPT_GO: export name, then no information requests.
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        let mut msg = client_flags.to_be_bytes().to_vec();
        msg.extend_from_slice(&proto::OPTION_MAGIC.to_be_bytes());
        msg.extend_from_slice(&proto::OPT_GO.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(&data);
        self.send(&msg).await?;
        loop {
            let (magic, _option, reply, len) = async {
                let magic = self.io.read_u64().await?;
                let option = self.io.read_u32().await?;
                let reply = self.io.read_u32().await?;
                let len = self.io.read_u32().await?;
                Ok::<_, io::Error>((magic, option, reply, len))
            }
            .await
            .map_err(|e| self.io(e))?;
            if magic != proto::REPLY_MAGIC {
                return self.protocol(format!("option reply magic {magic:#x}"));
            }
            if len > proto::MAX_OPTION_LEN {
                return self.protocol(format!("option reply of {len} bytes"));
            }
            let mut body = vec![0u8; len as usize];
            self.io
                .read_exact(&mut body)
                .await
                .map_err(|e| self.io(e))?;
            match reply {
                proto::REP_ACK => break,
                proto::REP_INFO => {
                    if body.len() >= 12 && u16::from_be_bytes([body[0], body[1]]) == 0 {
                        let mut size = [0u8; 8];
                        size.copy_from_slice(&body[2..10]);
                        self.size = u64::from_be_bytes(size);
                        self.flags = u16::from_be_bytes([body[10], body[11]]);
                    }
                }
                r if r & (1 << 31) != 0 => {
                    return self.protocol(format!(
                        "export {export:?} refused (reply {r:#x}): {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                r => return self.protocol(format!("unexpected option reply {r}")),
            }
        }
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let r = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        }
        .await;
        r.map_err(|e| self.io(e))
    }

    /// Size of the export in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the server exports read-only.
    pub fn read_only(&self) -> bool {
        self.flags & proto::FLAG_READ_ONLY != 0
    }

    async fn request(
        &mut self,
        command: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.cookie += 1;
        let mut head = [0u8; 28];
        head[..4].copy_from_slice(&proto::REQUEST_MAGIC.to_be_bytes());
        head[6..8].copy_from_slice(&command.to_be_bytes());
        head[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        head[16..24].copy_from_slice(&offset.to_be_bytes());
        head[24..28].copy_from_slice(&len.to_be_bytes());
        let r = async {
            self.io.write_all(&head).await?;
            self.io.write_all(payload).await?;
            self.io.flush().await?;
            let magic = self.io.read_u32().await?;
            let errno = self.io.read_u32().await?;
            let cookie = self.io.read_u64().await?;
            Ok::<_, io::Error>((magic, errno, cookie))
        }
        .await;
        let (magic, errno, cookie) = r.map_err(|e| self.io(e))?;
        if magic != proto::SIMPLE_REPLY_MAGIC || cookie != self.cookie {
            return self.protocol(format!("reply magic {magic:#x} cookie {cookie}"));
        }
        if errno != 0 {
            let name = match command {
                proto::CMD_READ => "READ",
                proto::CMD_WRITE => "WRITE",
                _ => "FLUSH",
            };
            return Err(ClientError::Command {
                uri: self.uri.clone(),
                command: name,
                offset,
                len,
                errno,
            });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        for (i, chunk) in buf.chunks_mut(proto::MAX_PAYLOAD as usize).enumerate() {
            let at = offset + (i as u64) * u64::from(proto::MAX_PAYLOAD);
            self.request(proto::CMD_READ, at, chunk.len() as u32, &[])
                .await?;
            self.io.read_exact(chunk).await.map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset` (not durable until [`flush`](Self::flush)).
    pub async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        if self.read_only() {
            return Err(ClientError::ReadOnly {
                uri: self.uri.clone(),
            });
        }
        for (i, chunk) in data.chunks(proto::MAX_PAYLOAD as usize).enumerate() {
            let at = offset + (i as u64) * u64::from(proto::MAX_PAYLOAD);
            self.request(proto::CMD_WRITE, at, chunk.len() as u32, chunk)
                .await?;
        }
        Ok(())
    }

    /// Asks the server to make every completed write durable.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.request(proto::CMD_FLUSH, 0, 0, &[]).await
    }

    /// Ends the session politely (NBD_CMD_DISC has no reply).
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        let mut head = [0u8; 28];
        head[..4].copy_from_slice(&proto::REQUEST_MAGIC.to_be_bytes());
        head[6..8].copy_from_slice(&proto::CMD_DISC.to_be_bytes());
        self.send(&head).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbd_uris_parse_into_tcp_and_unix_addresses() {
        assert_eq!(
            NbdAddress::parse("nbd://127.0.0.1:10900/vol"),
            Some(NbdAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 10900,
                export: "vol".into()
            })
        );
        assert_eq!(
            NbdAddress::parse("nbd://localhost"),
            Some(NbdAddress::Tcp {
                host: "localhost".into(),
                port: 10809,
                export: String::new()
            })
        );
        assert_eq!(
            NbdAddress::parse("nbd+unix:///disk?socket=/tmp/s.sock"),
            Some(NbdAddress::Unix {
                socket: "/tmp/s.sock".into(),
                export: "disk".into()
            })
        );
        for bad in [
            "/dev/sda",
            "nbd://",
            "nbd://host:port/x",
            "nbd+unix:///x",
            "http://x",
        ] {
            assert_eq!(NbdAddress::parse(bad), None, "{bad}");
        }
    }
}
