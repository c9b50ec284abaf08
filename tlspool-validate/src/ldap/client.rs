//! One search on one directory server: the TCP connection, StartTLS where the server offers
//! it, the TLS check, and the search whose entries and referrals are decoded without trusting
//! their BER structure.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ldap3::asn1::StructureTag;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchOptions, StdStream};
use tokio::net::TcpStream;
use tracing::debug;

use super::{DirectoryError, DirectoryServer, DirectoryTlsCheck, tls};

/// Maximum number of entries a search returns before it fails as sizeLimitExceeded.
pub(crate) const MAX_ENTRIES: i32 = 16;

/// LDAP result code noSuchObject: the search base does not exist.
const NO_SUCH_OBJECT: u32 = 32;
/// LDAP result code referral: the whole search is to be sent elsewhere.
const REFERRAL: u32 = 10;

/// The protection of the connection to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// StartTLS on an `ldap://` connection, with plain LDAP when the server rejects StartTLS.
    StartTls,
    /// TLS from the first byte (`ldaps://`).
    Implicit,
}

/// A server to search and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) server: DirectoryServer,
    /// Validated addresses; empty means resolve the host with the system resolver.
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) transport: Transport,
    /// Whether the [`DirectoryTlsCheck`] must accept the server before the search.
    pub(crate) checked: bool,
}

/// The search request: base, scope, filter and the one attribute whose values are compared.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) base: String,
    pub(crate) scope: Scope,
    pub(crate) filter: String,
    pub(crate) attribute: &'static str,
}

/// What one search returned.
#[derive(Debug, Default)]
pub(crate) struct Response {
    /// Number of entries returned.
    pub(crate) entries: usize,
    /// Values of the attribute over all entries.
    pub(crate) values: Vec<Vec<u8>>,
    /// URIs of search result references and of a referral result.
    pub(crate) referrals: Vec<String>,
}

/// Connects to `endpoint`, runs the TLS check when required and runs `query`.
pub(crate) async fn search<C: DirectoryTlsCheck>(
    endpoint: &Endpoint,
    query: &Query,
    tls_check: &C,
    timeout: Duration,
) -> Result<Response, DirectoryError> {
    let server = endpoint.server.authority();
    let (mut ldap, end_certificate) = open(endpoint).await?;

    if endpoint.checked {
        tls_check
            .check_directory(&endpoint.server, end_certificate.as_deref())
            .await
            .map_err(|reason| DirectoryError::TlsCheck {
                server: server.clone(),
                reason,
            })?;
    }

    let seconds = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
    let options = SearchOptions::new()
        .sizelimit(MAX_ENTRIES)
        .timelimit(seconds);
    let result = ldap
        .with_search_options(options)
        .search(
            &query.base,
            query.scope,
            &query.filter,
            vec![query.attribute],
        )
        .await
        .map_err(|error| search_error(&server, query, &error.to_string()))?;
    let _ = ldap.unbind().await;

    let (entries, outcome) = (result.0, result.1);
    let mut response = Response::default();
    // ldap3 collects search result references into `refs` of the final result as well.
    match outcome.rc {
        0 | NO_SUCH_OBJECT | REFERRAL => response.referrals.extend(outcome.refs.iter().cloned()),
        _ => return Err(search_error(&server, query, &outcome.to_string())),
    }
    for entry in entries {
        if entry.is_intermediate() {
            continue;
        }
        let malformed = |what| DirectoryError::MalformedResponse {
            server: server.clone(),
            what,
        };
        if entry.is_ref() {
            let uris = referral_uris(entry.0).ok_or_else(|| malformed("search reference"))?;
            response.referrals.extend(uris);
        } else {
            let values =
                attribute_values(entry.0, query.attribute).ok_or_else(|| malformed("entry"))?;
            response.entries += 1;
            response.values.extend(values);
        }
    }
    Ok(response)
}

/// Opens the LDAP connection and returns it with the server's DER end certificate, if TLS is
/// in use.
async fn open(endpoint: &Endpoint) -> Result<(Ldap, Option<Vec<u8>>), DirectoryError> {
    let server = endpoint.server.authority();
    let config = tls::client_config().map_err(|reason| DirectoryError::Tls {
        server: server.clone(),
        reason,
    })?;
    let url = match endpoint.transport {
        Transport::StartTls => format!("ldap://{server}"),
        Transport::Implicit => format!("ldaps://{server}"),
    };

    // The caller bounds the whole exchange with its timeout, so ldap3 gets none of its own.
    let settings = LdapConnSettings::new()
        .set_config(config)
        .set_starttls(endpoint.transport == Transport::StartTls);
    let stream = connect_tcp(endpoint).await?;
    let ldap = match LdapConnAsync::with_settings(settings.set_std_stream(stream), &url).await {
        Ok((connection, ldap)) => drive(connection, ldap),
        Err(LdapError::LdapResult { result }) if endpoint.transport == Transport::StartTls => {
            debug!(server = %server, result = %result, "directory server rejected starttls");
            let settings = LdapConnSettings::new();
            let stream = connect_tcp(endpoint).await?;
            let (connection, ldap) =
                LdapConnAsync::with_settings(settings.set_std_stream(stream), &url)
                    .await
                    .map_err(|error| DirectoryError::Connect {
                        server: server.clone(),
                        reason: error.to_string(),
                    })?;
            drive(connection, ldap)
        }
        Err(error) => {
            return Err(DirectoryError::Tls {
                server,
                reason: error.to_string(),
            });
        }
    };
    finish_open(ldap, &server).await
}

async fn finish_open(
    mut ldap: Ldap,
    server: &str,
) -> Result<(Ldap, Option<Vec<u8>>), DirectoryError> {
    let end_certificate =
        ldap.get_peer_certificate()
            .await
            .map_err(|error| DirectoryError::Tls {
                server: server.to_owned(),
                reason: error.to_string(),
            })?;
    Ok((ldap, end_certificate))
}

/// Spawns the task that runs the connection and returns the handle that sends requests on it.
fn drive(connection: LdapConnAsync, ldap: Ldap) -> Ldap {
    tokio::spawn(async move {
        if let Err(error) = connection.drive().await {
            debug!(%error, "directory connection ended with an error");
        }
    });
    ldap
}

/// Connects to the first reachable address of the endpoint.
async fn connect_tcp(endpoint: &Endpoint) -> Result<StdStream, DirectoryError> {
    let server = &endpoint.server;
    let result = if endpoint.addresses.is_empty() {
        TcpStream::connect((server.host.as_str(), server.port)).await
    } else {
        let addresses: Vec<SocketAddr> = endpoint
            .addresses
            .iter()
            .map(|address| SocketAddr::new(*address, server.port))
            .collect();
        TcpStream::connect(addresses.as_slice()).await
    };
    let stream = result
        .and_then(TcpStream::into_std)
        .map_err(|error| DirectoryError::Connect {
            server: server.authority(),
            reason: error.to_string(),
        })?;
    Ok(StdStream::Tcp(stream))
}

fn search_error(server: &str, query: &Query, reason: &str) -> DirectoryError {
    DirectoryError::Search {
        server: server.to_owned(),
        base: query.base.clone(),
        reason: reason.to_owned(),
    }
}

/// Decodes a SearchResultEntry (RFC 4511 section 4.5.2) and returns the values of
/// `attribute`, compared case-insensitively with its options. Returns `None` when the BER
/// structure is not that of an entry.
fn attribute_values(entry: StructureTag, attribute: &str) -> Option<Vec<Vec<u8>>> {
    let mut parts = entry.match_id(4)?.expect_constructed()?.into_iter();
    parts.next()?.expect_primitive()?;
    let mut values = Vec::new();
    for partial in parts.next()?.expect_constructed()? {
        let mut partial = partial.expect_constructed()?.into_iter();
        let name = partial.next()?.expect_primitive()?;
        let attribute_values = partial.next()?.expect_constructed()?;
        if !name.eq_ignore_ascii_case(attribute.as_bytes()) {
            continue;
        }
        for value in attribute_values {
            values.push(value.expect_primitive()?);
        }
    }
    Some(values)
}

/// Decodes a SearchResultReference (RFC 4511 section 4.5.3) into its URIs.
fn referral_uris(reference: StructureTag) -> Option<Vec<String>> {
    reference
        .expect_constructed()?
        .into_iter()
        .map(|uri| String::from_utf8(uri.expect_primitive()?).ok())
        .collect()
}
