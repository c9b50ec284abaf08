//! The `tlspool` daemon binary over its UNIX socket: PING, many concurrent clients, bad
//! input of every kind, PID file takeover and conflicts, socket mode, configuration errors,
//! stop signals and the command line.

use std::collections::HashSet;
use std::io::{IoSlice, Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    ErrorCode, ErrorPayload, Facilities, FixedString, IDENTITY_V2, Identity, Payload, RECORD_LEN,
    Record, StartTls, StartTlsFlags,
};
use tlspool_tests::daemon::{TestDaemon, daemon_binary, ping_record, write_file};

/// Upper bound for any single step that talks to the daemon, so a hang fails the test.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(daemon: &TestDaemon) -> RecordStream {
    let stream = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    stream
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    stream
}

fn receive(stream: &mut RecordStream) -> Record {
    let frame = stream
        .recv()
        .expect("receive a record")
        .expect("daemon closed the connection");
    frame.decode().expect("decode the daemon's record")
}

fn expect_error(record: &Record) -> &ErrorPayload {
    match &record.payload {
        Payload::Error(error) => error,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

fn assert_ping_answer(record: &Record, reqid: u16) {
    assert_eq!(record.reqid, reqid);
    assert_eq!(record.cbid, 0);
    let Payload::Ping(ping) = &record.payload else {
        panic!("expected PING, got {:?}", record.payload);
    };
    assert_eq!(ping.producer.as_str(), IDENTITY_V2);
}

/// Asserts that the daemon still answers PING and that its descriptor count drops back to
/// `baseline` (closing happens asynchronously, so it polls).
fn assert_daemon_healthy(daemon: &TestDaemon, baseline: usize) {
    assert_ping_answer(&daemon.ping(900), 900);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut count = daemon.open_fd_count();
    while count > baseline && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        count = daemon.open_fd_count();
    }
    assert!(
        count <= baseline,
        "daemon holds {count} descriptors, baseline {baseline}"
    );
}

/// Returns the daemon's descriptor count once the start-up probe connection is closed.
fn settled_fd_count(daemon: &TestDaemon) -> usize {
    let mut previous = daemon.open_fd_count();
    loop {
        thread::sleep(Duration::from_millis(100));
        let count = daemon.open_fd_count();
        if count == previous {
            return count;
        }
        previous = count;
    }
}

/// Returns a descriptor to pass and its peer, which reads EOF once every copy is closed.
fn passable_descriptor() -> (OwnedFd, UnixStream) {
    let (passed, peer) = UnixStream::pair().expect("socketpair");
    peer.set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    (OwnedFd::from(passed), peer)
}

fn assert_peer_closed(mut peer: UnixStream) {
    let mut byte = [0u8; 1];
    let read = peer
        .read(&mut byte)
        .expect("the daemon closes the passed descriptor");
    assert_eq!(read, 0, "passed descriptor still open");
}

fn starttls_payload(flags: StartTlsFlags) -> StartTls {
    StartTls {
        flags,
        local: 0,
        ipproto: 6,
        streamid: 0,
        localid: Identity::empty(),
        remoteid: Identity::empty(),
        ctlkey: [0; 16],
        service: FixedString::new("generic").expect("service name"),
        timeout: 0,
    }
}

#[test]
fn ping_answers_identity_and_offered_facilities() {
    let configurations: [(&[&str], Facilities); 4] = [
        (&[], Facilities::STARTTLS),
        (&["allow_facilities starttls"], Facilities::STARTTLS),
        (&["deny_facilities starttls"], Facilities::empty()),
        (
            &["allow_facilities *", "deny_facilities "],
            Facilities::STARTTLS,
        ),
    ];
    for (lines, offered) in configurations {
        let daemon = TestDaemon::start(lines);
        let reply = daemon.ping(77);
        assert_ping_answer(&reply, 77);
        let Payload::Ping(ping) = reply.payload else {
            unreachable!("checked above");
        };
        // Reserved bits are never offered, whatever the configuration allows.
        assert_eq!(ping.facilities, offered, "configuration {lines:?}");
    }
}

#[test]
fn many_clients_with_outstanding_pings() {
    const CLIENTS: u16 = 200;
    const PINGS: u16 = 10;
    let daemon = TestDaemon::start(&[]);
    let socket = daemon.socket_path().to_owned();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let socket = socket.clone();
            thread::spawn(move || {
                let mut stream = RecordStream::connect(&socket).expect("connect to the daemon");
                stream
                    .get_ref()
                    .set_read_timeout(Some(STEP_TIMEOUT))
                    .expect("read timeout");
                let sent: HashSet<u16> = (0..PINGS).map(|ping| client * PINGS + ping).collect();
                for &reqid in &sent {
                    stream
                        .send_record(&ping_record(reqid), None)
                        .expect("send PING");
                }
                let mut answered = HashSet::new();
                for _ in 0..PINGS {
                    let reply = receive(&mut stream);
                    assert!(matches!(reply.payload, Payload::Ping(_)), "{reply:?}");
                    assert!(
                        answered.insert(reply.reqid),
                        "reqid {} answered twice",
                        reply.reqid
                    );
                }
                assert_eq!(answered, sent);
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
fn short_record_then_close() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = UnixStream::connect(daemon.socket_path()).expect("connect");
    stream
        .write_all(&[0x10; 10])
        .expect("write part of a record");
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
    assert!(
        daemon
            .stderr()
            .contains("disconnected in the middle of a record")
    );
}

#[test]
fn disconnect_mid_record() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = UnixStream::connect(daemon.socket_path()).expect("connect");
    let record = ping_record(3).encode();
    stream.write_all(&record).expect("write a whole record");
    stream
        .write_all(&record[..200])
        .expect("write part of the next record");
    let mut reply = [0u8; RECORD_LEN];
    stream
        .read_exact(&mut reply)
        .expect("answer to the whole record");
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn garbage_bytes_get_answers() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let mut state = 0x9e37_79b9_u32;
    for _ in 0..50 {
        let bytes: [u8; RECORD_LEN] = std::array::from_fn(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[1]
        });
        stream.send(&bytes, None).expect("send garbage");
        // Random bytes name no outstanding callback, so each is a request with one answer.
        let frame = stream
            .recv()
            .expect("receive")
            .expect("daemon closed the connection");
        assert_eq!(
            frame.header().reqid,
            u16::from_ne_bytes([bytes[0], bytes[1]])
        );
    }
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn unknown_command_gets_command_unknown() {
    let daemon = TestDaemon::start(&[]);
    let mut stream = connect(&daemon);
    stream
        .send_record(
            &Record::new(31, Payload::Unknown { cmd: 0x8000_0042 }),
            None,
        )
        .expect("send");
    let reply = receive(&mut stream);
    assert_eq!(reply.reqid, 31);
    let error = expect_error(&reply);
    assert_eq!(error.error_code(), Some(ErrorCode::CommandUnknown));
    assert!(error.message.contains("0x80000042"), "{}", error.message);
}

#[test]
fn lidentry_registration_waits_silently() {
    let daemon = TestDaemon::start(&[]);
    let mut stream = connect(&daemon);
    let registration = tlspool_proto::LidEntry {
        flags: tlspool_proto::LidEntryFlags::empty(),
        maxlevels: 0,
        timeout: 60,
        localid: FixedString::empty(),
        remoteid: FixedString::empty(),
    };
    stream
        .send_record(
            &Record::new(32, Payload::LidEntryRegister(registration)),
            None,
        )
        .expect("send");
    // An accepted registration has no reply until a handshake needs it, so the next record
    // on the connection is the reply to this PING.
    stream
        .send_record(&ping_record(33), None)
        .expect("send PING");
    let reply = receive(&mut stream);
    assert_eq!(reply.reqid, 33);
    assert!(matches!(reply.payload, Payload::Ping(_)), "{reply:?}");
}

#[test]
fn stray_callback_answer_is_rejected() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let (fd, peer) = passable_descriptor();
    let mut record = Record::new(
        33,
        Payload::PlaintextConnect(starttls_payload(StartTlsFlags::empty())),
    );
    record.cbid = 12;
    stream.send_record(&record, Some(fd.as_fd())).expect("send");
    drop(fd);
    let reply = receive(&mut stream);
    assert_eq!(reply.reqid, 33);
    assert_eq!(reply.cbid, 0);
    assert_eq!(
        expect_error(&reply).error_code(),
        Some(ErrorCode::CommandBadCallbackResponse)
    );
    assert_peer_closed(peer);
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn descriptor_on_ping_is_closed() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let (fd, peer) = passable_descriptor();
    stream
        .send_record(&ping_record(34), Some(fd.as_fd()))
        .expect("send");
    drop(fd);
    assert_ping_answer(&receive(&mut stream), 34);
    assert_peer_closed(peer);
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn descriptor_on_renegotiation_is_superfluous() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let (fd, peer) = passable_descriptor();
    let record = Record::new(
        35,
        Payload::StartTls(starttls_payload(StartTlsFlags::RENEGOTIATE)),
    );
    stream.send_record(&record, Some(fd.as_fd())).expect("send");
    drop(fd);
    let reply = receive(&mut stream);
    assert_eq!(
        expect_error(&reply).error_code(),
        Some(ErrorCode::SuperfluousSocket)
    );
    assert_peer_closed(peer);
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn two_descriptors_on_one_record_are_closed() {
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let (first_peer, second_peer) = send_ping_with_two_descriptors(&stream, 36);
    assert_ping_answer(&receive(&mut stream), 36);
    assert_peer_closed(first_peer);
    assert_peer_closed(second_peer);
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn surplus_descriptors_warn_once_per_connection() {
    const RECORDS: u16 = 20;
    let daemon = TestDaemon::start(&[]);
    let mut stream = connect(&daemon);
    for reqid in 0..RECORDS {
        let _peers = send_ping_with_two_descriptors(&stream, reqid);
        assert_ping_answer(&receive(&mut stream), reqid);
    }
    drop(stream);

    let summary = format!("total={}", 2 * RECORDS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.stderr().contains(&summary) {
        assert!(
            Instant::now() < deadline,
            "no summary with {summary}:\n{}",
            daemon.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let log = daemon.stderr();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains(" WARN ")).collect();
    let surplus = warnings
        .iter()
        .filter(|line| line.contains("descriptors"))
        .count();
    assert_eq!(surplus, 2, "one first warning and one summary:\n{log}");
}

/// Sends PING `reqid` with two descriptors attached, which the daemon must close, and
/// returns the peers of the two descriptors.
fn send_ping_with_two_descriptors(stream: &RecordStream, reqid: u16) -> (UnixStream, UnixStream) {
    let (first, first_peer) = passable_descriptor();
    let (second, second_peer) = passable_descriptor();
    let bytes = ping_record(reqid).encode();
    let descriptors = [first.as_raw_fd(), second.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&descriptors)];
    let socket = stream.get_ref().as_raw_fd();
    let sent = sendmsg::<()>(
        socket,
        &[IoSlice::new(&bytes)],
        &rights,
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg with two descriptors");
    assert_eq!(sent, RECORD_LEN);
    (first_peer, second_peer)
}

#[test]
fn unterminated_field_is_named() {
    let daemon = TestDaemon::start(&[]);
    let mut stream = connect(&daemon);
    let record = Record::new(
        37,
        Payload::StartTls(starttls_payload(StartTlsFlags::LOCALROLE_CLIENT)),
    );
    let mut bytes = record.encode();
    bytes[20..148].fill(b'a'); // `localid` without its NUL
    stream.send(&bytes, None).expect("send");
    let reply = receive(&mut stream);
    assert_eq!(reply.reqid, 37);
    let error = expect_error(&reply);
    assert!(error.message.contains("localid"), "{}", error.message);
}

#[test]
fn flood_of_records_is_answered() {
    const RECORDS: u16 = 10_000;
    let daemon = TestDaemon::start(&[]);
    let baseline = settled_fd_count(&daemon);
    let mut stream = connect(&daemon);
    let sender = RecordStream::new(stream.get_ref().try_clone().expect("clone the stream"));
    let flood = thread::spawn(move || {
        for reqid in 0..RECORDS {
            sender
                .send_record(&ping_record(reqid), None)
                .expect("send PING");
        }
    });
    let mut seen = vec![false; usize::from(RECORDS)];
    for _ in 0..RECORDS {
        let reply = receive(&mut stream);
        assert!(matches!(reply.payload, Payload::Ping(_)), "{reply:?}");
        let slot = &mut seen[usize::from(reply.reqid)];
        assert!(!*slot, "reqid {} answered twice", reply.reqid);
        *slot = true;
    }
    flood.join().expect("flood thread");
    drop(stream);
    assert_daemon_healthy(&daemon, baseline);
}

#[test]
fn takeover_with_kill_flag() {
    let mut old = TestDaemon::start(&[]);
    let new = old.takeover();
    let status = old.wait_exit(STEP_TIMEOUT).expect("the old daemon exits");
    assert!(status.success(), "old daemon exited with {status}");
    assert_ping_answer(&new.ping(40), 40);
    let pid_text = std::fs::read_to_string(new.pid_file_path()).expect("read PID file");
    assert_eq!(pid_text, format!("{}\n", new.pid()));
}

#[test]
fn second_daemon_without_kill_exits_1() {
    let daemon = TestDaemon::start(&[]);
    let output = daemon.command().output().expect("run a second tlspool");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another daemon owns the PID file"),
        "{stderr}"
    );
    assert!(stderr.contains(&daemon.pid().to_string()), "{stderr}");
    assert_ping_answer(&daemon.ping(41), 41);
}

#[test]
fn socket_has_configured_mode() {
    for mode in [0o600, 0o660, 0o666] {
        let line = format!("socket_mode 0{mode:o}");
        let daemon = TestDaemon::start(&[line.as_str()]);
        let metadata = std::fs::metadata(daemon.socket_path()).expect("socket metadata");
        assert_eq!(metadata.permissions().mode() & 0o7777, mode, "{line}");
    }
}

#[test]
fn daemon_user_and_group_are_applied() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let daemon = TestDaemon::start(&["daemon_user nobody", "daemon_group nogroup"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .expect("read the daemon's status");
    let ids = |prefix: &str| -> Vec<u32> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} line in {status}"));
        line.split_whitespace()
            .map(|id| id.parse().expect("numeric id"))
            .collect()
    };
    // Real, effective, saved and file-system ids.
    assert_eq!(ids("Uid:"), [65534; 4]);
    assert_eq!(ids("Gid:"), [65534; 4]);
    assert_eq!(ids("Groups:"), [65534]);
    assert_ping_answer(&daemon.ping(42), 42);
}

#[test]
fn config_error_names_its_line() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let socket = directory.path().join("tlspool.sock");
    let text = format!(
        "log_stderr YES\nsocket_name {}\nsocket_mode 9x\n",
        socket.display()
    );
    let config = write_file(directory.path(), "bad.conf", &text);
    let output = Command::new(daemon_binary())
        .arg("-f")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run tlspool");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.conf:3:"), "{stderr}");
    assert!(stderr.contains("socket_mode"), "{stderr}");
    assert!(
        !socket.exists(),
        "no socket is created from a bad configuration"
    );
}

#[test]
fn stop_signals_remove_socket_and_pid_file() {
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let mut daemon = TestDaemon::start(&[]);
        let _client = connect(&daemon);
        assert!(daemon.pid_file_path().exists());
        daemon.signal(signal);
        let status = daemon.wait_exit(STEP_TIMEOUT).expect("the daemon exits");
        assert!(status.success(), "{signal}: exit status {status}");
        assert!(
            !daemon.socket_path().exists(),
            "{signal}: socket file remains"
        );
        assert!(
            !daemon.pid_file_path().exists(),
            "{signal}: PID file remains"
        );
        assert!(daemon.stderr().contains("stopped"), "{signal}");
    }
}

#[test]
fn sigpipe_is_ignored() {
    let daemon = TestDaemon::start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .expect("read the daemon's status");
    let ignored = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .expect("SigIgn line");
    let mask = u64::from_str_radix(ignored.trim(), 16).expect("hexadecimal mask");
    let sigpipe_bit = 1 << (Signal::SIGPIPE as u64 - 1);
    assert_ne!(mask & sigpipe_bit, 0, "SigIgn {ignored}");
}

#[test]
fn background_start_serves_and_stops() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let socket = directory.path().join("tlspool.sock");
    let pid_file = directory.path().join("tlspool.pid");
    let text = format!(
        "log_stderr YES\ndaemon_pidfile {}\nsocket_name {}\n",
        pid_file.display(),
        socket.display()
    );
    let config = write_file(directory.path(), "tlspool.conf", &text);
    // The daemon keeps stderr open, so it goes to a file the test does not wait on.
    let log = std::fs::File::create(directory.path().join("stderr.log")).expect("log file");
    let output = Command::new(daemon_binary())
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(log)
        .output()
        .expect("run tlspool");
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());

    // The parent exits only once the background daemon serves, so PING works at once.
    let mut stream = RecordStream::connect(&socket).expect("connect to the daemon");
    stream
        .send_record(&ping_record(50), None)
        .expect("send PING");
    assert_ping_answer(&receive(&mut stream), 50);

    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("read PID file")
        .trim()
        .parse()
        .expect("PID");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM)
        .expect("signal the background daemon");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while (socket.exists() || pid_file.exists()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!socket.exists(), "socket file remains");
    assert!(!pid_file.exists(), "PID file remains");
}

#[test]
fn version_flag_prints_version() {
    for flag in ["-V", "--version"] {
        let output = Command::new(daemon_binary())
            .arg(flag)
            .output()
            .expect("run tlspool");
        assert!(output.status.success(), "{flag}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            format!("tlspool {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}
