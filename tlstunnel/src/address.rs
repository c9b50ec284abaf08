//! Listen and forward addresses as written on the command line: `host:port`, `[ipv6]:port`,
//! IPv4-mapped IPv6 such as `::ffff:192.0.2.1:443`, and UNIX socket paths, which start with
//! `/`. A UNIX socket path may contain `%L` and `%R` (also written `%*L` and `%*R`), which
//! expand to the local and remote identity of the session, and `%%` for a literal `%`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::TunnelError;

/// The longest UNIX socket path in bytes, without the NUL terminator (`sun_path` is 108 bytes).
pub const MAX_UNIX_PATH_LEN: usize = 107;

/// A listen or forward address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or IP address with a TCP port.
    Inet {
        /// The host name or IP address, without brackets.
        host: String,
        /// The TCP port, 1 to 65535.
        port: u16,
    },
    /// A UNIX stream socket path, possibly containing `%L` and `%R`.
    Unix {
        /// The path as written, before expansion.
        template: String,
    },
}

/// One piece of a UNIX socket path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    LocalId,
    RemoteId,
}

impl Address {
    /// Parses an address as written after `-l` or `-r`.
    ///
    /// # Errors
    ///
    /// [`TunnelError::InvalidAddress`] naming what is wrong: a missing or invalid port, an
    /// IPv6 address without brackets, a malformed host name, an unknown `%` sequence in a
    /// path, or a path longer than [`MAX_UNIX_PATH_LEN`].
    pub fn parse(text: &str) -> Result<Self, TunnelError> {
        let invalid = |reason: &str| TunnelError::InvalidAddress {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };

        if text.starts_with('/') {
            pieces(text).map_err(|reason| invalid(&reason))?;
            if text.len() > MAX_UNIX_PATH_LEN && !text.contains('%') {
                return Err(invalid("a UNIX socket path has at most 107 bytes"));
            }
            return Ok(Self::Unix {
                template: text.to_owned(),
            });
        }

        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| invalid("expected [IPV6]:PORT"))?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| invalid("the part in brackets is not an IPv6 address"))?;
            (host, port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected HOST:PORT, [IPV6]:PORT or /PATH"))?;
            check_bare_host(host).map_err(&invalid)?;
            (host, port)
        };

        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(invalid("the port must be a number from 1 to 65535")),
            Ok(port) => port,
        };
        Ok(Self::Inet {
            host: host.to_owned(),
            port,
        })
    }

    /// Resolves an internet address to its socket addresses, in resolver order.
    ///
    /// # Errors
    ///
    /// [`TunnelError::Resolve`] when the lookup fails or gives no address.
    ///
    /// # Panics
    ///
    /// When called on a UNIX socket address, which has nothing to resolve.
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, TunnelError> {
        let Self::Inet { host, port } = self else {
            unreachable!("only internet addresses are resolved")
        };
        let resolve_error = |source| TunnelError::Resolve {
            address: self.to_string(),
            source,
        };

        // An IP address needs no lookup; this also keeps IPv4-mapped addresses as written.
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, *port)]);
        }
        let mut found: Vec<SocketAddr> = Vec::new();
        for address in tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(resolve_error)?
        {
            if !found.contains(&address) {
                found.push(address);
            }
        }
        if found.is_empty() {
            return Err(resolve_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            )));
        }
        Ok(found)
    }

    /// Returns the UNIX socket path with `%L` and `%R` replaced by `local_id` and
    /// `remote_id`, or `None` for an internet address.
    ///
    /// # Errors
    ///
    /// [`TunnelError::UnsafeExpansion`] when an identity that the path uses is empty,
    /// contains `/`, `..` or NUL, because the peer chooses its identity and must not choose
    /// another path. [`TunnelError::InvalidAddress`] when the expanded path is too long.
    pub fn unix_path(
        &self,
        local_id: &str,
        remote_id: &str,
    ) -> Result<Option<PathBuf>, TunnelError> {
        let Self::Unix { template } = self else {
            return Ok(None);
        };
        let pieces = pieces(template).map_err(|reason| TunnelError::InvalidAddress {
            address: template.clone(),
            reason,
        })?;

        let mut path = String::with_capacity(template.len());
        for piece in pieces {
            match piece {
                Piece::Text(text) => path.push_str(text),
                Piece::LocalId => path.push_str(check_expansion(template, "%L", local_id)?),
                Piece::RemoteId => path.push_str(check_expansion(template, "%R", remote_id)?),
            }
        }
        if path.len() > MAX_UNIX_PATH_LEN {
            return Err(TunnelError::InvalidAddress {
                address: path,
                reason: "after expansion the UNIX socket path is longer than 107 bytes".into(),
            });
        }
        Ok(Some(PathBuf::from(path)))
    }

    /// Returns whether the address is a UNIX socket path that uses `%L` or `%R`.
    pub fn uses_identities(&self) -> bool {
        match self {
            Self::Unix { template } => pieces(template)
                .map(|pieces| pieces.iter().any(|piece| !matches!(piece, Piece::Text(_))))
                .unwrap_or(false),
            Self::Inet { .. } => false,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Inet { host, port } => write!(f, "{host}:{port}"),
            Self::Unix { template } => f.write_str(template),
        }
    }
}

/// Checks the host of an address written without brackets: an IPv4 address, a host name, or
/// an IPv6 address in dotted IPv4-mapped or IPv4-compatible form, whose last colon can only
/// be the port separator.
fn check_bare_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is missing; write 0.0.0.0:PORT or [::]:PORT for any address");
    }
    if host.contains(':') {
        if host.contains('.') && host.parse::<Ipv6Addr>().is_ok() {
            return Ok(());
        }
        return Err("write an IPv6 address in brackets, as in [::1]:443");
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() <= 253 && name.split('.').all(valid_label) {
        return Ok(());
    }
    Err("the host is neither an IP address nor a valid host name")
}

/// Splits a UNIX socket path template into text and placeholders.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        if at > 0 {
            pieces.push(Piece::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        let after = after.strip_prefix('*').unwrap_or(after);
        let (piece, skip) = match after.chars().next() {
            Some('L') => (Piece::LocalId, 1),
            Some('R') => (Piece::RemoteId, 1),
            Some('%') if !rest[at + 1..].starts_with('*') => (Piece::Text("%"), 1),
            Some(other) => return Err(format!("unknown sequence %{other}; use %L, %R or %%")),
            None => return Err("the path ends in %; use %% for a literal %".to_owned()),
        };
        pieces.push(piece);
        rest = &after[skip..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Returns `value` when it is safe to insert into a path as a single file name.
fn check_expansion<'a>(
    template: &str,
    placeholder: &'static str,
    value: &'a str,
) -> Result<&'a str, TunnelError> {
    let reason = if value.is_empty() {
        "empty"
    } else if value.contains('/') {
        "a path with /"
    } else if value.contains("..") {
        "a name with .."
    } else if value.contains('\0') {
        "a name with NUL"
    } else {
        return Ok(value);
    };
    Err(TunnelError::UnsafeExpansion {
        template: template.to_owned(),
        placeholder,
        value: value.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(host: &str, port: u16) -> Address {
        Address::Inet {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn parses_host_port_forms() {
        assert_eq!(
            Address::parse("127.0.0.1:25").ok(),
            Some(inet("127.0.0.1", 25))
        );
        assert_eq!(Address::parse("[::1]:443").ok(), Some(inet("::1", 443)));
        assert_eq!(
            Address::parse("::ffff:192.0.2.1:8443").ok(),
            Some(inet("::ffff:192.0.2.1", 8443))
        );
        assert_eq!(
            Address::parse("[::ffff:192.0.2.1]:8443").ok(),
            Some(inet("::ffff:192.0.2.1", 8443))
        );
        assert_eq!(
            Address::parse("mail.example.com:587").ok(),
            Some(inet("mail.example.com", 587))
        );
        assert_eq!(
            Address::parse("/run/smtp.sock").ok(),
            Some(Address::Unix {
                template: "/run/smtp.sock".into()
            })
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for text in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:http",
            "::1:443",
            "[::1]443",
            "[127.0.0.1]:443",
            ":443",
            "bad_host:80",
            "-a.example:80",
            "relative/path",
            "/run/%X.sock",
            "/run/sock%",
        ] {
            assert!(Address::parse(text).is_err(), "{text} was accepted");
        }
        let long = format!("/{}", "a".repeat(MAX_UNIX_PATH_LEN));
        assert!(Address::parse(&long).is_err());
    }

    #[test]
    fn displays_ipv6_in_brackets() {
        assert_eq!(inet("::1", 443).to_string(), "[::1]:443");
        assert_eq!(inet("localhost", 80).to_string(), "localhost:80");
    }

    #[test]
    fn expands_identities_in_paths() {
        let address = Address::parse("/srv/%L/%*R.sock").unwrap_or_else(|e| panic!("{e}"));
        let path = address.unix_path("mail.example.com", "alice@example.com");
        assert_eq!(
            path.ok().flatten(),
            Some(PathBuf::from(
                "/srv/mail.example.com/alice@example.com.sock"
            ))
        );
        let literal = Address::parse("/srv/100%%.sock").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            literal.unix_path("", "").ok().flatten(),
            Some(PathBuf::from("/srv/100%.sock"))
        );
        assert!(!literal.uses_identities());
        assert!(address.uses_identities());
    }

    #[test]
    fn rejects_identities_that_pick_a_path() {
        let address = Address::parse("/srv/%R.sock").unwrap_or_else(|e| panic!("{e}"));
        for remote in ["", "../etc/x", "a/b", "..", "a..b", "a\0b"] {
            let result = address.unix_path("local", remote);
            assert!(
                matches!(result, Err(TunnelError::UnsafeExpansion { .. })),
                "{remote:?} gave {result:?}"
            );
        }
        // The local identity is not used by this path, so its value does not matter.
        assert!(address.unix_path("", "bob").is_ok());
    }

    #[test]
    fn internet_address_has_no_path() {
        assert_eq!(inet("::1", 443).unix_path("", "").ok(), Some(None));
    }
}
