//! On-the-fly certificates through the built `tlspool` daemon, signed by the dev-init CA key
//! on the SoftHSM2 token (`tls_onthefly_signcert` and `tls_onthefly_signkey`).
//! `gnutls-cli` trusting the CA accepts a pool server whose identity has no localid entry,
//! and `openssl s_server` trusting the CA accepts a pool client's certificate made on the fly.
//! A local identity selection service's `ONTHEFLY` answer gets such a certificate too.
//!
//! Run the tests through `scripts/netns-run.sh`, because `gnutls-cli` is paired with servers
//! that listen on loopback only there.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tlspool_client::{
    LidEntryFlags, LocalIdChoice, LocalIdDecision, LocalIdQueryKind, StartTlsFlags,
    StartTlsRequest, blocking,
};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{PEER, dev_setup as setup, verifying_s_server};
use tlspool_tests::tls_peers::{self, PEER_TIMEOUT, free_port};

/// The PKCS #11 URI of the dev-init CA key, which signs the on-the-fly certificates.
const SIGNER_KEY: &str = "pkcs11:token=tlspool-dev;object=tlspool-dev-ca;type=private";

/// A server identity that the localid database does not list.
const FLY_SERVER: &str = "fly.dev.example";

/// A client identity that the localid database does not list.
const FLY_CLIENT: &str = "fly-client.dev.example";

/// Writes the dev-init CA certificate as DER, the form `tls_onthefly_signcert` takes.
fn signer_der() -> &'static PathBuf {
    static SIGNER: OnceLock<PathBuf> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let path = setup().dir().join("signer.der");
        let output = Command::new("certtool")
            .args(["--certificate-info", "--outder", "--infile"])
            .arg(setup().file("ca.pem"))
            .arg("--outfile")
            .arg(&path)
            .output()
            .expect("run certtool");
        assert!(
            output.status.success(),
            "certtool failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    })
}

/// Starts a daemon on the dev-init token and databases with the on-the-fly signer.
fn start_daemon() -> TestDaemon {
    let signcert = format!("tls_onthefly_signcert file:{}", signer_der().display());
    let signkey = format!("tls_onthefly_signkey {SIGNER_KEY}");
    setup().start_daemon_with(&[&signcert, &signkey])
}

/// Accepts one connection on `listener` within [`PEER_TIMEOUT`].
fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no client connected");
                thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("accept failed: {error}"),
        }
    }
}

#[test]
fn gnutls_cli_trusts_on_the_fly_server() {
    let daemon = start_daemon();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut cli = tls_peers::gnutls_cli(
        port,
        &[
            "--x509cafile",
            &setup().file("ca.pem"),
            "--sni-hostname",
            FLY_SERVER,
            "--verify-hostname",
            FLY_SERVER,
        ],
    );
    let tcp = accept(&listener);

    let client = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let request = StartTlsRequest::server(FLY_SERVER)
        .flags(StartTlsFlags::LOCALID_ONTHEFLY | StartTlsFlags::IGNORE_REMOTEID)
        .build()
        .expect("request");
    let mut connection = client.starttls(tcp, &request).expect("STARTTLS on the fly");
    assert_eq!(connection.local_id, FLY_SERVER);

    assert!(
        cli.wait_for_output("The certificate is trusted"),
        "gnutls-cli did not trust the certificate:\n{}",
        cli.output()
    );
    assert!(
        cli.output().contains("TLS Pool on-the-fly"),
        "gnutls-cli did not print the on-the-fly subject:\n{}",
        cli.output()
    );
    connection
        .plaintext
        .write_all(b"made on the fly\n")
        .expect("send");
    assert!(
        cli.wait_for_output("made on the fly"),
        "gnutls-cli did not receive the line:\n{}",
        cli.output()
    );
    cli.send_line("thanks");
    let mut received = [0u8; 7];
    connection
        .plaintext
        .read_exact(&mut received)
        .expect("receive");
    assert_eq!(&received, b"thanks\n");
}

#[test]
fn server_trusts_on_the_fly_client() {
    let daemon = start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);

    let client = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let request = StartTlsRequest::client(PEER)
        .local_id(FLY_CLIENT)
        .flags(StartTlsFlags::LOCALID_ONTHEFLY)
        .build()
        .expect("request");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
    let connection = client.starttls(tcp, &request).expect("STARTTLS on the fly");
    assert_eq!(connection.local_id, FLY_CLIENT);
    assert_eq!(connection.remote_id, PEER);
    assert!(
        server.wait_for_output(&format!("CN = {FLY_CLIENT}")),
        "s_server did not verify the on-the-fly client certificate:\n{}",
        server.output()
    );
}

#[test]
fn selection_answer_gets_on_the_fly_certificate() {
    let daemon = start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    let mut service = blocking::register_localid_select(
        Some(daemon.socket_path()),
        LidEntryFlags::empty(),
        Duration::from_secs(30),
    )
    .expect("register");
    let deadline = Instant::now() + PEER_TIMEOUT;
    while !daemon
        .stderr()
        .contains("local identity selection service registered")
    {
        assert!(Instant::now() < deadline, "registration not logged");
        thread::sleep(Duration::from_millis(20));
    }
    let helper = thread::spawn(move || {
        let query = service.next_query().expect("the inquiry arrives");
        assert_eq!(query.kind, LocalIdQueryKind::Inquiry);
        let choice = LocalIdChoice::stored(FLY_CLIENT, "", LidEntryFlags::ONTHEFLY);
        service.answer(&query, &choice).expect("answer");
        service
    });

    let client = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    // The application confirms the service's choice before the certificate is made.
    let checked = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&checked);
    let request = StartTlsRequest::client(PEER)
        .localid_check(move |check| {
            seen.store(true, Ordering::SeqCst);
            if check.local_id == FLY_CLIENT {
                LocalIdDecision::Accept
            } else {
                LocalIdDecision::Reject
            }
        })
        .build()
        .expect("request");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
    let connection = client.starttls(tcp, &request).expect("STARTTLS on the fly");
    let _service = helper.join().expect("helper thread");
    assert!(checked.load(Ordering::SeqCst), "the LOCALID check ran");
    assert_eq!(connection.local_id, FLY_CLIENT);
    assert!(
        server.wait_for_output(&format!("CN = {FLY_CLIENT}")),
        "s_server did not verify the on-the-fly client certificate:\n{}",
        server.output()
    );
}
