//! The printed form of a normal form, which the TLS Pool version 2 protocol's test vectors
//! compare byte for byte.
//!
//! Cases are separated by `" | "`. A case writes its positive letters in bit order, then `~`
//! and its negative letters in bit order if it has any. The empty case writes `1`, and no
//! case at all writes `0`. The text is cut to fit the original's 1024-byte buffer (see
//! [`PRINTED_FORM_MAX`]).

use std::fmt;

use crate::valexp::Case;

/// Maximum length of the printed form in characters.
///
/// A longer text keeps its first 1020 characters and ends in `...`, as the original's
/// 1024-byte buffer with its NUL does. A `" | "` separator is written whole or not at all, so
/// when the cut falls inside one the text ends one or two characters earlier.
pub const PRINTED_FORM_MAX: usize = 1023;

/// Returns the printed form of `cases`.
pub(crate) fn printed_form<'a>(cases: impl IntoIterator<Item = &'a Case>) -> String {
    let mut text = BoundedText::new();
    let mut empty = true;
    for case in cases {
        if !empty {
            text.push_str(" | ");
        }
        empty = false;
        for letter in case_letters(case) {
            text.push_str(letter.encode_utf8(&mut [0; 4]));
        }
        if text.is_full() {
            break;
        }
    }
    if empty {
        text.push_str("0");
    }
    text.finish()
}

/// Writes one case: positive letters, `~` and negative letters, or `1` when empty.
pub(crate) fn write_case(f: &mut fmt::Formatter<'_>, case: &Case) -> fmt::Result {
    case_letters(case).try_for_each(|letter| write!(f, "{letter}"))
}

fn case_letters(case: &Case) -> impl Iterator<Item = char> {
    let positive = case.positive().iter().map(|predicate| predicate.letter());
    let negative = case.negative().iter().map(|predicate| predicate.letter());
    let tilde = (!case.negative().is_empty()).then_some('~');
    let one = (case.positive().is_empty() && case.negative().is_empty()).then_some('1');
    positive.chain(tilde).chain(negative).chain(one)
}

/// A text that keeps what fits in the original's buffer, counting as its writer did.
struct BoundedText {
    text: String,
    /// Room left in the buffer, negative once something did not fit.
    room: isize,
}

impl BoundedText {
    fn new() -> Self {
        Self {
            text: String::new(),
            room: PRINTED_FORM_MAX as isize + 1,
        }
    }

    /// Appends `piece` (ASCII) if all of it fits, and counts it either way.
    fn push_str(&mut self, piece: &str) {
        self.room -= piece.len() as isize;
        if self.room >= 0 {
            self.text.push_str(piece);
        }
    }

    fn is_full(&self) -> bool {
        self.room <= 0
    }

    /// Returns the text, with its last four characters replaced by `...` if it filled the
    /// buffer (the original keeps one byte for the NUL).
    fn finish(mut self) -> String {
        if self.room <= 0 {
            let keep = self.text.len().saturating_sub(4);
            self.text.truncate(keep);
            self.text.push_str("...");
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::valexp::{Predicate, PredicateSet};

    fn case(positive: &str, negative: &str) -> Case {
        let set = |letters: &str| -> PredicateSet {
            letters.chars().filter_map(Predicate::from_letter).collect()
        };
        Case::new(set(positive), set(negative))
    }

    /// Returns `count` cases `a`, then one case with `last` positive.
    fn cases_ending_in(count: usize, last: &str) -> Vec<Case> {
        let mut cases = vec![case("a", ""); count];
        cases.push(case(last, ""));
        cases
    }

    #[test]
    fn case_writes_positive_then_negative_letters() {
        assert_eq!(case("qaL", "").to_string(), "Laq");
        assert_eq!(case("", "cT").to_string(), "~Tc");
        assert_eq!(case("E", "ad").to_string(), "E~ad");
        assert_eq!(case("", "").to_string(), "1");
    }

    #[test]
    fn no_cases_print_zero() {
        assert_eq!(printed_form(&[]), "0");
    }

    #[test]
    fn cases_are_separated_by_bars() {
        let cases = [case("T", "d"), case("", ""), case("", "E")];
        assert_eq!(printed_form(&cases), "T~d | 1 | ~E");
    }

    #[test]
    fn text_of_max_length_is_kept() {
        // 255 cases `a` take 1017 characters, " | LlI" brings it to 1023.
        let text = printed_form(&cases_ending_in(255, "LlI"));
        assert_eq!(text.len(), PRINTED_FORM_MAX);
        assert!(text.ends_with("a | LlI"), "{text}");
    }

    #[test]
    fn text_filling_buffer_is_cut() {
        // 1024 characters fill the buffer with no room for its NUL.
        let text = printed_form(&cases_ending_in(255, "LlIi"));
        assert_eq!(text.len(), PRINTED_FORM_MAX);
        assert!(text.ends_with("a | ..."), "{text}");
    }

    #[test]
    fn longer_text_keeps_first_characters() {
        let text = printed_form(&cases_ending_in(255, "LlIiFf"));
        let expected = format!("{}a | ...", "a | ".repeat(254));
        assert_eq!(text, expected);
    }

    #[test]
    fn cut_inside_separator_drops_it_whole() {
        // 254 cases `a` and " | LlIiFf" take 1022 characters. The next " | " does not fit,
        // so the text ends after 1022 characters, and `...` replaces the last four.
        let mut cases = cases_ending_in(254, "LlIiFf");
        cases.push(case("a", ""));
        let text = printed_form(&cases);
        let expected = format!("{}a | Ll...", "a | ".repeat(253));
        assert_eq!(text, expected);
        assert_eq!(text.len(), 1021);
    }

    #[test]
    fn many_cases_stay_within_limit() {
        let text = printed_form(&vec![case("LlIiFfAaTtDd", "EeOoGg"); 4096]);
        assert_eq!(text.len(), PRINTED_FORM_MAX);
        assert!(text.ends_with("..."));
    }
}
