//! The webhook over real TLS on 127.0.0.1: client certificates required or not.

use super::*;
use crate::admission::tls::{self, ServingCert};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use std::time::SystemTime;
use tokio_rustls::TlsConnector;

/// A CA for client certificates, and a client certificate from it.
struct ClientPki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ClientPki {
    fn new(name: &str) -> ClientPki {
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CommonName, "kube-apiserver-webhook-client");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        ClientPki {
            ca_pem: ca.pem(),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// The CA written to a file, as `--webhook-client-ca` names it.
    fn ca_file(&self, name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "shellcar-client-ca-{}-{name}.pem",
            std::process::id()
        ));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

/// Serves the webhook over HTTPS on a free port of 127.0.0.1, with a certificate of its
/// own (as tls.rs makes them) and `client_auth`.
fn start(client_auth: ClientAuth) -> (SocketAddr, ServingCert) {
    let cert = tls::generate(
        &tls::dns_names("shellcar-webhook", "shellcar-system"),
        SystemTime::now(),
    )
    .unwrap();
    let config = RustlsConfig::from_config(rustls_config(&cert, &client_auth).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, config, server(generous())));
    (addr, cert)
}

/// Posts `body` to `path` over HTTPS as a client that trusts the webhook's CA and presents
/// `client` (or no certificate): the answer, or where it failed.
async fn post_tls(
    addr: SocketAddr,
    serving: &ServingCert,
    client: Option<&ClientPki>,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(serving.ca_cert.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(pki) => builder
            .with_client_auth_cert(pki.chain.clone(), pki.key.clone_key().into())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("shellcar-webhook.shellcar-system.svc").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::post("/validate")
        .header(header::HOST, "shellcar-webhook.shellcar-system.svc")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(axum::body::Bytes::from(body)))
        .unwrap();
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => {
            // The connection's own error says why (a TLS alert, most often).
            let why = match connection.await {
                Ok(Err(c)) => format!("{c}: {:?}", std::error::Error::source(&c)),
                _ => String::new(),
            };
            return Err(format!("request: {e} ({why})"));
        }
    };
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    Ok(Answer {
        status: response.status(),
        content_type: header(header::CONTENT_TYPE).unwrap_or_default(),
        retry_after: header(header::RETRY_AFTER),
        allow: header(header::ALLOW),
        body: response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes()
            .to_vec(),
    })
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_get_an_answer() {
    let trusted = ClientPki::new("API server client CA");
    let stranger = ClientPki::new("someone else's CA");
    let path = trusted.ca_file("trusted");
    let verifier = client_verifier(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let (addr, serving) = start(Some(verifier));

    let anonymous = post_tls(addr, &serving, None, ours()).await;
    let err = anonymous.expect_err("a client without a certificate got an answer");
    assert!(err.contains("CertificateRequired"), "{err}");

    let other = post_tls(addr, &serving, Some(&stranger), ours()).await;
    let err = other.expect_err("a certificate from another CA got an answer");
    assert!(err.contains("UnknownCA"), "{err}");

    let answer = post_tls(addr, &serving, Some(&trusted), ours())
        .await
        .unwrap();
    assert_eq!(answer.review()["allowed"], true);
}

#[tokio::test]
async fn without_a_client_ca_any_client_gets_an_answer() {
    let (addr, serving) = start(None);
    let answer = post_tls(addr, &serving, None, ours()).await.unwrap();
    assert_eq!(answer.review()["uid"], "u-7");
    // And over TLS too, what is not a review gets no review.
    let garbage = post_tls(addr, &serving, None, b"garbage".to_vec())
        .await
        .unwrap();
    garbage.assert_refused(StatusCode::BAD_REQUEST);
}

#[test]
fn a_client_ca_file_that_is_missing_or_holds_no_certificate_is_an_error() {
    let missing = std::env::temp_dir().join("shellcar-no-such-client-ca.pem");
    assert!(matches!(
        client_verifier(&missing),
        Err(TlsError::ClientCaFile { .. })
    ));
    let empty = std::env::temp_dir().join(format!(
        "shellcar-client-ca-{}-empty.pem",
        std::process::id()
    ));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let result = client_verifier(&empty);
    let _ = std::fs::remove_file(&empty);
    assert!(
        matches!(result, Err(TlsError::NoClientCa { .. })),
        "{result:?}"
    );
}
