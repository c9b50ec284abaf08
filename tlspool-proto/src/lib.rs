//! Wire format of the TLS Pool version 2 protocol: the 388-byte command record, its framing and descriptor passing.
