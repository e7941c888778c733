use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn names() -> Vec<String> {
    dns_names("shellcar-webhook", "shellcar-system")
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn the_serving_certificate_names_the_service_and_lasts_a_year() {
    assert_eq!(
        names(),
        [
            "shellcar-webhook.shellcar-system.svc",
            "shellcar-webhook.shellcar-system.svc.cluster.local"
        ]
    );
    let cert = generate(&names(), now()).unwrap();
    let leaf = facts(&cert.cert).unwrap();
    assert_eq!(leaf.dns_names, names());
    assert_eq!(leaf.not_after, secs(now() + CERT_VALIDITY));
    let ca = facts(&cert.ca_cert).unwrap();
    assert_eq!(ca.not_after, secs(now() + CA_VALIDITY));
    assert!(cert.key.contains("PRIVATE KEY"));
    assert_eq!(renewal(Some(&cert), &names(), now()), Renewal::Keep);
}

#[test]
fn the_leaf_is_signed_by_the_ca() {
    let cert = generate(&names(), now()).unwrap();
    let (_, ca) = x509_parser::pem::parse_x509_pem(cert.ca_cert.as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(cert.cert.as_bytes()).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert!(ca.is_ca());
    assert!(!leaf.is_ca());
}

#[test]
fn missing_or_unreadable_means_a_new_ca() {
    assert_eq!(renewal(None, &names(), now()), Renewal::Generate);
    let mut cert = generate(&names(), now()).unwrap();
    cert.ca_cert = "garbage".to_owned();
    assert_eq!(renewal(Some(&cert), &names(), now()), Renewal::Generate);
    let mut cert = generate(&names(), now()).unwrap();
    cert.ca_key = "garbage".to_owned();
    assert_eq!(renewal(Some(&cert), &names(), now()), Renewal::Generate);
}

#[test]
fn a_leaf_near_expiry_or_for_other_names_is_reissued_under_the_same_ca() {
    let cert = generate(&names(), now()).unwrap();
    let later = now() + CERT_VALIDITY - RENEW_BEFORE + DAY;
    assert_eq!(renewal(Some(&cert), &names(), later), Renewal::Reissue);
    assert_eq!(
        renewal(Some(&cert), &names(), later - 2 * DAY),
        Renewal::Keep
    );
    let moved = dns_names("shellcar-webhook", "other");
    assert_eq!(renewal(Some(&cert), &moved, now()), Renewal::Reissue);
    let mut broken = cert.clone();
    broken.cert = "garbage".to_owned();
    assert_eq!(renewal(Some(&broken), &names(), now()), Renewal::Reissue);

    let renewed = reissue(&cert, &names(), later).unwrap();
    assert_eq!(renewed.ca_cert, cert.ca_cert, "the caBundle stays valid");
    assert_ne!(renewed.cert, cert.cert);
    assert_eq!(renewal(Some(&renewed), &names(), later), Renewal::Keep);
    let (_, ca) = x509_parser::pem::parse_x509_pem(cert.ca_cert.as_bytes()).unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(renewed.cert.as_bytes()).unwrap();
    leaf.parse_x509()
        .unwrap()
        .verify_signature(Some(ca.parse_x509().unwrap().public_key()))
        .unwrap();
}

#[test]
fn a_ca_near_expiry_means_starting_over() {
    let cert = generate(&names(), now()).unwrap();
    let later = now() + CA_VALIDITY - RENEW_BEFORE + DAY;
    assert_eq!(renewal(Some(&cert), &names(), later), Renewal::Generate);
}

#[test]
fn the_secret_round_trips() {
    let cert = generate(&names(), now()).unwrap();
    let data = cert.to_data();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    );
    assert_eq!(ServingCert::from_data(&data), Some(cert));
    let mut partial = data;
    partial.remove(TLS_KEY);
    assert_eq!(ServingCert::from_data(&partial), None);
}
