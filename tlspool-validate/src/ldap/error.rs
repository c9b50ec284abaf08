//! The error type of global directory checks: every reason a check ends without one of the three
//! outcomes, with the server, name or limit involved.

use std::time::Duration;

/// A reason why a global directory check produced no outcome.
///
/// Every variant makes all four directory predicates (`O`, `o`, `G`, `g`) false: the check
/// fails closed, because an error says nothing about what the directory holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The remote identity is empty, has an empty user or domain part, or its domain has an
    /// empty label.
    #[error("remote identity {identity:?} is not a valid user@domain or domain name")]
    InvalidIdentity {
        /// The identity as given.
        identity: String,
    },

    /// The configured `ldap_proxy` value is not an `ldap://` or `ldaps://` URI.
    #[error("ldap_proxy {uri:?} is not an ldap:// or ldaps:// URI: {reason}")]
    InvalidProxy {
        /// The configured value.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The DNSSEC-validating resolver failed to answer an SRV query, or returned an answer that
    /// is not secure.
    #[error("SRV lookup of {name} failed: {reason}")]
    SrvLookup {
        /// The queried name, such as `_ldap._tcp.example.com`.
        name: String,
        /// The resolver's reason.
        reason: String,
    },

    /// The TCP connection to a directory server failed.
    #[error("connecting to directory server {server} failed: {reason}")]
    Connect {
        /// `host:port` of the server.
        server: String,
        /// The I/O or LDAP error.
        reason: String,
    },

    /// The StartTLS handshake with a directory server that accepted the StartTLS request
    /// failed. The check does not fall back to plain LDAP after such a failure.
    #[error("TLS with directory server {server} failed: {reason}")]
    Tls {
        /// `host:port` of the server.
        server: String,
        /// The TLS or LDAP error.
        reason: String,
    },

    /// The DANE check of a discovered directory server rejected the server or could not run.
    #[error("directory server {server} failed its TLS check: {reason}")]
    TlsCheck {
        /// `host:port` of the server.
        server: String,
        /// The reason given by the check.
        reason: String,
    },

    /// The search failed with an LDAP result code other than success or noSuchObject, or the
    /// connection broke during it.
    #[error("search of {base:?} on directory server {server} failed: {reason}")]
    Search {
        /// `host:port` of the server.
        server: String,
        /// The search base.
        base: String,
        /// The LDAP result or transport error.
        reason: String,
    },

    /// A search entry or referral whose BER encoding is not the one RFC 4511 defines.
    #[error("directory server {server} sent a malformed {what}")]
    MalformedResponse {
        /// `host:port` of the server.
        server: String,
        /// Which part was malformed.
        what: &'static str,
    },

    /// The directory returned referrals and no entry, and referrals are not followed (or more
    /// were returned than are followed).
    #[error(
        "directory server {server} returned {count} referral(s) that were not followed; \
         enable referral following to search them"
    )]
    ReferralNotFollowed {
        /// `host:port` of the server.
        server: String,
        /// Number of referrals returned.
        count: usize,
    },

    /// Connecting, StartTLS, the TLS check and the search on one server took longer than the
    /// timeout.
    #[error("directory server {server} did not answer within {timeout:?}")]
    Timeout {
        /// `host:port` of the server.
        server: String,
        /// The timeout that expired.
        timeout: Duration,
    },
}
