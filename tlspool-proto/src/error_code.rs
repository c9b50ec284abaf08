//! TLS Pool error codes (the com_err table `tlsP`) and their standard messages.
//!
//! An ERROR record's `tlserrno` is either a POSIX `errno` value or one of these codes, which
//! are the table base `-1167372288` (`0xBA6B5000` as an unsigned 32-bit value) plus the
//! index. New codes may only be appended.

/// A TLS Pool error code (`E_TLSPOOL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// `E_TLSPOOL_OUT_OF_MEMORY`: "TLS Pool ran out of memory".
    OutOfMemory = 0,
    /// `E_TLSPOOL_ENTANGLED_THREADS`: "TLS Pool threads got entangled".
    EntangledThreads = 1,
    /// `E_TLSPOOL_CLIENT_DISCONNECT`: "TLS Pool client disconnected".
    ClientDisconnect = 2,
    /// `E_TLSPOOL_CLIENT_REFUSES_CALLBACK`: "TLS Pool client refused the callback".
    ClientRefusesCallback = 3,
    /// `E_TLSPOOL_COMMAND_NEEDED`: "TLS Pool needs a command".
    CommandNeeded = 4,
    /// `E_TLSPOOL_SUPERFLUOUS_SOCKET`: "TLS Pool received a socket it did not expect".
    SuperfluousSocket = 5,
    /// `E_TLSPOOL_CIPHER_SOCKET_NEEDED`: "TLS Pool needs the ciphertext socket".
    CipherSocketNeeded = 6,
    /// `E_TLSPOOL_PLAIN_SOCKET_NEEDED`: "TLS Pool needs the plaintext socket".
    PlainSocketNeeded = 7,
    /// `E_TLSPOOL_COMMAND_UNKNOWN`: "TLS Pool does not know this command".
    CommandUnknown = 8,
    /// `E_TLSPOOL_COMMAND_NOTIMPL`: "TLS Pool does not implement this command".
    CommandNotImpl = 9,
    /// `E_TLSPOOL_COMMAND_BAD_CALLBACK_RESPONSE`: "TLS Pool received an invalid callback response".
    CommandBadCallbackResponse = 10,
    /// `E_TLSPOOL_FACILITY_STARTTLS`: "TLS Pool does not offer the STARTTLS facility".
    FacilityStartTls = 11,
    /// `E_TLSPOOL_FACILITY_STARTGSS`: "TLS Pool does not offer the STARTGSS facility".
    FacilityStartGss = 12,
    /// `E_TLSPOOL_FACILITY_STARTSSH`: "TLS Pool does not offer the STARTSSH facility".
    FacilityStartSsh = 13,
    /// `E_TLSPOOL_CTLKEY_REGISTRATION_FAILED`: "TLS Pool failed to register the control key".
    CtlkeyRegistrationFailed = 14,
    /// `E_TLSPOOL_CTLKEY_NOT_FOUND`: "TLS Pool cannot find the control key".
    CtlkeyNotFound = 15,
    /// `E_TLSPOOL_CTLKEY_NOT_YOURS`: "TLS Pool control key belongs to another connection".
    CtlkeyNotYours = 16,
    /// `E_TLSPOOL_CTLKEY_DETACHED`: "TLS Pool control key is already detached".
    CtlkeyDetached = 17,
    /// `E_TLSPOOL_CTLKEY_ATTACHED`: "TLS Pool control key is already attached".
    CtlkeyAttached = 18,
    /// `E_TLSPOOL_RENOGIATE_NOT_FOUND` (the published name keeps the `RENOGIATE` spelling): "TLS Pool cannot find the session to renegotiate".
    RenegotiateNotFound = 19,
    /// `E_TLSPOOL_RENOGIATE_NOT_INTERRUPTABLE` (the published name keeps the `RENOGIATE` spelling): "TLS Pool cannot interrupt the session to renegotiate".
    RenegotiateNotInterruptable = 20,
    /// `E_TLSPOOL_RENOGIATE_WOULD_BE_INSECURE` (the published name keeps the `RENOGIATE` spelling): "TLS Pool refuses renegotiation because the peer lacks secure renegotiation".
    RenegotiateWouldBeInsecure = 21,
    /// `E_TLSPOOL_CONNECTION_HANDLER_SETUP`: "TLS Pool failed to set up the connection handler".
    ConnectionHandlerSetup = 22,
    /// `E_TLSPOOL_CONNECTION_DRIVER_SETUP`: "TLS Pool failed to set up the connection driver".
    ConnectionDriverSetup = 23,
    /// `E_TLSPOOL_STIRRED_NOT_SHAKEN`: "TLS Pool and peer failed during the TLS handshake".
    StirredNotShaken = 24,
    /// `E_TLSPOOL_PRNG_UNAVAILABLE`: "TLS Pool cannot export keying material for this request".
    PrngUnavailable = 25,
    /// `E_TLSPOOL_LIDENTRY_NOT_VACANT`: "TLS Pool already has a local identity selection service".
    LidEntryNotVacant = 26,
    /// `E_TLSPOOL_PINENTRY_NOT_VACANT`: "TLS Pool already has a PIN entry service".
    PinEntryNotVacant = 27,
    /// `E_TLSPOOL_INFOKIND_UNKNOWN`: "TLS Pool does not know this kind of information".
    InfoKindUnknown = 28,
    /// `E_TLSPOOL_INFO_NOT_FOUND`: "TLS Pool cannot find the requested information".
    InfoNotFound = 29,
}

impl ErrorCode {
    /// Value of the first code (`E_TLSPOOL_OUT_OF_MEMORY`); the others follow in index order.
    pub const BASE: i32 = -1_167_372_288;

    /// Every code, in index order.
    pub const ALL: [Self; 30] = [
        Self::OutOfMemory,
        Self::EntangledThreads,
        Self::ClientDisconnect,
        Self::ClientRefusesCallback,
        Self::CommandNeeded,
        Self::SuperfluousSocket,
        Self::CipherSocketNeeded,
        Self::PlainSocketNeeded,
        Self::CommandUnknown,
        Self::CommandNotImpl,
        Self::CommandBadCallbackResponse,
        Self::FacilityStartTls,
        Self::FacilityStartGss,
        Self::FacilityStartSsh,
        Self::CtlkeyRegistrationFailed,
        Self::CtlkeyNotFound,
        Self::CtlkeyNotYours,
        Self::CtlkeyDetached,
        Self::CtlkeyAttached,
        Self::RenegotiateNotFound,
        Self::RenegotiateNotInterruptable,
        Self::RenegotiateWouldBeInsecure,
        Self::ConnectionHandlerSetup,
        Self::ConnectionDriverSetup,
        Self::StirredNotShaken,
        Self::PrngUnavailable,
        Self::LidEntryNotVacant,
        Self::PinEntryNotVacant,
        Self::InfoKindUnknown,
        Self::InfoNotFound,
    ];

    /// Returns the wire value (`BASE` plus the index).
    pub fn code(self) -> i32 {
        Self::BASE + i32::from(self as u8)
    }

    /// Maps a `tlserrno` value to its code, or `None` for an errno value or an unknown code.
    pub fn from_i32(code: i32) -> Option<Self> {
        let index = usize::try_from(code.checked_sub(Self::BASE)?).ok()?;
        Self::ALL.get(index).copied()
    }

    /// Returns the published C name, such as `E_TLSPOOL_CTLKEY_NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OutOfMemory => "E_TLSPOOL_OUT_OF_MEMORY",
            Self::EntangledThreads => "E_TLSPOOL_ENTANGLED_THREADS",
            Self::ClientDisconnect => "E_TLSPOOL_CLIENT_DISCONNECT",
            Self::ClientRefusesCallback => "E_TLSPOOL_CLIENT_REFUSES_CALLBACK",
            Self::CommandNeeded => "E_TLSPOOL_COMMAND_NEEDED",
            Self::SuperfluousSocket => "E_TLSPOOL_SUPERFLUOUS_SOCKET",
            Self::CipherSocketNeeded => "E_TLSPOOL_CIPHER_SOCKET_NEEDED",
            Self::PlainSocketNeeded => "E_TLSPOOL_PLAIN_SOCKET_NEEDED",
            Self::CommandUnknown => "E_TLSPOOL_COMMAND_UNKNOWN",
            Self::CommandNotImpl => "E_TLSPOOL_COMMAND_NOTIMPL",
            Self::CommandBadCallbackResponse => "E_TLSPOOL_COMMAND_BAD_CALLBACK_RESPONSE",
            Self::FacilityStartTls => "E_TLSPOOL_FACILITY_STARTTLS",
            Self::FacilityStartGss => "E_TLSPOOL_FACILITY_STARTGSS",
            Self::FacilityStartSsh => "E_TLSPOOL_FACILITY_STARTSSH",
            Self::CtlkeyRegistrationFailed => "E_TLSPOOL_CTLKEY_REGISTRATION_FAILED",
            Self::CtlkeyNotFound => "E_TLSPOOL_CTLKEY_NOT_FOUND",
            Self::CtlkeyNotYours => "E_TLSPOOL_CTLKEY_NOT_YOURS",
            Self::CtlkeyDetached => "E_TLSPOOL_CTLKEY_DETACHED",
            Self::CtlkeyAttached => "E_TLSPOOL_CTLKEY_ATTACHED",
            Self::RenegotiateNotFound => "E_TLSPOOL_RENOGIATE_NOT_FOUND",
            Self::RenegotiateNotInterruptable => "E_TLSPOOL_RENOGIATE_NOT_INTERRUPTABLE",
            Self::RenegotiateWouldBeInsecure => "E_TLSPOOL_RENOGIATE_WOULD_BE_INSECURE",
            Self::ConnectionHandlerSetup => "E_TLSPOOL_CONNECTION_HANDLER_SETUP",
            Self::ConnectionDriverSetup => "E_TLSPOOL_CONNECTION_DRIVER_SETUP",
            Self::StirredNotShaken => "E_TLSPOOL_STIRRED_NOT_SHAKEN",
            Self::PrngUnavailable => "E_TLSPOOL_PRNG_UNAVAILABLE",
            Self::LidEntryNotVacant => "E_TLSPOOL_LIDENTRY_NOT_VACANT",
            Self::PinEntryNotVacant => "E_TLSPOOL_PINENTRY_NOT_VACANT",
            Self::InfoKindUnknown => "E_TLSPOOL_INFOKIND_UNKNOWN",
            Self::InfoNotFound => "E_TLSPOOL_INFO_NOT_FOUND",
        }
    }

    /// Returns the standard message, which the daemon sends in an ERROR record.
    pub fn message(self) -> &'static str {
        match self {
            Self::OutOfMemory => "TLS Pool ran out of memory",
            Self::EntangledThreads => "TLS Pool threads got entangled",
            Self::ClientDisconnect => "TLS Pool client disconnected",
            Self::ClientRefusesCallback => "TLS Pool client refused the callback",
            Self::CommandNeeded => "TLS Pool needs a command",
            Self::SuperfluousSocket => "TLS Pool received a socket it did not expect",
            Self::CipherSocketNeeded => "TLS Pool needs the ciphertext socket",
            Self::PlainSocketNeeded => "TLS Pool needs the plaintext socket",
            Self::CommandUnknown => "TLS Pool does not know this command",
            Self::CommandNotImpl => "TLS Pool does not implement this command",
            Self::CommandBadCallbackResponse => "TLS Pool received an invalid callback response",
            Self::FacilityStartTls => "TLS Pool does not offer the STARTTLS facility",
            Self::FacilityStartGss => "TLS Pool does not offer the STARTGSS facility",
            Self::FacilityStartSsh => "TLS Pool does not offer the STARTSSH facility",
            Self::CtlkeyRegistrationFailed => "TLS Pool failed to register the control key",
            Self::CtlkeyNotFound => "TLS Pool cannot find the control key",
            Self::CtlkeyNotYours => "TLS Pool control key belongs to another connection",
            Self::CtlkeyDetached => "TLS Pool control key is already detached",
            Self::CtlkeyAttached => "TLS Pool control key is already attached",
            Self::RenegotiateNotFound => "TLS Pool cannot find the session to renegotiate",
            Self::RenegotiateNotInterruptable => {
                "TLS Pool cannot interrupt the session to renegotiate"
            }
            Self::RenegotiateWouldBeInsecure => {
                "TLS Pool refuses renegotiation because the peer lacks secure renegotiation"
            }
            Self::ConnectionHandlerSetup => "TLS Pool failed to set up the connection handler",
            Self::ConnectionDriverSetup => "TLS Pool failed to set up the connection driver",
            Self::StirredNotShaken => "TLS Pool and peer failed during the TLS handshake",
            Self::PrngUnavailable => "TLS Pool cannot export keying material for this request",
            Self::LidEntryNotVacant => "TLS Pool already has a local identity selection service",
            Self::PinEntryNotVacant => "TLS Pool already has a PIN entry service",
            Self::InfoKindUnknown => "TLS Pool does not know this kind of information",
            Self::InfoNotFound => "TLS Pool cannot find the requested information",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl From<ErrorCode> for i32 {
    fn from(code: ErrorCode) -> Self {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_follow_table_base() {
        assert_eq!(ErrorCode::OutOfMemory.code(), -1_167_372_288);
        assert_eq!(ErrorCode::OutOfMemory.code() as u32, 0xBA6B_5000);
        assert_eq!(ErrorCode::CommandUnknown.code(), -1_167_372_280);
        assert_eq!(ErrorCode::RenegotiateNotFound.code() as u32, 0xBA6B_5013);
        assert_eq!(ErrorCode::InfoNotFound.code(), -1_167_372_259);
        assert_eq!(ErrorCode::InfoNotFound.code() as u32, 0xBA6B_501D);
    }

    #[test]
    fn error_codes_round_trip() {
        for (index, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, index, "{}", code.name());
            assert_eq!(ErrorCode::from_i32(code.code()), Some(code));
        }
    }

    #[test]
    fn errno_values_are_not_error_codes() {
        for value in [
            0,
            1,
            13,
            255,
            ErrorCode::BASE - 1,
            ErrorCode::BASE + 30,
            i32::MIN,
        ] {
            assert_eq!(ErrorCode::from_i32(value), None, "{value}");
        }
    }

    #[test]
    fn error_messages_start_with_tls_pool() {
        for code in ErrorCode::ALL {
            assert!(code.message().starts_with("TLS Pool"), "{}", code.name());
            assert!(code.message().len() < 128, "{}", code.name());
        }
        assert_eq!(
            ErrorCode::CtlkeyNotFound.message(),
            "TLS Pool cannot find the control key"
        );
    }
}
