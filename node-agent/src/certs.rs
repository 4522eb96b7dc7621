//! A cluster CA and per-agent certificates, for tests and the local lab
//! (`couchestor-node-agent certs`). Production clusters issue these with cert-manager.
//!
//! Agent certificates carry both `serverAuth` and `clientAuth`: agents serve the API and
//! call each other (rebuild, destage) with the same identity. IP addresses in the names
//! become IP SANs, which is what a client dialling `https://127.0.0.2:port` verifies.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::tls::TlsFiles;

/// A CA that issues agent and client certificates.
#[derive(Debug)]
pub struct Authority {
    /// The CA certificate (PEM): every agent's `--tls-ca`.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key (PEM).
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An agent certificate named `common_name` for `hosts` (IP addresses or DNS names),
    /// usable as server and as client.
    pub fn issue_agent(&self, common_name: &str, hosts: &[String]) -> Result<Issued, rcgen::Error> {
        self.issue(
            common_name,
            hosts,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client-only certificate (the operator, a CLI).
    pub fn issue_client(&self, common_name: &str) -> Result<Issued, rcgen::Error> {
        self.issue(common_name, &[], vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        common_name: &str,
        hosts: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes `cert.pem`, `key.pem` (mode 0600) and `ca.pem` into `dir` (created if needed) and
/// returns their paths, ready for `--tls-cert/--tls-key/--tls-ca`.
pub fn write_files(dir: &Path, issued: &Issued, ca_pem: &str) -> std::io::Result<TlsFiles> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    std::fs::create_dir_all(dir)?;
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&files.cert, &issued.cert_pem)?;
    std::fs::write(&files.ca, ca_pem)?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&files.key)?;
    key.write_all(issued.key_pem.as_bytes())?;
    Ok(files)
}

/// The directory `certs --out-dir` uses for one host's files.
pub fn host_dir(out_dir: &Path, host: &str) -> PathBuf {
    out_dir.join(host)
}
