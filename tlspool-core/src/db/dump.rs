//! Dumps of raw (key, value) pairs in the text format of Berkeley DB's `db_dump` and `db_load`.
//!
//! The original TLS Pool kept its databases in Berkeley DB, whose `db_dump` writes this format,
//! so its data can move in both directions byte for byte. A dump is a header of `name=value`
//! lines ending in `HEADER=END`, then one line per key and one per value, alternating, each
//! starting with a space, then `DATA=END`. Items are hex-encoded (`format=bytevalue`, which
//! [`write_dump`] produces) or, with `db_dump -p`, printable bytes as themselves, `\` as `\\` and
//! other bytes as `\` and two hex digits (`format=print`). [`read_dump`] reads both.

use std::io::{BufRead, Write};

use super::{DbError, RawPair};

/// The header [`write_dump`] emits: a Berkeley DB hash database with duplicates, the layout the
/// original TLS Pool created, so that `db_load` rebuilds a database it can open.
const HEADER: &str = "VERSION=3\nformat=bytevalue\ntype=hash\nduplicates=1\nHEADER=END\n";

/// Encoding of the items of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemFormat {
    Hex,
    Printable,
}

/// Writes `pairs` as a dump, in order.
///
/// # Errors
///
/// [`DbError::DumpIo`] when writing fails.
pub fn write_dump<W: Write + ?Sized>(out: &mut W, pairs: &[RawPair]) -> Result<(), DbError> {
    let io_error = |source| DbError::DumpIo {
        operation: "write",
        source,
    };
    out.write_all(HEADER.as_bytes()).map_err(io_error)?;
    for (key, value) in pairs {
        writeln!(out, " {}", hex::encode(key)).map_err(io_error)?;
        writeln!(out, " {}", hex::encode(value)).map_err(io_error)?;
    }
    out.write_all(b"DATA=END\n").map_err(io_error)?;
    out.flush().map_err(io_error)
}

/// Reads the (key, value) pairs of a dump, in order.
///
/// # Errors
///
/// [`DbError::InvalidDump`] naming the line when the dump is malformed, contains more than one
/// database or ends before `DATA=END`; [`DbError::DumpIo`] when reading fails.
pub fn read_dump<R: BufRead>(input: R) -> Result<Vec<RawPair>, DbError> {
    let mut lines = input.split(b'\n').enumerate().map(|(index, line)| {
        let line = line.map_err(|source| DbError::DumpIo {
            operation: "read",
            source,
        })?;
        Ok((index + 1, line))
    });

    let format = read_header(&mut lines)?;
    let mut pairs = Vec::new();
    let mut pending_key: Option<Vec<u8>> = None;
    for item in &mut lines {
        let (number, line) = item?;
        if line == b"DATA=END" {
            if pending_key.is_some() {
                return Err(invalid(number, "the last key has no value"));
            }
            return finish(lines, pairs);
        }
        let Some(text) = line.strip_prefix(b" ") else {
            return Err(invalid(number, "a data line must start with a space"));
        };
        let bytes = decode_item(text, format).map_err(|reason| invalid(number, reason))?;
        match pending_key.take() {
            None => pending_key = Some(bytes),
            Some(key) => pairs.push((key, bytes)),
        }
    }
    Err(invalid(0, "the dump ends before DATA=END"))
}

type NumberedLine = Result<(usize, Vec<u8>), DbError>;

/// Reads header lines up to `HEADER=END` and returns the item format they name.
fn read_header(lines: &mut impl Iterator<Item = NumberedLine>) -> Result<ItemFormat, DbError> {
    let mut format = None;
    for item in lines {
        let (number, line) = item?;
        let text = String::from_utf8_lossy(&line);
        if text == "HEADER=END" {
            return format.ok_or_else(|| invalid(number, "the header has no format= line"));
        }
        let Some((name, value)) = text.split_once('=') else {
            return Err(invalid(
                number,
                format!("expected name=value in the header, found {text:?}"),
            ));
        };
        match (name, value) {
            ("VERSION", "3") => {}
            ("VERSION", other) => {
                return Err(invalid(
                    number,
                    format!("unsupported dump VERSION={other}, expected 3"),
                ));
            }
            ("format", "bytevalue") => format = Some(ItemFormat::Hex),
            ("format", "print") => format = Some(ItemFormat::Printable),
            ("format", other) => {
                return Err(invalid(number, format!("unsupported format={other}")));
            }
            // Berkeley DB settings such as type, duplicates and db_pagesize do not apply to LMDB.
            _ => {}
        }
    }
    Err(invalid(0, "the dump ends before HEADER=END"))
}

/// Checks that only blank lines follow `DATA=END`.
fn finish(
    lines: impl Iterator<Item = NumberedLine>,
    pairs: Vec<RawPair>,
) -> Result<Vec<RawPair>, DbError> {
    for item in lines {
        let (number, line) = item?;
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid(
                number,
                "text after DATA=END; import one database per dump",
            ));
        }
    }
    Ok(pairs)
}

fn decode_item(text: &[u8], format: ItemFormat) -> Result<Vec<u8>, String> {
    match format {
        ItemFormat::Hex => hex::decode(text).map_err(|err| format!("invalid hex item: {err}")),
        ItemFormat::Printable => decode_printable(text),
    }
}

fn decode_printable(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'\\' {
            out.push(byte);
            rest = tail;
            continue;
        }
        if let Some((b'\\', tail)) = tail.split_first() {
            out.push(b'\\');
            rest = tail;
            continue;
        }
        let escape = tail.get(..2).ok_or("a '\\' escape is cut short")?;
        let decoded = hex::decode(escape).map_err(|_| "a '\\' escape is not two hex digits")?;
        out.extend_from_slice(&decoded);
        rest = &tail[2..];
    }
    Ok(out)
}

fn invalid(line: usize, reason: impl Into<String>) -> DbError {
    DbError::InvalidDump {
        line,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"a".to_vec(), b"\x00\x00\x01\x01pkcs11:x\0\xff".to_vec()),
            (b"a".to_vec(), b"second".to_vec()),
            (b"\\b".to_vec(), Vec::new()),
        ]
    }

    #[test]
    fn dump_round_trips_bytes() {
        let mut out = Vec::new();
        write_dump(&mut out, &pairs()).unwrap();
        assert_eq!(read_dump(&out[..]).unwrap(), pairs());
    }

    #[test]
    fn dump_text_is_bytevalue_format() {
        let mut out = Vec::new();
        write_dump(&mut out, &[(b"k".to_vec(), b"\x00v".to_vec())]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "VERSION=3\nformat=bytevalue\ntype=hash\nduplicates=1\nHEADER=END\n 6b\n 0076\nDATA=END\n"
        );
    }

    #[test]
    fn printable_dump_is_read() {
        let text = b"VERSION=3\nformat=print\ntype=hash\nduplicates=1\ndb_pagesize=4096\n\
            HEADER=END\n user@example.com\n \\00\\00\\01\\01pkcs11:a\\5cb\\00\\\\\nDATA=END\n";
        let read = read_dump(&text[..]).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, b"user@example.com");
        assert_eq!(read[0].1, b"\x00\x00\x01\x01pkcs11:a\\b\x00\\");
    }

    #[test]
    fn malformed_dumps_name_the_line() {
        let cases: [(&[u8], usize); 6] = [
            (
                b"VERSION=3\nformat=bytevalue\nHEADER=END\n 6b\nDATA=END\n",
                5,
            ),
            (
                b"VERSION=3\nformat=bytevalue\nHEADER=END\n 6\n 00\nDATA=END\n",
                4,
            ),
            (
                b"VERSION=3\nformat=bytevalue\nHEADER=END\n6b\n 00\nDATA=END\n",
                4,
            ),
            (b"VERSION=2\nformat=bytevalue\nHEADER=END\nDATA=END\n", 1),
            (b"VERSION=3\nHEADER=END\nDATA=END\n", 2),
            (
                b"VERSION=3\nformat=bytevalue\nHEADER=END\nDATA=END\nVERSION=3\n",
                5,
            ),
        ];
        for (text, line) in cases {
            let err = read_dump(text).unwrap_err();
            assert!(
                matches!(err, DbError::InvalidDump { line: l, .. } if l == line),
                "{err} for {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn truncated_dump_is_rejected() {
        let err =
            read_dump(&b"VERSION=3\nformat=bytevalue\nHEADER=END\n 6b\n 00\n"[..]).unwrap_err();
        assert!(err.to_string().contains("DATA=END"), "{err}");
    }

    #[test]
    fn bad_printable_escape_is_rejected() {
        let err = read_dump(&b"VERSION=3\nformat=print\nHEADER=END\n a\\zz\n b\nDATA=END\n"[..])
            .unwrap_err();
        assert!(matches!(err, DbError::InvalidDump { line: 4, .. }), "{err}");
    }
}
