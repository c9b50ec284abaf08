//! The built `tlstunnel` binary: its command line and exit statuses, chat preludes in client
//! and server mode against scripted plaintext peers on loopback, the external chat program,
//! the connection limit, the drain on SIGTERM, and `--daemon` with `--pidfile`.
//!
//! Most tests run without a TLS Pool daemon (`-S` names a socket that does not exist), so
//! every connection ends where STARTTLS would begin. They check the bytes exchanged up to that
//! point, and that the tunnel closes both sides and keeps serving. One test hands the prepared
//! connection to the built daemon without credentials, which rejects the request, and one
//! runs a real TLS session with the credentials of `tlspool-admin dev-init` and `gnutls-cli`
//! as the client, forwarded to a UNIX socket backend chosen by `%R`.
//!
//! The tests after those run real TLS peers and plaintext services through tunnels on
//! daemons set up by `tlspool-admin dev-init`: curl and `openssl s_client` in front of
//! `python3 -m http.server`, a client tunnel to `gnutls-serv --echo`, an SMTP chat to a
//! STARTTLS server on the daemon, IPv6 and UNIX socket addresses, backends chosen by `%R`,
//! 500 concurrent connections, and failures that must leak no descriptor. The gnutls-serv
//! test runs only under `scripts/netns-run.sh`.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tlspool_tests::bin_path;

/// Upper bound for any single step, so a hang fails the test instead of blocking it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval between polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running `tlstunnel` whose standard error is collected; it is killed when dropped.
struct Tunnel {
    child: Child,
    log: Arc<Mutex<String>>,
    _directory: TempDir,
}

impl Tunnel {
    /// Starts `tlstunnel` with `args` and waits until it logs that every one of its
    /// `listeners` addresses is bound.
    fn start(args: &[&str], listeners: usize) -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let pool_socket = directory.path().join("no-daemon.sock");
        // The socket option goes right after the mode, before any `--`.
        let mut child = Command::new(bin_path("tlstunnel"))
            .args(&args[..1])
            .args(["-S", path_str(&pool_socket)])
            .args(&args[1..])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tlstunnel");

        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let collected = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = collected.lock().unwrap_or_else(PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });

        let tunnel = Self {
            child,
            log,
            _directory: directory,
        };
        tunnel.wait_for_log("listening", listeners);
        tunnel
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `needle` occurs `count` times in the log.
    fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "tlstunnel did not log {needle:?} {count} times; log:\n{}",
                self.log()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {name} failed");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll tlstunnel") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Returns a loopback address with a port that was free a moment ago.
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").to_string()
}

/// Binds the listener of a scripted plaintext peer on loopback and returns it with its
/// address.
fn scripted_peer() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted peer");
    let address = listener.local_addr().expect("local address").to_string();
    (listener, address)
}

/// Runs `tlstunnel` with `args` to completion.
fn run(args: &[&str]) -> Output {
    Command::new(bin_path("tlstunnel"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tlstunnel")
}

/// Runs `tlstunnel` with standard error in a file under `directory`, because a background
/// copy keeps it open after the starter exits, and returns the starter's status and log.
fn run_logged(args: &[&str], directory: &Path) -> (ExitStatus, String) {
    let log_path = directory.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("create the log file");
    let status = Command::new(bin_path("tlstunnel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .expect("run tlstunnel");
    let stderr = std::fs::read_to_string(&log_path).expect("read the log file");
    (status, stderr)
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Reads until `expected.len()` bytes arrived and checks they are exactly `expected`.
fn expect_bytes(stream: &mut impl std::io::Read, expected: &[u8]) {
    let mut received = vec![0u8; expected.len()];
    stream
        .read_exact(&mut received)
        .expect("read from tlstunnel");
    assert_eq!(
        String::from_utf8_lossy(&received),
        String::from_utf8_lossy(expected)
    );
}

/// Reads until the peer closes the connection and returns the bytes read and whether the
/// close was a reset. Linux resets a connection that is closed with input unread.
fn read_to_close(stream: &mut impl std::io::Read) -> (String, bool) {
    let mut rest = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&rest).into_owned(), false),
            Ok(count) => rest.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&rest).into_owned(), true);
            }
            Err(error) => panic!("reading to the end failed: {error}"),
        }
    }
}

/// Checks that the peer closes the connection without sending anything more. A reset counts
/// as a close, because the tunnel closes with input unread when a chat fails.
fn expect_end(stream: &mut impl std::io::Read) {
    let (rest, _) = read_to_close(stream);
    assert_eq!(rest, "", "bytes after the prelude");
}

/// Checks that the peer closes the connection cleanly without sending anything more, which
/// shows the chat consumed every byte this side sent, up to where TLS would begin.
fn expect_clean_end(stream: &mut impl std::io::Read) {
    let (rest, reset) = read_to_close(stream);
    assert_eq!(rest, "", "bytes after the prelude");
    assert!(!reset, "the tunnel left bytes of the prelude unread");
}

fn timed(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
}

/// Accepts one connection on `listener` within the step timeout.
fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                timed(&stream);
                return stream;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection arrived");
                thread::sleep(POLL_INTERVAL);
            }
            Err(error) => panic!("accept failed: {error}"),
        }
    }
}

/// Connects to the tunnel at `listen` and accepts the connection it opens to `server`.
fn open_session(listen: &str, server: &TcpListener) -> (TcpStream, TcpStream) {
    let plaintext = TcpStream::connect(listen).expect("connect to the tunnel");
    timed(&plaintext);
    (plaintext, accept(server))
}

/// Returns whether a connection arrives on `listener` within `wait`.
fn connection_arrives(listener: &TcpListener, wait: Duration) -> bool {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if listener.accept().is_ok() {
            return true;
        }
        thread::sleep(POLL_INTERVAL);
    }
    false
}

/// The SMTP client prelude of the chat-script guide.
const SMTP_CLIENT_CHAT: [&str; 17] = [
    "ABORT",
    "554\\s",
    "ABORT",
    "454\\s",
    "ABORT",
    "502\\s",
    "220\\s",
    "\\c",
    "\\r\\n",
    "EHLO\\sclient.example.com\\r\\n\\c",
    "250\\s",
    "\\c",
    "\\r\\n",
    "STARTTLS\\r\\n\\c",
    "220\\s",
    "\\c",
    "\\r\\n",
];

/// Plays the SMTP server before STARTTLS on `server`, with the greeting split into pieces
/// and pauses between them, and checks every byte the tunnel sends.
fn play_smtp_server(server: &mut TcpStream) {
    for piece in [
        &b"2"[..],
        b"20-mx.exam",
        b"ple.com ESMTP\r\n220 re",
        b"ady\r\n",
    ] {
        server.write_all(piece).expect("send greeting piece");
        thread::sleep(Duration::from_millis(50));
    }
    expect_bytes(server, b"EHLO client.example.com\r\n");
    server
        .write_all(b"250-mx.example.com\r\n250-STARTTLS\r\n250 SIZE 10485760\r\n")
        .expect("send EHLO reply");
    expect_bytes(server, b"STARTTLS\r\n");
    server
        .write_all(b"220 2.0.0 Ready to start TLS\r\n")
        .expect("send STARTTLS reply");
}

/// Returns the arguments of a client-mode tunnel with `extra` options after the mode.
fn client_args<'a>(
    extra: &[&'a str],
    listen: &'a str,
    remote: &'a str,
    chat: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["-c"];
    args.extend(extra);
    args.extend(["-l", listen, "-r", remote, "-L", "client@example.com"]);
    args.extend(["-s", "smtp", "--"]);
    args.extend(chat);
    args
}

#[test]
fn help_prints_usage() {
    for flag in ["-h", "--help"] {
        let output = run(&[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        let usage = String::from_utf8_lossy(&output.stdout);
        assert!(usage.starts_with("Usage: tlstunnel -c|-s"), "{usage}");
        assert!(usage.contains("--max-connections N"), "{usage}");
    }
}

#[test]
fn usage_errors_exit_2_with_message() {
    let base = [
        "-l",
        "127.0.0.1:2525",
        "-r",
        "127.0.0.1:25",
        "-L",
        "me@example.com",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![],
            "the first option must be -c (--client) or -s (--server)",
        ),
        (vec!["-l", "127.0.0.1:1"], "the first option must be -c"),
        (vec!["-c", "-s", "smtp", "-c"], "-c selects the mode"),
        (vec!["-c", "--nonsense"], "unknown option \"--nonsense\""),
        (vec!["-c", "-l"], "option -l requires a value"),
        (
            vec!["-c", "-l", "::1:25"],
            "write an IPv6 address in brackets",
        ),
        (
            vec!["-c", "-l", "127.0.0.1:0"],
            "the port must be a number from 1 to 65535",
        ),
        (vec!["-c", "-r", "host:smtp"], "the port must be a number"),
        (vec!["-c", "-r", "[::1]25"], "expected [IPV6]:PORT"),
        (vec!["-c", "-r", "/run/%Q.sock"], "unknown sequence %Q"),
        (
            vec!["-c", "-s", "smtp-submission-x"],
            "expected an IANA service name",
        ),
        (
            vec!["-c", "--grace", "soon"],
            "expected a whole number of seconds",
        ),
        (
            vec!["-c", "-r", "127.0.0.1:25", "-L", "x"],
            "option -l/--local-addr is required",
        ),
        (
            vec!["-c", "-O", "-l", "127.0.0.1:1", "-L", "x"],
            "-r/--remote-addr is required",
        ),
        (
            vec![
                "-c",
                "-u",
                "-l",
                "/tmp/plain.sock",
                "-r",
                "127.0.0.1:25",
                "-L",
                "x",
            ],
            "DTLS over UDP needs HOST:PORT addresses",
        ),
        (
            vec![
                "-s",
                "--udp-dtls",
                "-l",
                "127.0.0.1:1",
                "-r",
                "/tmp/x.sock",
                "-L",
                "x",
            ],
            "DTLS over UDP needs HOST:PORT addresses",
        ),
        (
            vec!["-c", "-x", "5"],
            "SCTP is not supported on this system",
        ),
        (
            vec!["-c", "-x", "70000"],
            "expected a stream number, 0 to 65535",
        ),
    ];
    for (args, message) in cases {
        let output = run(&args);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    let mut bad_chat = vec!["-c"];
    bad_chat.extend(base);
    bad_chat.extend(["220", "HELO\\K"]);
    let output = run(&bad_chat);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("invalid chat script argument 2"));
}

#[test]
fn every_option_is_accepted() {
    let listen = free_address();
    let directory = tempfile::tempdir().expect("temporary directory");
    let unix_listen = directory.path().join("plain.sock");
    let pidfile = directory.path().join("tunnel.pid");
    let args = [
        "--client",
        "--local-addr",
        &listen,
        "-l",
        path_str(&unix_listen),
        "--remote-addr=[::ffff:127.0.0.1]:25",
        "-r",
        "/run/%L/%*R.sock",
        "--local-id=client@example.com",
        "-R",
        "mx.example.com",
        "--service",
        "smtp",
        "-t",
        "--tcp",
        "--tcp-tls",
        "-d",
        "--sctp-dtls",
        "-D",
        "--sctp-tls",
        "-o",
        "--sctp-tunneled",
        "-O",
        "--sctp-not-tunneled",
        "-f",
        "--fork",
        "-F",
        "--foreground",
        "--pidfile",
        path_str(&pidfile),
        "--max-connections",
        "3",
        "--grace=0",
        "-C",
        "/bin/true",
    ];
    let mut tunnel = Tunnel::start(&args, 2);
    let pid = std::fs::read_to_string(&pidfile).expect("read the PID file");
    assert_eq!(pid, format!("{}\n", tunnel.child.id()));

    tunnel.signal("-TERM");
    let status = tunnel.wait_exit(STEP_TIMEOUT).expect("tlstunnel exits");
    assert_eq!(status.code(), Some(0), "{}", tunnel.log());
    assert!(!pidfile.exists(), "the PID file is removed at exit");
    assert!(!unix_listen.exists(), "the UNIX socket is removed at exit");
}

#[test]
fn server_mode_takes_s_twice() {
    let listen = free_address();
    let args = [
        "-s",
        "-l",
        &listen,
        "-r",
        "127.0.0.1:80",
        "-L",
        "www.example.com",
    ];
    let mut tunnel = Tunnel::start(&[&args[..], &["-s", "https", "--grace", "0"]].concat(), 1);
    tunnel.signal("-INT");
    let status = tunnel
        .wait_exit(STEP_TIMEOUT)
        .expect("tlstunnel exits on SIGINT");
    assert_eq!(status.code(), Some(0), "{}", tunnel.log());
}

#[test]
fn client_chat_runs_smtp_prelude() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let tunnel = Tunnel::start(&client_args(&[], &listen, &remote, &SMTP_CLIENT_CHAT), 1);

    // Two connections in a row: the second shows the listener survives a failed set-up.
    for round in 1..=2 {
        let mut plaintext = TcpStream::connect(&listen).expect("connect to the tunnel");
        timed(&plaintext);
        let mut cipher = accept(&server);
        play_smtp_server(&mut cipher);

        // Without a TLS Pool the tunnel closes both sides where STARTTLS would begin.
        expect_clean_end(&mut cipher);
        expect_clean_end(&mut plaintext);
        tunnel.wait_for_log("connection set-up failed", round);
    }
    let log = tunnel.log();
    let peer = "peer=127.0.0.1:";
    assert!(log.contains(peer), "{log}");
    assert!(log.contains("cannot connect to the TLS Pool"), "{log}");
}

#[test]
fn client_chat_over_unix_listener() {
    let (server, remote) = scripted_peer();
    let directory = tempfile::tempdir().expect("temporary directory");
    let listen = directory.path().join("smtp.sock");
    let _tunnel = Tunnel::start(
        &client_args(&[], path_str(&listen), &remote, &SMTP_CLIENT_CHAT),
        1,
    );

    let mut plaintext = UnixStream::connect(&listen).expect("connect to the tunnel");
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    let mut cipher = accept(&server);
    play_smtp_server(&mut cipher);
    expect_clean_end(&mut cipher);
    expect_clean_end(&mut plaintext);
}

#[test]
fn server_chat_runs_smtp_prelude() {
    let listen = free_address();
    let chat = [
        "",
        "220\\smx.example.com\\sESMTP\\r\\n\\c",
        "EHLO",
        "250-mx.example.com\\r\\n250\\sSTARTTLS\\r\\n\\c",
        "STARTTLS\\r\\n",
        "220\\s2.0.0\\sReady\\sto\\sstart\\sTLS\\r\\n\\c",
    ];
    let mut args = vec![
        "-s",
        "-l",
        &listen,
        "-r",
        "127.0.0.1:25",
        "-L",
        "mx.example.com",
    ];
    args.extend(["-s", "smtp", "--"]);
    args.extend(chat);
    let tunnel = Tunnel::start(&args, 1);

    let mut client = TcpStream::connect(&listen).expect("connect to the tunnel");
    timed(&client);
    expect_bytes(&mut client, b"220 mx.example.com ESMTP\r\n");
    client
        .write_all(b"EHLO client.example.com\r\n")
        .expect("send EHLO");
    expect_bytes(&mut client, b"250-mx.example.com\r\n250 STARTTLS\r\n");
    for piece in [&b"START"[..], b"TLS\r", b"\n"] {
        client.write_all(piece).expect("send STARTTLS piece");
        thread::sleep(Duration::from_millis(50));
    }
    expect_bytes(&mut client, b"220 2.0.0 Ready to start TLS\r\n");
    expect_clean_end(&mut client);
    tunnel.wait_for_log("connection set-up failed", 1);
}

/// A client-mode chat script with the server's greeting, the command the script must send,
/// and the server's reply that ends the plaintext part.
struct Prelude<'a> {
    chat: &'a [&'a str],
    greeting: &'a [u8],
    command: &'a [u8],
    reply: &'a [u8],
}

#[test]
fn imap_and_pop3_scripts_reach_starttls() {
    let imap: &[&str] = &[
        "ABORT",
        "*\\sBYE",
        "ABORT",
        "a1\\sNO",
        "ABORT",
        "a1\\sBAD",
        "*\\sOK",
        "\\c",
        "\\r\\n",
        "a1\\sSTARTTLS\\r\\n\\c",
        "a1\\sOK",
        "\\c",
        "\\r\\n",
    ];
    let pop3: &[&str] = &[
        "ABORT",
        "-ERR",
        "+OK",
        "\\c",
        "\\r\\n",
        "STLS\\r\\n\\c",
        "+OK",
        "\\c",
        "\\r\\n",
    ];
    let cases = [
        Prelude {
            chat: imap,
            greeting: b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
            command: b"a1 STARTTLS\r\n",
            reply: b"a1 OK Begin TLS negotiation now\r\n",
        },
        Prelude {
            chat: pop3,
            greeting: b"+OK POP3 ready\r\n",
            command: b"STLS\r\n",
            reply: b"+OK Begin TLS\r\n",
        },
    ];
    for Prelude {
        chat,
        greeting,
        command,
        reply,
    } in cases
    {
        let (server, remote) = scripted_peer();
        let listen = free_address();
        let _tunnel = Tunnel::start(&client_args(&[], &listen, &remote, chat), 1);

        let (mut plaintext, mut cipher) = open_session(&listen, &server);
        cipher.write_all(greeting).expect("send greeting");
        expect_bytes(&mut cipher, command);
        cipher.write_all(reply).expect("send reply");
        expect_clean_end(&mut cipher);
        expect_clean_end(&mut plaintext);
    }
}

#[test]
fn chat_abort_closes_connection() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let chat = ["ABORT", "-ERR", "+OK", "STLS\\r\\n\\c", "+OK"];
    let tunnel = Tunnel::start(&client_args(&[], &listen, &remote, &chat), 1);

    let (_plaintext, mut cipher) = open_session(&listen, &server);
    cipher
        .write_all(b"+OK POP3 ready\r\n")
        .expect("send greeting");
    expect_bytes(&mut cipher, b"STLS\r\n");
    cipher.write_all(b"-ERR not now\r\n").expect("send refusal");
    expect_end(&mut cipher);
    tunnel.wait_for_log("chat script aborted: the peer sent \"-ERR\"", 1);
}

#[test]
fn chat_timeout_closes_connection() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let chat = ["TIMEOUT", "1", "220"];
    let tunnel = Tunnel::start(&client_args(&[], &listen, &remote, &chat), 1);

    let (_plaintext, mut cipher) = open_session(&listen, &server);
    let started = Instant::now();
    expect_end(&mut cipher);
    assert!(started.elapsed() >= Duration::from_millis(900));
    tunnel.wait_for_log("chat script timed out after 1 s waiting for \"220\"", 1);
}

#[test]
fn chat_program_uses_connection_as_stdio() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let script =
        "read greeting && test \"${greeting%?}\" = '* OK ready' && printf 'a1 STARTTLS\\r\\n'";
    let mut args = vec!["-c", "-l", &listen, "-r", &remote, "-L", "me@example.com"];
    args.extend(["-C", "/bin/sh", "--", "-c", script]);
    let tunnel = Tunnel::start(&args, 1);

    // The program reads the greeting and replies, and its exit status 0 proceeds to STARTTLS.
    let (_plaintext, mut cipher) = open_session(&listen, &server);
    cipher.write_all(b"* OK ready\r\n").expect("send greeting");
    expect_bytes(&mut cipher, b"a1 STARTTLS\r\n");
    expect_clean_end(&mut cipher);
    tunnel.wait_for_log("cannot connect to the TLS Pool", 1);

    // A greeting the program rejects makes it exit 1, which ends the connection.
    let (_plaintext, mut cipher) = open_session(&listen, &server);
    cipher.write_all(b"* BYE\r\n").expect("send greeting");
    expect_end(&mut cipher);
    tunnel.wait_for_log("chat program /bin/sh failed with exit status: 1", 1);
}

#[test]
fn connection_limit_defers_accept() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let args = client_args(&["--max-connections", "1"], &listen, &remote, &["220"]);
    let tunnel = Tunnel::start(&args, 1);

    let _first = TcpStream::connect(&listen).expect("first connection");
    let mut first_cipher = accept(&server);
    let _second = TcpStream::connect(&listen).expect("second connection waits in the backlog");
    assert!(
        !connection_arrives(&server, Duration::from_millis(500)),
        "a second connection was served beyond --max-connections 1"
    );

    first_cipher
        .write_all(b"220 hi\r\n")
        .expect("finish the first chat");
    expect_end(&mut first_cipher);
    assert!(
        connection_arrives(&server, STEP_TIMEOUT),
        "the second connection was not served"
    );
    drop(tunnel);
}

#[test]
fn sigterm_drains_open_connection() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let args = client_args(&["--grace", "20"], &listen, &remote, &["220"]);
    let mut tunnel = Tunnel::start(&args, 1);

    let (_plaintext, mut cipher) = open_session(&listen, &server);
    tunnel.signal("-TERM");
    tunnel.wait_for_log("stopping: no new connections", 1);

    // The open connection keeps the process alive, and no new connection is accepted.
    thread::sleep(Duration::from_millis(300));
    assert!(
        tunnel.wait_exit(Duration::ZERO).is_none(),
        "exited before the drain"
    );
    let refused = TcpStream::connect(&listen);
    assert!(refused.is_err(), "the listener still accepts after SIGTERM");

    // Finishing the chat ends the connection, and then the process.
    cipher.write_all(b"220 hi\r\n").expect("finish the chat");
    expect_end(&mut cipher);
    let status = tunnel
        .wait_exit(STEP_TIMEOUT)
        .expect("tlstunnel exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", tunnel.log());
    assert!(
        tunnel.log().contains("all connections finished"),
        "{}",
        tunnel.log()
    );
}

#[test]
fn sigterm_grace_period_ends_stalled_connection() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let args = client_args(&["--grace", "1"], &listen, &remote, &["220"]);
    let mut tunnel = Tunnel::start(&args, 1);

    let (_plaintext, mut cipher) = open_session(&listen, &server);
    let signalled = Instant::now();
    tunnel.signal("-TERM");
    let status = tunnel
        .wait_exit(STEP_TIMEOUT)
        .expect("tlstunnel exits after the grace");
    assert!(signalled.elapsed() >= Duration::from_millis(900));
    assert_eq!(status.code(), Some(0), "{}", tunnel.log());
    assert!(
        tunnel.log().contains("grace period over"),
        "{}",
        tunnel.log()
    );
    expect_end(&mut cipher);
}

/// Kills a background tunnel by process id when a test ends, also when it fails early.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn daemon_mode_returns_once_bound() {
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let directory = tempfile::tempdir().expect("temporary directory");
    let pidfile = directory.path().join("tlstunnel.pid");
    let pool_socket = directory.path().join("no-daemon.sock");
    let extra = [
        "--daemon",
        "--pidfile",
        path_str(&pidfile),
        "-S",
        path_str(&pool_socket),
    ];
    let args = client_args(&extra, &listen, &remote, &["220"]);

    let started = Instant::now();
    let (status, stderr) = run_logged(&args, directory.path());
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(started.elapsed() < STEP_TIMEOUT);
    let pid = std::fs::read_to_string(&pidfile).expect("the PID file exists once bound");
    let pid = pid.trim().to_owned();
    let _guard = KillOnDrop(pid.clone());

    // The background process serves the listener.
    let _plaintext = TcpStream::connect(&listen).expect("connect to the background tunnel");
    let mut cipher = accept(&server);
    cipher.write_all(b"220 hi\r\n").expect("finish the chat");
    expect_end(&mut cipher);

    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + STEP_TIMEOUT;
    while pidfile.exists() {
        assert!(
            Instant::now() < deadline,
            "the background tunnel did not stop"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

#[test]
fn daemon_mode_reports_bind_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let listen = taken.local_addr().expect("address").to_string();
    let directory = tempfile::tempdir().expect("temporary directory");
    let args = [
        "-c",
        "--daemon",
        "-l",
        &listen,
        "-r",
        "127.0.0.1:25",
        "-L",
        "me",
    ];
    let (status, stderr) = run_logged(&args, directory.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {listen}")),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn starttls_reaches_daemon_after_prelude() {
    // Builds the daemon binary that the harness starts.
    bin_path("tlspool");
    let daemon = tlspool_tests::daemon::TestDaemon::start(&[]);
    let (server, remote) = scripted_peer();
    let listen = free_address();
    let pool_socket = path_str(daemon.socket_path()).to_owned();
    let extra = ["-S", pool_socket.as_str()];
    let tunnel = Tunnel::start(&client_args(&extra, &listen, &remote, &SMTP_CLIENT_CHAT), 1);

    let (_plaintext, mut cipher) = open_session(&listen, &server);
    play_smtp_server(&mut cipher);

    // Whatever the daemon sends next is the start of its TLS handshake: a handshake record.
    cipher
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let mut first = [0u8; 1];
    if let Ok(1) = cipher.read(&mut first) {
        assert_eq!(first[0], 0x16, "the daemon sent a non-handshake record");
    }
    drop(cipher);

    // The daemon has no credentials here, so the request ends with its error.
    tunnel.wait_for_log("the TLS Pool request failed", 1);
    assert!(
        !tunnel.log().contains("cannot connect to the TLS Pool"),
        "{}",
        tunnel.log()
    );
}

/// A daemon with the credentials of `tlspool-admin dev-init` for `dev.example`, killed when
/// dropped.
struct DevDaemon {
    child: Child,
    directory: TempDir,
}

impl DevDaemon {
    fn start() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let setup = directory.path().join("dev");
        let output = Command::new(bin_path("tlspool-admin"))
            .args(["dev-init", path_str(&setup), "--domain", "dev.example"])
            .output()
            .expect("run tlspool-admin dev-init");
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            stderr_of(&output)
        );

        let child = Command::new(bin_path("tlspool"))
            .args(["-f", "-c", path_str(&setup.join("tlspool.conf"))])
            .env("SOFTHSM2_CONF", setup.join("softhsm2.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tlspool");
        let daemon = Self { child, directory };
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !daemon.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not create its socket"
            );
            thread::sleep(POLL_INTERVAL);
        }
        daemon
    }

    fn file(&self, name: &str) -> PathBuf {
        self.directory.path().join("dev").join(name)
    }

    fn socket(&self) -> PathBuf {
        self.file("tlspool.sock")
    }
}

impl Drop for DevDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn server_forwards_to_backend_of_remote_id() {
    let daemon = DevDaemon::start();
    let backends = tempfile::tempdir().expect("temporary directory");
    let backend = UnixListener::bind(backends.path().join("peer.dev.example.sock"))
        .expect("bind the backend of peer.dev.example");
    let template = format!("{}/%R.sock", path_str(backends.path()));
    let listen = free_address();
    let socket = daemon.socket();
    let args = [
        "-s",
        "-l",
        &listen,
        "-r",
        &template,
        "-L",
        "dev.example",
        "-s",
        "https",
    ];
    let tunnel = Tunnel::start(
        &[&args[..1], &["-S", path_str(&socket)], &args[1..]].concat(),
        1,
    );

    // The backend returns the first six bytes it reads behind a prefix, then closes.
    let served = thread::spawn(move || {
        backend.set_nonblocking(true).expect("non-blocking backend");
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut stream = loop {
            match backend.accept() {
                Ok((stream, _)) => break stream,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "the tunnel did not reach the backend"
                    );
                    thread::sleep(POLL_INTERVAL);
                }
                Err(error) => panic!("accept on the backend failed: {error}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("read timeout");
        let mut request = [0u8; 6];
        stream
            .read_exact(&mut request)
            .expect("read from the tunnel");
        stream.write_all(b"echo:").expect("write to the tunnel");
        stream.write_all(&request).expect("write to the tunnel");
    });

    let (port_host, port) = listen.rsplit_once(':').expect("host:port");
    let mut client = Command::new("gnutls-cli")
        .args(["--x509cafile", path_str(&daemon.file("ca.pem"))])
        .args(["--x509certfile", path_str(&daemon.file("peer-cert.pem"))])
        .args(["--x509keyfile", path_str(&daemon.file("peer-key.pem"))])
        .args([
            "--verify-hostname",
            "dev.example",
            "--port",
            port,
            port_host,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gnutls-cli");
    let mut input = client.stdin.take().expect("piped stdin");
    input.write_all(b"hello\n").expect("write to gnutls-cli");
    served.join().expect("the backend served one request");
    drop(input);
    let output = client.wait_with_output().expect("wait for gnutls-cli");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("echo:hello"), "{stdout}\n{}", tunnel.log());
    tunnel.wait_for_log("remote_id=peer.dev.example", 1);
}

/// Kills and reaps a helper process, such as a plaintext service, when a test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Tunnel {
    /// Returns the number of descriptors the tunnel has open (entries of `/proc/PID/fd`).
    fn open_fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read the tunnel's descriptor list")
            .count()
    }

    /// Waits until the tunnel has `baseline` descriptors open again and fails the test with
    /// `after` in the message when it does not within the step timeout.
    fn expect_fd_count(&self, baseline: usize, after: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let count = self.open_fd_count();
            if count == baseline {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {after} the tunnel has {count} descriptors open, not {baseline}; log:\n{}",
                self.log()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl DevDaemon {
    fn file_str(&self, name: &str) -> String {
        path_str(&self.file(name)).to_owned()
    }

    /// Starts a `tlstunnel` on this daemon with `args` after the mode and waits until its
    /// `listeners` addresses are bound.
    fn tunnel(&self, mode: &str, args: &[&str], listeners: usize) -> Tunnel {
        let socket = self.socket();
        let mut all = vec![mode, "-S", path_str(&socket)];
        all.extend(args);
        Tunnel::start(&all, listeners)
    }
}

/// A TCP or UNIX socket service on loopback that returns each line it reads after `prefix`,
/// with one thread per connection, until it is dropped.
struct LineEcho {
    stop: Arc<std::sync::atomic::AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LineEcho {
    fn tcp(address: &str, prefix: &'static str) -> Self {
        let listener = TcpListener::bind(address).expect("bind the echo backend");
        listener.set_nonblocking(true).expect("non-blocking");
        Self::serve(prefix, move || {
            listener.accept().map(|(stream, _)| {
                stream.set_nonblocking(false).expect("blocking stream");
                Box::new(stream) as Box<dyn ReadWrite>
            })
        })
    }

    fn unix(path: &Path, prefix: &'static str) -> Self {
        let listener = UnixListener::bind(path).expect("bind the UNIX echo backend");
        listener.set_nonblocking(true).expect("non-blocking");
        Self::serve(prefix, move || {
            listener.accept().map(|(stream, _)| {
                stream.set_nonblocking(false).expect("blocking stream");
                Box::new(stream) as Box<dyn ReadWrite>
            })
        })
    }

    fn serve(
        prefix: &'static str,
        mut accept: impl FnMut() -> std::io::Result<Box<dyn ReadWrite>> + Send + 'static,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stopping, counter) = (Arc::clone(&stop), Arc::clone(&accepted));
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match accept() {
                    Ok(stream) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        thread::spawn(move || echo_lines(stream, prefix));
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(error) => panic!("accept on the echo backend failed: {error}"),
                }
            }
        });
        Self {
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for LineEcho {
    /// Stops accepting and closes the listening socket; open connections keep running.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}

fn echo_lines(stream: Box<dyn ReadWrite>, prefix: &str) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let mut reply = prefix.as_bytes().to_vec();
        reply.extend_from_slice(&line);
        if reader.get_mut().write_all(&reply).is_err() {
            return;
        }
        line.clear();
    }
}

/// Starts `openssl s_client` with `target` (such as `-connect [::1]:443` or `-unix PATH`),
/// trusting only `ca_file` and with `extra` arguments.
fn s_client(target: &[&str], ca_file: &str, extra: &[&str]) -> tls_peers::Peer {
    let mut command = Command::new("openssl");
    command
        .arg("s_client")
        .args(target)
        .args(["-CAfile", ca_file, "-verify_return_error", "-quiet"])
        .args(["-servername", "dev.example"])
        .args(extra);
    tls_peers::Peer::spawn("openssl s_client", command)
}

/// Sends `line` through `client` and checks that `expected` comes back.
fn round_trip(client: &mut tls_peers::Peer, line: &str, expected: &str, tunnel: &Tunnel) {
    client.send_line(line);
    assert!(
        client.wait_for_output(expected),
        "{expected:?} did not arrive; client output:\n{}\ntunnel log:\n{}",
        client.output(),
        tunnel.log()
    );
}

use tlspool_tests::tls_peers;

#[test]
fn server_tunnel_serves_http_to_curl_and_s_client() {
    let daemon = DevDaemon::start();
    let web = tempfile::tempdir().expect("temporary directory");
    let body = "index served by python http.server\n";
    std::fs::write(web.path().join("index.txt"), body).expect("write the page");
    let http_port = tls_peers::free_port().to_string();
    let http = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &http_port])
        .arg("--directory")
        .arg(web.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let _http = ChildGuard(http);
    let backend = format!("127.0.0.1:{http_port}");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while TcpStream::connect(&backend).is_err() {
        assert!(Instant::now() < deadline, "http.server did not listen");
        thread::sleep(POLL_INTERVAL);
    }

    let listen = free_address();
    let args = ["-l", &listen, "-r", &backend, "-L", "dev.example"];
    let tunnel = daemon.tunnel(
        "-s",
        &[&args[..], &["-s", "https", "--request-remote-id"]].concat(),
        1,
    );

    let port = listen.rsplit_once(':').expect("host:port").1;
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--cacert", &daemon.file_str("ca.pem")])
        .args(["--resolve", &format!("dev.example:{port}:127.0.0.1")])
        .arg(format!("https://dev.example:{port}/index.txt"))
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl failed: {}\ntunnel log:\n{}",
        stderr_of(&output),
        tunnel.log()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), body);

    let mut client = s_client(&["-connect", &listen], &daemon.file_str("ca.pem"), &[]);
    client.send_line("GET /index.txt HTTP/1.0\r\n\r");
    assert!(client.wait_exit(), "s_client did not finish");
    let response = client.output();
    assert!(response.contains("HTTP/1.0 200 OK"), "{response}");
    assert!(response.contains(body), "{response}");
    tunnel.wait_for_log("tls session established", 2);
}

#[test]
fn client_tunnel_reaches_gnutls_echo() {
    let daemon = DevDaemon::start();
    let port = tls_peers::free_port();
    let _server = tls_peers::gnutls_serv(
        port,
        &[
            "--echo",
            "--x509certfile",
            &daemon.file_str("peer-cert.pem"),
            "--x509keyfile",
            &daemon.file_str("peer-key.pem"),
        ],
    );
    let listen = free_address();
    let remote = format!("127.0.0.1:{port}");
    let args = ["-l", &listen, "-r", &remote, "-L", "dev.example"];
    let tunnel = daemon.tunnel("-c", &[&args[..], &["-R", "peer.dev.example"]].concat(), 1);

    let mut plaintext = TcpStream::connect(&listen).expect("connect to the tunnel");
    timed(&plaintext);
    for line in ["first line through gnutls-serv\n", "second line\n"] {
        plaintext
            .write_all(line.as_bytes())
            .expect("write to the tunnel");
        expect_bytes(&mut plaintext, line.as_bytes());
    }
    tunnel.wait_for_log("remote_id=peer.dev.example", 1);
}

#[test]
fn client_chat_runs_smtp_starttls_to_pool_server() {
    let daemon = DevDaemon::start();
    let (server, remote) = scripted_peer();
    let pool_socket = daemon.socket();
    // The scripted SMTP server speaks the prelude and then runs STARTTLS as server through
    // the daemon with the dev.example identity, and answers one line inside TLS.
    let served = thread::spawn(move || {
        let mut cipher = accept(&server);
        play_smtp_server(&mut cipher);
        let pool = tlspool_client::blocking::Client::connect(Some(&pool_socket))
            .expect("connect to the daemon");
        let request = tlspool_client::StartTlsRequest::server("dev.example")
            .service("smtp")
            .build()
            .expect("server request");
        let mut connection = pool.starttls(&cipher, &request).expect("server STARTTLS");
        drop(cipher);
        connection
            .plaintext
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("read timeout");
        let mut command = [0u8; 13];
        connection
            .plaintext
            .read_exact(&mut command)
            .expect("read inside TLS");
        let mut reply = b"250 inside:".to_vec();
        reply.extend_from_slice(&command);
        connection
            .plaintext
            .write_all(&reply)
            .expect("write inside TLS");
        // The session ends when its control connection closes, so the thread hands both back
        // and they stay open until the reply has arrived through the tunnel.
        (connection, pool)
    });

    let listen = free_address();
    let mut args = vec!["-l", &listen, "-r", &remote, "-L", "dev.example"];
    args.extend(["-R", "dev.example", "-s", "smtp", "--"]);
    args.extend(SMTP_CLIENT_CHAT);
    let tunnel = daemon.tunnel("-c", &args, 1);

    let mut plaintext = TcpStream::connect(&listen).expect("connect to the tunnel");
    timed(&plaintext);
    plaintext
        .write_all(b"EHLO inside\r\n")
        .expect("write to the tunnel");
    expect_bytes(&mut plaintext, b"250 inside:EHLO inside\r\n");
    let (connection, _pool) = served.join().expect("the SMTP server finished");
    assert_eq!(connection.remote_id, "dev.example", "{}", tunnel.log());
    tunnel.wait_for_log("remote_id=dev.example", 1);
}

/// Waits until a UNIX socket file exists at `path`.
fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {}",
            path.display()
        );
        thread::sleep(POLL_INTERVAL);
    }
}

#[test]
fn ipv6_and_unix_addresses_listen_and_forward() {
    let daemon = DevDaemon::start();
    let sockets = tempfile::tempdir().expect("temporary directory");
    let ca = daemon.file_str("ca.pem");

    // A server tunnel listens on [::1] and on a UNIX socket and forwards to [::1].
    let backend_port = TcpListener::bind("[::1]:0")
        .and_then(|listener| listener.local_addr())
        .expect("free IPv6 port")
        .port();
    let backend = format!("[::1]:{backend_port}");
    let _echo = LineEcho::tcp(&backend, "v6:");
    let listen_port = TcpListener::bind("[::1]:0")
        .and_then(|listener| listener.local_addr())
        .expect("free IPv6 port")
        .port();
    let listen_v6 = format!("[::1]:{listen_port}");
    let listen_unix = sockets.path().join("tls.sock");
    let args = [
        "--request-remote-id",
        "-l",
        &listen_v6,
        "-l",
        path_str(&listen_unix),
        "-r",
        &backend,
        "-L",
        "dev.example",
    ];
    let server = daemon.tunnel("-s", &args, 2);

    let mut over_v6 = s_client(&["-connect", &listen_v6], &ca, &[]);
    round_trip(&mut over_v6, "over ipv6", "v6:over ipv6", &server);
    let mut over_unix = s_client(&["-unix", path_str(&listen_unix)], &ca, &[]);
    round_trip(&mut over_unix, "over unix", "v6:over unix", &server);

    // A client tunnel listens on a UNIX socket and forwards to a TLS server on a UNIX socket.
    let tls_server = sockets.path().join("s_server.sock");
    let mut command = Command::new("openssl");
    command
        .args(["s_server", "-rev", "-unix", path_str(&tls_server)])
        .args(["-cert", &daemon.file_str("peer-cert.pem")])
        .args(["-key", &daemon.file_str("peer-key.pem")]);
    let _s_server = tls_peers::Peer::spawn("openssl s_server", command);
    wait_for_socket(&tls_server);
    let plain_unix = sockets.path().join("plain.sock");
    let args = [
        "-l",
        path_str(&plain_unix),
        "-r",
        path_str(&tls_server),
        "-L",
        "dev.example",
        "-R",
        "peer.dev.example",
    ];
    let client = daemon.tunnel("-c", &args, 1);
    let mut plaintext = UnixStream::connect(&plain_unix).expect("connect to the tunnel");
    plaintext
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    plaintext.write_all(b"unix both ways\n").expect("write");
    expect_bytes(&mut plaintext, b"syaw htob xinu\n");
    client.wait_for_log("remote_id=peer.dev.example", 1);
}

#[test]
fn server_picks_unix_backend_by_remote_id() {
    let daemon = DevDaemon::start();
    let backends = tempfile::tempdir().expect("temporary directory");
    let peer_backend = LineEcho::unix(&backends.path().join("peer.dev.example.sock"), "peer:");
    let other_backend = LineEcho::unix(&backends.path().join("dev.example.sock"), "other:");
    let template = format!("{}/%R.sock", path_str(backends.path()));
    let listen = free_address();
    let args = ["--request-remote-id", "-l", &listen, "-r", &template];
    let tunnel = daemon.tunnel("-s", &[&args[..], &["-L", "dev.example"]].concat(), 1);
    let ca = daemon.file_str("ca.pem");

    let peer_identity = [
        "-cert",
        &daemon.file_str("peer-cert.pem"),
        "-key",
        &daemon.file_str("peer-key.pem"),
    ];
    let mut peer = s_client(&["-connect", &listen], &ca, &peer_identity);
    round_trip(&mut peer, "as the peer", "peer:as the peer", &tunnel);
    tunnel.wait_for_log("remote_id=peer.dev.example", 1);

    // An anonymous client has an empty remote identity, which must not pick a path.
    let mut anonymous = s_client(&["-connect", &listen], &ca, &[]);
    anonymous.send_line("anonymous");
    assert!(
        anonymous.wait_exit(),
        "the tunnel kept the anonymous client"
    );
    tunnel.wait_for_log("expands to \"\", which is empty", 1);
    assert_eq!(peer_backend.accepted(), 1);
    assert_eq!(other_backend.accepted(), 0);
}

/// Opens 500 connections at once through a client tunnel and a server tunnel on one daemon to
/// a line echo service, and checks that each gets its own line back.
///
/// Both tunnels multiplex their STARTTLS requests over one daemon connection each, so every
/// client handshake needs a server handshake that arrives on the other connection.
#[test]
fn server_tunnel_relays_500_concurrent_connections() {
    const CONNECTIONS: usize = 500;
    let daemon = DevDaemon::start();
    let backend = free_address();
    let _echo = LineEcho::tcp(&backend, "echo:");
    let tls_listen = free_address();
    let args = ["--ignore-remote-id", "-l", &tls_listen, "-r", &backend];
    let server = daemon.tunnel("-s", &[&args[..], &["-L", "dev.example"]].concat(), 1);
    let listen = free_address();
    let args = ["--ignore-remote-id", "-l", &listen, "-r", &tls_listen];
    let identities = ["-L", "dev.example", "-R", "dev.example"];
    let client = daemon.tunnel("-c", &[&args[..], &identities].concat(), 1);

    let ready = Arc::new(std::sync::Barrier::new(CONNECTIONS));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|index| {
            let listen = listen.clone();
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                let connected = TcpStream::connect(&listen);
                // Every connection is open before any sends, so all of them are relayed at
                // once. The wait comes before the checks, so a failed worker cannot leave the
                // others waiting.
                ready.wait();
                let mut stream = connected.expect("connect to the tunnel");
                stream
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .expect("read timeout");
                let line = format!("connection {index} {}\n", "x".repeat(index));
                stream.write_all(line.as_bytes()).expect("write");
                let mut reply = vec![0u8; line.len() + "echo:".len()];
                stream.read_exact(&mut reply).expect("read the echo");
                assert_eq!(String::from_utf8_lossy(&reply), format!("echo:{line}"));
            })
        })
        .collect();
    let failed = workers
        .into_iter()
        .map(thread::JoinHandle::join)
        .filter(Result::is_err)
        .count();
    assert_eq!(
        failed,
        0,
        "connections failed; server log:\n{}\nclient log:\n{}",
        server.log(),
        client.log()
    );
    server.wait_for_log("tls session established", CONNECTIONS);
}

#[test]
fn failures_leave_tunnel_serving_without_fd_leak() {
    let daemon = DevDaemon::start();
    let backend = free_address();
    let listen = free_address();
    let args = ["--request-remote-id", "-l", &listen, "-r", &backend];
    let tunnel = daemon.tunnel("-s", &[&args[..], &["-L", "dev.example"]].concat(), 1);
    let ca = daemon.file_str("ca.pem");
    let port = listen.rsplit_once(':').expect("host:port").1;
    let port: u16 = port.parse().expect("port");

    // One served connection opens the tunnel's connection to the daemon; the count after it
    // is the baseline.
    let echo = LineEcho::tcp(&backend, "up:");
    let mut first = s_client(&["-connect", &listen], &ca, &[]);
    round_trip(&mut first, "warm up", "up:warm up", &tunnel);
    drop(first);
    drop(echo);
    thread::sleep(Duration::from_millis(500));
    let baseline = tunnel.open_fd_count();

    // The backend is down: the handshake completes, then the tunnel closes the connection.
    let mut to_down = tls_peers::openssl_s_client(port, &["-quiet", "-CAfile", &ca]);
    assert!(
        to_down.wait_exit(),
        "the tunnel kept a connection to a dead backend"
    );
    tunnel.wait_for_log("cannot connect to", 1);
    tunnel.expect_fd_count(baseline, "a connection to a backend that is down");

    // The client trusts another CA and aborts the handshake.
    let other_ca = tempfile::tempdir().expect("temporary directory");
    let other_ca_file = other_ca.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=untrusted test CA", "-keyout"])
        .arg(other_ca.path().join("other-ca-key.pem"))
        .arg("-out")
        .arg(&other_ca_file)
        .output()
        .expect("run openssl req");
    assert!(made.status.success(), "{}", stderr_of(&made));
    let mut untrusting = s_client(&["-connect", &listen], path_str(&other_ca_file), &[]);
    assert!(untrusting.wait_exit(), "s_client did not give up");
    assert!(
        untrusting.output().contains("verify error"),
        "{}",
        untrusting.output()
    );
    tunnel.wait_for_log("connection set-up failed", 2);
    tunnel.expect_fd_count(baseline, "a failed handshake");

    // The tunnel still serves.
    let _echo = LineEcho::tcp(&backend, "again:");
    let mut next = s_client(&["-connect", &listen], &ca, &[]);
    round_trip(&mut next, "next", "again:next", &tunnel);
    drop(next);
    tunnel.wait_for_log("tls session established", 2);
}
