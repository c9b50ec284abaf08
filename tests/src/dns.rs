//! An authoritative nsd on loopback serving zones that the test writes: signed with
//! `ldns-signzone` under fresh ECDSA P-256 keys, signed with a broken TLSA or OPENPGPKEY
//! signature, or unsigned and delegated without DS from the first signed zone.
//!
//! The DS records of the signed zones' key-signing keys are written to one trust anchor file,
//! which a validating resolver loads as its `dnssec_rootkey`. Each zone gets an SOA, an NS
//! record for `ns.` under the first zone (with its A record 127.0.0.1), and the records the
//! test adds, written relative to the zone's origin.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long `start` waits for nsd to answer before it fails.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a zone is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Signed, with its key-signing key's DS in the trust anchor file.
    Signed,
    /// Signed like `Signed`, then every RRSIG over a TLSA RRset is corrupted, so validators
    /// find those RRsets bogus.
    BadTlsaSignature,
    /// Signed like `Signed`, then every RRSIG over an OPENPGPKEY RRset is corrupted, so
    /// validators find those RRsets bogus.
    BadOpenPgpKeySignature,
    /// Unsigned, and delegated from the first zone (which must be its parent and signed)
    /// without a DS record, so validators find it insecure.
    Unsigned,
}

/// A zone to serve.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: String,
    signing: Signing,
    records: Vec<String>,
}

/// A running nsd, stopped when dropped.
pub struct Nsd {
    child: Child,
    address: SocketAddr,
    trust_anchor: PathBuf,
    dir: TempDir,
}

impl Zone {
    /// Creates a zone for `origin` (such as `example.test`, without the final dot).
    pub fn new(origin: &str, signing: Signing) -> Self {
        Self {
            origin: origin.trim_end_matches('.').to_owned(),
            signing,
            records: Vec::new(),
        }
    }

    /// Adds a record in zone-file syntax, such as `_443._tcp.www IN TLSA 3 1 1 ab12...`.
    pub fn record(mut self, line: &str) -> Self {
        self.records.push(line.to_owned());
        self
    }

    fn file_name(&self) -> String {
        format!("{}.zone", self.origin)
    }
}

impl Nsd {
    /// Writes, signs and serves `zones` with nsd on a free loopback port, and waits until it
    /// answers an SOA query for the first zone.
    ///
    /// # Panics
    ///
    /// When a tool fails or nsd does not answer within 10 s, with the tool's output, so the
    /// calling test fails with the reason.
    pub fn start(zones: &[Zone]) -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary directory for nsd");
        let first = zones.first().expect("at least one zone");
        assert_ne!(
            first.signing,
            Signing::Unsigned,
            "the first zone must be signed"
        );

        let mut anchors = String::new();
        let mut served = Vec::new();
        for zone in zones {
            let text = zone_text(zone, first, zones);
            let path = dir.path().join(zone.file_name());
            std::fs::write(&path, text).expect("writing a zone file");
            if zone.signing == Signing::Unsigned {
                served.push((zone.origin.clone(), path));
                continue;
            }
            let (signed, ds) = sign_zone(dir.path(), zone, &path);
            anchors.push_str(&ds);
            served.push((zone.origin.clone(), signed));
        }
        let trust_anchor = dir.path().join("trust-anchor.ds");
        std::fs::write(&trust_anchor, anchors).expect("writing the trust anchor file");

        let port = free_port();
        let config = dir.path().join("nsd.conf");
        std::fs::write(&config, nsd_config(dir.path(), port, &served)).expect("writing nsd.conf");
        let child = Command::new("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nsd");
        let mut nsd = Self {
            child,
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            trust_anchor,
            dir,
        };
        nsd.wait_ready(&first.origin);
        nsd
    }

    /// Returns the address nsd listens on, for UDP and TCP.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the file with the DS records of every signed zone.
    pub fn trust_anchor(&self) -> &Path {
        &self.trust_anchor
    }

    fn wait_ready(&mut self, origin: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("nsd.log"));
                panic!("nsd exited with {status} before answering: {log:?}");
            }
            // drill retries a lost UDP query only after 5 s, so ask it only once nsd accepts
            // TCP connections, which it does from the moment its sockets are bound.
            let listening = TcpStream::connect_timeout(&self.address, Duration::from_millis(100));
            let answered = listening.is_ok()
                && Command::new("drill")
                    .args([
                        "-p",
                        &self.address.port().to_string(),
                        "@127.0.0.1",
                        "SOA",
                        origin,
                    ])
                    .output()
                    .is_ok_and(|output| {
                        output.status.success()
                            && String::from_utf8_lossy(&output.stdout).contains("rcode: NOERROR")
                    });
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nsd did not answer within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // nsd shuts down cleanly on SIGTERM; `kill` sends SIGKILL, which is enough for a
        // server whose state lives in a temporary directory.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the zone file of `zone`, with the delegations of the unsigned zones below it.
fn zone_text(zone: &Zone, first: &Zone, zones: &[Zone]) -> String {
    let origin = &zone.origin;
    let ns = format!("ns.{}.", first.origin);
    let mut text = format!(
        "$ORIGIN {origin}.\n$TTL 3600\n\
         @ IN SOA {ns} hostmaster.{origin}. 1 7200 3600 1209600 3600\n\
         @ IN NS {ns}\n"
    );
    if zone.origin == first.origin {
        text.push_str("ns IN A 127.0.0.1\n");
        for child in zones.iter().filter(|z| z.signing == Signing::Unsigned) {
            assert!(
                child.origin.ends_with(&format!(".{origin}")),
                "unsigned zone {} is not below {origin}",
                child.origin
            );
            let _ = writeln!(text, "{}. IN NS {ns}", child.origin);
        }
    }
    for record in &zone.records {
        let _ = writeln!(text, "{record}");
    }
    text
}

/// Signs the zone file at `path` with a new KSK and ZSK and returns the signed file and the
/// KSK's DS record.
fn sign_zone(dir: &Path, zone: &Zone, path: &Path) -> (PathBuf, String) {
    let ksk = run(
        dir,
        "ldns-keygen",
        &["-a", "ECDSAP256SHA256", "-k", &zone.origin],
    );
    let zsk = run(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", &zone.origin]);
    let signed = dir.join(format!("{}.signed", zone.file_name()));
    let path_text = path.to_string_lossy();
    let signed_text = signed.to_string_lossy();
    run(
        dir,
        "ldns-signzone",
        &[
            "-o",
            &zone.origin,
            "-f",
            &signed_text,
            &path_text,
            &zsk,
            &ksk,
        ],
    );
    match zone.signing {
        Signing::BadTlsaSignature => corrupt_signatures(&signed, "TLSA"),
        Signing::BadOpenPgpKeySignature => corrupt_signatures(&signed, "OPENPGPKEY"),
        Signing::Signed | Signing::Unsigned => {}
    }
    let ds = std::fs::read_to_string(dir.join(format!("{ksk}.ds"))).expect("reading the DS file");
    (signed, ds)
}

/// Changes one character of the signature of every RRSIG that covers `rtype`.
fn corrupt_signatures(path: &Path, rtype: &str) {
    let text = std::fs::read_to_string(path).expect("reading the signed zone");
    let mut corrupted = 0;
    let mut out = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let covers = fields.len() > 5 && fields[3] == "RRSIG" && fields[4] == rtype;
        if !covers {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let signature = fields[fields.len() - 1];
        let mut changed: Vec<char> = signature.chars().collect();
        changed[10] = if changed[10] == 'A' { 'B' } else { 'A' };
        let changed: String = changed.into_iter().collect();
        let prefix = &line[..line.len() - signature.len()];
        let _ = writeln!(out, "{prefix}{changed}");
        corrupted += 1;
    }
    assert!(
        corrupted > 0,
        "the zone {} has no {rtype} signature",
        path.display()
    );
    std::fs::write(path, out).expect("writing the corrupted zone");
}

fn nsd_config(dir: &Path, port: u16, zones: &[(String, PathBuf)]) -> String {
    let dir = dir.display();
    let mut config = format!(
        "server:\n\
         \tip-address: 127.0.0.1\n\
         \tport: {port}\n\
         \tusername: \"\"\n\
         \tchroot: \"\"\n\
         \tdatabase: \"\"\n\
         \tzonesdir: \"{dir}\"\n\
         \tzonelistfile: \"{dir}/zone.list\"\n\
         \txfrdfile: \"{dir}/xfrd.state\"\n\
         \txfrdir: \"{dir}\"\n\
         \tpidfile: \"{dir}/nsd.pid\"\n\
         \tlogfile: \"{dir}/nsd.log\"\n\
         \tserver-count: 1\n\
         \tverbosity: 1\n\
         remote-control:\n\
         \tcontrol-enable: no\n"
    );
    for (origin, file) in zones {
        let _ = write!(
            config,
            "zone:\n\tname: {origin}\n\tzonefile: \"{}\"\n",
            file.display()
        );
    }
    config
}

/// Runs `program` in `dir` and returns its trimmed standard output.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("starting {program} failed: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Returns a loopback port that is free for both UDP and TCP at the time of the call.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}
