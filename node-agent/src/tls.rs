//! Mutual TLS for the agent API. Every agent and every client presents a certificate issued
//! by the cluster CA: the server requires one and verifies it against the CA (tonic builds a
//! rustls `WebPkiClientVerifier` from `client_ca_root`), the client verifies the server's
//! certificate against the same CA and the address it dialled.
//!
//! One crypto provider for the whole process: ring ([`install_crypto_provider`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path}: no PEM block `{expected}` in it")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
}

/// Where an agent's certificate, key and cluster CA live (`--tls-cert/--tls-key/--tls-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// PEM certificate chain, private key and cluster CA, in memory.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

fn read_pem(what: &'static str, path: &Path, expected: &'static str) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    // A clear message at startup beats a handshake failure on the first connection.
    if !text.contains("-----BEGIN ") || !text.contains(expected) {
        return Err(Error::NotPem {
            what,
            path: path.to_owned(),
            expected,
        });
    }
    Ok(text)
}

impl TlsMaterial {
    /// Reads and sanity-checks the three PEM files.
    pub fn read(files: &TlsFiles) -> Result<Self, Error> {
        Ok(Self {
            cert_pem: read_pem("certificate", &files.cert, "CERTIFICATE")?,
            key_pem: read_pem("private key", &files.key, "PRIVATE KEY")?,
            ca_pem: read_pem("CA certificate", &files.ca, "CERTIFICATE")?,
        })
    }

    /// Server side: our identity, and client certificates required and verified against the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
    }

    /// Client side: our identity, and the server verified against the CA. The server name
    /// checked is the host of the URL dialled (an IP SAN for `https://127.0.0.2:port`).
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// Installs ring as the process-wide rustls provider (tonic's server builds its rustls
/// config from the process default). Idempotent: a provider already installed stays.
pub fn install_crypto_provider() {
    // Err means one is installed already; in this crate that is always ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
