//! The local identity selection service through the built `tlspool` daemon: a helper
//! registered with `register_localid_select` chooses which local identity a pool client shows
//! to `openssl s_server`, which requests and verifies the client certificate.
//!
//! The identities come from one `tlspool-admin dev-init` run with the domains `dev.example`
//! and `other.example`, whose disclose entries list `dev.example` for `.dev.example` and
//! `other.example` for `.other.example`. Every daemon of this process shares those databases,
//! so each test that stores a choice uses a remote identity of its own.

use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tlspool_client::{
    ClientError, ErrorCode, LidEntryFlags, LocalIdChoice, LocalIdQuery, LocalIdQueryKind,
    StartTlsRequest, blocking,
};
use tlspool_tests::bin_path;
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, OTHER_DOMAIN, PEER, dev_setup as setup, verifying_s_server};
use tlspool_tests::tls_peers::{PEER_TIMEOUT, free_port};

/// The response window the helpers register with.
const WINDOW: Duration = Duration::from_secs(30);

/// The remote identity of the server in `peer-cert.pem` for the domain `other.example`.
const OTHER_PEER: &str = "peer.other.example";

/// The log line of the daemon for each accepted registration.
const REGISTERED: &str = "local identity selection service registered";

/// A helper thread that responds to each inquiry with the next of its choices and
/// acknowledges database entries. It records every query it receives.
struct Helper {
    queries: Arc<Mutex<Vec<LocalIdQuery>>>,
}

impl Helper {
    /// Registers with `flags` on `daemon`, waits until the daemon logged the registration,
    /// and responds in a thread of its own.
    fn start(daemon: &TestDaemon, flags: LidEntryFlags, choices: Vec<LocalIdChoice>) -> Self {
        Self::start_with_window(daemon, flags, WINDOW, choices)
    }

    /// Registers like [`Self::start`] with a response window of `window`.
    fn start_with_window(
        daemon: &TestDaemon,
        flags: LidEntryFlags,
        window: Duration,
        choices: Vec<LocalIdChoice>,
    ) -> Self {
        let registered_before = count_in_log(daemon, REGISTERED);
        let mut service =
            blocking::register_localid_select(Some(daemon.socket_path()), flags, window)
                .expect("register the local identity selection service");
        wait_for_log(daemon, REGISTERED, registered_before + 1);

        let queries = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&queries);
        thread::spawn(move || {
            let mut choices = choices.into_iter();
            while let Ok(query) = service.next_query() {
                lock(&recorded).push(query.clone());
                let sent = match query.kind {
                    LocalIdQueryKind::DatabaseEntry => service.acknowledge(&query),
                    LocalIdQueryKind::Inquiry => match choices.next() {
                        Some(choice) => service.answer(&query, &choice),
                        None => break,
                    },
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        Self { queries }
    }

    fn queries(&self) -> Vec<LocalIdQuery> {
        lock(&self.queries).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn count_in_log(daemon: &TestDaemon, needle: &str) -> usize {
    daemon.stderr().matches(needle).count()
}

/// Waits until the daemon's log contains `needle` `count` times.
fn wait_for_log(daemon: &TestDaemon, needle: &str, count: usize) {
    let deadline = Instant::now() + PEER_TIMEOUT;
    while count_in_log(daemon, needle) < count {
        assert!(
            Instant::now() < deadline,
            "the daemon did not log {needle:?} {count} times:\n{}",
            daemon.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a pool client STARTTLS to `remote_id` at 127.0.0.1:`port`.
fn connect(
    daemon: &TestDaemon,
    port: u16,
    remote_id: &str,
) -> Result<blocking::TlsConnection, ClientError> {
    let client = blocking::Client::connect(Some(daemon.socket_path())).expect("connect");
    let request = StartTlsRequest::client(remote_id).build().expect("request");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
    client.starttls(tcp, &request)
}

/// Returns the output of `tlspool-admin disclose list` on the dev-init databases.
fn disclose_list() -> String {
    let output = Command::new(bin_path("tlspool-admin"))
        .arg("-c")
        .arg(setup().file("tlspool.conf"))
        .args(["disclose", "list"])
        .output()
        .expect("run tlspool-admin");
    assert!(
        output.status.success(),
        "tlspool-admin disclose list failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn chosen_identity_reaches_the_peer() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    let helper = Helper::start(
        &daemon,
        LidEntryFlags::WANT_DBENTRY,
        vec![
            LocalIdChoice::once(OTHER_DOMAIN),
            LocalIdChoice::once(DOMAIN),
        ],
    );

    let first = connect(&daemon, port, PEER).expect("STARTTLS with the first choice");
    assert_eq!(first.local_id, OTHER_DOMAIN);
    assert!(
        server.wait_for_output(&format!("CN = {OTHER_DOMAIN}")),
        "s_server did not see {OTHER_DOMAIN}:\n{}",
        server.output()
    );
    drop(first);

    let second = connect(&daemon, port, PEER).expect("STARTTLS with the second choice");
    assert_eq!(second.local_id, DOMAIN);
    assert!(
        server.wait_for_output(&format!("CN = {DOMAIN}")),
        "s_server did not see {DOMAIN}:\n{}",
        server.output()
    );

    let queries = helper.queries();
    assert_eq!(
        queries.len(),
        4,
        "one DB entry and one inquiry per handshake"
    );
    let entry = &queries[0];
    assert_eq!(entry.kind, LocalIdQueryKind::DatabaseEntry);
    assert_eq!(entry.remote_id, ".dev.example");
    assert_eq!(entry.local_id, DOMAIN);
    let inquiry = &queries[1];
    assert_eq!(inquiry.kind, LocalIdQueryKind::Inquiry);
    assert_eq!(inquiry.remote_id, PEER);
    assert_eq!(
        inquiry.local_id, DOMAIN,
        "the listed identity is the suggestion"
    );
    assert_eq!(inquiry.maxlevels, 1);
    assert!(inquiry.flags.contains(LidEntryFlags::WANT_DBENTRY));
}

#[test]
fn stored_answer_serves_next_handshake() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    // Skip asking only when the disclose entry is the remote identity itself.
    let flags = LidEntryFlags::SKIP_DBENTRY | LidEntryFlags::SKIP_DOMAIN_SAME;
    let helper = Helper::start(
        &daemon,
        flags,
        vec![LocalIdChoice::stored(DOMAIN, "", LidEntryFlags::DBINSERT)],
    );

    let first = connect(&daemon, port, OTHER_PEER).expect("STARTTLS that stores the choice");
    assert_eq!(first.local_id, DOMAIN);
    drop(first);
    let listed = disclose_list();
    assert!(
        listed.contains(&format!("{OTHER_PEER}\t{DOMAIN}")),
        "the stored choice is missing:\n{listed}"
    );

    let second = connect(&daemon, port, OTHER_PEER).expect("STARTTLS from the stored choice");
    assert_eq!(second.local_id, DOMAIN);
    assert_eq!(
        helper.queries().len(),
        1,
        "the second handshake asked nobody"
    );
    assert!(
        server.wait_for_output(&format!("CN = {DOMAIN}")),
        "s_server did not see {DOMAIN}:\n{}",
        server.output()
    );
}

#[test]
fn failed_handshake_discards_the_choice() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = verifying_s_server(port);
    // s_server presents peer.dev.example, so the pool rejects it as wrong.dev.example.
    let remote_id = "wrong.dev.example";
    let helper = Helper::start(
        &daemon,
        LidEntryFlags::empty(),
        vec![LocalIdChoice::stored(
            OTHER_DOMAIN,
            "",
            LidEntryFlags::DBINSERT,
        )],
    );

    let error = connect(&daemon, port, remote_id).expect_err("the peer's name does not match");
    assert!(
        matches!(error, ClientError::Daemon { .. }),
        "unexpected error: {error}"
    );
    assert_eq!(helper.queries().len(), 1, "the helper was asked");
    let listed = disclose_list();
    assert!(
        !listed.contains(remote_id),
        "the choice of the failed handshake was stored:\n{listed}"
    );
}

#[test]
fn helper_disconnect_releases_the_window() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = verifying_s_server(port);

    let registered_before = count_in_log(&daemon, REGISTERED);
    let mut service = blocking::register_localid_select(
        Some(daemon.socket_path()),
        LidEntryFlags::empty(),
        WINDOW,
    )
    .expect("register");
    wait_for_log(&daemon, REGISTERED, registered_before + 1);
    let socket = daemon.socket_path().to_owned();
    let leaving = thread::spawn(move || {
        let query = service.next_query().expect("the inquiry arrives");
        drop(service);
        query
    });

    let client = blocking::Client::connect(Some(&socket)).expect("connect");
    let request = StartTlsRequest::client(PEER).build().expect("request");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
    let error = client.starttls(tcp, &request).expect_err("the helper left");
    let query = leaving.join().expect("helper thread");
    assert_eq!(query.kind, LocalIdQueryKind::Inquiry);
    let ClientError::Daemon { known, message, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*known, Some(ErrorCode::ClientDisconnect));
    assert!(message.contains("disconnected"), "{message}");

    // The window is gone, so another helper may register at once and is asked.
    let helper = Helper::start(
        &daemon,
        LidEntryFlags::empty(),
        vec![LocalIdChoice::once(DOMAIN)],
    );
    let connection = connect(&daemon, port, PEER).expect("STARTTLS with the new helper");
    assert_eq!(connection.local_id, DOMAIN);
    assert_eq!(helper.queries().len(), 1);
}

#[test]
fn second_helper_is_not_vacant() {
    let daemon = setup().start_daemon();
    let _helper = Helper::start(&daemon, LidEntryFlags::empty(), Vec::new());

    let mut second = blocking::register_localid_select(
        Some(daemon.socket_path()),
        LidEntryFlags::empty(),
        WINDOW,
    )
    .expect("the registration is sent");
    let error = second.next_query().expect_err("the daemon refuses it");
    let ClientError::Daemon { known, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*known, Some(ErrorCode::LidEntryNotVacant));
}

#[test]
fn silent_helper_times_out_the_handshake() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let _server = verifying_s_server(port);
    let registered_before = count_in_log(&daemon, REGISTERED);
    let mut service = blocking::register_localid_select(
        Some(daemon.socket_path()),
        LidEntryFlags::empty(),
        Duration::from_secs(1),
    )
    .expect("register");
    wait_for_log(&daemon, REGISTERED, registered_before + 1);
    // The helper reads the inquiry and never responds, but keeps its connection open.
    let silent = thread::spawn(move || {
        let query = service.next_query();
        (query, service)
    });

    let error = connect(&daemon, port, PEER).expect_err("nobody answers");
    let ClientError::Daemon { code, message, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*code, 110, "ETIMEDOUT");
    assert!(message.contains("did not answer within 1 s"), "{message}");
    let (query, _service) = silent.join().expect("helper thread");
    assert_eq!(
        query.expect("the inquiry arrived").kind,
        LocalIdQueryKind::Inquiry
    );
}

#[test]
fn new_identity_waits_for_the_database() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    let new = LidEntryFlags::NEW;
    let missing = "missing.dev.example";
    // The window bounds both the wait for each answer and the wait for the new identity, so
    // it is long enough for a loaded machine and short enough for the failing case.
    let _helper = Helper::start_with_window(
        &daemon,
        LidEntryFlags::empty(),
        Duration::from_secs(5),
        vec![
            LocalIdChoice::stored(OTHER_DOMAIN, "", new),
            LocalIdChoice::stored(missing, "", new),
        ],
    );

    let listed = connect(&daemon, port, PEER).expect("the announced identity is listed");
    assert_eq!(listed.local_id, OTHER_DOMAIN);
    assert!(
        server.wait_for_output(&format!("CN = {OTHER_DOMAIN}")),
        "s_server did not see {OTHER_DOMAIN}:\n{}",
        server.output()
    );
    drop(listed);

    let error = connect(&daemon, port, PEER).expect_err("the identity never appears");
    let ClientError::Daemon { code, message, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*code, 110, "ETIMEDOUT");
    assert!(message.contains(missing), "{message}");
}

#[test]
fn async_helper_chooses_identity() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let local_id = runtime.block_on(async {
        let registered_before = count_in_log(&daemon, REGISTERED);
        let mut service = tlspool_client::register_localid_select(
            Some(daemon.socket_path()),
            LidEntryFlags::empty(),
            WINDOW,
        )
        .await
        .expect("register");
        wait_for_log(&daemon, REGISTERED, registered_before + 1);
        let helper = tokio::spawn(async move {
            let query = service.next_query().await.expect("the inquiry arrives");
            let choice = LocalIdChoice::once(OTHER_DOMAIN);
            service.answer(&query, &choice).await.expect("answer");
            (query, service)
        });

        let client = tlspool_client::Client::connect(Some(daemon.socket_path()))
            .await
            .expect("connect");
        let request = StartTlsRequest::client(PEER).build().expect("request");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to s_server");
        let connection = client.starttls(tcp, &request).await.expect("STARTTLS");
        let (query, _service) = helper.await.expect("helper task");
        assert_eq!(query.remote_id, PEER);
        connection.local_id
    });
    assert_eq!(local_id, OTHER_DOMAIN);
    assert!(
        server.wait_for_output(&format!("CN = {OTHER_DOMAIN}")),
        "s_server did not see {OTHER_DOMAIN}:\n{}",
        server.output()
    );
}

#[test]
fn tlspoolctl_reads_choice_from_terminal() {
    let daemon = setup().start_daemon();
    let port = free_port();
    let server = verifying_s_server(port);
    let registered_before = count_in_log(&daemon, REGISTERED);
    let mut ctl = Command::new(bin_path("tlspoolctl"))
        .arg("--socket")
        .arg(daemon.socket_path())
        .args(["localid-select", "--once"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tlspoolctl localid-select");
    wait_for_log(&daemon, REGISTERED, registered_before + 1);
    // The choice is on standard input before the inquiry arrives, as a script would send it.
    {
        use std::io::Write as _;
        let mut stdin = ctl.stdin.take().expect("piped stdin");
        // The list holds dev.example alone, so the other identity is typed out.
        stdin
            .write_all(format!("{OTHER_DOMAIN}\n").as_bytes())
            .expect("write the choice");
    }

    let connection = connect(&daemon, port, PEER).expect("STARTTLS with the typed choice");
    let output = ctl.wait_with_output().expect("wait for tlspoolctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tlspoolctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("remote-id: {PEER}\n")), "{stdout}");
    assert!(stdout.contains(&format!("  1) {DOMAIN}\n")), "{stdout}");
    assert!(
        stdout.contains(&format!("suggestion: {DOMAIN}\n")),
        "{stdout}"
    );
    assert_eq!(connection.local_id, OTHER_DOMAIN);
    assert!(
        server.wait_for_output(&format!("CN = {OTHER_DOMAIN}")),
        "s_server did not see {OTHER_DOMAIN}:\n{}",
        server.output()
    );
}
