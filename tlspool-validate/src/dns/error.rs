//! The error type of DNS lookups: configuration files that do not load, queries that fail or
//! time out, and responses that do not parse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A reason why the resolver could not be set up or a lookup returned no usable response.
///
/// A response that arrived but failed DNSSEC validation is not an error here: lookups return
/// it as [`Security::Bogus`](super::Security::Bogus).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The trust anchor file could not be read or does not parse as DS or DNSKEY records.
    #[error(
        "loading the DNSSEC trust anchor {path} failed: {reason}; it must contain DS or DNSKEY \
         records in zone-file syntax"
    )]
    TrustAnchor {
        /// The file named by `dnssec_rootkey`.
        path: PathBuf,
        /// The reader's or parser's reason.
        reason: String,
    },

    /// The trust anchor file parsed but contains no DS or DNSKEY record.
    #[error("the DNSSEC trust anchor {path} contains no DS or DNSKEY record")]
    EmptyTrustAnchor {
        /// The file named by `dnssec_rootkey`.
        path: PathBuf,
    },

    /// The resolver configuration could not be read or names no nameserver.
    #[error("no DNS server: {reason} in {path}; set dns_server in the configuration")]
    NoServer {
        /// The resolver configuration file, `/etc/resolv.conf`.
        path: PathBuf,
        /// The reason it gave no server.
        reason: String,
    },

    /// The lookup was called outside a tokio runtime, which the transport needs.
    #[error("the DNS transport needs a tokio runtime: {reason}")]
    NoRuntime {
        /// The runtime's error.
        reason: String,
    },

    /// A name that is not a valid domain name.
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The parser's reason.
        reason: String,
    },

    /// The lookup, with the DS and DNSKEY queries of its validation, did not finish in time.
    #[error("DNS lookup of {name} {rtype} at {server} timed out after {timeout:?}")]
    Timeout {
        /// The queried name.
        name: String,
        /// The queried record type.
        rtype: String,
        /// The DNS server.
        server: SocketAddr,
        /// The configured timeout.
        timeout: Duration,
    },

    /// The query could not be sent or its response not received.
    #[error("DNS query for {name} {rtype} at {server} failed: {reason}")]
    Transport {
        /// The queried name.
        name: String,
        /// The queried record type.
        rtype: String,
        /// The DNS server.
        server: SocketAddr,
        /// The transport's reason.
        reason: String,
    },

    /// The server answered with a response code other than NOERROR and NXDOMAIN.
    #[error("DNS server {server} answered {name} {rtype} with {rcode}")]
    ResponseCode {
        /// The queried name.
        name: String,
        /// The queried record type.
        rtype: String,
        /// The DNS server.
        server: SocketAddr,
        /// The response code, such as `SERVFAIL` or `REFUSED`.
        rcode: String,
    },

    /// A response that does not parse, does not answer the question, or that the validator
    /// could not process.
    #[error("invalid DNS response for {name} {rtype}: {reason}")]
    InvalidResponse {
        /// The queried name.
        name: String,
        /// The queried record type.
        rtype: String,
        /// The problem found in it.
        reason: String,
    },
}
