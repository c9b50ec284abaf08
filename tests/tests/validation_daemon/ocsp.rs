//! `R` and `r` through the daemon with stapled OCSP responses: `gnutls-serv` staples a
//! response that `openssl ocsp` signed with the key of a CA the trust database trusts.

use std::path::{Path, PathBuf};
use std::process::Command;

use tlspool_tests::bin_path;
use tlspool_tests::tls_peers::{Peer, free_port, gnutls_serv};

use super::{CLIENT, PEER, Setup, assert_accepted, assert_rejected, pool_client, serial};

/// A CA that the daemon trusts for servers, an end certificate for `PEER` from it, and OCSP
/// responses about that certificate.
struct OcspPki {
    dir: PathBuf,
}

impl OcspPki {
    /// Makes the CA and the end certificate in `dir`, and trusts the CA in the trust database
    /// of `setup`.
    fn create(setup: &Setup, dir: &Path) -> Self {
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).expect("create the PKI directory");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        pki.openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=OCSP Test CA",
                    "-days",
                    "2",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-addext",
                    "subjectKeyIdentifier=hash",
                ],
            ]
            .concat(),
        );
        pki.openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "peer.key",
                    "-out",
                    "peer.csr",
                    "-subj",
                    &format!("/CN={PEER}"),
                ],
            ]
            .concat(),
        );
        let extensions = format!(
            "subjectAltName=DNS:{PEER}\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
        );
        std::fs::write(pki.path("peer.cnf"), extensions).expect("write the extension file");
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "peer.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x1234",
            "-days",
            "2",
            "-extfile",
            "peer.cnf",
            "-out",
            "peer.pem",
        ]);
        let chain = [
            std::fs::read_to_string(pki.path("peer.pem")).expect("read the certificate"),
            std::fs::read_to_string(pki.path("ca.pem")).expect("read the CA certificate"),
        ]
        .concat();
        std::fs::write(pki.path("chain.pem"), chain).expect("write the chain");
        pki.openssl(&["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"]);
        pki.trust_ca(setup);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("UTF-8 path").to_owned()
    }

    fn openssl(&self, args: &[&str]) -> String {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stores the CA as a trust anchor for clients and servers under its key identifier.
    fn trust_ca(&self, setup: &Setup) {
        let text = self.openssl(&[
            "x509",
            "-in",
            "ca.pem",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ]);
        let key: String = text
            .lines()
            .nth(1)
            .expect("openssl prints the key identifier")
            .trim()
            .replace(':', "")
            .to_ascii_lowercase();
        let config = setup.dev.file("tlspool.conf");
        let output = Command::new(bin_path("tlspool-admin"))
            .args([
                "-c",
                &config,
                "trust",
                "set",
                "x509,client,server",
                &key,
                "1",
            ])
            .arg(self.path("ca.der"))
            .output()
            .expect("run tlspool-admin");
        assert!(
            output.status.success(),
            "tlspool-admin trust set failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Writes a response for the end certificate with index status `status` (`V` valid or
    /// `R` revoked), valid for one day, and returns its path.
    fn response(&self, status: &str) -> String {
        let revoked = if status == "R" { "250101000000Z" } else { "" };
        let index = format!("{status}\t301231235959Z\t{revoked}\t1234\tunknown\t/CN={PEER}\n");
        std::fs::write(self.path("index.txt"), index).expect("write the index");
        let file = format!("response-{status}.der");
        self.openssl(&[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-issuer",
            "ca.pem",
            "-cert",
            "peer.pem",
            "-respout",
            &file,
            "-ndays",
            "1",
        ]);
        self.path(&file)
    }

    /// Starts `gnutls-serv` with the end certificate, stapling the response at `response`.
    fn server(&self, response: Option<&str>) -> (Peer, u16) {
        let port = free_port();
        let chain = self.path("chain.pem");
        let key = self.path("peer.key");
        let mut args = vec!["--echo", "--x509certfile", &chain, "--x509keyfile", &key];
        if let Some(response) = response {
            // gnutls-serv refuses to load a response whose status is revoked without it.
            args.extend(["--ocsp-response", response, "--ignore-ocsp-response-errors"]);
        }
        (gnutls_serv(port, &args), port)
    }
}

#[test]
fn stapled_ocsp_response_decides_revocation() {
    let _serial = serial();
    let setup = Setup::create();
    let pki = OcspPki::create(&setup, &setup.path("ocsp"));
    let good = pki.response("V");
    let revoked = pki.response("R");

    // The trust database has no revocation list of the CA, so only the staple can give R.
    let (_plain, plain_port) = pki.server(None);
    let (_good, good_port) = pki.server(Some(&good));
    let (_revoked, revoked_port) = pki.server(Some(&revoked));
    let strict = setup.start_daemon(&["validate_default TR&"]);
    let lenient = setup.start_daemon(&["validate_default Tr&"]);

    assert_rejected(
        pool_client(&strict, plain_port, CLIENT),
        "no revocation list of issuer \"CN=OCSP Test CA\"",
    );
    assert_accepted(pool_client(&lenient, plain_port, CLIENT));

    assert_accepted(pool_client(&strict, good_port, CLIENT));
    assert_accepted(pool_client(&lenient, good_port, CLIENT));

    for daemon in [&strict, &lenient] {
        let result = pool_client(daemon, revoked_port, CLIENT);
        assert_rejected(result, "with serial 1234 is revoked by");
        let log = daemon.stderr();
        assert!(log.contains("(stapled OCSP response)"), "{log}");
    }
}
