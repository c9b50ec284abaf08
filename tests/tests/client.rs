//! The client library and `tlspoolctl` against the built `tlspool` daemon: PING in both client
//! flavours, concurrent requests on one connection, socket lookup through
//! `TLSPOOL_CONFIG_FILE`, and the end of the connection while a request is outstanding.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tlspool_client::{ClientError, Facilities};
use tlspool_proto::IDENTITY_V2;
use tlspool_tests::daemon::TestDaemon;

/// Upper bound for any single step that talks to the daemon, so a hang fails the test.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns the `tlspoolctl` binary that `cargo build --workspace --bins` put beside the
/// daemon binary.
fn tlspoolctl_binary() -> PathBuf {
    let binary = tlspool_tests::daemon::binary_path("tlspoolctl");
    assert!(
        binary.exists(),
        "{} is missing; run `cargo build --workspace --bins` first",
        binary.display()
    );
    binary
}

/// Runs `tlspoolctl` with `args` and `TLSPOOL_CONFIG_FILE` set to `config_file` or removed.
fn run_tlspoolctl(args: &[&str], config_file: Option<&Path>) -> Output {
    let mut command = Command::new(tlspoolctl_binary());
    command.args(args);
    match config_file {
        Some(file) => command.env("TLSPOOL_CONFIG_FILE", file),
        None => command.env_remove("TLSPOOL_CONFIG_FILE"),
    };
    command.output().expect("run tlspoolctl")
}

/// Pauses `daemon` with SIGSTOP and waits until every thread of it has stopped, because the
/// signal only queues the stop and a running thread could still reply to a request.
fn stop_daemon(daemon: &mut TestDaemon) {
    daemon.stop();
    let tasks = format!("/proc/{}/task", daemon.pid());
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let all_stopped = std::fs::read_dir(&tasks)
            .expect("list the daemon's threads")
            .filter_map(Result::ok)
            .all(|task| thread_is_stopped(&task.path().join("stat")));
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the state field of a `/proc/PID/task/TID/stat` file, which follows the `)` that ends
/// the command name; `T` means stopped by a signal.
fn thread_is_stopped(stat: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(stat) else {
        // A thread that exited meanwhile cannot reply either.
        return true;
    };
    let state = text
        .rfind(')')
        .and_then(|end| text[end + 1..].split_whitespace().next());
    state == Some("T")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Checks that `facilities` contains no reserved bit: a daemon offers at most
/// `PIOF_FACILITY_ALL_CURRENT`, which is STARTTLS alone.
fn assert_offers_only_current_facilities(facilities: Facilities) {
    // NOTE: the daemon offers STARTTLS only once it implements STARTTLS, so both an empty set
    // and STARTTLS pass here.
    assert!(
        Facilities::ALL_CURRENT.contains(facilities),
        "offered {facilities:?}"
    );
}

#[test]
fn blocking_ping_returns_identity_and_facilities() {
    let daemon = TestDaemon::start(&[]);
    let client = tlspool_client::blocking::Client::connect(Some(daemon.socket_path()))
        .expect("connect to the daemon");

    let reply = client.ping().expect("ping");
    assert_eq!(reply.producer, IDENTITY_V2);
    assert_offers_only_current_facilities(reply.facilities);
    assert_eq!(client.socket_path(), daemon.socket_path());
}

#[test]
fn blocking_ping_reports_denied_facility() {
    let daemon = TestDaemon::start(&["deny_facilities starttls"]);
    let client = tlspool_client::blocking::Client::connect(Some(daemon.socket_path()))
        .expect("connect to the daemon");

    let reply = client.ping().expect("ping");
    assert_eq!(reply.facilities, Facilities::empty());
}

#[test]
fn async_ping_returns_identity_and_facilities() {
    let daemon = TestDaemon::start(&[]);
    runtime().block_on(async {
        let client = tlspool_client::Client::connect(Some(daemon.socket_path()))
            .await
            .expect("connect to the daemon");
        let reply = tokio::time::timeout(STEP_TIMEOUT, client.ping())
            .await
            .expect("ping timed out")
            .expect("ping");
        assert_eq!(reply.producer, IDENTITY_V2);
        assert_offers_only_current_facilities(reply.facilities);
    });
}

#[test]
fn async_fifty_concurrent_pings_share_connection() {
    let daemon = TestDaemon::start(&[]);
    runtime().block_on(async {
        let client = tlspool_client::Client::connect(Some(daemon.socket_path()))
            .await
            .expect("connect to the daemon");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let client = client.clone();
            tasks.spawn(async move { client.ping().await });
        }

        let mut replies = 0;
        while let Some(joined) = tokio::time::timeout(STEP_TIMEOUT, tasks.join_next())
            .await
            .expect("pings timed out")
        {
            let reply = joined.expect("ping task").expect("ping");
            assert_eq!(reply.producer, IDENTITY_V2);
            replies += 1;
        }
        assert_eq!(replies, 50);
    });
}

#[test]
fn blocking_pings_from_threads_share_connection() {
    let daemon = TestDaemon::start(&[]);
    let client = tlspool_client::blocking::Client::connect(Some(daemon.socket_path()))
        .expect("connect to the daemon");

    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..10).map(|_| client.ping()).collect::<Vec<_>>()))
            .collect();
        for worker in workers {
            for reply in worker.join().expect("ping thread") {
                assert_eq!(reply.expect("ping").producer, IDENTITY_V2);
            }
        }
    });
}

#[test]
fn tlspoolctl_ping_prints_producer_and_facilities() {
    let daemon = TestDaemon::start(&[]);
    let offered = tlspool_client::blocking::Client::connect(Some(daemon.socket_path()))
        .and_then(|client| client.ping())
        .expect("ping through the library")
        .facilities;
    let socket = daemon.socket_path().to_str().expect("UTF-8 socket path");

    let output = run_tlspoolctl(&["--socket", socket, "ping"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let expected_facilities = if offered.is_empty() {
        "none"
    } else {
        "starttls"
    };
    assert_eq!(
        stdout,
        format!("producer: 20151111api@tlspool.arpa2.net\nfacilities: {expected_facilities}\n")
    );
    assert_eq!(stderr, "");
}

#[test]
fn tlspoolctl_ping_prints_none_for_denied_facilities() {
    let daemon = TestDaemon::start(&["deny_facilities starttls"]);
    let socket = daemon.socket_path().to_str().expect("UTF-8 socket path");

    let output = run_tlspoolctl(&["--socket", socket, "ping"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout,
        "producer: 20151111api@tlspool.arpa2.net\nfacilities: none\n"
    );
}

#[test]
fn tlspoolctl_finds_socket_through_config_env() {
    let daemon = TestDaemon::start(&[]);
    let mut config = tempfile::NamedTempFile::new().expect("temporary configuration file");
    writeln!(config, "socket_name {}", daemon.socket_path().display()).expect("write config");

    let output = run_tlspoolctl(&["ping"], Some(config.path()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.starts_with("producer: 20151111api@"), "{stdout}");
}

#[test]
fn tlspoolctl_config_option_overrides_env() {
    let daemon = TestDaemon::start(&[]);
    let mut config = tempfile::NamedTempFile::new().expect("temporary configuration file");
    writeln!(config, "socket_name {}", daemon.socket_path().display()).expect("write config");
    let mut wrong = tempfile::NamedTempFile::new().expect("temporary configuration file");
    writeln!(wrong, "socket_name /nonexistent/tlspool.sock").expect("write config");

    let config_path = config.path().to_str().expect("UTF-8 path");
    let output = run_tlspoolctl(&["--config", config_path, "ping"], Some(wrong.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn tlspoolctl_without_daemon_exits_1_with_message() {
    let output = run_tlspoolctl(&["--socket", "/nonexistent", "ping"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "tlspoolctl: cannot connect to the TLS Pool at /nonexistent: no such file or directory\n"
    );
}

#[test]
fn tlspoolctl_refused_connection_names_reason() {
    // Connecting to a bound socket without a listener fails with ECONNREFUSED.
    let directory = tempfile::tempdir().expect("temporary directory");
    let socket = directory.path().join("dead.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    drop(listener);

    let socket = socket.to_str().expect("UTF-8 path");
    let output = run_tlspoolctl(&["--socket", socket, "ping"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr,
        format!("tlspoolctl: cannot connect to the TLS Pool at {socket}: connection refused\n")
    );
}

#[test]
fn too_long_socket_path_is_error() {
    let path = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
    let result = tlspool_client::blocking::Client::connect(Some(&path));
    assert!(matches!(
        result,
        Err(ClientError::SocketPathTooLong { len: 125, .. })
    ));
}

#[test]
fn killed_daemon_fails_outstanding_blocking_ping() {
    let mut daemon = TestDaemon::start(&[]);
    let client = tlspool_client::blocking::Client::connect(Some(daemon.socket_path()))
        .expect("connect to the daemon");
    client.ping().expect("ping before the stop");

    // A stopped daemon cannot reply, so the next ping stays outstanding until the kill.
    stop_daemon(&mut daemon);
    let (sender, receiver) = std::sync::mpsc::channel();
    let pinger = client.clone();
    std::thread::spawn(move || sender.send(pinger.ping()));
    std::thread::sleep(Duration::from_millis(200));
    daemon.kill();

    let result = receiver
        .recv_timeout(STEP_TIMEOUT)
        .expect("ping did not end after the daemon was killed");
    assert!(
        matches!(result, Err(ClientError::Disconnected)),
        "{result:?}"
    );
    assert!(matches!(client.ping(), Err(ClientError::Disconnected)));
}

#[test]
fn killed_daemon_fails_outstanding_async_pings() {
    let mut daemon = TestDaemon::start(&[]);
    runtime().block_on(async {
        let client = tlspool_client::Client::connect(Some(daemon.socket_path()))
            .await
            .expect("connect to the daemon");
        client.ping().await.expect("ping before the stop");

        stop_daemon(&mut daemon);
        let mut pings = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let client = client.clone();
            pings.spawn(async move { client.ping().await });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        daemon.kill();

        while let Some(joined) = tokio::time::timeout(STEP_TIMEOUT, pings.join_next())
            .await
            .expect("ping did not end after the daemon was killed")
        {
            let result = joined.expect("ping task");
            assert!(
                matches!(result, Err(ClientError::Disconnected)),
                "{result:?}"
            );
        }
    });
}
