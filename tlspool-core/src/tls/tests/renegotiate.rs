//! TLS 1.2 renegotiation between two in-memory sessions: requested by the server and by the
//! client, application data that arrives during the new handshake, the checks that reject it
//! (TLS 1.3, no extended master secret) and the peer's no_renegotiation answer.

use super::*;

/// Moves pending ciphertext both ways once.
fn exchange(a: &mut Session, b: &mut Session) {
    b.feed_ciphertext(&a.take_ciphertext());
    a.feed_ciphertext(&b.take_ciphertext());
}

/// Reads from `session` until GnuTLS wants more input; returns the data and the first error.
fn read_all(session: &mut Session) -> (Vec<u8>, Option<TlsError>) {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match session.read_plaintext(&mut buf) {
            Ok(ReadOutcome::Data(n)) => data.extend_from_slice(&buf[..n]),
            Ok(ReadOutcome::WantRead) => return (data, None),
            Ok(ReadOutcome::CloseNotify) => panic!("unexpected close_notify"),
            Err(error) => return (data, Some(error)),
        }
    }
}

/// Runs the renegotiation of `requester` (already started) and `answerer` (which learns of it
/// through `read_plaintext`) to the end; returns the data `answerer` read on the way.
pub(super) fn complete(requester: &mut Session, answerer: &mut Session) -> Vec<u8> {
    let mut answered = false;
    let mut requester_done = false;
    let mut answerer_done = false;
    let mut received = Vec::new();
    for _ in 0..50 {
        if !requester_done {
            requester_done =
                requester.renegotiate().expect("requester step") == RenegotiationStatus::Done;
        }
        exchange(requester, answerer);
        if !answered {
            let (data, error) = read_all(answerer);
            received.extend(data);
            if let Some(error) = error {
                assert!(matches!(error, TlsError::RenegotiationRequested), "{error}");
                answerer.accept_renegotiation().expect("answerer accepts");
                answered = true;
            }
        }
        if answered && !answerer_done {
            answerer_done =
                answerer.renegotiate().expect("answerer step") == RenegotiationStatus::Done;
        }
        exchange(answerer, requester);
        if requester_done && answerer_done {
            return received;
        }
    }
    panic!("renegotiation did not finish within 50 round trips");
}

#[test]
fn server_requested_renegotiation_completes() {
    let (mut client, mut server) = connected_pair(TLS12, &fixture().ecdsa_server);
    server
        .check_renegotiation()
        .expect("TLS 1.2 with RFC 5746 and RFC 7627");

    server.start_renegotiation().expect("HelloRequest queued");
    complete(&mut server, &mut client);

    assert_eq!(transfer(&mut client, &mut server, b"after"), b"after");
    assert_eq!(transfer(&mut server, &mut client, b"back"), b"back");
}

#[test]
fn client_requested_renegotiation_completes() {
    let (mut client, mut server) = connected_pair(TLS12, &fixture().rsa_server);

    client.start_renegotiation().expect("client starts");
    complete(&mut client, &mut server);

    assert_eq!(transfer(&mut client, &mut server, b"after"), b"after");
}

#[test]
fn data_before_client_hello_is_delivered() {
    let (mut client, mut server) = connected_pair(TLS12, &fixture().ecdsa_server);
    server.start_renegotiation().expect("HelloRequest queued");
    // The client sends data before it reads the HelloRequest.
    client.write_plaintext(b"early").expect("write");
    exchange(&mut client, &mut server);

    let mut buf = [0u8; 64];
    let status = server.renegotiate().expect("server step");

    assert_eq!(status, RenegotiationStatus::ApplicationData);
    assert_eq!(
        server.read_plaintext(&mut buf).expect("read"),
        ReadOutcome::Data(5)
    );
    assert_eq!(&buf[..5], b"early");
    complete(&mut server, &mut client);
}

#[test]
fn tls13_session_cannot_renegotiate() {
    let (client, _server) = connected_pair(TLS13, &fixture().ecdsa_server);

    let error = client.check_renegotiation().expect_err("TLS 1.3");

    assert!(
        matches!(error, TlsError::RenegotiationUnavailable { .. }),
        "{error}"
    );
    assert!(!error.is_fatal());
}

#[test]
fn missing_extended_master_secret_is_insecure() {
    let (mut client, _server) = connected_pair(
        &format!("{TLS12}:%NO_SESSION_HASH"),
        &fixture().ecdsa_server,
    );

    let security = client.renegotiation_security();
    let error = client.start_renegotiation().expect_err("no RFC 7627");

    assert!(security.secure_renegotiation);
    assert!(!security.extended_master_secret);
    assert!(
        matches!(
            error,
            TlsError::RenegotiationInsecure {
                secure_renegotiation: true,
                extended_master_secret: false
            }
        ),
        "{error}"
    );
}

#[test]
fn rejected_renegotiation_keeps_session() {
    let (mut client, mut server) = connected_pair(TLS12, &fixture().ecdsa_server);
    server.start_renegotiation().expect("HelloRequest queued");
    assert_eq!(
        server.renegotiate().expect("server step"),
        RenegotiationStatus::WantRead
    );
    exchange(&mut server, &mut client);

    let (_, error) = read_all(&mut client);
    assert!(matches!(error, Some(TlsError::RenegotiationRequested)));
    client.reject_renegotiation().expect("alert queued");
    exchange(&mut client, &mut server);
    let rejected = server.renegotiate().expect_err("client rejected it");

    assert!(
        matches!(rejected, TlsError::RenegotiationRejected),
        "{rejected}"
    );
    assert_eq!(transfer(&mut client, &mut server, b"still up"), b"still up");
}

#[test]
#[ignore = "GnuTLS 3.7.9 fails the ServerKeyExchange signature check (error -89) when \
            application data reaches a renegotiating client before the ServerHello"]
fn data_before_server_hello_is_delivered() {
    let (mut client, mut server) = connected_pair(TLS12, &fixture().ecdsa_server);
    client.start_renegotiation().expect("client starts");
    assert_eq!(
        client.renegotiate().expect("ClientHello sent"),
        RenegotiationStatus::WantRead
    );
    // The server sends data, then reads the ClientHello and answers in the next flight.
    server.write_plaintext(b"echo").expect("write");
    server.feed_ciphertext(&client.take_ciphertext());
    let (_, error) = read_all(&mut server);
    assert!(matches!(error, Some(TlsError::RenegotiationRequested)));
    server.accept_renegotiation().expect("server accepts");
    client.feed_ciphertext(&server.take_ciphertext());

    let mut buf = [0u8; 64];
    assert_eq!(
        client.renegotiate().expect("client step"),
        RenegotiationStatus::ApplicationData
    );
    assert_eq!(
        client.read_plaintext(&mut buf).expect("read"),
        ReadOutcome::Data(4)
    );
    let mut done = (false, false);
    for _ in 0..10 {
        if !done.0 {
            done.0 = client.renegotiate().expect("client step") == RenegotiationStatus::Done;
        }
        exchange(&mut client, &mut server);
        if !done.1 {
            done.1 = server.renegotiate().expect("server step") == RenegotiationStatus::Done;
        }
        exchange(&mut server, &mut client);
    }

    assert_eq!(done, (true, true), "renegotiation did not finish");
    assert_eq!(transfer(&mut client, &mut server, b"after"), b"after");
}
