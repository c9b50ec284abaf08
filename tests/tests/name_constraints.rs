//! nameConstraints on the identity of a client through the built daemon as TLS server: an
//! intermediate that excludes `victim.dev.example` (as rfc822Name and dNSName subtrees) signs
//! client certificates without subjectAltName whose commonName is a mail address. The
//! certificates are made with `openssl` in a temporary directory, the root is trusted with
//! `tlspool-admin trust set`, and `gnutls-cli` presents them.
//!
//! Run through `scripts/netns-run.sh`, so that every socket stays on a private loopback.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{FixedString, Identity, Payload, Record, StartTls, StartTlsFlags};
use tlspool_tests::bin_path;
use tlspool_tests::dev_pki::{DOMAIN, dev_setup};
use tlspool_tests::tls_peers::gnutls_cli;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER: StartTlsFlags =
    StartTlsFlags::LOCALROLE_SERVER.union(StartTlsFlags::REMOTEROLE_CLIENT);
const EXCLUDED_MAIL: &str = "alice@victim.dev.example";
const ALLOWED_MAIL: &str = "alice@other.dev.example";

/// Runs `openssl` in `directory` and returns its standard output.
fn openssl(directory: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes a P-256 key `NAME.key` and a request `NAME.csr` for `subject`.
fn key_and_request(directory: &Path, name: &str, subject: &str) {
    openssl(
        directory,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
    );
}

/// Signs `NAME.csr` with `issuer` into `NAME.pem`, with the extension section `section` of
/// `ext.cnf`.
fn sign(directory: &Path, name: &str, issuer: &str, section: &str) {
    openssl(
        directory,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-extensions",
            section,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

const EXTENSIONS: &str = "\
[root]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[constrained]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
nameConstraints=critical,excluded;email:victim.dev.example,excluded;email:.victim.dev.example,excluded;DNS:victim.dev.example
[client]
basicConstraints=CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
";

/// Makes the root, the constrained intermediate and one client per mail address in
/// `directory`, writes each client's chain to `NAME.chain`, and trusts the root in the
/// dev-init trust database.
fn make_pki(directory: &Path) {
    std::fs::write(directory.join("ext.cnf"), EXTENSIONS).expect("write ext.cnf");
    key_and_request(directory, "root", "/CN=Constraint Test Root");
    openssl(
        directory,
        &[
            "x509",
            "-req",
            "-in",
            "root.csr",
            "-signkey",
            "root.key",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "root",
            "-out",
            "root.pem",
        ],
    );
    key_and_request(directory, "inter", "/CN=Constrained Intermediate");
    sign(directory, "inter", "root", "constrained");
    for (name, mail) in [("excluded", EXCLUDED_MAIL), ("allowed", ALLOWED_MAIL)] {
        key_and_request(directory, name, &format!("/CN={mail}"));
        sign(directory, name, "inter", "client");
        let chain = [
            std::fs::read_to_string(directory.join(format!("{name}.pem"))).expect("read leaf"),
            std::fs::read_to_string(directory.join("inter.pem")).expect("read intermediate"),
        ]
        .concat();
        std::fs::write(directory.join(format!("{name}.chain")), chain).expect("write chain");
    }
    trust_root(directory);
}

/// Stores the root as a trust anchor for clients and servers under its key identifier.
fn trust_root(directory: &Path) {
    openssl(
        directory,
        &[
            "x509", "-in", "root.pem", "-outform", "DER", "-out", "root.der",
        ],
    );
    let text = openssl(
        directory,
        &[
            "x509",
            "-in",
            "root.pem",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ],
    );
    let key = text
        .lines()
        .nth(1)
        .expect("openssl prints the key identifier")
        .trim()
        .replace(':', "")
        .to_ascii_lowercase();
    let output = Command::new(bin_path("tlspool-admin"))
        .args(["-c", &dev_setup().file("tlspool.conf")])
        .args(["trust", "set", "x509,client,server", &key, "1"])
        .arg(directory.join("root.der"))
        .output()
        .expect("run tlspool-admin");
    assert!(
        output.status.success(),
        "tlspool-admin trust set failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the pool as server for `remote_id` against `gnutls-cli` presenting `NAME.chain`, and
/// returns the STARTTLS reply's payload.
fn serve(directory: &Path, daemon_socket: &Path, name: &str, remote_id: &str) -> Payload {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let chain = directory.join(format!("{name}.chain"));
    let key = directory.join(format!("{name}.key"));
    let ca = dev_setup().file("ca.pem");
    let _client = gnutls_cli(
        port,
        &[
            "--x509cafile",
            &ca,
            "--verify-hostname",
            DOMAIN,
            "--x509certfile",
            chain.to_str().expect("UTF-8 path"),
            "--x509keyfile",
            key.to_str().expect("UTF-8 path"),
        ],
    );
    let mut control = RecordStream::connect(daemon_socket).expect("connect to the daemon");
    control
        .get_ref()
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    let (tcp, _) = listener.accept().expect("accept the TLS client");
    let record = Record::new(
        1,
        Payload::StartTls(StartTls {
            flags: SERVER,
            local: 0,
            ipproto: 6,
            streamid: 0,
            localid: Identity::new(DOMAIN).expect("localid fits"),
            remoteid: Identity::new(remote_id).expect("remoteid fits"),
            ctlkey: [9; 16],
            service: FixedString::new("generic").expect("service fits"),
            timeout: 10_000,
        }),
    );
    control
        .send_record(&record, Some(tcp.as_fd()))
        .expect("send STARTTLS");
    drop(tcp);
    // The plaintext socket stays open until the reply arrives.
    let mut _plaintext: Option<UnixStream> = None;
    loop {
        let reply = control
            .recv()
            .expect("receive from the daemon")
            .expect("the daemon closed the connection")
            .decode()
            .expect("decode the record");
        match reply.payload {
            Payload::PlaintextConnect(params) => {
                let (ours, theirs) = UnixStream::pair().expect("socketpair");
                let mut answer = Record::new(reply.reqid, Payload::PlaintextConnect(params));
                answer.cbid = reply.cbid;
                control
                    .send_record(&answer, Some(theirs.as_fd()))
                    .expect("answer PLAINTEXT_CONNECT");
                _plaintext = Some(ours);
            }
            other => return other,
        }
    }
}

#[test]
fn mail_common_name_in_excluded_subtree_is_rejected() {
    let temp = TempDir::new().expect("temporary directory");
    make_pki(temp.path());
    let daemon = dev_setup().start_daemon();

    let allowed = serve(temp.path(), daemon.socket_path(), "allowed", ALLOWED_MAIL);
    let Payload::StartTls(reply) = &allowed else {
        panic!(
            "the client outside the excluded subtrees was rejected: {allowed:?}\n{}",
            daemon.stderr()
        );
    };
    assert_eq!(reply.remoteid.as_str(), ALLOWED_MAIL);

    let excluded = serve(temp.path(), daemon.socket_path(), "excluded", EXCLUDED_MAIL);
    assert!(
        matches!(excluded, Payload::Error(_)),
        "the client in the excluded subtrees was accepted: {excluded:?}"
    );
    assert!(
        daemon
            .stderr()
            .contains("is in the excluded subtree victim.dev.example"),
        "the daemon names the violated constraint:\n{}",
        daemon.stderr()
    );
}
