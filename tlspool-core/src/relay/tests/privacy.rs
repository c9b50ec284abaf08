//! The privacy-mode renegotiation over a loopback TCP connection: application data the client
//! sends between the anonymous precursor and the authenticated handshake reaches the server's
//! application first, and more than the limit fails the server's handshake.

use super::*;
use crate::relay::handshake::flush_ciphertext;

const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn precursor_sessions() -> (Session, Session) {
    let f = fixture();
    let mut client = client_session(TLS12, Some("ecdsa.example"), &anonymous_client());
    client
        .offer_anonymous_precursor(TLS12)
        .expect("client offer");
    let mut server = server_session(
        TLS12,
        ClientCertificate::Ignore,
        &f.ecdsa_server.credentials(&f.ca_pem),
    );
    server
        .offer_anonymous_precursor(TLS12)
        .expect("server offer");
    (client, server)
}

/// Runs the precursor on both ends; the client then sends `early` before it authenticates.
/// Returns the server's result and, when it succeeded, what its application received.
async fn run_with_early(early: &'static [u8], max_preauth: usize) -> Result<Vec<u8>, RelayError> {
    let (client_fd, server_fd) = tcp_pair();
    let (mut client, mut server) = precursor_sessions();
    let client_task = tokio::spawn(async move {
        let socket = CipherSocket::new(client_fd).expect("client socket");
        drive_handshake(&mut client, &socket, TIMEOUT).await?;
        assert!(client.is_anonymous_precursor());
        client.write_plaintext(early).expect("early write");
        flush_ciphertext(&mut client, &socket.socket).await?;
        client
            .set_priority_string(TLS12)
            .expect("client drops ANON");
        authenticate_after_precursor(&mut client, &socket, 0, TIMEOUT).await?;
        let (app_fd, mut app) = app_pair();
        let relay = tokio::spawn(run(
            client,
            socket.into_fd(),
            app_fd,
            CancellationToken::new(),
        ));
        app.write_all(b" and after")
            .await
            .expect("client app write");
        app.shutdown().await.expect("client app shutdown");
        let mut rest = Vec::new();
        app.read_to_end(&mut rest).await.expect("client app read");
        drop(relay.await);
        Ok::<_, RelayError>(())
    });

    let socket = CipherSocket::new(server_fd).expect("server socket");
    drive_handshake(&mut server, &socket, TIMEOUT).await?;
    server
        .set_priority_string(TLS12)
        .expect("server drops ANON");
    let received = authenticate_after_precursor(&mut server, &socket, max_preauth, TIMEOUT).await;
    let received = match received {
        Ok(received) => received,
        Err(error) => {
            client_task.abort();
            return Err(error);
        }
    };
    let (app_fd, mut app) = app_pair();
    let (_, queries) = query_channel();
    let stop = CancellationToken::new();
    let relay = tokio::spawn(run_with_early_plaintext(
        server,
        socket.into_fd(),
        app_fd,
        stop,
        queries,
        received,
    ));
    let mut delivered = Vec::new();
    app.read_to_end(&mut delivered)
        .await
        .expect("server app read");
    drop(app);
    drop(relay.await);
    client_task
        .await
        .expect("client task")
        .expect("client side");
    Ok(delivered)
}

#[tokio::test]
async fn early_data_reaches_application_first() {
    let delivered = run_with_early(b"early bytes", 1024)
        .await
        .expect("privacy renegotiation");

    assert_eq!(delivered, b"early bytes and after");
}

#[tokio::test]
async fn early_data_over_limit_fails() {
    let result = run_with_early(b"early bytes", 4).await;

    assert!(
        matches!(result, Err(RelayError::PreauthDataTooLarge { limit: 4 })),
        "{result:?}"
    );
}
