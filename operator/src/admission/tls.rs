//! The webhook's own certificate: a CA and a serving certificate for the webhook's Service,
//! kept in a Secret in the operator's namespace. [`super::configurations`] puts the CA into
//! the webhook configurations as their `caBundle`.
//!
//! Generation and the renewal decision are pure; [`ensure`] and [`external`] talk to the
//! API server.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Keys of the Secret: `tls.crt` and `tls.key` as in a `kubernetes.io/tls` Secret, plus the
/// CA, whose key is kept to issue the next serving certificate under the same CA.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// How long the CA is valid. Long, because a new CA means a new caBundle.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a serving certificate is valid.
const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Renew a certificate this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start this long in the past, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors keeping the certificate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating the webhook certificate")]
    Generate(#[from] rcgen::Error),
    #[error("the system clock is out of range")]
    Clock,
    #[error("the certificate Secret has no tls.crt and tls.key yet")]
    NotYet,
    #[error("reading or writing Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The CA and the serving certificate, all PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingCert {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl ServingCert {
    /// The Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    /// Reads the Secret's `data`; `None` when a key is missing or not UTF-8.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Option<Self> {
        let get = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Some(ServingCert {
            ca_cert: get(CA_CERT)?,
            ca_key: get(CA_KEY)?,
            cert: get(TLS_CERT)?,
            key: get(TLS_KEY)?,
        })
    }
}

/// The certificate that someone else keeps in Secret `secret` of `namespace` (cert-manager,
/// with `tls.crt`, `tls.key` and `ca.crt`): read only, never written. `None` while the
/// Secret or one of its keys is missing.
pub async fn external(
    client: &Client,
    namespace: &str,
    secret: &str,
) -> Result<Option<ServingCert>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(secret).await.map_err(|source| Error::Secret {
        name: secret.to_owned(),
        source,
    })?;
    let data = found.and_then(|s| s.data).unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Ok(match (get(TLS_CERT), get(TLS_KEY)) {
        (Some(cert), Some(key)) => Some(ServingCert {
            ca_cert: get(CA_CERT).unwrap_or_default(),
            ca_key: String::new(),
            cert,
            key,
        }),
        _ => None,
    })
}

/// The names a Service `service` in `namespace` is reached by from the API server.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn at(t: SystemTime) -> Result<OffsetDateTime, Error> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Clock)?
        .as_secs();
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).map_err(|_| Error::Clock)?)
        .map_err(|_| Error::Clock)
}

fn validity(
    params: &mut CertificateParams,
    now: SystemTime,
    lifetime: Duration,
) -> Result<(), Error> {
    params.not_before = at(now.checked_sub(BACKDATE).ok_or(Error::Clock)?)?;
    params.not_after = at(now.checked_add(lifetime).ok_or(Error::Clock)?)?;
    Ok(())
}

fn ca_params(now: SystemTime) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "shellcar webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_VALIDITY)?;
    Ok(params)
}

fn leaf(
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
) -> Result<(String, String), Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, CERT_VALIDITY)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new CA and a serving certificate for `names`, signed by it.
pub fn generate(names: &[String], now: SystemTime) -> Result<ServingCert, Error> {
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params(now)?, ca_key)?;
    let (cert, key) = leaf(names, &ca, now)?;
    Ok(ServingCert {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// A new serving certificate for `names` from the CA of `current`, which stays.
fn reissue(current: &ServingCert, names: &[String], now: SystemTime) -> Result<ServingCert, Error> {
    let ca_key = KeyPair::from_pem(&current.ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&current.ca_cert, ca_key)?;
    let (cert, key) = leaf(names, &issuer, now)?;
    Ok(ServingCert {
        cert,
        key,
        ..current.clone()
    })
}

/// What a certificate says about itself, as far as renewal cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Unix time after which it is no longer valid.
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

/// Reads a PEM certificate; `None` when it cannot be parsed.
pub fn facts(pem: &str) -> Option<Facts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Facts {
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
    })
}

/// What to do with the certificate found in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Still good: use it.
    Keep,
    /// The serving certificate expires soon, is unreadable or names other hosts: issue a
    /// new one from the same CA (the caBundle stays valid).
    Reissue,
    /// No usable CA (missing, unreadable, expiring soon, or its key is): start over.
    Generate,
}

/// Decides what to do with `current` (`None`: no Secret, or keys missing) for `names` at
/// `now`.
pub fn renewal(current: Option<&ServingCert>, names: &[String], now: SystemTime) -> Renewal {
    let Some(current) = current else {
        return Renewal::Generate;
    };
    let deadline = now
        .checked_add(RENEW_BEFORE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(i64::MAX);
    let fresh = |f: &Facts| f.not_after > deadline;
    let ca_ok = facts(&current.ca_cert).is_some_and(|f| fresh(&f))
        && KeyPair::from_pem(&current.ca_key).is_ok();
    if !ca_ok {
        return Renewal::Generate;
    }
    let leaf_ok = facts(&current.cert).is_some_and(|f| {
        let mut have = f.dns_names.clone();
        let mut want = names.to_vec();
        have.sort();
        want.sort();
        fresh(&f) && have == want
    }) && KeyPair::from_pem(&current.key).is_ok();
    if leaf_ok {
        Renewal::Keep
    } else {
        Renewal::Reissue
    }
}

/// The certificate in Secret `secret` of `namespace`, for Service `service`: read, or
/// created or renewed as [`renewal`] decides, and written back.
///
/// Safe with several replicas: a create that finds the Secret already there, or a replace
/// that lost a race, reads what the other replica wrote.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    secret: &str,
    service: &str,
) -> Result<ServingCert, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let names = dns_names(service, namespace);
    let err = |source| Error::Secret {
        name: secret.to_owned(),
        source,
    };
    // Two attempts: the second one reads what a racing replica wrote.
    for _ in 0..2 {
        let existing = api.get_opt(secret).await.map_err(err)?;
        let current = existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(ServingCert::from_data);
        let now = SystemTime::now();
        let next = match renewal(current.as_ref(), &names, now) {
            Renewal::Keep => {
                if let Some(current) = current {
                    return Ok(current);
                }
                generate(&names, now)?
            }
            Renewal::Reissue => match &current {
                Some(current) => reissue(current, &names, now)?,
                None => generate(&names, now)?,
            },
            Renewal::Generate => generate(&names, now)?,
        };
        let written = match existing {
            None => {
                let object = Secret {
                    metadata: ObjectMeta {
                        name: Some(secret.to_owned()),
                        namespace: Some(namespace.to_owned()),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(next.to_data()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &object).await
            }
            Some(mut object) => {
                // resourceVersion is kept: a replace that lost a race fails with 409.
                object.data = Some(next.to_data());
                object.string_data = None;
                api.replace(secret, &PostParams::default(), &object).await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret, namespace, "wrote the webhook certificate");
                return Ok(next);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(source) => return Err(err(source)),
        }
    }
    // Both attempts raced; the Secret now holds someone's fresh certificate.
    api.get(secret)
        .await
        .map_err(err)?
        .data
        .as_ref()
        .and_then(ServingCert::from_data)
        .map_or_else(|| generate(&names, SystemTime::now()), Ok)
}

#[cfg(test)]
mod tests;
