//! Global directory checks against a real slapd: the three outcomes for X.509 and OpenPGP
//! entries, filter injection through the remote identity, SRV discovery with StartTLS and the
//! TLS check, referrals, and failing closed when slapd is down.

use std::time::{Duration, Instant};

use tlspool_tests::ldap::{OpenPgpKey, SUFFIX, Slapd, self_signed_certificate};
use tlspool_validate::ldap::{
    Credential, DirectoryConfig, DirectoryError, DirectoryTlsCheck, GlobalDirectory, Outcome,
    PinnedDirectoryCertificates, RejectUncheckedDirectory, SrvTarget, StaticSrvResolver,
    predicate_value,
};
use tlspool_validate::valexp::Predicate;

/// Base64 for LDIF `attr:: value` lines.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Test material: the certificates and keys that entries hold and peers present.
struct Material {
    alice_cert: Vec<u8>,
    domain_cert: Vec<u8>,
    other_cert: Vec<u8>,
    alice_key: OpenPgpKey,
    dave_key: OpenPgpKey,
    other_key: OpenPgpKey,
}

impl Material {
    fn new() -> Self {
        Self {
            alice_cert: self_signed_certificate("alice"),
            domain_cert: self_signed_certificate("example.com"),
            other_cert: self_signed_certificate("mallory"),
            alice_key: OpenPgpKey::generate("Alice <alice@example.com>"),
            dave_key: OpenPgpKey::generate("Dave <dave@example.com>"),
            other_key: OpenPgpKey::generate("Mallory <mallory@example.com>"),
        }
    }

    /// Entries: the domain with a certificate, alice with a certificate and an armored key,
    /// bob without credentials, dave with a revoked key.
    fn ldif(&self) -> String {
        let armored = |text: &str| base64(text.as_bytes());
        format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n\
             objectClass: pkiUser\no: Example\ndc: example\n\
             userCertificate;binary:: {}\n\n\
             dn: uid=alice,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: pkiUser\n\
             objectClass: pgpKeyInfo\nuid: alice\ncn: Alice\nsn: A\n\
             userCertificate;binary:: {}\npgpKey:: {}\n\n\
             dn: uid=bob,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: pkiUser\n\
             objectClass: pgpKeyInfo\nuid: bob\ncn: Bob\nsn: B\n\n\
             dn: uid=dave,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: pgpKeyInfo\n\
             uid: dave\ncn: Dave\nsn: D\npgpKey:: {}\n",
            base64(&self.domain_cert),
            base64(&self.alice_cert),
            armored(&self.alice_key.armored),
            armored(&self.dave_key.revoked_armored),
        )
    }
}

fn proxy_directory(
    url: &str,
    follow_referrals: bool,
) -> GlobalDirectory<StaticSrvResolver, RejectUncheckedDirectory> {
    let config = DirectoryConfig {
        proxy: Some(url.to_owned()),
        follow_referrals,
        ..DirectoryConfig::default()
    };
    GlobalDirectory::new(config, StaticSrvResolver::new(), RejectUncheckedDirectory).unwrap()
}

fn discovered_directory<C: DirectoryTlsCheck>(
    slapd: &Slapd,
    check: C,
) -> GlobalDirectory<StaticSrvResolver, C> {
    let mut resolver = StaticSrvResolver::new();
    let target = SrvTarget {
        priority: 0,
        weight: 0,
        port: slapd.port(),
        host: "127.0.0.1".to_owned(),
        addresses: vec!["127.0.0.1".parse().unwrap()],
    };
    resolver.insert("_ldap._tcp.example.com", vec![target.clone()]);
    resolver.insert("_pgpkey-ldap._tcp.example.com", vec![target]);
    GlobalDirectory::new(DirectoryConfig::default(), resolver, check).unwrap()
}

#[tokio::test]
async fn x509_entries_give_three_outcomes() {
    let material = Material::new();
    let slapd = Slapd::start(&material.ldif(), false);
    let directory = proxy_directory(&slapd.url(), false);
    let check = |id: &'static str, cert: &'static [u8]| directory.check(id, Credential::X509(cert));
    let alice = material.alice_cert.clone().leak();
    let other = material.other_cert.clone().leak();
    let domain = material.domain_cert.clone().leak();

    assert_eq!(
        check("alice@example.com", alice).await.unwrap(),
        Outcome::Success
    );
    assert_eq!(
        check("alice@example.com", other).await.unwrap(),
        Outcome::Invalid
    );
    assert_eq!(
        check("bob@example.com", alice).await.unwrap(),
        Outcome::NotFound
    );
    assert_eq!(
        check("carol@example.com", alice).await.unwrap(),
        Outcome::NotFound
    );
    assert_eq!(
        check("example.com", domain).await.unwrap(),
        Outcome::Success
    );
    assert_eq!(check("example.com", other).await.unwrap(), Outcome::Invalid);
    assert_eq!(
        check("alice@example.org", alice).await.unwrap(),
        Outcome::NotFound
    );
}

#[tokio::test]
async fn openpgp_entries_give_three_outcomes() {
    let material = Material::new();
    let slapd = Slapd::start(&material.ldif(), false);
    let directory = proxy_directory(&slapd.url(), false);
    let alice = Credential::OpenPgp(&material.alice_key.binary);
    let other = Credential::OpenPgp(&material.other_key.binary);
    let dave = Credential::OpenPgp(&material.dave_key.binary);

    assert_eq!(
        directory.check("alice@example.com", alice).await.unwrap(),
        Outcome::Success
    );
    assert_eq!(
        directory.check("alice@example.com", other).await.unwrap(),
        Outcome::Invalid
    );
    assert_eq!(
        directory.check("bob@example.com", alice).await.unwrap(),
        Outcome::NotFound
    );
    assert_eq!(
        directory.check("dave@example.com", dave).await.unwrap(),
        Outcome::Invalid
    );
}

#[tokio::test]
async fn filter_injection_is_escaped() {
    let material = Material::new();
    let slapd = Slapd::start(&material.ldif(), false);
    let directory = proxy_directory(&slapd.url(), false);
    let alice = Credential::X509(&material.alice_cert);

    // Unescaped, each of these would match alice's entry (and so succeed) or break the filter.
    let attempts = [
        "*@example.com",
        "ali*@example.com",
        "alice)(uid=*@example.com",
        "*)(|(uid=*@example.com",
        "(alice)@example.com",
        "alice\\2a@example.com",
        "alice\\@example.com",
        "alice\0@example.com",
        "alice\0)(uid=*@example.com",
    ];
    for remote_id in attempts {
        let result = directory.check(remote_id, alice).await;
        assert_eq!(
            result.unwrap(),
            Outcome::NotFound,
            "remote id {remote_id:?}"
        );
    }
    let result = directory.check("alice@example.com", alice).await;
    assert_eq!(result.unwrap(), Outcome::Success);
}

#[tokio::test]
async fn stopped_slapd_fails_closed_within_timeout() {
    let material = Material::new();
    let mut slapd = Slapd::start(&material.ldif(), false);
    let directory = proxy_directory(&slapd.url(), false);
    slapd.stop();

    let started = Instant::now();
    let result = directory
        .check("alice@example.com", Credential::X509(&material.alice_cert))
        .await;
    let elapsed = started.elapsed();

    assert!(
        matches!(result, Err(DirectoryError::Connect { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    for letter in ['O', 'o', 'G', 'g'] {
        let predicate = Predicate::from_letter(letter).unwrap();
        assert_eq!(
            predicate_value(&result, predicate),
            Some(false),
            "predicate {letter}"
        );
    }
}

#[tokio::test]
async fn silent_server_times_out() {
    // A listener that accepts connections but never sends a byte, as a hung directory server does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let config = DirectoryConfig {
        proxy: Some(url),
        timeout: Duration::from_millis(500),
        ..DirectoryConfig::default()
    };
    let directory =
        GlobalDirectory::new(config, StaticSrvResolver::new(), RejectUncheckedDirectory).unwrap();
    let _acceptor = tokio::spawn(async move {
        let mut open_connections = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open_connections.push(stream);
        }
    });

    let started = Instant::now();
    let result = directory
        .check("alice@example.com", Credential::X509(b"x"))
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(DirectoryError::Timeout { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
}

#[tokio::test]
async fn discovered_server_needs_tls_check() {
    let material = Material::new();
    let slapd = Slapd::start(&material.ldif(), true);
    let pinned = slapd.certificate().unwrap().to_vec();
    let alice = Credential::X509(&material.alice_cert);

    let accepted = discovered_directory(&slapd, PinnedDirectoryCertificates::new(vec![pinned]));
    assert_eq!(
        accepted.check("alice@example.com", alice).await.unwrap(),
        Outcome::Success
    );
    let key = Credential::OpenPgp(&material.alice_key.binary);
    assert_eq!(
        accepted.check("alice@example.com", key).await.unwrap(),
        Outcome::Success
    );

    let wrong_pin = PinnedDirectoryCertificates::new(vec![material.other_cert.clone()]);
    let rejected = discovered_directory(&slapd, wrong_pin);
    let result = rejected.check("alice@example.com", alice).await;
    assert!(
        matches!(result, Err(DirectoryError::TlsCheck { .. })),
        "{result:?}"
    );

    let unchecked = discovered_directory(&slapd, RejectUncheckedDirectory);
    let result = unchecked.check("alice@example.com", alice).await;
    assert!(
        matches!(result, Err(DirectoryError::TlsCheck { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn plain_server_fails_pinned_check() {
    let material = Material::new();
    let slapd = Slapd::start(&material.ldif(), false);
    let pinned = PinnedDirectoryCertificates::new(vec![material.other_cert.clone()]);
    let directory = discovered_directory(&slapd, pinned);

    let result = directory
        .check("alice@example.com", Credential::X509(&material.alice_cert))
        .await;
    assert!(
        matches!(result, Err(DirectoryError::TlsCheck { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn missing_srv_records_mean_not_found() {
    let directory = GlobalDirectory::new(
        DirectoryConfig::default(),
        StaticSrvResolver::new(),
        RejectUncheckedDirectory,
    )
    .unwrap();
    let result = directory
        .check("alice@example.net", Credential::X509(b"x"))
        .await;
    assert_eq!(result.unwrap(), Outcome::NotFound);
}

#[tokio::test]
async fn referrals_followed_only_when_enabled() {
    let material = Material::new();
    let elsewhere = Slapd::start(&material.ldif(), true);
    let referral = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n\
         dc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: referral\nobjectClass: extensibleObject\n\
         ou: people\nref: ldap://127.0.0.1:{}/{SUFFIX}\n",
        elsewhere.port()
    );
    let slapd = Slapd::start(&referral, false);
    let alice = Credential::X509(&material.alice_cert);

    let not_following = proxy_directory(&slapd.url(), false);
    let result = not_following.check("alice@example.com", alice).await;
    assert!(
        matches!(
            result,
            Err(DirectoryError::ReferralNotFollowed { count: 1, .. })
        ),
        "{result:?}"
    );

    // The referred server must pass the TLS check like a discovered one.
    let config = DirectoryConfig {
        proxy: Some(slapd.url()),
        follow_referrals: true,
        ..DirectoryConfig::default()
    };
    let pinned = PinnedDirectoryCertificates::new(vec![elsewhere.certificate().unwrap().to_vec()]);
    let following = GlobalDirectory::new(config, StaticSrvResolver::new(), pinned).unwrap();
    assert_eq!(
        following.check("alice@example.com", alice).await.unwrap(),
        Outcome::Success
    );

    let unchecked = proxy_directory(&slapd.url(), true);
    let result = unchecked.check("alice@example.com", alice).await;
    assert!(
        matches!(result, Err(DirectoryError::TlsCheck { .. })),
        "{result:?}"
    );
}
