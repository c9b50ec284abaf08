//! The trace behind `tlspool-admin valexp EXPR [VECTOR...]`: the normal form of an expression
//! and the events of one registration per signal vector.

use crate::ValexpError;
use crate::valexp::{NormalForm, Predicate, Registration};

/// Expands `expression` and runs each signal vector on a fresh registration, returning the
/// lines of the trace.
///
/// A signal vector is a string of predicate letters and `~`. Reading it from the start, the
/// current value is first true, each `~` flips it, and each letter sets that predicate to the
/// current value. So `e~ti` sets `e` true, then `t` and `i` false.
///
/// The lines, in order:
///
/// 1. The printed form of the normal form.
/// 2. For each vector, with no line of its own to mark where it starts:
///    - the registration's events;
///    - for each letter: `set P true` or `set P false`, then the events of that result (none
///      when it is ignored), then `value FORM` with the printed form of the live cases;
///    - the unregistration's events (the stops of predicates still wanted, and `final failed`
///      when no result was reached).
///
/// Events print as `start P`, `stop P`, `final validated` and `final failed`, one per line in
/// the order the engine returns them.
///
/// ```
/// let lines = tlspool_validate::valexp::trace("e1i?", &["~e~ti"])?;
/// assert_eq!(
///     lines,
///     [
///         "i | e~i | e",
///         "start i",
///         "start e",
///         "set e false",
///         "stop e",
///         "value i",
///         "set t true",
///         "value i",
///         "set i true",
///         "stop i",
///         "final validated",
///         "value 1",
///     ]
/// );
/// # Ok::<(), tlspool_validate::ValexpError>(())
/// ```
///
/// # Errors
///
/// The errors of [`NormalForm::parse`] for the expression, and
/// [`ValexpError::InvalidVectorCharacter`] for a vector character that is neither a
/// predicate letter nor `~`. Every vector is checked before any line is produced.
pub fn trace(expression: &str, vectors: &[&str]) -> Result<Vec<String>, ValexpError> {
    let form = NormalForm::parse(expression)?;
    let signals = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| parse_vector(index, vector))
        .collect::<Result<Vec<_>, _>>()?;

    let mut lines = vec![form.to_string()];
    for steps in signals {
        let (mut registration, events) = Registration::register(form.clone());
        lines.extend(events.iter().map(ToString::to_string));

        for (predicate, value) in steps {
            lines.push(format!("set {predicate} {value}"));
            let events = registration.set(predicate, value);
            lines.extend(events.iter().map(ToString::to_string));
            lines.push(format!("value {}", registration.printed_live_cases()));
        }

        lines.extend(registration.unregister().iter().map(ToString::to_string));
    }
    Ok(lines)
}

/// Turns a signal vector into its predicate results, in order.
fn parse_vector(index: usize, vector: &str) -> Result<Vec<(Predicate, bool)>, ValexpError> {
    let mut value = true;
    let mut steps = Vec::new();
    for (position, character) in vector.chars().enumerate() {
        if character == '~' {
            value = !value;
            continue;
        }
        let Some(predicate) = Predicate::from_letter(character) else {
            return Err(ValexpError::InvalidVectorCharacter {
                vector: index,
                position,
                character,
            });
        };
        steps.push((predicate, value));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(expression: &str, vectors: &[&str]) -> Vec<String> {
        match trace(expression, vectors) {
            Ok(lines) => lines,
            Err(error) => panic!("{expression:?} {vectors:?}: {error}"),
        }
    }

    #[test]
    fn expression_alone_prints_normal_form() {
        assert_eq!(lines("ETad&?", &[]), ["aTd | E~d | E~a | TE"]);
    }

    #[test]
    fn early_true_result_ignores_later_letters() {
        assert_eq!(
            lines("e1i?", &["e", "et"]),
            [
                "i | e~i | e",
                "start i",
                "start e",
                "set e true",
                "stop i",
                "stop e",
                "final validated",
                "value 1",
                "start i",
                "start e",
                "set e true",
                "stop i",
                "stop e",
                "final validated",
                "value 1",
                "set t true",
                "value 1",
            ]
        );
    }

    #[test]
    fn tilde_flips_value_for_later_letters() {
        assert_eq!(
            lines("ad&", &["~a~d", "d"]),
            [
                "ad",
                "start a",
                "start d",
                "set a false",
                "stop a",
                "stop d",
                "final failed",
                "value 0",
                "set d true",
                "value 0",
                "start a",
                "start d",
                "set d true",
                "stop d",
                "value a",
                "stop a",
                "final failed",
            ]
        );
    }

    #[test]
    fn empty_vector_registers_and_unregisters() {
        assert_eq!(
            lines("0", &["", ""]),
            ["0", "final failed", "final failed",]
        );
    }

    #[test]
    fn early_true_starts_after_final() {
        assert_eq!(
            lines("a1|", &["a"]),
            [
                "1 | a",
                "final validated",
                "start a",
                "set a true",
                "value 1",
            ]
        );
    }

    #[test]
    fn invalid_vector_is_rejected_before_output() {
        assert_eq!(
            trace("ad&", &["ad", "a0"]),
            Err(ValexpError::InvalidVectorCharacter {
                vector: 1,
                position: 1,
                character: '0',
            })
        );
    }

    #[test]
    fn invalid_expression_is_rejected() {
        assert_eq!(
            trace("ad", &["a"]),
            Err(ValexpError::TrailingInput {
                position: 0,
                character: 'a',
            })
        );
    }
}
