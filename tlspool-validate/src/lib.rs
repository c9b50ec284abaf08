//! Peer validation for the TLS Pool: trust anchors, validation expressions, LDAP, DANE and caching.
//!
//! It will own validation expressions, X.509 path validation against the trust database,
//! the LDAP global directory, DANE under DNSSEC and the memcached cache of online results.
