//! A self-signed CA and serving certificates for the webhook when cert-manager is not
//! installed (`couchestor-webhook bootstrap-certs`), and for tests.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA that can issue serving certificates.
#[derive(Debug)]
pub struct Authority {
    /// The CA certificate (PEM) — what goes into `caBundle`.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate and its key (PEM).
#[derive(Debug, Clone)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    /// A new CA named `common_name`, valid 10 years.
    pub fn generate(common_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for `dns_names` (the first is the common name).
    pub fn issue(&self, dns_names: &[String]) -> Result<Serving, rcgen::Error> {
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        if let Some(first) = dns_names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Serving {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names a webhook Service is reached by from the API server.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}
