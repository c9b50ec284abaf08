//! The DNSSEC-validating stub resolver: one upstream server over UDP with TCP fallback, and the
//! `domain` crate's validator running in this process under the configured trust anchors.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{OptRcode, Rtype};
use domain::base::{Message, MessageBuilder, Name};
use domain::dnssec::validator::anchor::TrustAnchors;
use domain::dnssec::validator::context::{ValidationContext, ValidationState};
use domain::net::client::dgram::QueryErrorKind;
use domain::net::client::dgram_stream;
use domain::net::client::protocol::{TcpConnect, UdpConnect};
use domain::net::client::request::{self, ComposeRequest, RequestMessage, SendRequest};
use domain::resolv::stub::conf::ResolvConf;
use tracing::debug;

use super::{Answer, DnsError, Security};

/// Default bound on one lookup, validation included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolver configuration file whose first `nameserver` is used when none is configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The UDP-with-TCP-fallback transport to the upstream server.
type Upstream = dgram_stream::Connection<UdpConnect, RequestMessage<Vec<u8>>>;

/// A stub resolver that sends every query to one server and validates every response with
/// DNSSEC in this process.
///
/// The server only needs to return the records, signatures and denial proofs, which the DO
/// and CD bits of each query request. A recursive resolver or an authoritative server for the names looked up
/// both work, and the server's own AD bit is ignored.
///
/// The resolver must be created and used inside a tokio runtime: it spawns the task that runs
/// the TCP connections. It is cheap to share behind an `Arc`, and the validator keeps its DS
/// and DNSKEY cache across lookups.
pub struct Resolver {
    server: SocketAddr,
    timeout: Duration,
    upstream: Upstream,
    validator: Arc<ValidationContext<Upstream>>,
}

impl Resolver {
    /// Creates a resolver for `server` (or, when `None`, the first nameserver of
    /// [`RESOLV_CONF`]) that validates under the DS or DNSKEY records in the file
    /// `trust_anchor` and bounds each lookup by `timeout`.
    ///
    /// The files are read synchronously, once, here.
    ///
    /// # Errors
    ///
    /// [`DnsError::TrustAnchor`] or [`DnsError::EmptyTrustAnchor`] when the anchor file does not
    /// load, [`DnsError::NoServer`] when no server is given and the resolver configuration has
    /// none, and [`DnsError::NoRuntime`] outside a tokio runtime.
    pub fn new(
        server: Option<SocketAddr>,
        trust_anchor: &Path,
        timeout: Duration,
    ) -> Result<Self, DnsError> {
        let server = match server {
            Some(server) => server,
            None => system_server(Path::new(RESOLV_CONF))?,
        };
        let anchors = load_trust_anchors(trust_anchor)?;
        Self::with_anchors(server, anchors, timeout)
    }

    /// Creates a resolver for `server` that validates under `anchors`.
    ///
    /// # Errors
    ///
    /// [`DnsError::NoRuntime`] outside a tokio runtime.
    pub fn with_anchors(
        server: SocketAddr,
        anchors: TrustAnchors,
        timeout: Duration,
    ) -> Result<Self, DnsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|err| DnsError::NoRuntime {
            reason: err.to_string(),
        })?;

        // One retry over UDP within the bound; the whole lookup is bounded again in `lookup`.
        let mut config = dgram_stream::Config::new();
        config.dgram_mut().set_read_timeout(timeout / 2);
        config.dgram_mut().set_max_retries(1);
        config.stream_mut().set_response_timeout(timeout);
        let (upstream, transport) = dgram_stream::Connection::with_config(
            UdpConnect::new(server),
            TcpConnect::new(server),
            config,
        );
        // The task ends when the last clone of `upstream` (here and in the validator) drops.
        runtime.spawn(transport.run());

        let validator = Arc::new(ValidationContext::new(anchors, upstream.clone()));
        Ok(Self {
            server,
            timeout,
            upstream,
            validator,
        })
    }

    /// Returns the server that receives the queries.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Returns the bound on one lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Looks up `name` (absolute, with or without the final dot) and `rtype`, and validates
    /// the response, all within the timeout.
    ///
    /// # Errors
    ///
    /// [`DnsError::InvalidName`] for a name that does not parse, [`DnsError::Timeout`],
    /// [`DnsError::Transport`], [`DnsError::ResponseCode`] for a response code other than
    /// NOERROR and NXDOMAIN, and [`DnsError::InvalidResponse`].
    pub async fn lookup(&self, name: &str, rtype: Rtype) -> Result<Answer, DnsError> {
        let qname = parse_name(name)?;
        let query = Query {
            name: qname.to_string(),
            rtype,
            server: self.server,
        };
        match tokio::time::timeout(self.timeout, self.query_and_validate(&query, qname)).await {
            Ok(result) => result,
            Err(_) => Err(DnsError::Timeout {
                name: query.name,
                rtype: rtype.to_string(),
                server: self.server,
                timeout: self.timeout,
            }),
        }
    }

    async fn query_and_validate(
        &self,
        query: &Query,
        qname: Name<Bytes>,
    ) -> Result<Answer, DnsError> {
        let request = build_request(query, &qname)?;
        let mut response = self
            .upstream
            .send_request(request)
            .get_response()
            .await
            .map_err(|err| self.transport_error(query, &err))?;
        check_response(query, &qname, &response)?;

        let (state, extended_error) = self
            .validator
            .validate_msg::<Bytes, Vec<u8>>(&mut response)
            .await
            .map_err(|err| query.invalid(format!("validation failed to run: {err}")))?;
        let security = match state {
            ValidationState::Secure => Security::Secure,
            ValidationState::Insecure => Security::Insecure,
            ValidationState::Indeterminate => Security::Indeterminate,
            ValidationState::Bogus => Security::Bogus(match extended_error {
                Some(error) => error.to_string(),
                None => "the validator gave no reason".to_owned(),
            }),
        };
        debug!(name = %query.name, rtype = %query.rtype, security = ?security, "dns lookup validated");
        Ok(Answer::new(qname, query.rtype, security, response))
    }
}

impl Resolver {
    /// Maps a transport error to [`DnsError`]. A transport that gave up waiting for a response
    /// is a [`DnsError::Timeout`], like the resolver's own deadline, so callers see one kind.
    fn transport_error(&self, query: &Query, err: &request::Error) -> DnsError {
        let timed_out = match err {
            request::Error::StreamReadTimeout => true,
            request::Error::Dgram(error) => matches!(error.kind(), QueryErrorKind::Timeout),
            _ => false,
        };
        if timed_out {
            DnsError::Timeout {
                name: query.name.clone(),
                rtype: query.rtype.to_string(),
                server: self.server,
                timeout: self.timeout,
            }
        } else {
            query.transport_error(err.to_string())
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The facts of one query that its errors name.
pub(super) struct Query {
    pub(super) name: String,
    pub(super) rtype: Rtype,
    server: SocketAddr,
}

impl Query {
    fn transport_error(&self, reason: String) -> DnsError {
        DnsError::Transport {
            name: self.name.clone(),
            rtype: self.rtype.to_string(),
            server: self.server,
            reason,
        }
    }

    fn invalid(&self, reason: String) -> DnsError {
        DnsError::InvalidResponse {
            name: self.name.clone(),
            rtype: self.rtype.to_string(),
            reason,
        }
    }
}

/// Parses an absolute domain name; a missing final dot is implied.
pub(super) fn parse_name(name: &str) -> Result<Name<Bytes>, DnsError> {
    let absolute = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::bytes_from_str(&absolute).map_err(|err| DnsError::InvalidName {
        name: name.to_owned(),
        reason: err.to_string(),
    })
}

/// Builds a query with RD (for a recursive server), DO (to receive signatures) and CD (so that
/// a validating server passes bogus data on to the validator here, RFC 4035 section 3.2.2).
fn build_request(query: &Query, qname: &Name<Bytes>) -> Result<RequestMessage<Vec<u8>>, DnsError> {
    let mut builder = MessageBuilder::new_vec();
    builder.header_mut().set_rd(true);
    builder.header_mut().set_cd(true);
    let mut question = builder.question();
    question
        .push((qname, query.rtype))
        .map_err(|err| query.invalid(format!("composing the query failed: {err}")))?;
    let mut request = RequestMessage::new(question)
        .map_err(|err| query.invalid(format!("composing the query failed: {err}")))?;
    request.set_dnssec_ok(true);
    Ok(request)
}

/// Checks that `response` answers the question and carries NOERROR or NXDOMAIN.
fn check_response(
    query: &Query,
    qname: &Name<Bytes>,
    response: &Message<Bytes>,
) -> Result<(), DnsError> {
    let question = response
        .sole_question()
        .map_err(|err| query.invalid(format!("the question section is invalid: {err}")))?;
    if question.qname() != qname || question.qtype() != query.rtype {
        return Err(query.invalid(format!(
            "the response answers {} {} instead",
            question.qname(),
            question.qtype()
        )));
    }
    match response.opt_rcode() {
        OptRcode::NOERROR | OptRcode::NXDOMAIN => Ok(()),
        rcode => Err(DnsError::ResponseCode {
            name: query.name.clone(),
            rtype: query.rtype.to_string(),
            server: query.server,
            rcode: rcode.to_string(),
        }),
    }
}

/// Returns the first nameserver of the resolver configuration file `path`.
fn system_server(path: &Path) -> Result<SocketAddr, DnsError> {
    let no_server = |reason: String| DnsError::NoServer {
        path: path.to_owned(),
        reason,
    };
    let mut conf = ResolvConf::new();
    conf.parse_file(path)
        .map_err(|err| no_server(format!("reading it failed: {err}")))?;
    conf.servers
        .first()
        .map(|server| server.addr)
        .ok_or_else(|| no_server("no nameserver line".to_owned()))
}

/// Reads DS or DNSKEY records in zone-file syntax, as `ldns-keygen` writes them in `K*.ds` and
/// `K*.key` and as `unbound-anchor` writes the root key.
fn load_trust_anchors(path: &Path) -> Result<TrustAnchors, DnsError> {
    let failed = |reason: String| DnsError::TrustAnchor {
        path: PathBuf::from(path),
        reason,
    };
    let text = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
    let anchors = TrustAnchors::from_u8(&text).map_err(|err| failed(err.to_string()))?;
    if !contains_anchor_record(&text) {
        return Err(DnsError::EmptyTrustAnchor {
            path: path.to_owned(),
        });
    }
    Ok(anchors)
}

/// Tells whether zone-file text contains a DS or DNSKEY record outside comments, since
/// `TrustAnchors` does not tell how many records it read.
fn contains_anchor_record(text: &[u8]) -> bool {
    String::from_utf8_lossy(text).lines().any(|line| {
        let data = line.split(';').next().unwrap_or_default();
        data.split_whitespace()
            .any(|field| field.eq_ignore_ascii_case("DS") || field.eq_ignore_ascii_case("DNSKEY"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DS record as `ldns-keygen -k` writes it to `K*.ds`, without a TTL.
    const KSK_DS: &str = "example.test.\tIN\tDS\t18581 13 2 \
        80cc6cf994fdac5b22dac48d356dd23c5d8518bfb089dcf20c82c49e2714976d\n";

    /// The DNSKEY record of the same key as `ldns-keygen -k` writes it to `K*.key`.
    const KSK_DNSKEY: &str = "example.test.\tIN\tDNSKEY\t257 3 13 \
        VIxXsgY3jLGjqNB6xD2UCAErHFJT0lELNtAGet1iDFIgA8itkl3ZAK6bI88+kYHq/NPG0uj8yUPn95ZEmHPcDg== \
        ;{id = 18581 (ksk), size = 256b}\n";

    #[test]
    fn parse_name_implies_final_dot() {
        let name = parse_name("_443._tcp.example.test").expect("valid name");
        assert_eq!(name.to_string(), "_443._tcp.example.test");
        assert_eq!(
            parse_name("example.test.").expect("valid name"),
            name.parent().unwrap().parent().unwrap()
        );
    }

    #[test]
    fn parse_name_rejects_long_label() {
        let label = "a".repeat(64);
        assert!(matches!(
            parse_name(&label),
            Err(DnsError::InvalidName { .. })
        ));
    }

    #[test]
    fn trust_anchor_loads_ldns_keygen_files() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("Kexample.test.ds");
        std::fs::write(&path, KSK_DS).expect("write anchor");
        assert!(load_trust_anchors(&path).is_ok());

        std::fs::write(&path, KSK_DNSKEY).expect("write anchor");
        assert!(load_trust_anchors(&path).is_ok());
    }

    #[test]
    fn trust_anchor_rejects_missing_and_empty_files() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = dir.path().join("absent.key");
        assert!(matches!(
            load_trust_anchors(&missing),
            Err(DnsError::TrustAnchor { .. })
        ));

        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, "; only a comment with DS in it\n").expect("write anchor");
        assert!(matches!(
            load_trust_anchors(&empty),
            Err(DnsError::EmptyTrustAnchor { .. })
        ));
    }

    #[test]
    fn system_server_reads_first_nameserver() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "search example.test\nnameserver 192.0.2.53\nnameserver ::1\n",
        )
        .expect("write resolv.conf");
        assert_eq!(
            system_server(&path).expect("server"),
            "192.0.2.53:53".parse().unwrap()
        );

        std::fs::write(&path, "search example.test\n").expect("write resolv.conf");
        assert!(matches!(
            system_server(&path),
            Err(DnsError::NoServer { .. })
        ));
    }

    #[test]
    fn resolver_needs_runtime() {
        let anchors = TrustAnchors::from_u8(KSK_DS.as_bytes()).expect("anchor parses");
        let result =
            Resolver::with_anchors("127.0.0.1:53".parse().unwrap(), anchors, DEFAULT_TIMEOUT);
        assert!(matches!(result, Err(DnsError::NoRuntime { .. })));
    }
}
