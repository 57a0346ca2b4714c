//! The webhook's CA and serving certificate: generation with rcgen, and
//! their form in the Kubernetes Secret.
//!
//! The Secret holds `tls.crt`/`tls.key` (serving pair), `ca.crt` (the CA
//! bundle the API server trusts: the current CA, then the previous one
//! during a CA rotation) and `ca.key` (the current CA's key, so any future
//! leader can issue). rcgen cannot parse certificates without its x509
//! feature, so what we need to know about them without parsing (expiry,
//! SANs, the CA's subject) is kept in annotations beside them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use super::CertError;

pub const KEY_TLS_CRT: &str = "tls.crt";
pub const KEY_TLS_KEY: &str = "tls.key";
pub const KEY_CA_CRT: &str = "ca.crt";
pub const KEY_CA_KEY: &str = "ca.key";
pub const ANN_SERVING_NOT_AFTER: &str = "secrets.mlflow.org/serving-not-after";
pub const ANN_CA_NOT_AFTER: &str = "secrets.mlflow.org/ca-not-after";
pub const ANN_CA_SUBJECT: &str = "secrets.mlflow.org/ca-subject";
pub const ANN_SERVING_SANS: &str = "secrets.mlflow.org/serving-sans";
/// Certificates start this long in the past, for clocks that lag ours.
const BACKDATE: Duration = Duration::from_secs(300);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// rcgen's timestamp (a `time::OffsetDateTime`) for a Unix time, without
/// naming the `time` crate, which is not our dependency.
macro_rules! timestamp {
    ($unix:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(($unix).max(0) as u64)
    };
}

/// The CA and serving pair, as stored.
#[derive(Clone)]
pub struct Material {
    pub tls_crt: String,
    pub tls_key: Zeroizing<String>,
    /// PEM bundle: current CA first.
    pub ca_crt: String,
    pub ca_key: Zeroizing<String>,
    pub ca_subject: String,
    pub serving_not_after: i64,
    pub ca_not_after: i64,
    /// Comma-joined SANs the serving certificate was issued for.
    pub sans: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("ca_subject", &self.ca_subject)
            .field("serving_not_after", &self.serving_not_after)
            .field("ca_not_after", &self.ca_not_after)
            .field("sans", &self.sans)
            .finish_non_exhaustive()
    }
}

fn ca_params(subject: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn rcgen_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

/// The first PEM certificate of a bundle.
fn first_pem(bundle: &str) -> Option<String> {
    let end = "-----END CERTIFICATE-----";
    let i = bundle.find(end)?;
    Some(format!("{}\n", &bundle[..i + end.len()].trim_start()))
}

impl Material {
    /// A new CA and a serving certificate for `sans`. `previous_ca`, the
    /// PEM of the CA being replaced, stays in the bundle so that pods being
    /// admitted during the swap still verify.
    pub fn generate(
        sans: &[String],
        validity: Duration,
        ca_validity: Duration,
        previous_ca: Option<&str>,
    ) -> Result<Self, CertError> {
        let now = unix_now();
        // Unique subjects, so that two CAs in one bundle are told apart.
        let subject = format!("mlflow-secrets-webhook-ca-{now}");
        let mut params = ca_params(&subject);
        params.not_before = timestamp!(now - BACKDATE.as_secs() as i64);
        let ca_not_after = now + ca_validity.as_secs() as i64;
        params.not_after = timestamp!(ca_not_after);
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        let mut ca_crt = cert.pem();
        if let Some(prev) = previous_ca.and_then(first_pem) {
            ca_crt.push_str(&prev);
        }
        let mut m = Self {
            tls_crt: String::new(),
            tls_key: Zeroizing::new(String::new()),
            ca_crt,
            ca_key: Zeroizing::new(key.serialize_pem()),
            ca_subject: subject,
            serving_not_after: 0,
            ca_not_after,
            sans: String::new(),
        };
        m.reissue(sans, validity)?;
        Ok(m)
    }

    /// A new serving certificate from the current CA, valid for `validity`
    /// but never past the CA.
    pub fn reissue(&mut self, sans: &[String], validity: Duration) -> Result<(), CertError> {
        let now = unix_now();
        let ca_key = KeyPair::from_pem(&self.ca_key).map_err(rcgen_err)?;
        let issuer = Issuer::new(ca_params(&self.ca_subject), ca_key);
        let mut params = CertificateParams::new(sans.to_vec()).map_err(rcgen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            sans.first()
                .map(String::as_str)
                .unwrap_or("mlflow-secrets-webhook"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = timestamp!(now - BACKDATE.as_secs() as i64);
        let not_after = (now + validity.as_secs() as i64).min(self.ca_not_after);
        params.not_after = timestamp!(not_after);
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_err)?;
        self.tls_crt = cert.pem();
        self.tls_key = Zeroizing::new(key.serialize_pem());
        self.serving_not_after = not_after;
        self.sans = sans.join(",");
        Ok(())
    }

    /// The current CA alone (the first of the bundle).
    pub fn current_ca(&self) -> Option<String> {
        first_pem(&self.ca_crt)
    }

    /// The rustls key for serving.
    pub fn certified_key(&self) -> Result<CertifiedKey, CertError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.tls_crt.as_bytes())
                .filter_map(Result::ok)
                .collect();
        if chain.is_empty() {
            return Err(CertError::Invalid("tls.crt holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(self.tls_key.as_bytes())
            .map_err(|_| CertError::Invalid("tls.key holds no private key".into()))?;
        CertifiedKey::from_der(
            chain,
            key,
            &std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .map_err(|e| CertError::Invalid(format!("tls.key does not fit tls.crt: {e}")))
    }

    /// Read the material from its Secret. Names the missing piece, never a
    /// key byte.
    pub fn from_secret(s: &Secret) -> Result<Self, CertError> {
        let data = s.data.as_ref();
        let text = |k: &str| -> Result<String, CertError> {
            let b = data
                .and_then(|d| d.get(k))
                .ok_or_else(|| CertError::Invalid(format!("{k} is missing")))?;
            String::from_utf8(b.0.clone())
                .map_err(|_| CertError::Invalid(format!("{k} is not PEM")))
        };
        let ann = |k: &str| -> Result<String, CertError> {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .cloned()
                .ok_or_else(|| CertError::Invalid(format!("annotation {k} is missing")))
        };
        let num = |k: &str| -> Result<i64, CertError> {
            ann(k)?
                .parse()
                .map_err(|_| CertError::Invalid(format!("annotation {k} is not a number")))
        };
        let m = Self {
            tls_crt: text(KEY_TLS_CRT)?,
            tls_key: Zeroizing::new(text(KEY_TLS_KEY)?),
            ca_crt: text(KEY_CA_CRT)?,
            ca_key: Zeroizing::new(text(KEY_CA_KEY)?),
            ca_subject: ann(ANN_CA_SUBJECT)?,
            serving_not_after: num(ANN_SERVING_NOT_AFTER)?,
            ca_not_after: num(ANN_CA_NOT_AFTER)?,
            sans: ann(ANN_SERVING_SANS)?,
        };
        // Fail here, not on the first handshake.
        m.certified_key()?;
        Ok(m)
    }

    /// The Secret `name` in `namespace` holding this material.
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let data = [
            (KEY_TLS_CRT, self.tls_crt.as_bytes()),
            (KEY_TLS_KEY, self.tls_key.as_bytes()),
            (KEY_CA_CRT, self.ca_crt.as_bytes()),
            (KEY_CA_KEY, self.ca_key.as_bytes()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
        .collect();
        let annotations = [
            (ANN_SERVING_NOT_AFTER, self.serving_not_after.to_string()),
            (ANN_CA_NOT_AFTER, self.ca_not_after.to_string()),
            (ANN_CA_SUBJECT, self.ca_subject.clone()),
            (ANN_SERVING_SANS, self.sans.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                annotations: Some(annotations),
                labels: Some(
                    [(
                        super::super::secret::LABEL_MANAGED_BY.to_string(),
                        crate::k8s::FIELD_MANAGER.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_round_trips_through_a_secret_and_rotates_the_ca() {
        let sans = vec!["svc.ns.svc".to_string(), "127.0.0.1".to_string()];
        let m = Material::generate(
            &sans,
            Duration::from_secs(3600),
            Duration::from_secs(7200),
            None,
        )
        .unwrap();
        assert!(m.serving_not_after <= m.ca_not_after);
        assert_eq!(m.sans, "svc.ns.svc,127.0.0.1");
        let back = Material::from_secret(&m.to_secret("ns", "tls")).unwrap();
        assert_eq!(back.ca_crt, m.ca_crt);
        assert_eq!(back.serving_not_after, m.serving_not_after);
        // A serving certificate never outlives its CA.
        let mut short = back.clone();
        short.ca_not_after = unix_now() + 60;
        short.reissue(&sans, Duration::from_secs(3600)).unwrap();
        assert_eq!(short.serving_not_after, short.ca_not_after);
        // A rotated CA keeps the previous one in the bundle.
        let next = Material::generate(
            &sans,
            Duration::from_secs(60),
            Duration::from_secs(60),
            Some(&m.ca_crt),
        )
        .unwrap();
        assert_eq!(next.ca_crt.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(next.ca_crt.ends_with(&m.current_ca().unwrap()));
        assert_ne!(next.current_ca(), m.current_ca());
        // Debug shows no key material.
        assert!(!format!("{next:?}").contains("PRIVATE KEY"));
    }
}
