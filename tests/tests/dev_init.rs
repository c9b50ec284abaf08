//! `tlspool-admin dev-init` in a temporary directory: the database entries it writes, the
//! configuration the daemon's parser accepts, certificates that verify against `ca.pem`, the
//! printed `gnutls-serv` commands completing handshakes with `gnutls-cli` on loopback, and the
//! rejection of a non-empty directory.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tlspool_tests::bin_path;

const DOMAINS: [&str; 2] = ["dev.example", "other.example"];
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// One dev-init run shared by the tests, with its printed summary.
struct Setup {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    summary: String,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("dev");
        let mut args = vec!["dev-init".to_owned(), dir.to_str().unwrap().to_owned()];
        for domain in DOMAINS {
            args.extend(["--domain".to_owned(), domain.to_owned()]);
        }
        let output = admin(&args);
        assert!(
            output.status.success(),
            "dev-init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Setup {
            _temp: temp,
            dir,
            summary: String::from_utf8(output.stdout).unwrap(),
        }
    })
}

fn admin<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(bin_path("tlspool-admin"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `tlspool-admin -c DIR/tlspool.conf ARGS` and returns its standard output.
fn admin_list(setup: &Setup, args: &[&str]) -> String {
    let config = setup.dir.join("tlspool.conf");
    let mut all = vec!["-c", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = admin(&all);
    assert!(
        output.status.success(),
        "tlspool-admin {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn certtool(args: &[&str]) -> String {
    let output = Command::new("certtool").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "certtool {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Returns the command printed on the line after the summary line that starts with `heading`,
/// with the example port replaced by `port`.
fn printed_command(summary: &str, heading: &str, port: u16) -> String {
    let mut lines = summary.lines();
    lines
        .by_ref()
        .find(|line| line.starts_with(heading))
        .unwrap_or_else(|| panic!("no {heading:?} in the summary:\n{summary}"));
    let command = lines.next().unwrap_or_default().trim();
    assert!(command.contains("--port 4433"), "{command}");
    command.replace("--port 4433", &format!("--port {port}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell command started in its own process group, killed with the group on drop.
struct Server {
    child: Child,
}

impl Server {
    fn start(command: &str, port: u16) -> Self {
        let child = Command::new("sh")
            .args(["-c", command])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "no listener on port {port} after 10 s: {command}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The shell's process group id is its pid, so this ends the shell and gnutls-serv.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Runs the printed `gnutls-cli` command against `port` and returns its output.
fn connect(command: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", &format!("timeout 10 {command}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn localid_list_shows_both_roles() {
    let listed = admin_list(setup(), &["localid", "list"]);
    for domain in DOMAINS {
        for role in ["server", "client"] {
            let line = listed
                .lines()
                .find(|line| line.starts_with(&format!("{domain}\tx509\t{role},chained\tpkcs11:")))
                .unwrap_or_else(|| panic!("no {domain} {role} entry in:\n{listed}"));
            assert!(
                line.contains(&format!("object={domain}-{role};type=private")),
                "{line}"
            );
        }
    }
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

#[test]
fn disclose_list_maps_domain_and_subdomains() {
    let listed = admin_list(setup(), &["disclose", "list"]);
    for domain in DOMAINS {
        assert!(
            listed.contains(&format!("{domain}\t{domain}\n")),
            "{listed}"
        );
        assert!(
            listed.contains(&format!(".{domain}\t{domain}\n")),
            "{listed}"
        );
    }
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

#[test]
fn trust_list_keys_ca_by_subject_key_id() {
    let setup = setup();
    let listed = admin_list(setup, &["trust", "list"]);
    let info = certtool(&["-i", "--infile", setup.dir.join("ca.pem").to_str().unwrap()]);
    let mut lines = info.lines();
    lines
        .by_ref()
        .find(|line| line.contains("Subject Key Identifier"))
        .unwrap_or_else(|| panic!("CA without subjectKeyIdentifier:\n{info}"));
    let key_id = lines.next().unwrap().trim();

    assert!(
        listed.starts_with(&format!("{key_id}\tx509\tclient,server\t1\t")),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

#[test]
fn configuration_loads() {
    let setup = setup();
    let config = tlspool_core::Config::load(&setup.dir.join("tlspool.conf")).unwrap();

    assert_eq!(config.pkcs11_path(), Some(Path::new(SOFTHSM_MODULE)));
    assert!(config.pkcs11_pin().is_some_and(|pin| pin.len() == 16));
    assert_eq!(config.dbenv_dir(), Some(setup.dir.join("db").as_path()));
    assert_eq!(config.sockets()[0].path, setup.dir.join("tlspool.sock"));
    assert_eq!(
        config.daemon_pidfile(),
        Some(setup.dir.join("tlspool.pid").as_path())
    );
    assert!(config.log_stderr());
    assert!(
        setup.summary.contains(&format!(
            "tlspool -f -c {}",
            setup.dir.join("tlspool.conf").display()
        )),
        "{}",
        setup.summary
    );
}

#[test]
fn certificates_verify_against_ca() {
    let setup = setup();
    let ca = setup.dir.join("ca.pem");
    let mut files: Vec<String> = DOMAINS
        .iter()
        .flat_map(|domain| {
            [
                format!("{domain}-server.pem"),
                format!("{domain}-client.pem"),
            ]
        })
        .collect();
    files.push("peer-cert.pem".to_owned());

    for file in files {
        let output = certtool(&[
            "--verify",
            "--load-ca-certificate",
            ca.to_str().unwrap(),
            "--infile",
            setup.dir.join(&file).to_str().unwrap(),
        ]);
        assert!(
            output.contains("Chain verification output: Verified."),
            "{file}: {output}"
        );
    }
}

#[test]
fn printed_token_server_completes_handshake() {
    let setup = setup();
    let port = free_port();
    let serve = printed_command(
        &setup.summary,
        "Serve the dev.example server identity",
        port,
    );
    let _server = Server::start(&serve, port);

    let client = printed_command(&setup.summary, "and connect to it:", port);
    let output = connect(&client);
    assert!(output.contains("Handshake was completed"), "{output}");
    assert!(output.contains("The certificate is trusted"), "{output}");
}

#[test]
fn printed_peer_server_completes_handshake() {
    let setup = setup();
    let port = free_port();
    let serve = printed_command(&setup.summary, "Run the external peer", port);
    let _server = Server::start(&serve, port);

    let ca = setup.dir.join("ca.pem");
    for name in ["peer.dev.example", "peer.other.example"] {
        let output = connect(&format!(
            "gnutls-cli --x509cafile {} --verify-hostname {name} --port {port} 127.0.0.1",
            ca.display()
        ));
        assert!(
            output.contains("Handshake was completed"),
            "{name}: {output}"
        );
        assert!(
            output.contains("The certificate is trusted"),
            "{name}: {output}"
        );
    }
}

#[test]
fn non_empty_directory_rejected() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(temp.path().join("keep.txt"), b"user data").unwrap();

    let output = admin(&[
        "dev-init",
        temp.path().to_str().unwrap(),
        "--domain",
        "dev.example",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    let entries: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "dev-init wrote into a non-empty directory"
    );
}

#[test]
fn missing_domain_rejected() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("dev");

    let output = admin(&["dev-init", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--domain"), "{stderr}");
    assert!(!dir.exists(), "dev-init created the directory anyway");
}
