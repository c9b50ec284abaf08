//! Parses arbitrary bytes as a validation expression. Each expression that parses is expanded
//! and printed, and a signal vector taken from the same input runs through a registration.
//! The target checks the event contract: one final per registration, stops only for started
//! predicates, and an outcome that never changes. Once every predicate has a result, the
//! outcome must equal direct evaluation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tlspool_validate::valexp::{
    Event, NormalForm, PRINTED_FORM_MAX, Predicate, PredicateSet, Registration, Valexp, trace,
};

fuzz_target!(|data: &[u8]| {
    // The expression ends at the first NUL, and the bytes after it are the signal vector.
    let (expression, vector) = match data.iter().position(|&byte| byte == 0) {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let expression = String::from_utf8_lossy(expression);
    let Ok(parsed) = Valexp::parse(&expression) else {
        return;
    };
    let Ok(form) = parsed.expand() else {
        return;
    };
    assert!(form.to_string().len() <= PRINTED_FORM_MAX);

    // Each vector byte sets a predicate to the value of its top bit: with bit 6 set, predicate
    // `byte % 30`, otherwise one of the expression's own predicates.
    let own: Vec<Predicate> = form.predicates().iter().collect();
    let results: Vec<(Predicate, bool)> = vector
        .iter()
        .filter_map(|&byte| {
            let value = byte & 0x80 != 0;
            let index = usize::from(byte & 0x3f);
            let predicate = if byte & 0x40 != 0 || own.is_empty() {
                Predicate::from_bit(usize::from(byte) % Predicate::COUNT)?
            } else {
                own[index % own.len()]
            };
            Some((predicate, value))
        })
        .collect();
    run_registration(&parsed, &form, &results);

    let letters: String = results
        .iter()
        .flat_map(|&(predicate, value)| {
            let tilde = (!value).then_some('~');
            tilde.into_iter().chain([predicate.letter()]).chain(tilde)
        })
        .collect();
    let traced = trace(&expression, &[&letters]);
    assert!(traced.is_ok(), "{traced:?}");
});

/// Feeds `results` to a registration of `form` and checks the events against the contract.
fn run_registration(parsed: &Valexp, form: &NormalForm, results: &[(Predicate, bool)]) {
    let (mut registration, events) = Registration::register(form.clone());
    let mut checker = EventChecker::default();
    checker.accept(&events, &registration);

    let mut assigned = PredicateSet::EMPTY;
    let mut true_predicates = PredicateSet::EMPTY;
    for &(predicate, value) in results {
        let events = registration.set(predicate, value);
        checker.accept(&events, &registration);
        assert!(registration.printed_live_cases().len() <= PRINTED_FORM_MAX);

        // Only the first result of a predicate counts.
        if !assigned.contains(predicate) {
            assigned.insert(predicate);
            if value {
                true_predicates.insert(predicate);
            }
        }
    }

    let every_result_known = form.predicates() - assigned == PredicateSet::EMPTY;
    let outcome_before_unregister = registration.outcome();
    let events = registration.unregister();
    checker.accept_unregister(&events);

    let Some(outcome) = checker.outcome else {
        panic!("no final event");
    };
    if every_result_known {
        assert_eq!(outcome_before_unregister, Some(outcome));
        assert_eq!(outcome, parsed.evaluate(true_predicates));
        assert_eq!(outcome, form.evaluate(true_predicates));
    }
}

/// The events seen so far of one registration.
#[derive(Default)]
struct EventChecker {
    started: PredicateSet,
    stopped: PredicateSet,
    outcome: Option<bool>,
}

impl EventChecker {
    fn accept(&mut self, events: &[Event], registration: &Registration) {
        self.accept_unregister(events);
        assert_eq!(registration.outcome(), self.outcome);
        assert!(registration.wanted() - self.started == PredicateSet::EMPTY);
    }

    fn accept_unregister(&mut self, events: &[Event]) {
        for event in events {
            match *event {
                Event::Start(predicate) => {
                    assert!(
                        !self.started.contains(predicate),
                        "{predicate} started twice"
                    );
                    self.started.insert(predicate);
                }
                Event::Stop(predicate) => {
                    assert!(
                        self.started.contains(predicate),
                        "{predicate} never started"
                    );
                    assert!(
                        !self.stopped.contains(predicate),
                        "{predicate} stopped twice"
                    );
                    self.stopped.insert(predicate);
                }
                Event::Final(outcome) => {
                    assert_eq!(self.outcome, None, "second final event");
                    self.outcome = Some(outcome);
                }
            }
        }
    }
}
