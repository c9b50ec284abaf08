//! Evaluation of a normal form as predicate results arrive: registration, predicate results
//! and unregistration, each returning the `start`, `stop` and `final` events in the order of
//! the TLS Pool version 2 protocol.
//!
//! The engine is sans-IO: it performs no checks itself. The daemon starts an asynchronous
//! check for each [`Event::Start`], cancels it on [`Event::Stop`], feeds each result to
//! [`Registration::set`], and accepts or fails the handshake on [`Event::Final`].

use std::fmt;

use crate::valexp::print::printed_form;
use crate::valexp::{Case, NormalForm, Predicate, PredicateSet};

/// An event for the caller of a [`Registration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The predicate's value is wanted: start its check.
    Start(Predicate),
    /// The predicate's value is no longer wanted: stop its check.
    Stop(Predicate),
    /// The outcome of the expression, returned once per registration: by `register`, by
    /// `set`, or at the latest by `unregister`.
    Final(bool),
}

/// A registered expression awaiting predicate results.
///
/// Each live case keeps its own set of predicates still to compute, and the registration
/// keeps the set of all predicates still wanted (`compute`). Once [`Event::Final`] has been
/// returned `compute` is empty, so later results are ignored and the outcome never changes.
#[derive(Clone)]
pub struct Registration {
    /// Live ("incomplete") cases, each with its predicates still to compute.
    cases: Vec<(Case, PredicateSet)>,
    compute: PredicateSet,
    outcome: Option<bool>,
}

impl Registration {
    /// Registers `form` and returns the registration with its first events.
    ///
    /// If a case is already true (walking from the last case to the first), the events start
    /// with `Final(true)`. With no case at all they are just `Final(false)`. Then come
    /// `Start(p)` in bit order for every predicate of the cases walked, which the protocol
    /// keeps even after an early `Final(true)`: those checks are started but never stopped,
    /// and their results are ignored.
    pub fn register(form: NormalForm) -> (Self, Vec<Event>) {
        let mut cases: Vec<(Case, PredicateSet)> = form
            .into_cases()
            .into_iter()
            .map(|case| (case, PredicateSet::EMPTY))
            .collect();

        // Walk from the last case to the first, stopping at a case that is already true.
        let mut all = PredicateSet::EMPTY;
        let mut found_true = false;
        for (case, compute) in cases.iter_mut().rev() {
            *compute = case.positive() | case.negative();
            if compute.is_empty() {
                found_true = true;
                break;
            }
            all |= *compute;
        }

        let mut events = Vec::new();
        let mut registration = Self {
            cases,
            compute: PredicateSet::EMPTY,
            outcome: None,
        };
        if found_true {
            registration.conclude(true, &mut events);
        } else if registration.cases.is_empty() {
            registration.conclude(false, &mut events);
        } else {
            registration.compute = all;
        }
        events.extend(all.iter().map(Event::Start));
        (registration, events)
    }

    /// Records that `predicate` has the value `value` and returns the resulting events:
    /// `Stop` in bit order for every predicate no longer wanted, then `Final` if the outcome
    /// is now known.
    ///
    /// A predicate that is not wanted (never started, already stopped, or after the outcome)
    /// is ignored and returns no event.
    pub fn set(&mut self, predicate: Predicate, value: bool) -> Vec<Event> {
        if !self.compute.contains(predicate) {
            return Vec::new();
        }

        // Walk the live cases from last to first. A satisfied case ends the walk; a violated
        // case is overwritten by the last live case, which the walk has already visited.
        let mut still_wanted = PredicateSet::EMPTY;
        let mut satisfied = false;
        for index in (0..self.cases.len()).rev() {
            let (case, compute) = &mut self.cases[index];
            let mut slot_compute = *compute;
            if compute.contains(predicate) {
                match resolve(case, compute, predicate, value) {
                    CaseState::Satisfied => {
                        satisfied = true;
                        break;
                    }
                    CaseState::Violated => {
                        let (_, violated_compute) = self.cases.swap_remove(index);
                        // The slot now contains the moved case, or still the violated one
                        // when it was the last. Its leftover predicates then stay wanted.
                        slot_compute = self
                            .cases
                            .get(index)
                            .map_or(violated_compute, |(_, moved)| *moved);
                    }
                    CaseState::Open => slot_compute = *compute,
                }
            }
            still_wanted |= slot_compute;
        }

        let mut events = Vec::new();
        if satisfied {
            self.conclude(true, &mut events);
        } else if self.cases.is_empty() {
            self.conclude(false, &mut events);
        } else {
            let to_stop = (self.compute - still_wanted) | PredicateSet::single(predicate);
            self.compute -= to_stop;
            events.extend(to_stop.iter().map(Event::Stop));
        }
        events
    }

    /// Ends the registration and returns `Stop` for every predicate still wanted and, if any
    /// was, `Final(false)`: unresolved predicates count as false, as after a timeout.
    ///
    /// Dropping a registration returns no events, so the caller has to stop its checks
    /// itself.
    pub fn unregister(mut self) -> Vec<Event> {
        let mut events: Vec<Event> = self.compute.iter().map(Event::Stop).collect();
        if !self.compute.is_empty() {
            self.compute = PredicateSet::EMPTY;
            self.outcome = Some(false);
            events.push(Event::Final(false));
        }
        events
    }

    /// Returns the outcome, or `None` while it is still open.
    pub fn outcome(&self) -> Option<bool> {
        self.outcome
    }

    /// Returns the predicates whose values are still wanted.
    pub fn wanted(&self) -> PredicateSet {
        self.compute
    }

    /// Returns the live cases with their remaining requirements.
    ///
    /// After `Final(true)` this is the single empty case, and after `Final(false)` it is empty.
    pub fn live_cases(&self) -> impl ExactSizeIterator<Item = &Case> {
        self.cases.iter().map(|(case, _)| case)
    }

    /// Returns the printed form of the live cases (`1` once true, `0` once false).
    pub fn printed_live_cases(&self) -> String {
        printed_form(self.live_cases())
    }

    /// Stops every predicate still wanted, then reports `outcome`.
    fn conclude(&mut self, outcome: bool, events: &mut Vec<Event>) {
        if outcome {
            // What remains is printed as `1`.
            self.cases.clear();
            self.cases.push((Case::TRUE, PredicateSet::EMPTY));
        }
        events.extend(self.compute.iter().map(Event::Stop));
        self.compute = PredicateSet::EMPTY;
        self.outcome = Some(outcome);
        events.push(Event::Final(outcome));
    }
}

/// Writes `start P`, `stop P`, `final validated` or `final failed`.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start(predicate) => write!(f, "start {predicate}"),
            Self::Stop(predicate) => write!(f, "stop {predicate}"),
            Self::Final(true) => f.write_str("final validated"),
            Self::Final(false) => f.write_str("final failed"),
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("live_cases", &self.printed_live_cases())
            .field("wanted", &self.compute)
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// The state of one case after a predicate result.
enum CaseState {
    /// Every requirement is met.
    Satisfied,
    /// A requirement is broken, so the case can never hold.
    Violated,
    /// Requirements remain.
    Open,
}

/// Applies `predicate = value` to a case whose `compute` contains the predicate.
fn resolve(
    case: &mut Case,
    compute: &mut PredicateSet,
    predicate: Predicate,
    value: bool,
) -> CaseState {
    let violated = if value {
        case.positive_mut().remove(predicate);
        case.negative().contains(predicate)
    } else {
        case.negative_mut().remove(predicate);
        case.positive().contains(predicate)
    };
    *compute = *compute & (case.positive() | case.negative());

    if compute.is_empty() {
        CaseState::Satisfied
    } else if violated {
        CaseState::Violated
    } else {
        CaseState::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::valexp::Valexp;

    fn p(letter: char) -> Predicate {
        match Predicate::from_letter(letter) {
            Some(predicate) => predicate,
            None => panic!("{letter:?} is not a predicate letter"),
        }
    }

    fn start(letter: char) -> Event {
        Event::Start(p(letter))
    }

    fn stop(letter: char) -> Event {
        Event::Stop(p(letter))
    }

    fn register(text: &str) -> (Registration, Vec<Event>) {
        match NormalForm::parse(text) {
            Ok(form) => Registration::register(form),
            Err(error) => panic!("{text:?}: {error}"),
        }
    }

    #[test]
    fn register_starts_predicates_in_bit_order() {
        // Cases: FA | F | AP | FP.
        let (registration, events) = register("PF|FA|&");
        assert_eq!(events, [start('F'), start('A'), start('P')]);
        assert_eq!(registration.outcome(), None);
        assert_eq!(registration.wanted().to_string(), "FAP");
        assert_eq!(registration.printed_live_cases(), "FA | F | AP | FP");
    }

    #[test]
    fn register_true_constant_is_final_at_once() {
        let (registration, events) = register("1");
        assert_eq!(events, [Event::Final(true)]);
        assert_eq!(registration.outcome(), Some(true));
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn register_false_constant_is_final_at_once() {
        let (registration, events) = register("0");
        assert_eq!(events, [Event::Final(false)]);
        assert_eq!(registration.outcome(), Some(false));
        assert_eq!(registration.printed_live_cases(), "0");
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn register_starts_after_early_true() {
        // Cases: 1 | a. The walk from the last case reaches `a` before the true case.
        let (mut registration, events) = register("a1|");
        assert_eq!(events, [Event::Final(true), start('a')]);
        assert_eq!(registration.wanted(), PredicateSet::EMPTY);
        assert_eq!(registration.printed_live_cases(), "1");
        assert_eq!(registration.set(p('a'), false), []);
        assert_eq!(registration.outcome(), Some(true));
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn register_stops_walk_at_last_true_case() {
        // Cases: 1 | a | d. Only `d` and `a` are collected; the walk ends at case 0.
        let (_, events) = register("da|1|");
        assert_eq!(events, [Event::Final(true), start('a'), start('d')]);

        // Cases: a | 1 | d. The walk ends at case 1, so `a` is never started.
        let (_, events) = register("d1|a|");
        assert_eq!(events, [Event::Final(true), start('d')]);
    }

    #[test]
    fn satisfied_case_stops_everything() {
        let (mut registration, _) = register("PF|FA|&");
        assert_eq!(
            registration.set(p('F'), true),
            [stop('F'), stop('A'), stop('P'), Event::Final(true)]
        );
        assert_eq!(registration.outcome(), Some(true));
        assert_eq!(registration.printed_live_cases(), "1");
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn violated_cases_are_dropped() {
        // Cases: FA | F | AP | FP. F false breaks every case but AP.
        let (mut registration, _) = register("PF|FA|&");
        assert_eq!(registration.set(p('F'), false), [stop('F')]);
        assert_eq!(registration.printed_live_cases(), "AP");
        assert_eq!(registration.set(p('P'), true), [stop('P')]);
        assert_eq!(registration.printed_live_cases(), "A");
        assert_eq!(
            registration.set(p('A'), true),
            [stop('A'), Event::Final(true)]
        );
        assert_eq!(registration.printed_live_cases(), "1");
    }

    #[test]
    fn last_violated_case_keeps_its_predicates_wanted() {
        // Cases: c | ad. The violated last case `ad` still counts `d` as wanted.
        let (mut registration, events) = register("ad&c|");
        assert_eq!(events, [start('a'), start('d'), start('c')]);
        assert_eq!(registration.set(p('a'), false), [stop('a')]);
        assert_eq!(registration.printed_live_cases(), "c");
        assert_eq!(registration.wanted().to_string(), "dc");
        assert_eq!(registration.set(p('d'), true), [stop('d')]);
        assert_eq!(
            registration.set(p('c'), false),
            [stop('c'), Event::Final(false)]
        );
        assert_eq!(registration.printed_live_cases(), "0");
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn moved_case_is_not_revisited() {
        // Cases: Td | E~d | TE. d false breaks case 0, which TE overwrites.
        let (mut registration, events) = register("ETd?");
        assert_eq!(events, [start('T'), start('d'), start('E')]);
        assert_eq!(registration.set(p('d'), false), [stop('d')]);
        assert_eq!(registration.printed_live_cases(), "TE | E");
        assert_eq!(registration.set(p('T'), false), [stop('T')]);
        assert_eq!(registration.printed_live_cases(), "E");
        assert_eq!(
            registration.set(p('E'), false),
            [stop('E'), Event::Final(false)]
        );
    }

    #[test]
    fn unneeded_predicates_are_stopped() {
        // Cases: aTd | E~d | E~a | TE. a false leaves E~d, E~a and TE; all still need T, d, E.
        let (mut registration, events) = register("ETad&?");
        assert_eq!(events, [start('a'), start('T'), start('d'), start('E')]);
        assert_eq!(registration.set(p('a'), false), [stop('a')]);
        assert_eq!(registration.printed_live_cases(), "TE | E~d | E");
        // E false breaks every case.
        assert_eq!(
            registration.set(p('E'), false),
            [stop('T'), stop('d'), stop('E'), Event::Final(false)]
        );
    }

    #[test]
    fn predicate_no_case_needs_is_stopped() {
        // Cases: d | ad. d true satisfies case 0, which stops a as well.
        let (mut registration, events) = register("ad&d|");
        assert_eq!(events, [start('a'), start('d')]);
        assert_eq!(
            registration.set(p('d'), true),
            [stop('a'), stop('d'), Event::Final(true)]
        );

        // Cases: T | ad. a false breaks ad (the last case), so d stays wanted next to T.
        let (mut registration, _) = register("ad&T|");
        assert_eq!(registration.set(p('a'), false), [stop('a')]);
        assert_eq!(registration.wanted().to_string(), "Td");
        // d is still wanted, and its result now stops only d.
        assert_eq!(registration.set(p('d'), false), [stop('d')]);
        assert_eq!(registration.wanted().to_string(), "T");
    }

    #[test]
    fn unregister_fails_open_expression() {
        let (mut registration, _) = register("ad&");
        assert_eq!(registration.set(p('d'), true), [stop('d')]);
        assert_eq!(registration.printed_live_cases(), "a");
        assert_eq!(registration.unregister(), [stop('a'), Event::Final(false)]);
    }

    #[test]
    fn unregister_stops_all_in_bit_order() {
        let (registration, _) = register("qL|T&");
        assert_eq!(
            registration.unregister(),
            [stop('L'), stop('T'), stop('q'), Event::Final(false)]
        );
    }

    #[test]
    fn final_never_changes() {
        let (mut registration, _) = register("ad|");
        assert_eq!(registration.set(p('d'), false), [stop('d')]);
        assert_eq!(
            registration.set(p('a'), false),
            [stop('a'), Event::Final(false)]
        );
        for letter in ['a', 'd', 'T'] {
            for value in [true, false] {
                assert_eq!(registration.set(p(letter), value), [], "{letter} {value}");
                assert_eq!(registration.outcome(), Some(false));
            }
        }
        assert_eq!(registration.printed_live_cases(), "0");
        assert_eq!(registration.unregister(), []);
    }

    #[test]
    fn repeated_and_unknown_results_are_ignored() {
        let (mut registration, _) = register("ad&");
        assert_eq!(registration.set(p('T'), true), []);
        assert_eq!(registration.set(p('a'), true), [stop('a')]);
        assert_eq!(registration.set(p('a'), false), []);
        assert_eq!(registration.printed_live_cases(), "d");
        assert_eq!(registration.outcome(), None);
    }

    #[test]
    fn contradictory_case_is_violated_either_way() {
        // Cases: a~a | d.
        let (mut registration, _) = register("daa~&|");
        assert_eq!(registration.printed_live_cases(), "a~a | d");
        assert_eq!(registration.set(p('a'), true), [stop('a')]);
        assert_eq!(registration.printed_live_cases(), "d");
    }

    #[test]
    fn combined_sources_evaluate_as_one() {
        let sources = [NormalForm::parse("Td|"), NormalForm::parse("c")];
        let sources: Vec<NormalForm> = sources.into_iter().flatten().collect();
        let combined = NormalForm::all_of(&sources, &NormalForm::never());
        let Ok(combined) = combined else {
            panic!("{combined:?}");
        };
        // Cases: dc | Tc.
        let (mut registration, events) = Registration::register(combined);
        assert_eq!(events, [start('T'), start('d'), start('c')]);
        assert_eq!(registration.set(p('c'), true), [stop('c')]);
        assert_eq!(registration.printed_live_cases(), "d | T");
        assert_eq!(
            registration.set(p('T'), true),
            [stop('T'), stop('d'), Event::Final(true)]
        );
    }

    /// Checks, for every assignment of the expression's predicates, that the normal form and
    /// a registration fed all results (forwards and backwards) agree with direct evaluation.
    fn check_against_direct_evaluation(text: &str) {
        let parsed = match Valexp::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{text:?}: {error}"),
        };
        let form = match parsed.expand() {
            Ok(form) => form,
            Err(error) => panic!("{text:?}: {error}"),
        };
        let predicates: Vec<Predicate> = form.predicates().iter().collect();
        for mask in 0..(1_u32 << predicates.len()) {
            let value = |index: usize| mask & (1 << index) != 0;
            let true_predicates: PredicateSet = predicates
                .iter()
                .enumerate()
                .filter(|(index, _)| value(*index))
                .map(|(_, predicate)| *predicate)
                .collect();
            let expected = parsed.evaluate(true_predicates);
            assert_eq!(
                form.evaluate(true_predicates),
                expected,
                "{text:?} normal form with {true_predicates} true"
            );

            for reverse in [false, true] {
                let (mut registration, mut events) = Registration::register(form.clone());
                let mut order: Vec<usize> = (0..predicates.len()).collect();
                if reverse {
                    order.reverse();
                }
                for index in order {
                    events.extend(registration.set(predicates[index], value(index)));
                }
                events.extend(registration.unregister());
                let finals: Vec<bool> = events
                    .iter()
                    .filter_map(|event| match event {
                        Event::Final(outcome) => Some(*outcome),
                        _ => None,
                    })
                    .collect();
                assert_eq!(
                    finals,
                    [expected],
                    "{text:?} with {true_predicates} true, reverse {reverse}"
                );
            }
        }
    }

    #[test]
    fn outcome_matches_direct_evaluation() {
        let texts = [
            "ETad&?",
            "e1i?",
            "PF|FA|&",
            "ac&d|~",
            "ad|Tc|F?",
            "ad|Tc|F?~",
            "EaFd|?",
            "ad|Tc|&FE|&",
            "aa~&d|",
            "adTcE??",
            "cad~T|&E?~",
        ];
        for text in texts {
            check_against_direct_evaluation(text);
        }
    }

    #[test]
    fn short_expressions_match_direct_evaluation() {
        // Every text of up to five symbols over three predicates, constants and operators.
        let symbols = ['a', 'd', 'T', '0', '1', '~', '&', '|', '?'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            texts = texts
                .iter()
                .flat_map(|text| symbols.iter().map(move |symbol| format!("{text}{symbol}")))
                .collect();
            for text in &texts {
                if Valexp::parse(text).is_ok() {
                    check_against_direct_evaluation(text);
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "only {checked} expressions parsed");
    }
}
