//! Client library for the TLS Pool and the control tool `tlspoolctl`.
