//! Command codes carried in `pio_cmd`.

/// Command code of a record (`PIOC_*_V2`).
///
/// `CommandCode::StartTls as u32` is the wire value and [`CommandCode::from_u32`] maps it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CommandCode {
    /// `PIOC_SUCCESS_V2`: the request succeeded and has no payload.
    Success = 0x0000_0000,
    /// `PIOC_ERROR_V2`: the request or callback failed, with a `pioc_error` payload.
    Error = 0x0000_0001,
    /// `PIOC_PING_V2`: protocol identity and facility exchange.
    Ping = 0x0000_0010,
    /// `PIOC_STARTTLS_V2`: start (or renegotiate) a TLS session.
    StartTls = 0x0000_0024,
    /// `PIOC_STARTTLS_LOCALID_V2`: callback asking the app to confirm a local identity.
    StartTlsLocalId = 0x0000_0028,
    /// `PIOC_PINENTRY_V2`: PIN entry registration and callback.
    PinEntry = 0x0000_0029,
    /// `PIOC_PLAINTEXT_CONNECT_V2`: callback asking the app for the plaintext descriptor.
    PlaintextConnect = 0x0000_002a,
    /// `PIOC_PRNG_V2`: RFC 5705 keying-material exporter.
    Prng = 0x0000_002b,
    /// `PIOC_INFO_V2`: query or check facts about a session's certificates and bindings.
    Info = 0x0000_002c,
    /// `PIOC_CONTROL_DETACH_V2`: detach a session from this control connection.
    ControlDetach = 0x0000_0100,
    /// `PIOC_CONTROL_REATTACH_V2`: attach a detached session to this control connection.
    ControlReattach = 0x0000_0101,
    /// `PIOC_LIDENTRY_REGISTER_V2`: register as the local identity selection service.
    LidEntryRegister = 0x0000_0200,
    /// `PIOC_LIDENTRY_CALLBACK_V2`: local identity selection callback and its response.
    LidEntryCallback = 0x0000_0201,
}

impl CommandCode {
    /// Bit that marks local, private command codes (`PIOC_LOCAL`). No such code is defined.
    pub const LOCAL_BIT: u32 = 0x8000_0000;

    /// Every defined command code, in wire order.
    pub const ALL: [Self; 13] = [
        Self::Success,
        Self::Error,
        Self::Ping,
        Self::StartTls,
        Self::StartTlsLocalId,
        Self::PinEntry,
        Self::PlaintextConnect,
        Self::Prng,
        Self::Info,
        Self::ControlDetach,
        Self::ControlReattach,
        Self::LidEntryRegister,
        Self::LidEntryCallback,
    ];

    /// Maps a wire value to its command code, or `None` for an unknown code.
    pub fn from_u32(cmd: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.code() == cmd)
    }

    /// Returns the wire value.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Returns the published C name, such as `PIOC_STARTTLS_V2`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "PIOC_SUCCESS_V2",
            Self::Error => "PIOC_ERROR_V2",
            Self::Ping => "PIOC_PING_V2",
            Self::StartTls => "PIOC_STARTTLS_V2",
            Self::StartTlsLocalId => "PIOC_STARTTLS_LOCALID_V2",
            Self::PinEntry => "PIOC_PINENTRY_V2",
            Self::PlaintextConnect => "PIOC_PLAINTEXT_CONNECT_V2",
            Self::Prng => "PIOC_PRNG_V2",
            Self::Info => "PIOC_INFO_V2",
            Self::ControlDetach => "PIOC_CONTROL_DETACH_V2",
            Self::ControlReattach => "PIOC_CONTROL_REATTACH_V2",
            Self::LidEntryRegister => "PIOC_LIDENTRY_REGISTER_V2",
            Self::LidEntryCallback => "PIOC_LIDENTRY_CALLBACK_V2",
        }
    }
}

impl From<CommandCode> for u32 {
    fn from(code: CommandCode) -> Self {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_codes_match_published_values() {
        let expected: [(CommandCode, u32); 13] = [
            (CommandCode::Success, 0x00),
            (CommandCode::Error, 0x01),
            (CommandCode::Ping, 0x10),
            (CommandCode::StartTls, 0x24),
            (CommandCode::StartTlsLocalId, 0x28),
            (CommandCode::PinEntry, 0x29),
            (CommandCode::PlaintextConnect, 0x2a),
            (CommandCode::Prng, 0x2b),
            (CommandCode::Info, 0x2c),
            (CommandCode::ControlDetach, 0x100),
            (CommandCode::ControlReattach, 0x101),
            (CommandCode::LidEntryRegister, 0x200),
            (CommandCode::LidEntryCallback, 0x201),
        ];
        for (code, value) in expected {
            assert_eq!(code as u32, value, "{}", code.name());
            assert_eq!(CommandCode::from_u32(value), Some(code));
        }
    }

    #[test]
    fn unknown_command_codes_map_to_none() {
        for value in [0x02, 0x11, 0x25, 0x202, CommandCode::LOCAL_BIT, u32::MAX] {
            assert_eq!(CommandCode::from_u32(value), None, "{value:#x}");
        }
    }
}
