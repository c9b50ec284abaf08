//! A harness that runs OpenLDAP's slapd on loopback with a throwaway `mdb` database loaded
//! from LDIF, optionally with StartTLS, and kills it when dropped. slapd logs its operations
//! (log level `stats`) to a file, so tests can count the searches it served. It also makes the X.509
//! certificates (with certtool) and OpenPGP keys (with gpg) that the test entries hold.
//!
//! The configuration is an old-style `slapd.conf` with the Debian core, cosine and
//! inetorgperson schemas and `testdata/ldap/pgpkey.schema` for `pgpKey`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`Slapd::start`] waits for slapd to answer a root DSE search.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The suffix of the test directory.
pub const SUFFIX: &str = "dc=example,dc=com";

/// Interval between readiness polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// A running `slapd -d stats`, killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct Slapd {
    child: Option<Child>,
    directory: TempDir,
    suffix: String,
    port: u16,
    certificate: Option<Vec<u8>>,
}

impl Slapd {
    /// Loads `ldif` (entries under [`SUFFIX`]) with slapadd and starts slapd on a free port.
    /// With `starttls`, slapd gets a fresh self-signed certificate for `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// When slapadd fails or slapd does not answer within [`START_TIMEOUT`].
    pub fn start(ldif: &str, starttls: bool) -> Self {
        Self::start_with_suffix(SUFFIX, ldif, starttls)
    }

    /// Starts slapd like [`Self::start`] with the database suffix `suffix`, such as
    /// `dc=dev,dc=example`.
    ///
    /// # Panics
    ///
    /// When slapadd fails or slapd does not answer within [`START_TIMEOUT`].
    pub fn start_with_suffix(suffix: &str, ldif: &str, starttls: bool) -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let root = directory.path();
        let database = root.join("db");
        fs::create_dir(&database).expect("create database directory");

        let certificate = starttls.then(|| {
            let (der, cert_pem, key_pem) = self_signed_files(root, "127.0.0.1");
            (der, cert_pem, key_pem)
        });
        let config = root.join("slapd.conf");
        fs::write(&config, config_text(root, suffix, certificate.as_ref()))
            .expect("write slapd.conf");
        let data = root.join("data.ldif");
        fs::write(&data, ldif).expect("write data.ldif");
        run(Command::new("slapadd")
            .arg("-f")
            .arg(&config)
            .arg("-l")
            .arg(&data)
            .arg("-q"));

        let mut slapd = Self {
            child: None,
            directory,
            suffix: suffix.to_owned(),
            port: free_port(),
            certificate: certificate.map(|(der, _, _)| der),
        };
        slapd.spawn();
        slapd
    }

    /// Returns `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Returns the TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the DER certificate slapd presents after StartTLS, if it has one.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    /// Returns the number of searches slapd has logged whose base is `base`, compared without
    /// regard to case. The readiness polls search the root DSE, whose base is empty.
    pub fn search_count(&self, base: &str) -> usize {
        let needle = format!("srch base=\"{}\"", base.to_ascii_lowercase());
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains(&needle))
            .count()
    }

    /// Returns the database suffix.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    fn log_path(&self) -> PathBuf {
        self.directory.path().join("slapd.log")
    }

    /// Kills slapd and waits for it to exit, so its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let config = self.directory.path().join("slapd.conf");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open slapd.log");
        let child = Command::new("slapd")
            .arg("-d")
            .arg("stats")
            .arg("-f")
            .arg(&config)
            .arg("-h")
            .arg(format!("{}/", self.url()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let answered = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-b", "", "-s", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if answered {
                return;
            }
            thread::sleep(POLL_INTERVAL);
        }
        panic!(
            "slapd on {} did not answer within {START_TIMEOUT:?}",
            self.url()
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Returns the `slapd.conf` text for a database under `root`, with TLS files when given.
fn config_text(root: &Path, suffix: &str, tls: Option<&(Vec<u8>, PathBuf, PathBuf)>) -> String {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ldap/pgpkey.schema");
    let mut text = String::new();
    for name in ["core", "cosine", "inetorgperson"] {
        text.push_str(&format!("include /etc/ldap/schema/{name}.schema\n"));
    }
    text.push_str(&format!("include {}\n", schema.display()));
    text.push_str(&format!("pidfile {}\n", root.join("slapd.pid").display()));
    text.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
    if let Some((_, cert, key)) = tls {
        text.push_str(&format!("TLSCertificateFile {}\n", cert.display()));
        text.push_str(&format!("TLSCertificateKeyFile {}\n", key.display()));
    }
    text.push_str("database mdb\n");
    text.push_str(&format!("suffix \"{suffix}\"\n"));
    text.push_str(&format!("rootdn \"cn=admin,{suffix}\"\nrootpw throwaway\n"));
    text.push_str(&format!("directory {}\n", root.join("db").display()));
    text
}

/// Makes a self-signed ECDSA certificate for `common_name` with certtool and returns its DER.
///
/// # Panics
///
/// When certtool fails.
pub fn self_signed_certificate(common_name: &str) -> Vec<u8> {
    let directory = tempfile::tempdir().expect("temporary directory");
    self_signed_files(directory.path(), common_name).0
}

/// Writes `NAME.key.pem` and `NAME.cert.pem` under `directory` and returns the DER
/// certificate with both paths.
fn self_signed_files(directory: &Path, common_name: &str) -> (Vec<u8>, PathBuf, PathBuf) {
    let stem: String = common_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let key = directory.join(format!("{stem}.key.pem"));
    let cert = directory.join(format!("{stem}.cert.pem"));
    let der = directory.join(format!("{stem}.cert.der"));
    let template = directory.join(format!("{stem}.tmpl"));
    let mut template_text = format!("cn = \"{common_name}\"\nexpiration_days = 2\n");
    template_text.push_str("tls_www_server\nsigning_key\n");
    if common_name.parse::<std::net::IpAddr>().is_ok() {
        template_text.push_str(&format!("ip_address = \"{common_name}\"\n"));
    }
    fs::write(&template, template_text).expect("write certtool template");

    run(Command::new("certtool")
        .args(["--generate-privkey", "--key-type", "ecdsa", "--outfile"])
        .arg(&key));
    run(Command::new("certtool")
        .arg("--generate-self-signed")
        .arg("--load-privkey")
        .arg(&key)
        .arg("--template")
        .arg(&template)
        .arg("--outfile")
        .arg(&cert));
    run(Command::new("certtool")
        .args(["--certificate-info", "--outder", "--infile"])
        .arg(&cert)
        .arg("--outfile")
        .arg(&der));
    (fs::read(&der).expect("read DER certificate"), cert, key)
}

/// An OpenPGP Ed25519 key made by gpg, exported with and without its revocation.
#[derive(Debug, Clone)]
pub struct OpenPgpKey {
    /// The binary transferable public key.
    pub binary: Vec<u8>,
    /// The same key in ASCII armor.
    pub armored: String,
    /// The ASCII-armored key with its key revocation signature.
    pub revoked_armored: String,
}

impl OpenPgpKey {
    /// Generates a key for `user_id` in a throwaway GNUPGHOME.
    ///
    /// # Panics
    ///
    /// When gpg fails.
    pub fn generate(user_id: &str) -> Self {
        let home = tempfile::tempdir().expect("temporary GNUPGHOME");
        let gpg = |args: &[&str]| -> Vec<u8> {
            let output = Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args)
                .stderr(Stdio::piped())
                .output()
                .expect("start gpg");
            assert!(
                output.status.success(),
                "gpg {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        };
        gpg(&["--quick-generate-key", user_id, "ed25519", "sign", "never"]);
        let binary = gpg(&["--export", user_id]);
        let armored = String::from_utf8(gpg(&["--armor", "--export", user_id])).expect("armor");

        // gpg writes a revocation certificate whose BEGIN line starts with ":" so that it is
        // not imported by accident; remove that guard and import it.
        let revocations = home.path().join("openpgp-revocs.d");
        let entry = fs::read_dir(&revocations)
            .expect("read openpgp-revocs.d")
            .next()
            .expect("one revocation certificate")
            .expect("directory entry");
        let certificate = fs::read_to_string(entry.path()).expect("read revocation");
        let certificate = certificate.replace(":-----BEGIN", "-----BEGIN");
        let revocation_file = home.path().join("revocation.asc");
        fs::write(&revocation_file, certificate).expect("write revocation");
        gpg(&["--import", revocation_file.to_str().expect("UTF-8 path")]);
        let revoked_armored =
            String::from_utf8(gpg(&["--armor", "--export", user_id])).expect("armor");

        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", home.path())
            .args(["--kill", "gpg-agent"])
            .status();
        Self {
            binary,
            armored,
            revoked_armored,
        }
    }
}

/// Runs `command` and panics with its stderr when it fails.
fn run(command: &mut Command) {
    let output = command.output().expect("start command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
