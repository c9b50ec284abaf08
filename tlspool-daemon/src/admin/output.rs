//! One line per entry: tab-separated fields, escaped so that each entry stays on one line.

use std::io::Write;

use anyhow::Context;

/// Writes `fields` as one tab-separated line.
pub(crate) fn write_line(out: &mut dyn Write, fields: &[&str]) -> anyhow::Result<()> {
    let escaped: Vec<String> = fields.iter().map(|f| escape(f)).collect();
    writeln!(out, "{}", escaped.join("\t")).context("writing the output")
}

/// Escapes `\`, tab, newline, carriage return and other control characters.
pub(crate) fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_plain_text() {
        assert_eq!(
            escape("pkcs11:token=a%20b;object=k"),
            "pkcs11:token=a%20b;object=k"
        );
        assert_eq!(escape("ü and spaces"), "ü and spaces");
    }

    #[test]
    fn escape_encodes_separators_and_controls() {
        assert_eq!(
            escape("a\tb\nc\rd\\e\u{1}\u{7f}"),
            "a\\tb\\nc\\rd\\\\e\\x01\\x7f"
        );
    }

    #[test]
    fn line_joins_fields_with_tabs() {
        let mut out = Vec::new();
        write_line(&mut out, &["a", "b\tc", ""]).unwrap();
        assert_eq!(out, b"a\tb\\tc\t\n");
    }
}
