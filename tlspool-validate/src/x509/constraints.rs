//! The constraints a certificate's place in the path puts on it: key usage and extended key
//! usage for the role (RFC 5280 sections 4.2.1.3 and 4.2.1.12), and the nameConstraints of
//! the issuers above it (RFC 5280 sections 4.2.1.10 and 6.1.4 (g)).

use der::oid::ObjectIdentifier;
use der::oid::db::rfc5280 as oids;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::pkix::constraints::name::GeneralSubtree;
use x509_cert::ext::pkix::name::GeneralName;

use super::name::{dns_in_subtree, mail_in_subtree};
use super::trust::PeerRole;
use super::{Certificate, ValidateError};

/// The permitted and excluded subtrees collected from the issuers above a certificate. Each
/// issuer's permitted subtrees form one set, and a name must lie in every set of its type.
#[derive(Default)]
pub(crate) struct NameConstraintSet {
    permitted: Vec<(String, Vec<GeneralSubtree>)>,
    excluded: Vec<(String, Vec<GeneralSubtree>)>,
}

/// A name of a certificate that nameConstraints apply to.
enum ConstrainedName<'a> {
    Dns(&'a str),
    Mail(&'a str),
}

impl NameConstraintSet {
    /// Adds the nameConstraints of `issuer`, if any.
    pub(crate) fn add(&mut self, issuer: &Certificate) {
        let extensions = issuer.extensions();
        if let Some(permitted) = &extensions.permitted_subtrees {
            self.permitted
                .push((issuer.subject().to_owned(), permitted.clone()));
        }
        if let Some(excluded) = &extensions.excluded_subtrees {
            self.excluded
                .push((issuer.subject().to_owned(), excluded.clone()));
        }
    }

    /// Checks the dNSName and rfc822Name subjectAltName entries and the subject emailAddress
    /// attributes of `cert`, and for an end certificate without dNSName entries its
    /// DNS-like commonName attributes, which the name check would accept instead.
    pub(crate) fn check(&self, cert: &Certificate, is_leaf: bool) -> Result<(), ValidateError> {
        if self.permitted.is_empty() && self.excluded.is_empty() {
            return Ok(());
        }
        let mut names: Vec<ConstrainedName<'_>> = Vec::new();
        let dns_names = cert.dns_names();
        if is_leaf && dns_names.is_empty() {
            let dns_like = |cn: &&String| cn.is_ascii() && cn.contains('.') && !cn.contains(' ');
            names.extend(
                cert.common_names()
                    .iter()
                    .filter(dns_like)
                    .map(|cn| ConstrainedName::Dns(cn)),
            );
        }
        names.extend(dns_names.into_iter().map(ConstrainedName::Dns));
        names.extend(cert.email_names().into_iter().map(ConstrainedName::Mail));
        names.extend(
            cert.email_addresses()
                .iter()
                .map(|m| ConstrainedName::Mail(m)),
        );

        for name in &names {
            self.check_name(cert, name)?;
        }
        Ok(())
    }

    fn check_name(
        &self,
        cert: &Certificate,
        name: &ConstrainedName<'_>,
    ) -> Result<(), ValidateError> {
        let violation = |issuer: &str, rule: String| ValidateError::NameConstraint {
            subject: cert.subject().to_owned(),
            name: name.text().to_owned(),
            issuer: issuer.to_owned(),
            rule,
        };

        for (issuer, subtrees) in &self.permitted {
            check_supported(cert, issuer, subtrees)?;
            let bases: Vec<&str> = subtrees
                .iter()
                .filter_map(|s| name.base_of_type(s))
                .collect();
            if !bases.is_empty() && !bases.iter().any(|base| name.in_subtree(base)) {
                let rule = format!("is outside the permitted subtrees {}", bases.join(", "));
                return Err(violation(issuer, rule));
            }
        }
        for (issuer, subtrees) in &self.excluded {
            check_supported(cert, issuer, subtrees)?;
            let excluded = subtrees.iter().filter_map(|s| name.base_of_type(s));
            if let Some(base) = excluded.into_iter().find(|base| name.in_subtree(base)) {
                return Err(violation(
                    issuer,
                    format!("is in the excluded subtree {base}"),
                ));
            }
        }
        Ok(())
    }
}

impl ConstrainedName<'_> {
    fn text(&self) -> &str {
        match self {
            Self::Dns(name) | Self::Mail(name) => name,
        }
    }

    /// Returns the base of `subtree` if it has the same name type.
    fn base_of_type<'s>(&self, subtree: &'s GeneralSubtree) -> Option<&'s str> {
        match (self, &subtree.base) {
            (Self::Dns(_), GeneralName::DnsName(base)) => Some(base.as_str()),
            (Self::Mail(_), GeneralName::Rfc822Name(base)) => Some(base.as_str()),
            _ => None,
        }
    }

    fn in_subtree(&self, base: &str) -> bool {
        match self {
            Self::Dns(name) => dns_in_subtree(name, base),
            Self::Mail(name) => mail_in_subtree(name, base),
        }
    }
}

/// Rejects subtrees this validator cannot enforce: types other than dNSName and rfc822Name,
/// and a minimum or maximum distance, which RFC 5280 forbids.
fn check_supported(
    cert: &Certificate,
    issuer: &str,
    subtrees: &[GeneralSubtree],
) -> Result<(), ValidateError> {
    for subtree in subtrees {
        let supported = matches!(
            subtree.base,
            GeneralName::DnsName(_) | GeneralName::Rfc822Name(_)
        ) && subtree.minimum == 0
            && subtree.maximum.is_none();
        if !supported {
            // NOTE: directoryName, iPAddress and URI subtrees are not enforced, so a path
            // under an issuer that uses them fails rather than passing unchecked.
            return Err(ValidateError::NameConstraint {
                subject: cert.subject().to_owned(),
                name: cert.subject().to_owned(),
                issuer: issuer.to_owned(),
                rule: format!(
                    "cannot be checked against the unsupported subtree {:?}",
                    subtree.base
                ),
            });
        }
    }
    Ok(())
}

/// Checks the key usage and extended key usage that the end certificate of a peer in `role`
/// needs. A server signs the handshake (digitalSignature), or decrypts the premaster secret
/// of RSA key exchange (keyEncipherment), or agrees on it with a static key (keyAgreement);
/// a client signs CertificateVerify (digitalSignature).
pub(crate) fn check_leaf_usage(cert: &Certificate, role: PeerRole) -> Result<(), ValidateError> {
    let usable = match role {
        PeerRole::Server => [
            KeyUsages::DigitalSignature,
            KeyUsages::KeyEncipherment,
            KeyUsages::KeyAgreement,
        ]
        .iter()
        .any(|usage| cert.has_key_usage(*usage) != Some(false)),
        PeerRole::Client => cert.has_key_usage(KeyUsages::DigitalSignature) != Some(false),
    };
    if !usable {
        return Err(ValidateError::KeyUsage {
            subject: cert.subject().to_owned(),
            required: match role {
                PeerRole::Server => "digitalSignature, keyEncipherment or keyAgreement",
                PeerRole::Client => "digitalSignature",
            },
        });
    }
    check_extended_key_usage(cert, role)
}

/// Checks that an extendedKeyUsage extension, where present, lists the purpose of `role` or
/// anyExtendedKeyUsage.
pub(crate) fn check_extended_key_usage(
    cert: &Certificate,
    role: PeerRole,
) -> Result<(), ValidateError> {
    let Some(purposes) = &cert.extensions().extended_key_usage else {
        return Ok(());
    };
    let required: ObjectIdentifier = match role {
        PeerRole::Server => oids::ID_KP_SERVER_AUTH,
        PeerRole::Client => oids::ID_KP_CLIENT_AUTH,
    };
    if purposes.contains(&required) || purposes.contains(&oids::ANY_EXTENDED_KEY_USAGE) {
        return Ok(());
    }
    Err(ValidateError::ExtendedKeyUsage {
        subject: cert.subject().to_owned(),
        required: role.purpose_name(),
    })
}
