//! `tlspool-admin valexp EXPR [VECTOR...]`: the normal form of a validation expression and
//! the events its evaluation produces for signal vectors.
//!
//! The output is one line per item: the normal form first, then per vector the engine's
//! events (`start P`, `stop P`, `final validated|failed`), a `set P true|false` line before
//! each predicate result and a `value FORM` line after it. No configuration is read.

use std::io::Write;

use anyhow::Context;
use argh::FromArgs;

/// Print the normal form of a validation expression, then run signal vectors on it.
#[derive(Debug, FromArgs)]
#[argh(subcommand, name = "valexp")]
pub struct ValexpArgs {
    /// the validation expression, in postfix notation (for example `ac|d&`)
    #[argh(positional)]
    pub expression: String,

    /// signal vectors: predicate letters and `~`; the current value starts true, `~` flips
    /// it, and each letter sets that predicate to the current value
    #[argh(positional, greedy)]
    pub vectors: Vec<String>,
}

/// Runs `valexp`, writing the trace to `out`.
pub(super) fn run(args: &ValexpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let vectors: Vec<&str> = args.vectors.iter().map(String::as_str).collect();
    let lines = tlspool_validate::valexp::trace(&args.expression, &vectors)
        .with_context(|| format!("evaluating the validation expression {:?}", args.expression))?;
    for line in lines {
        writeln!(out, "{line}").context("writing the trace")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(expression: &str, vectors: &[&str]) -> anyhow::Result<String> {
        let args = ValexpArgs {
            expression: expression.to_owned(),
            vectors: vectors.iter().map(|v| (*v).to_owned()).collect(),
        };
        let mut out = Vec::new();
        run(&args, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn prints_normal_form_first() {
        assert_eq!(trace("ac|d&", &[]).unwrap(), "dc | ad\n");
    }

    #[test]
    fn prints_events_of_each_vector() {
        let output = trace("e1i?", &["~e~ti"]).unwrap();
        let expected = "i | e~i | e\nstart i\nstart e\nset e false\nstop e\nvalue i\n\
                        set t true\nvalue i\nset i true\nstop i\nfinal validated\nvalue 1\n";
        assert_eq!(output, expected);
    }

    #[test]
    fn rejects_syntax_error() {
        let err = trace("a&", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("\"a&\""), "{err:#}");
    }
}
