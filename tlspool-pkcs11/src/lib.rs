//! PKCS#11 keys and PIN handling for the TLS Pool.
//!
//! It will own loading the module named by `pkcs11_path`, RFC 7512 `pkcs11:` URIs, token
//! sessions and the PIN entry seam.
