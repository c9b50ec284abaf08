//! Decodes arbitrary 388-byte records, re-encodes each that decodes, and checks that the
//! encoding decodes to the same record and is a fixed point of encode-decode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tlspool_proto::{Header, RECORD_LEN, Record};

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.first_chunk::<RECORD_LEN>() else {
        assert!(Record::decode_slice(data).is_err());
        return;
    };

    let header = Header::decode(bytes);
    let Ok(record) = Record::decode(bytes) else {
        return;
    };
    assert_eq!(record.reqid, header.reqid);
    assert_eq!(record.cbid, header.cbid);
    assert_eq!(record.header(), header);

    let encoded = record.encode();
    let decoded = Record::decode(&encoded).expect("an encoded record decodes");
    assert_eq!(decoded, record);
    assert_eq!(decoded.encode(), encoded);
});
