//! The privacy-mode precursor between two in-memory sessions: an anonymous TLS 1.2 handshake
//! that carries no certificate, the renegotiation that then authenticates the server, a peer
//! without anonymous suites, and TLS 1.3, which needs no precursor.

use super::renegotiate::complete;
use super::*;

fn precursor_pair(client_priority: &str, server_priority: &str) -> (Session, Session) {
    let f = fixture();
    let mut client = client_session(TLS12, Some("server.example"), &anonymous_client());
    client
        .offer_anonymous_precursor(client_priority)
        .expect("client offers the precursor");
    let mut server = server_session(
        TLS12,
        ClientCertificate::Ignore,
        &f.ecdsa_server.credentials(&f.ca_pem),
    );
    server
        .offer_anonymous_precursor(server_priority)
        .expect("server offers the precursor");
    (client, server)
}

#[test]
fn precursor_hides_then_renegotiation_shows_certificate() {
    let (mut client, mut server) = precursor_pair(TLS12, TLS12);
    handshake(&mut client, &mut server).expect("precursor handshake");

    assert!(client.is_anonymous_precursor());
    assert!(server.is_anonymous_precursor());
    assert!(client.peer_certificates().is_empty());
    assert!(
        client
            .cipher_suite()
            .is_some_and(|suite| suite.contains("GCM")),
        "{:?}",
        client.cipher_suite()
    );

    client
        .set_priority_string(TLS12)
        .expect("client drops ANON");
    server
        .set_priority_string(TLS12)
        .expect("server drops ANON");
    server.start_renegotiation().expect("HelloRequest queued");
    complete(&mut server, &mut client);

    assert!(!client.is_anonymous_precursor());
    assert_eq!(client.peer_certificates().len(), 1);
    assert_eq!(transfer(&mut client, &mut server, b"after"), b"after");
}

#[test]
fn peer_without_anonymous_suites_gets_normal_handshake() {
    let f = fixture();
    let mut client = client_session(TLS12, Some("server.example"), &anonymous_client());
    let mut server = server_session(
        TLS12,
        ClientCertificate::Ignore,
        &f.ecdsa_server.credentials(&f.ca_pem),
    );
    server
        .offer_anonymous_precursor(TLS12)
        .expect("server offers the precursor");

    handshake(&mut client, &mut server).expect("normal handshake");

    assert!(!server.is_anonymous_precursor());
    assert_eq!(client.peer_certificates().len(), 1);
}

#[test]
fn tls13_is_preferred_over_precursor() {
    let both = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
    let (mut client, mut server) = precursor_pair(both, both);

    handshake(&mut client, &mut server).expect("handshake");

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::Tls13));
    assert!(!client.is_anonymous_precursor());
    assert_eq!(client.peer_certificates().len(), 1);
}
