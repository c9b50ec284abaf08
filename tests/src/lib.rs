//! Integration tests that start the built TLS Pool binaries against real servers on loopback.
