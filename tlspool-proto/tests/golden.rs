//! Golden byte layouts of every record kind, written from the packed C structs of the TLS
//! Pool version 2 protocol with absolute offsets as literals, plus round trips and rejection
//! of each malformed field.

use tlspool_proto::{
    CommandCode, Control, ErrorCode, ErrorPayload, Facilities, FixedString, Header, Info, InfoKind,
    LidEntry, LidEntryFlags, Payload, PinEntry, Ping, Prng, ProtoError, RECORD_LEN, Record,
    StartTls, StartTlsFlags,
};

type Bytes = [u8; RECORD_LEN];

fn put(bytes: &mut Bytes, offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn header(reqid: u16, cbid: u16, cmd: u32) -> Bytes {
    let mut bytes = [0u8; RECORD_LEN];
    put(&mut bytes, 0, &reqid.to_ne_bytes());
    put(&mut bytes, 2, &cbid.to_ne_bytes());
    put(&mut bytes, 4, &cmd.to_ne_bytes());
    bytes
}

fn text<const N: usize>(value: &str) -> FixedString<N> {
    FixedString::new(value).unwrap()
}

fn sample_starttls() -> StartTls {
    StartTls {
        flags: StartTlsFlags::LOCALROLE_CLIENT
            | StartTlsFlags::REMOTEROLE_SERVER
            | StartTlsFlags::from_bits_retain(0x0100_0000),
        local: 0x0102_0304,
        ipproto: 6,
        streamid: 0xBEEF,
        localid: text("testcli@tlspool.arpa2.lab"),
        remoteid: text("testsrv@tlspool.arpa2.lab"),
        ctlkey: *b"0123456789abcdef",
        service: text("generic"),
        timeout: 0xFFFF_FFFF,
    }
}

fn starttls_bytes(cmd: u32) -> Bytes {
    let mut bytes = header(0x1234, 0, cmd);
    put(&mut bytes, 8, &0x0100_0009u32.to_ne_bytes());
    put(&mut bytes, 12, &0x0102_0304u32.to_ne_bytes());
    bytes[16] = 6;
    put(&mut bytes, 18, &0xBEEFu16.to_ne_bytes());
    put(&mut bytes, 20, b"testcli@tlspool.arpa2.lab");
    put(&mut bytes, 148, b"testsrv@tlspool.arpa2.lab");
    put(&mut bytes, 276, b"0123456789abcdef");
    put(&mut bytes, 292, b"generic");
    put(&mut bytes, 308, &0xFFFF_FFFFu32.to_ne_bytes());
    bytes
}

fn sample_pinentry() -> PinEntry {
    PinEntry {
        flags: 0,
        attempt: 2,
        timeout_us: 60_000_000,
        pin: text("1234"),
        prompt: text("Enter PIN: "),
        token_manuf: text("SoftHSM project"),
        token_model: text("SoftHSM v2"),
        token_serial: text("0a1b2c3d4e5f6071"),
        token_label: text("tlspool"),
    }
}

fn pinentry_bytes() -> Bytes {
    let mut bytes = header(9, 17, 0x29);
    put(&mut bytes, 12, &2u32.to_ne_bytes());
    put(&mut bytes, 16, &60_000_000u32.to_ne_bytes());
    put(&mut bytes, 20, b"1234");
    put(&mut bytes, 148, b"Enter PIN: ");
    put(&mut bytes, 276, b"SoftHSM project");
    put(&mut bytes, 312, b"SoftHSM v2");
    put(&mut bytes, 332, b"0a1b2c3d4e5f6071");
    put(&mut bytes, 352, b"tlspool");
    bytes
}

fn sample_lidentry() -> LidEntry {
    LidEntry {
        flags: LidEntryFlags::DBENTRY | LidEntryFlags::SKIP_USER,
        maxlevels: 3,
        timeout: 0x6000_0001,
        localid: text("alice@example.com"),
        remoteid: text("bob@example.org"),
    }
}

fn lidentry_bytes(cmd: u32) -> Bytes {
    let mut bytes = header(5, 1024, cmd);
    put(&mut bytes, 8, &0x1081u32.to_ne_bytes());
    put(&mut bytes, 12, &3u16.to_ne_bytes());
    put(&mut bytes, 14, &0x6000_0001u32.to_ne_bytes());
    put(&mut bytes, 18, b"alice@example.com");
    put(&mut bytes, 146, b"bob@example.org");
    bytes
}

fn assert_golden(record: &Record, expected: &Bytes) {
    let encoded = record.encode();
    for (offset, (got, want)) in encoded.iter().zip(expected.iter()).enumerate() {
        assert_eq!(
            got,
            want,
            "byte at offset {offset} of {:?}",
            record.payload.command()
        );
    }
    assert_eq!(Record::decode(expected).unwrap(), *record);
}

#[test]
fn header_layout() {
    let mut bytes = [0xA5u8; RECORD_LEN];
    put(&mut bytes, 0, &0x0102u16.to_ne_bytes());
    put(&mut bytes, 2, &0x0304u16.to_ne_bytes());
    put(&mut bytes, 4, &0x0506_0708u32.to_ne_bytes());
    let header = Header::decode(&bytes);
    assert_eq!(header.reqid, 0x0102);
    assert_eq!(header.cbid, 0x0304);
    assert_eq!(header.cmd, 0x0506_0708);
}

#[test]
fn success_layout() {
    assert_golden(&Record::success(0x4242), &header(0x4242, 0, 0));
}

#[test]
fn success_ignores_payload_leftovers() {
    let mut bytes = header(1, 0, 0);
    bytes[8..].fill(0xEE);
    assert_eq!(Record::decode(&bytes).unwrap(), Record::success(1));
}

#[test]
fn error_layout() {
    let record = Record::error_code(77, ErrorCode::CtlkeyNotFound);
    let mut bytes = header(77, 0, 1);
    put(&mut bytes, 8, &(-1_167_372_273i32).to_ne_bytes());
    put(&mut bytes, 12, b"TLS Pool cannot find the control key");
    assert_golden(&record, &bytes);
}

#[test]
fn error_message_of_128_bytes_without_nul() {
    let mut bytes = header(3, 0, 1);
    put(&mut bytes, 8, &13i32.to_ne_bytes());
    bytes[12..140].fill(b'x');
    bytes[140..].fill(b'y');
    let record = Record::decode(&bytes).unwrap();
    let Payload::Error(error) = &record.payload else {
        panic!("expected ERROR, decoded {record:?}");
    };
    assert_eq!(error.tlserrno, 13);
    assert_eq!(error.message, "x".repeat(128));
    assert_eq!(record.encode()[12..140], bytes[12..140]);
    assert_eq!(record.encode()[140..], [0u8; 248]);
}

#[test]
fn error_message_invalid_utf8_replaced() {
    let mut bytes = header(3, 0, 1);
    put(&mut bytes, 12, b"bad \xff\xfe byte");
    let Payload::Error(error) = Record::decode(&bytes).unwrap().payload else {
        panic!("expected ERROR");
    };
    assert_eq!(error.message, "bad ?? byte");
}

#[test]
fn error_constructor_truncates_on_char_boundary() {
    let message = format!("{}é", "a".repeat(126));
    let record = Record::error(1, 5, &message);
    let Payload::Error(error) = &record.payload else {
        panic!("expected ERROR");
    };
    assert_eq!(error.message, "a".repeat(126));
    assert_eq!(record.encode()[12 + 126], 0);
    assert_eq!(error.error_code(), None);
}

#[test]
fn error_code_recognised_in_payload() {
    let error = ErrorPayload::from_code(ErrorCode::CommandUnknown);
    assert_eq!(error.tlserrno, -1_167_372_280);
    assert_eq!(error.error_code(), Some(ErrorCode::CommandUnknown));
}

#[test]
fn ping_layout() {
    let record = Record::new(
        0xFFFF,
        Payload::Ping(Ping {
            producer: text("20151111api@tlspool.arpa2.net"),
            facilities: Facilities::from_bits_retain(0xFFFF_FFFF),
        }),
    );
    let mut bytes = header(0xFFFF, 0, 0x10);
    put(&mut bytes, 8, b"20151111api@tlspool.arpa2.net");
    put(&mut bytes, 144, &0xFFFF_FFFFu32.to_ne_bytes());
    assert_golden(&record, &bytes);
}

#[test]
fn starttls_layouts() {
    let cases = [
        (Payload::StartTls(sample_starttls()), 0x24),
        (Payload::StartTlsLocalId(sample_starttls()), 0x28),
        (Payload::PlaintextConnect(sample_starttls()), 0x2a),
    ];
    for (payload, cmd) in cases {
        let record = Record::new(0x1234, payload);
        assert_golden(&record, &starttls_bytes(cmd));
    }
}

#[test]
fn starttls_ignores_padding_and_tail() {
    let mut bytes = starttls_bytes(0x24);
    bytes[17] = 0xFF;
    bytes[312..].fill(0xFF);
    bytes[20 + 26..148].fill(0xFF);
    let record = Record::decode(&bytes).unwrap();
    assert_eq!(record.payload, Payload::StartTls(sample_starttls()));
}

#[test]
fn pinentry_layout() {
    let record = Record {
        reqid: 9,
        cbid: 17,
        payload: Payload::PinEntry(sample_pinentry()),
    };
    assert_golden(&record, &pinentry_bytes());
}

#[test]
fn pinentry_debug_hides_pin() {
    let output = format!("{:?}", sample_pinentry());
    assert!(!output.contains("1234"), "{output}");
    assert!(output.contains("SoftHSM v2"), "{output}");
}

#[test]
fn lidentry_layouts() {
    let cases = [
        (Payload::LidEntryRegister(sample_lidentry()), 0x200),
        (Payload::LidEntryCallback(sample_lidentry()), 0x201),
    ];
    for (payload, cmd) in cases {
        let record = Record {
            reqid: 5,
            cbid: 1024,
            payload,
        };
        assert_golden(&record, &lidentry_bytes(cmd));
    }
}

#[test]
fn control_layouts() {
    let control = Control {
        flags: 0x11,
        ctlkey: [0xC0; 16],
        name: text("unused"),
    };
    for (payload, cmd) in [
        (Payload::ControlDetach(control.clone()), 0x100u32),
        (Payload::ControlReattach(control.clone()), 0x101),
    ] {
        let mut bytes = header(2, 0, cmd);
        put(&mut bytes, 8, &0x11u32.to_ne_bytes());
        put(&mut bytes, 12, &[0xC0; 16]);
        put(&mut bytes, 28, b"unused");
        assert_golden(&Record::new(2, payload), &bytes);
    }
}

#[test]
fn prng_layout() {
    let ctlkey = [7u8; 16];
    let prng = Prng::request(&ctlkey, b"EXPERIMENTAL-tlspool-test", Some(b"ctx"), 16).unwrap();
    let mut bytes = header(11, 0, 0x2b);
    put(&mut bytes, 8, &25i16.to_ne_bytes());
    put(&mut bytes, 10, &3i16.to_ne_bytes());
    put(&mut bytes, 12, &16i16.to_ne_bytes());
    put(&mut bytes, 14, &[7u8; 16]);
    put(&mut bytes, 30, b"EXPERIMENTAL-tlspool-test");
    put(&mut bytes, 55, b"ctx");
    assert_golden(&Record::new(11, Payload::Prng(prng.clone())), &bytes);

    assert_eq!(prng.ctlkey(), ctlkey);
    assert_eq!(prng.label().unwrap(), b"EXPERIMENTAL-tlspool-test");
    assert_eq!(prng.context().unwrap(), Some(&b"ctx"[..]));
}

#[test]
fn prng_without_context() {
    let prng = Prng::request(&[1; 16], b"EXPERIMENTAL-x", None, 32).unwrap();
    assert_eq!(prng.in2_len, -1);
    assert_eq!(prng.context().unwrap(), None);
    let empty = Prng::request(&[1; 16], b"EXPERIMENTAL-x", Some(b""), 32).unwrap();
    assert_eq!(empty.in2_len, 0);
    assert_eq!(empty.context().unwrap(), Some(&b""[..]));
}

#[test]
fn prng_rejects_bad_lengths() {
    let too_long = vec![b'a'; 335];
    let error = Prng::request(&[0; 16], &too_long, None, 16).unwrap_err();
    assert_eq!(error.field(), Some("in1_len"));
    let error = Prng::request(&[0; 16], b"", None, 16).unwrap_err();
    assert_eq!(error.field(), Some("in1_len"));
    let error = Prng::request(&[0; 16], &[b'a'; 300], Some(&[0; 35]), 16).unwrap_err();
    assert_eq!(error.field(), Some("in2_len"));
    let error = Prng::request(&[0; 16], b"label", None, 351).unwrap_err();
    assert_eq!(error.field(), Some("prng_len"));

    let mut prng = Prng::request(&[0; 16], b"label", None, 16).unwrap();
    prng.prng_len = -5;
    assert!(
        matches!(
            prng.output(),
            Err(ProtoError::LengthOutOfRange {
                field: "prng_len",
                value: -5,
                ..
            })
        ),
        "{:?}",
        prng.output()
    );
    prng.in1_len = 0;
    assert_eq!(prng.label().unwrap_err().field(), Some("in1_len"));
    prng.in1_len = 300;
    prng.in2_len = 50;
    assert_eq!(prng.context().unwrap_err().field(), Some("in2_len"));
}

#[test]
fn info_layouts() {
    let query = Info::query([9; 16], InfoKind::CHANBIND_TLS_UNIQUE);
    let mut bytes = header(4, 0, 0x2c);
    put(&mut bytes, 8, &[9; 16]);
    put(&mut bytes, 24, &0x5929_0000u32.to_ne_bytes());
    put(&mut bytes, 28, &0xFFFFu16.to_ne_bytes());
    assert_golden(&Record::new(4, Payload::Info(query.clone())), &bytes);
    assert_eq!(query.value().unwrap(), None);

    let san = b"\x81\x19testsrv@tlspool.arpa2.lab";
    let check = Info::with_value([9; 16], InfoKind::PEERCERT_SUBJECTALTNAME, san).unwrap();
    let mut bytes = header(4, 0, 0x2c);
    put(&mut bytes, 8, &[9; 16]);
    put(&mut bytes, 24, &0x5280_0002u32.to_ne_bytes());
    put(&mut bytes, 28, &27u16.to_ne_bytes());
    put(&mut bytes, 30, san);
    assert_golden(&Record::new(4, Payload::Info(check.clone())), &bytes);
    assert_eq!(check.value().unwrap(), Some(&san[..]));
}

#[test]
fn info_value_rejects_oversized_len() {
    let mut bytes = header(4, 0, 0x2c);
    put(&mut bytes, 28, &335u16.to_ne_bytes());
    let Payload::Info(info) = Record::decode(&bytes).unwrap().payload else {
        panic!("expected INFO");
    };
    assert_eq!(info.len, 335);
    assert!(
        matches!(
            info.value(),
            Err(ProtoError::LengthOutOfRange {
                field: "len",
                value: 335,
                ..
            })
        ),
        "{:?}",
        info.value()
    );
    assert!(Info::with_value([0; 16], InfoKind(0), &[0; 335]).is_err());
}

#[test]
fn unknown_command_decodes_as_unknown() {
    let mut bytes = header(8, 0, 0x8000_0001);
    bytes[8..].fill(0xFF);
    let record = Record::decode(&bytes).unwrap();
    assert_eq!(record.payload, Payload::Unknown { cmd: 0x8000_0001 });
    assert_eq!(record.payload.command(), None);
    assert_eq!(record.encode(), header(8, 0, 0x8000_0001));
}

#[test]
fn decode_slice_rejects_short_record() {
    let bytes = [0u8; 387];
    assert!(matches!(
        Record::decode_slice(&bytes),
        Err(ProtoError::ShortRecord { len: 387 })
    ));
    assert_eq!(
        Record::decode_slice(&[0u8; 388]).unwrap(),
        Record::success(0)
    );
}

/// Every string field of every payload, as (command code, absolute offset, size, name).
const STRING_FIELDS: [(u32, usize, usize, &str); 17] = [
    (0x10, 8, 136, "YYYYMMDD_producer"),
    (0x24, 20, 128, "localid"),
    (0x24, 148, 128, "remoteid"),
    (0x24, 292, 16, "service"),
    (0x28, 292, 16, "service"),
    (0x2a, 20, 128, "localid"),
    (0x29, 20, 128, "pin"),
    (0x29, 148, 128, "prompt"),
    (0x29, 276, 36, "token_manuf"),
    (0x29, 312, 20, "token_model"),
    (0x29, 332, 20, "token_serial"),
    (0x29, 352, 36, "token_label"),
    (0x100, 28, 128, "name"),
    (0x101, 28, 128, "name"),
    (0x200, 18, 128, "localid"),
    (0x201, 146, 128, "remoteid"),
    (0x200, 146, 128, "remoteid"),
];

#[test]
fn unterminated_string_fields_rejected() {
    for (cmd, offset, size, name) in STRING_FIELDS {
        let mut bytes = header(1, 0, cmd);
        bytes[offset..offset + size].fill(b'a');
        let error = Record::decode(&bytes).unwrap_err();
        assert!(
            matches!(error, ProtoError::Unterminated { field } if field == name),
            "cmd {cmd:#x} field {name}: {error:?}"
        );
        assert!(error.is_malformed_field());
        assert_eq!(Header::decode(&bytes).cmd, cmd);
    }
}

#[test]
fn non_utf8_string_fields_rejected() {
    for (cmd, offset, _, name) in STRING_FIELDS {
        let mut bytes = header(1, 0, cmd);
        put(&mut bytes, offset, b"ok\xc3");
        let error = Record::decode(&bytes).unwrap_err();
        assert!(
            matches!(error, ProtoError::InvalidUtf8 { field, offset: 2 } if field == name),
            "cmd {cmd:#x} field {name}: {error:?}"
        );
    }
}

#[test]
fn string_fields_of_max_length_accepted() {
    for (cmd, offset, size, name) in STRING_FIELDS {
        let mut bytes = header(1, 0, cmd);
        bytes[offset..offset + size - 1].fill(b'a');
        let record = Record::decode(&bytes)
            .unwrap_or_else(|error| panic!("cmd {cmd:#x} field {name}: {error}"));
        assert_eq!(record.encode(), bytes, "cmd {cmd:#x} field {name}");
    }
}

#[test]
fn unknown_flag_bits_preserved() {
    let mut bytes = lidentry_bytes(0x201);
    put(&mut bytes, 8, &0x8000_1081u32.to_ne_bytes());
    let record = Record::decode(&bytes).unwrap();
    let Payload::LidEntryCallback(lidentry) = &record.payload else {
        panic!("expected LIDENTRY_CALLBACK");
    };
    assert_eq!(lidentry.flags.bits(), 0x8000_1081);
    assert_eq!(record.encode(), bytes);
}

#[test]
fn command_code_of_each_payload() {
    let record = Record::new(1, Payload::StartTlsLocalId(sample_starttls()));
    assert_eq!(record.header().cmd, CommandCode::StartTlsLocalId as u32);
    assert_eq!(record.payload.command(), Some(CommandCode::StartTlsLocalId));
}
