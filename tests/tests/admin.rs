//! `tlspool-admin` against a temporary configuration and LMDB environment: set, get, list and
//! delete on each database, order of several values, export and import of raw pairs, rejected
//! arguments, and a reader that sees the tool's writes without reopening the databases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tlspool_core::db::{Database, DbEnv, DbNames, DbRead, OpenMode};
use tlspool_tests::bin_path;

/// A temporary directory with a configuration file and an empty environment directory.
struct Admin {
    dir: tempfile::TempDir,
    config: PathBuf,
    dbenv: PathBuf,
}

impl Admin {
    fn new() -> Self {
        Self::with_config_extra("")
    }

    fn with_config_extra(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dbenv = dir.path().join("db");
        std::fs::create_dir(&dbenv).unwrap();
        let config = dir.path().join("tlspool.conf");
        let text = format!(
            "# test configuration\ndbenv_dir {}\n{extra}",
            dbenv.display()
        );
        std::fs::write(&config, text).unwrap();
        Self { dir, config, dbenv }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin_path("tlspool-admin"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "tlspool-admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail with status 1 and returns its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "tlspool-admin {args:?} should fail"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Writes `data` to a file in the temporary directory and returns its path as text.
    fn file(&self, name: &str, data: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn localid_set_get_list_delete() {
    let admin = Admin::new();
    let cert = admin.file("cert.der", b"\x30\x03\x02\x01\x05");
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "x509,client",
        "pkcs11:object=k",
        &cert,
    ]);
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "valexp,client,server",
        "1",
        "/dev/null",
    ]);
    admin.ok(&[
        "localid",
        "set",
        "www.example.org",
        "X.509,srv,chained",
        "pkcs11:object=w",
        &cert,
    ]);

    let listed = admin.ok(&["localid", "list"]);
    assert_eq!(
        lines(&listed),
        [
            "me@example.org\tx509\tclient\tpkcs11:object=k\t5",
            "me@example.org\tvalexp\tclient,server\t1\t0",
            "www.example.org\tx509\tserver,chained\tpkcs11:object=w\t5",
        ]
    );

    let out = admin.path("out.der");
    let got = admin.ok(&[
        "localid",
        "get",
        "me@example.org",
        "x509",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        lines(&got),
        ["me@example.org\tx509\tclient\tpkcs11:object=k\t5"]
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"\x30\x03\x02\x01\x05");

    admin.ok(&["localid", "delete", "me@example.org", "valexp"]);
    let got = admin.ok(&["localid", "get", "me@example.org"]);
    assert_eq!(
        lines(&got),
        ["me@example.org\tx509\tclient\tpkcs11:object=k\t5"]
    );

    admin.ok(&["localid", "delete", "me@example.org"]);
    let err = admin.fails(&["localid", "get", "me@example.org"]);
    assert!(err.contains("no matching credentials"), "{err}");
    let err = admin.fails(&["localid", "delete", "me@example.org"]);
    assert!(err.contains("no matching credentials"), "{err}");
}

#[test]
fn localid_keeps_value_order() {
    let admin = Admin::new();
    let first = admin.file("first.der", b"first");
    let second = admin.file("second.der", b"second-cert");
    let pgp = admin.file("key.pgp", b"pgp");
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "x509,client",
        "pkcs11:object=z",
        &first,
        "pkcs11:object=a",
        &second,
    ]);
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "pgp,client",
        "pkcs11:object=p",
        &pgp,
    ]);

    let listed = admin.ok(&["localid", "get", "me@example.org"]);
    assert_eq!(
        lines(&listed),
        [
            "me@example.org\tx509\tclient\tpkcs11:object=z\t5",
            "me@example.org\tx509\tclient\tpkcs11:object=a\t11",
            "me@example.org\tpgp\tclient\tpkcs11:object=p\t3",
        ]
    );

    // Setting x509 again replaces both x509 values and keeps the OpenPGP one.
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "x509,client",
        "pkcs11:object=n",
        &first,
    ]);
    let listed = admin.ok(&["localid", "get", "me@example.org"]);
    assert_eq!(
        lines(&listed),
        [
            "me@example.org\tpgp\tclient\tpkcs11:object=p\t3",
            "me@example.org\tx509\tclient\tpkcs11:object=n\t5",
        ]
    );

    // With no pairs, set only deletes the values of that type.
    admin.ok(&["localid", "set", "me@example.org", "pgp"]);
    let listed = admin.ok(&["localid", "get", "me@example.org"]);
    assert_eq!(
        lines(&listed),
        ["me@example.org\tx509\tclient\tpkcs11:object=n\t5"]
    );
}

#[test]
fn disclose_set_get_list_delete() {
    let admin = Admin::new();
    let cert = admin.file("cert.der", b"cert");
    for id in ["a@example.org", "b@example.org", "c.example.org"] {
        admin.ok(&[
            "localid",
            "set",
            id,
            "x509,client",
            "pkcs11:object=k",
            &cert,
        ]);
    }
    admin.ok(&[
        "disclose",
        "set",
        "@.example.com",
        "b@example.org",
        "a@example.org",
    ]);
    admin.ok(&["disclose", "set", ".", "c.example.org"]);

    let listed = admin.ok(&["disclose", "list"]);
    assert_eq!(
        lines(&listed),
        [
            ".\tc.example.org",
            "@.example.com\tb@example.org",
            "@.example.com\ta@example.org"
        ]
    );
    let got = admin.ok(&["disclose", "get", "@.example.com"]);
    assert_eq!(
        lines(&got),
        [
            "@.example.com\tb@example.org",
            "@.example.com\ta@example.org"
        ]
    );

    let walked = admin.ok(&["disclose", "get", "--walk", "bob@www.example.com"]);
    assert_eq!(
        lines(&walked),
        [
            "@.example.com\tb@example.org",
            "@.example.com\ta@example.org"
        ]
    );
    let walked = admin.ok(&["disclose", "get", "--walk", "www.example.com"]);
    assert_eq!(lines(&walked), [".\tc.example.org"]);
    let err = admin.fails(&["disclose", "get", "bob@www.example.com"]);
    assert!(err.contains("has no entries"), "{err}");

    // Replacing reorders, and an empty list deletes.
    admin.ok(&[
        "disclose",
        "set",
        "@.example.com",
        "a@example.org",
        "b@example.org",
    ]);
    let got = admin.ok(&["disclose", "get", "@.example.com"]);
    assert_eq!(
        lines(&got),
        [
            "@.example.com\ta@example.org",
            "@.example.com\tb@example.org"
        ]
    );
    admin.ok(&["disclose", "set", "@.example.com"]);
    admin.fails(&["disclose", "get", "@.example.com"]);

    admin.ok(&["disclose", "delete", "."]);
    assert_eq!(admin.ok(&["disclose", "list"]), "");
    let err = admin.fails(&["disclose", "delete", "."]);
    assert!(err.contains("has no entries"), "{err}");
}

#[test]
fn disclose_set_requires_known_local_ids() {
    let admin = Admin::new();
    let err = admin.fails(&["disclose", "set", ".", "nobody.example.org"]);
    assert!(
        err.contains("nobody.example.org is not in the localid database"),
        "{err}"
    );
    let cert = admin.file("cert.der", b"cert");
    admin.ok(&[
        "localid",
        "set",
        "a@example.org",
        "x509,client",
        "pkcs11:object=k",
        &cert,
    ]);
    let err = admin.fails(&["disclose", "set", ".", "a@example.org", "a@example.org"]);
    assert!(err.contains("listed twice"), "{err}");
}

#[test]
fn trust_set_get_list_delete() {
    let admin = Admin::new();
    let anchor = admin.file("ca.der", b"\x30\x82anchor");
    let pinning = admin.file("pin.bin", b"\x00\x00\x10\x00\x00\x00\x01\x00");
    admin.ok(&["trust", "set", "x509,client,server", "0A1B2C", "1", &anchor]);
    admin.ok(&[
        "trust",
        "set",
        "pinned,x509,client",
        "0a1b2c",
        "a b\tc",
        &pinning,
    ]);

    let listed = admin.ok(&["trust", "list"]);
    assert_eq!(
        lines(&listed),
        [
            "0a1b2c\tx509\tclient,server\t1\t8",
            "0a1b2c\tpinned-x509\tclient\ta b\\tc\t8",
        ]
    );

    let out = admin.path("out.der");
    let got = admin.ok(&[
        "trust",
        "get",
        "0a1b2c",
        "x509",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(lines(&got), ["0a1b2c\tx509\tclient,server\t1\t8"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"\x30\x82anchor");

    admin.ok(&["trust", "set", "x509,notroot", "0a1b2c", "1", &anchor]);
    let got = admin.ok(&["trust", "get", "0a1b2c"]);
    assert_eq!(
        lines(&got),
        [
            "0a1b2c\tpinned-x509\tclient\ta b\\tc\t8",
            "0a1b2c\tx509\tnotroot\t1\t8"
        ]
    );

    admin.ok(&["trust", "delete", "0a1b2c", "pinned,x509"]);
    let got = admin.ok(&["trust", "get", "0a1b2c"]);
    assert_eq!(lines(&got), ["0a1b2c\tx509\tnotroot\t1\t8"]);
    admin.ok(&["trust", "delete", "0a1b2c"]);
    let err = admin.fails(&["trust", "get", "0a1b2c"]);
    assert!(err.contains("no matching trust entries"), "{err}");
}

#[test]
fn trust_set_rejects_bad_pinning_data() {
    let admin = Admin::new();
    let data = admin.file("bad.bin", b"123");
    let err = admin.fails(&["trust", "set", "pinned,pgp", "00ff", "1", &data]);
    assert!(err.contains("invalid data"), "{err}");
}

#[test]
fn export_import_round_trip_is_byte_exact() {
    let source = Admin::new();
    let cert = source.file("cert.der", b"\x00\x01\x02\xff\n\t");
    source.ok(&[
        "localid",
        "set",
        "me@example.org",
        "x509,client",
        "pkcs11:object=k",
        &cert,
    ]);
    source.ok(&[
        "localid",
        "set",
        "me@example.org",
        "valexp,client",
        "1",
        "/dev/null",
    ]);
    source.ok(&["disclose", "set", "@.", "me@example.org"]);
    source.ok(&["trust", "set", "x509,client", "ff00", "1", &cert]);

    let target = Admin::new();
    for db in ["localid", "disclose", "trust"] {
        let dump = source.ok(&["db", "export", db]);
        let file = target.file(&format!("{db}.dump"), dump.as_bytes());
        target.ok(&["db", "import", db, &file]);
        assert_eq!(target.ok(&["db", "export", db]), dump, "{db} dump changed");
    }

    // The raw pairs are the bytes of the original layout.
    let env = DbEnv::open(&target.dbenv, &DbNames::default(), OpenMode::ReadOnly).unwrap();
    let pairs = env.export(Database::LocalId).unwrap();
    let mut expected = b"\x00\x00\x01\x01pkcs11:object=k\x00".to_vec();
    expected.extend_from_slice(b"\x00\x01\x02\xff\n\t");
    assert_eq!(pairs[0], (b"me@example.org".to_vec(), expected));
    assert_eq!(
        pairs[1],
        (
            b"me@example.org".to_vec(),
            b"\x00\x00\x01\x051\x00".to_vec()
        )
    );
}

#[test]
fn import_of_foreign_dump_keeps_every_byte() {
    let admin = Admin::new();
    // A `db_dump -p` style dump with values that no typed view would accept.
    let dump = "VERSION=3\nformat=print\ntype=hash\nduplicates=1\nHEADER=END\n \\01\\02\n z\n \
                \\01\\02\n \\00\\\\\n bb\n a\nDATA=END\n";
    let file = admin.file("in.dump", dump.as_bytes());
    admin.ok(&["db", "import", "trust", &file]);
    let exported = admin.ok(&["db", "export", "trust"]);
    assert_eq!(
        exported,
        "VERSION=3\nformat=bytevalue\ntype=hash\nduplicates=1\nHEADER=END\n \
         0102\n 7a\n 0102\n 005c\n 6262\n 61\nDATA=END\n"
    );

    // Import appends; --replace starts from an empty database.
    admin.ok(&["db", "import", "trust", &file]);
    let doubled = admin.ok(&["db", "export", "trust"]);
    assert_eq!(doubled.lines().filter(|l| *l == " 0102").count(), 4);
    admin.ok(&["db", "import", "--replace", "trust", &file]);
    assert_eq!(admin.ok(&["db", "export", "trust"]), exported);
}

#[test]
fn configured_database_names_are_used() {
    let admin = Admin::with_config_extra("db_localid ids\ndb_disclose show\ndb_trust anchors\n");
    let cert = admin.file("cert.der", b"cert");
    admin.ok(&[
        "localid",
        "set",
        "me.example.org",
        "x509,server",
        "pkcs11:object=k",
        &cert,
    ]);
    let names = DbNames {
        localid: "ids".into(),
        disclose: "show".into(),
        trust: "anchors".into(),
    };
    let env = DbEnv::open(&admin.dbenv, &names, OpenMode::ReadOnly).unwrap();
    let values = env
        .read()
        .unwrap()
        .values(Database::LocalId, b"me.example.org")
        .unwrap();
    assert_eq!(values.len(), 1);
    let err = DbEnv::open(&admin.dbenv, &DbNames::default(), OpenMode::ReadOnly).unwrap_err();
    assert!(err.to_string().contains("localid.db"), "{err}");
}

#[test]
fn open_reader_sees_later_writes() {
    let admin = Admin::new();
    admin.ok(&["db", "create"]);
    let env = DbEnv::open(&admin.dbenv, &DbNames::default(), OpenMode::ReadOnly).unwrap();
    let before = env.read().unwrap();
    assert!(
        before
            .values(Database::LocalId, b"me@example.org")
            .unwrap()
            .is_empty()
    );

    let cert = admin.file("cert.der", b"cert");
    admin.ok(&[
        "localid",
        "set",
        "me@example.org",
        "x509,client",
        "pkcs11:object=k",
        &cert,
    ]);

    assert!(
        before
            .values(Database::LocalId, b"me@example.org")
            .unwrap()
            .is_empty(),
        "a transaction keeps its snapshot"
    );
    drop(before);
    let after = env.read().unwrap();
    let id = tlspool_core::db::Donai::parse("me@example.org").unwrap();
    let entries = after.localid_entries(&id).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].pkcs11_uri.as_deref(), Some("pkcs11:object=k"));
}

#[test]
fn invalid_arguments_are_rejected() {
    let admin = Admin::new();
    admin.ok(&["db", "create"]);
    let cert = admin.file("cert.der", b"cert");
    let missing = admin.path("missing.der");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 13] = [
        (
            &["localid", "set", "@example.org", "x509", "pkcs11:a", &cert],
            "invalid DoNAI",
        ),
        (
            &[
                "localid",
                "set",
                "me.example.org",
                "x509,bogus",
                "pkcs11:a",
                &cert,
            ],
            "bogus",
        ),
        (
            &[
                "localid",
                "set",
                "me.example.org",
                "client",
                "pkcs11:a",
                &cert,
            ],
            "no credential type",
        ),
        (
            &[
                "localid",
                "set",
                "me.example.org",
                "x509,pgp",
                "pkcs11:a",
                &cert,
            ],
            "more than one",
        ),
        (
            &["localid", "set", "me.example.org", "x509", "pkcs11:a"],
            "pairs",
        ),
        (
            &["localid", "set", "me.example.org", "x509", "file:a", &cert],
            "pkcs11:",
        ),
        (
            &[
                "localid",
                "set",
                "me.example.org",
                "x509",
                "pkcs11:a",
                missing,
            ],
            "missing.der",
        ),
        (
            &["disclose", "set", "@", "me.example.org"],
            "invalid DoNAI selector",
        ),
        (
            &["trust", "set", "x509", "0g", "1", &cert],
            "invalid hex key",
        ),
        (&["trust", "set", "x509", "", "1", &cert], "empty"),
        (
            &["trust", "set", "x509", "00", "", &cert],
            "expression is empty",
        ),
        (
            &["trust", "set", "revoke", "00", "1", &cert],
            "no trust type",
        ),
        (&["db", "export", "users"], "unknown database"),
    ];
    for (args, expected) in cases {
        let err = admin.fails(args);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
    }
    assert_eq!(admin.ok(&["localid", "list"]), "", "nothing was stored");
}

#[test]
fn config_problems_are_reported() {
    let admin = Admin::new();
    let output = Command::new(bin_path("tlspool-admin"))
        .args(["-c", "/nonexistent/tlspool.conf", "localid", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/tlspool.conf"));

    std::fs::write(&admin.config, "db_localid ids\n").unwrap();
    let err = admin.fails(&["localid", "list"]);
    assert!(err.contains("dbenv_dir"), "{err}");
}

#[test]
fn read_before_create_names_the_fix() {
    let admin = Admin::new();
    let err = admin.fails(&["localid", "list"]);
    assert!(err.contains(&admin.dbenv.display().to_string()), "{err}");
    admin.ok(&["db", "create"]);
    assert_eq!(admin.ok(&["localid", "list"]), "");
    assert!(Path::new(&admin.dbenv).join("data.mdb").exists());
}
