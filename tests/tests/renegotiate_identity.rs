//! The peer's identity across a renegotiation the peer starts, through the built daemon as
//! TLS server with `PIOF_STARTTLS_REQUEST_REMOTEID` (client certificate optional). A small
//! GnuTLS client, compiled from C with `cc` at run time, handshakes with one credential and
//! renegotiates with another, because neither `gnutls-cli` nor `openssl s_client` can change
//! its certificate between the two handshakes.
//!
//! A session whose peer presents a certificate in the renegotiation after none was validated
//! ends, and INFO never reports that certificate. A renegotiation with the same credential, or
//! again without one, keeps the session.
//!
//! Run through `scripts/netns-run.sh`, so that every socket stays on a private loopback.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{
    FixedString, Identity, Info, InfoKind, Payload, Record, StartTls, StartTlsFlags,
};
use tlspool_tests::daemon::TestDaemon;
use tlspool_tests::dev_pki::{DOMAIN, DevSetup, PEER, dev_setup};
use tlspool_tests::tls_peers::Peer;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER: StartTlsFlags = StartTlsFlags::LOCALROLE_SERVER
    .union(StartTlsFlags::REMOTEROLE_CLIENT)
    .union(StartTlsFlags::REQUEST_REMOTEID);
const CTLKEY: [u8; 16] = [5; 16];
/// The name in the certificate of a CA the daemon does not trust.
const ROGUE_NAME: &str = "victim.dev.example";

/// The client: a TLS 1.2 handshake with credential A (none when its file name is empty), an
/// echoed `before` line, then on the `renegotiate` line from stdin a renegotiation with
/// credential B and an echoed `after` line. It prints each step and waits for stdin to close.
const CLIENT_SOURCE: &str = r#"
#include <gnutls/gnutls.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static gnutls_certificate_credentials_t load(const char *cert, const char *key) {
    gnutls_certificate_credentials_t creds;
    gnutls_certificate_allocate_credentials(&creds);
    if (*cert) {
        int ret = gnutls_certificate_set_x509_key_file(creds, cert, key, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            printf("loading %s failed: %s\n", cert, gnutls_strerror(ret));
            exit(2);
        }
    }
    return creds;
}

static int handshake(gnutls_session_t session) {
    int ret;
    do {
        ret = gnutls_handshake(session);
    } while (ret < 0 && !gnutls_error_is_fatal(ret));
    return ret;
}

static void echo(gnutls_session_t session, const char *line) {
    char buffer[256];
    int ret = gnutls_record_send(session, line, strlen(line));
    if (ret < 0) {
        printf("send failed: %s\n", gnutls_strerror(ret));
        return;
    }
    do {
        ret = gnutls_record_recv(session, buffer, sizeof buffer - 1);
    } while (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED);
    if (ret <= 0) {
        printf("recv failed: %s\n", ret == 0 ? "end of stream" : gnutls_strerror(ret));
        return;
    }
    buffer[ret] = 0;
    printf("echo: %s", buffer);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: PORT CERT_A KEY_A CERT_B KEY_B\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    gnutls_global_init();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons(atoi(argv[1]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("connect");
        return 1;
    }
    gnutls_session_t session;
    gnutls_init(&session, GNUTLS_CLIENT);
    gnutls_priority_set_direct(session, "NORMAL:-VERS-ALL:+VERS-TLS1.2:%SAFE_RENEGOTIATION",
                               NULL);
    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, load(argv[2], argv[3]));
    gnutls_transport_set_int(session, fd);
    int ret = handshake(session);
    if (ret < 0) {
        printf("handshake 1 failed: %s\n", gnutls_strerror(ret));
        return 3;
    }
    printf("handshake 1 done\n");
    echo(session, "before\n");

    char command[64];
    if (!fgets(command, sizeof command, stdin)) {
        return 0;
    }
    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, load(argv[4], argv[5]));
    ret = handshake(session);
    if (ret < 0) {
        printf("handshake 2 failed: %s\n", gnutls_strerror(ret));
    } else {
        printf("handshake 2 done\n");
        echo(session, "after\n");
    }
    while (fgets(command, sizeof command, stdin)) {
    }
    return 0;
}
"#;

/// The compiled client and the certificates of an untrusted CA, made once per test process.
struct Material {
    _temp: TempDir,
    client: PathBuf,
    rogue_chain: PathBuf,
    rogue_key: PathBuf,
}

fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let temp = tempfile::tempdir().expect("temporary directory");
        let client = compile_client(temp.path());
        let (rogue_chain, rogue_key) = rogue_credential(temp.path());
        Material {
            _temp: temp,
            client,
            rogue_chain,
            rogue_key,
        }
    })
}

/// Compiles [`CLIENT_SOURCE`] against GnuTLS in `directory` and returns the program's path.
fn compile_client(directory: &Path) -> PathBuf {
    let source = directory.join("renegotiating-client.c");
    std::fs::write(&source, CLIENT_SOURCE).expect("write the client source");
    let program = directory.join("renegotiating-client");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "gnutls"])
        .output()
        .expect("run pkg-config");
    assert!(flags.status.success(), "pkg-config finds no gnutls");
    let flags = String::from_utf8(flags.stdout).expect("UTF-8 flags");
    let output = Command::new("cc")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .args(flags.split_whitespace())
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "compiling the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    program
}

/// Writes a client certificate for [`ROGUE_NAME`] from a CA the daemon does not trust, and
/// returns the paths of its chain and its key.
fn rogue_credential(directory: &Path) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Rogue CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(vec![ROGUE_NAME.to_owned()]).expect("client params");
    params
        .distinguished_name
        .push(DnType::CommonName, ROGUE_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("sign the client");

    let chain = directory.join("rogue-chain.pem");
    std::fs::write(&chain, format!("{}{}", cert.pem(), ca.pem())).expect("write the chain");
    let key_path = directory.join("rogue-key.pem");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
    (chain, key_path)
}

/// A credential of the client: certificate chain and key files, or none.
#[derive(Clone, Copy)]
enum Credential<'a> {
    None,
    Files(&'a Path, &'a Path),
}

impl Credential<'_> {
    fn args(self) -> [String; 2] {
        match self {
            Self::None => [String::new(), String::new()],
            Self::Files(cert, key) => [
                cert.to_string_lossy().into_owned(),
                key.to_string_lossy().into_owned(),
            ],
        }
    }
}

/// One session: the client process, the daemon's control connection that owns the session,
/// and the application's plaintext socket.
struct Session {
    client: Peer,
    control: RecordStream,
    plaintext: UnixStream,
}

/// Starts the client with credentials `first` and `second` and the pool as its server.
fn start_session(daemon: &TestDaemon, first: Credential<'_>, second: Credential<'_>) -> Session {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let mut command = Command::new(&material().client);
    command.arg(port.to_string());
    command.args(first.args()).args(second.args());
    let client = Peer::spawn("renegotiating client", command);

    let mut control = RecordStream::connect(daemon.socket_path()).expect("connect to the daemon");
    control
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    let (tcp, _) = listener.accept().expect("accept the TLS client");
    let plaintext = starttls(&mut control, tcp, daemon);
    Session {
        client,
        control,
        plaintext,
    }
}

/// Runs STARTTLS as server on `cipher`, answering PLAINTEXT_CONNECT with a socketpair end.
fn starttls(control: &mut RecordStream, cipher: impl AsFd, daemon: &TestDaemon) -> UnixStream {
    let record = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags: SERVER,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new(DOMAIN).expect("localid fits"),
            remoteid: Identity::new("").expect("remoteid fits"),
            ctlkey: CTLKEY,
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    control
        .send_record(&record, Some(cipher.as_fd()))
        .expect("send STARTTLS");
    drop(cipher);
    let mut plaintext = None;
    loop {
        let reply = receive(control);
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                control
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                plaintext = Some(ours);
            }
            Payload::StartTls(_) => {
                let plaintext = plaintext.expect("PLAINTEXT_CONNECT preceded the reply");
                plaintext
                    .set_read_timeout(Some(STEP_TIMEOUT))
                    .expect("read timeout");
                return plaintext;
            }
            other => panic!("STARTTLS failed: {other:?}\n{}", daemon.stderr()),
        }
    }
}

fn receive(control: &mut RecordStream) -> Record {
    let frame = control
        .recv()
        .expect("receive from the daemon")
        .expect("the daemon closed the connection");
    frame.decode().expect("decode the record")
}

/// Reads one line from the plaintext socket, or `None` when the session ended first.
fn read_line(plaintext: &mut UnixStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match plaintext.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return None,
            Err(error) => panic!("reading the plaintext failed after {line:?}: {error}"),
        }
    }
    Some(String::from_utf8(line).expect("UTF-8 line"))
}

/// Echoes one line from the client back to it.
fn echo_one(session: &mut Session, expected: &str) {
    let line = read_line(&mut session.plaintext);
    assert_eq!(
        line.as_deref(),
        Some(expected),
        "{}",
        session.client.output()
    );
    session
        .plaintext
        .write_all(expected.as_bytes())
        .expect("write plaintext");
}

/// Sends INFO `PEERCERT_SUBJECT` for the session and returns the reply's payload.
fn peer_subject(session: &mut Session) -> Payload {
    let record = Record::new(
        3,
        Payload::Info(Info::query(CTLKEY, InfoKind::PEERCERT_SUBJECT)),
    );
    session
        .control
        .send_record(&record, None)
        .expect("send INFO");
    receive(&mut session.control).payload
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Waits until the daemon's log contains `needle` and returns whether it did in time.
fn wait_for_log(daemon: &TestDaemon, needle: &str) -> bool {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        if daemon.stderr().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Runs the first handshake and the `before` line, then the renegotiation.
fn renegotiate(daemon: &TestDaemon, first: Credential<'_>, second: Credential<'_>) -> Session {
    let mut session = start_session(daemon, first, second);
    echo_one(&mut session, "before\n");
    assert!(
        session.client.wait_for_output("echo: before"),
        "{}",
        session.client.output()
    );
    session.client.send_line("renegotiate");
    assert!(
        session.client.wait_for_output("handshake 2"),
        "{}",
        session.client.output()
    );
    session
}

fn dev_peer(setup: &DevSetup) -> (PathBuf, PathBuf) {
    (
        PathBuf::from(setup.file("peer-cert.pem")),
        PathBuf::from(setup.file("peer-key.pem")),
    )
}

#[test]
fn certificate_after_anonymous_handshake_ends_session() {
    let daemon = dev_setup().start_daemon();
    let material = material();
    let rogue = Credential::Files(&material.rogue_chain, &material.rogue_key);
    let mut session = renegotiate(&daemon, Credential::None, rogue);

    let after = read_line(&mut session.plaintext);
    assert_eq!(
        after,
        None,
        "the session went on with an unvalidated certificate\nclient: {}\ndaemon: {}",
        session.client.output(),
        daemon.stderr()
    );
    let reply = peer_subject(&mut session);
    let reported = match &reply {
        Payload::Info(info) => info.value().ok().flatten().map(<[u8]>::to_vec),
        _ => None,
    };
    assert!(
        !reported.is_some_and(|subject| contains(&subject, ROGUE_NAME)),
        "INFO reported the unvalidated subject: {reply:?}"
    );
    assert!(
        matches!(reply, Payload::Error(_)),
        "INFO on the ended session: {reply:?}"
    );
    assert!(
        wait_for_log(&daemon, "changed in a renegotiation"),
        "the daemon logs why the session ended:\n{}",
        daemon.stderr()
    );
}

#[test]
fn renegotiation_without_certificate_keeps_session() {
    let daemon = dev_setup().start_daemon();
    let mut session = renegotiate(&daemon, Credential::None, Credential::None);

    echo_one(&mut session, "after\n");
    assert!(
        session.client.wait_for_output("echo: after"),
        "{}",
        session.client.output()
    );
}

#[test]
fn renegotiation_with_same_certificate_keeps_session() {
    let setup = dev_setup();
    let daemon = setup.start_daemon();
    let (cert, key) = dev_peer(setup);
    let peer = Credential::Files(&cert, &key);
    let mut session = renegotiate(&daemon, peer, peer);

    echo_one(&mut session, "after\n");
    assert!(
        session.client.wait_for_output("echo: after"),
        "{}",
        session.client.output()
    );
    let reply = peer_subject(&mut session);
    let Payload::Info(info) = &reply else {
        panic!("INFO failed: {reply:?}");
    };
    let subject = info.value().expect("INFO value").expect("a subject");
    assert!(contains(subject, PEER), "{reply:?}");
}
