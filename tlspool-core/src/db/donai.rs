//! DoNAIs (`user@domain` or `domain`), the selectors that match them, and the walk from a
//! concrete identity to ever more general selectors that lookups in the disclose database use.
//!
//! Comparison is byte-exact, as in the original TLS Pool: domains and users are not case-folded.

use std::fmt;
use std::str::FromStr;

use super::DbError;

/// A concrete identity: `user@domain` or `domain`.
///
/// The user part is everything before the last `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Donai {
    user: Option<String>,
    domain: String,
}

/// A pattern over DoNAIs, with the same syntax as a DoNAI plus the patterns `@domain`,
/// `.domain`, `@.domain`, `.` and `@.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    user: SelectorUser,
    domain: SelectorDomain,
}

/// The user part of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SelectorUser {
    /// No `@`: matches only DoNAIs without a user.
    NoUser,
    /// An empty user before the `@`: matches any user, but not a DoNAI without one.
    AnyUser,
    /// Exactly this user.
    Exact(String),
}

/// The domain part of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SelectorDomain {
    /// Exactly this domain.
    Exact(String),
    /// `.suffix`: any domain that ends in `.suffix` (the string is the text after the dot).
    Suffix(String),
    /// `.`: any domain.
    Any,
}

/// One step of a [`Generalisations`] walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generalisation {
    /// The selector of this step.
    pub selector: Selector,
    /// Number of steps from the start of the walk (0 = the start itself); this is the
    /// `maxlevels` value reported to a lidentry helper.
    pub step: u32,
    /// For a walk from a DoNAI: bit 0 is set when the user has been removed, and
    /// `levels_up >> 1` counts the domain labels removed.
    pub levels_up: u32,
}

/// Iterator from a concrete DoNAI (or a selector) to ever more general selectors.
///
/// For `user@sub.example.com` it yields `user@sub.example.com`, `@sub.example.com`,
/// `user@.example.com`, `@.example.com`, `user@.com`, `@.com`, `user@.`, `@.`: it alternately
/// drops the user and restores it with the domain one label shorter. For `sub.example.com` it
/// yields `sub.example.com`, `.example.com`, `.com`, `.`.
#[derive(Debug, Clone)]
pub struct Generalisations {
    next: Option<Selector>,
    restore_user: Option<String>,
    step: u32,
    levels_up: u32,
}

impl Donai {
    /// Parses `user@domain` or `domain`.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidDonai`] when the text is empty, contains a NUL byte, has an empty user
    /// or domain, or has a domain that starts with `.` (a selector pattern).
    pub fn parse(text: &str) -> Result<Self, DbError> {
        let invalid = |reason| DbError::InvalidDonai {
            input: text.to_owned(),
            reason,
        };
        if text.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        let (user, domain) = match text.rsplit_once('@') {
            Some(("", _)) => return Err(invalid("the user before '@' is empty")),
            Some((user, domain)) => (Some(user.to_owned()), domain),
            None => (None, text),
        };
        if domain.is_empty() {
            return Err(invalid("the domain is empty"));
        }
        if domain.starts_with('.') {
            return Err(invalid(
                "the domain starts with '.', which only a selector may",
            ));
        }
        Ok(Self {
            user,
            domain: domain.to_owned(),
        })
    }

    /// Returns the user part, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Returns the domain part.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Returns the selector that matches exactly this DoNAI.
    pub fn to_selector(&self) -> Selector {
        Selector {
            user: match &self.user {
                Some(user) => SelectorUser::Exact(user.clone()),
                None => SelectorUser::NoUser,
            },
            domain: SelectorDomain::Exact(self.domain.clone()),
        }
    }

    /// Walks from this DoNAI to ever more general selectors, starting with itself.
    pub fn generalisations(&self) -> Generalisations {
        self.to_selector().generalisations()
    }
}

impl Selector {
    /// Parses a selector: a DoNAI, `@domain`, `.domain`, `@.domain`, `.` or `@.`.
    ///
    /// # Errors
    ///
    /// [`DbError::InvalidSelector`] when the text is empty, contains a NUL byte or has an empty
    /// domain.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        let invalid = |reason| DbError::InvalidSelector {
            input: text.to_owned(),
            reason,
        };
        if text.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        let (user, domain) = match text.rsplit_once('@') {
            Some(("", domain)) => (SelectorUser::AnyUser, domain),
            Some((user, domain)) => (SelectorUser::Exact(user.to_owned()), domain),
            None => (SelectorUser::NoUser, text),
        };
        let domain = match domain {
            "" => return Err(invalid("the domain is empty")),
            "." => SelectorDomain::Any,
            _ => match domain.strip_prefix('.') {
                Some(suffix) => SelectorDomain::Suffix(suffix.to_owned()),
                None => SelectorDomain::Exact(domain.to_owned()),
            },
        };
        Ok(Self { user, domain })
    }

    /// Returns the user part.
    pub fn user(&self) -> &SelectorUser {
        &self.user
    }

    /// Returns the domain part.
    pub fn domain(&self) -> &SelectorDomain {
        &self.domain
    }

    /// Tells whether `donai` matches this selector.
    pub fn matches(&self, donai: &Donai) -> bool {
        let user_matches = match (&self.user, donai.user()) {
            (SelectorUser::NoUser, None) | (SelectorUser::AnyUser, Some(_)) => true,
            (SelectorUser::Exact(wanted), Some(user)) => wanted == user,
            _ => false,
        };
        let domain_matches = match &self.domain {
            SelectorDomain::Any => true,
            SelectorDomain::Exact(wanted) => *wanted == donai.domain,
            SelectorDomain::Suffix(suffix) => donai
                .domain
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.')),
        };
        user_matches && domain_matches
    }

    /// Walks from this selector to ever more general ones, starting with itself.
    pub fn generalisations(&self) -> Generalisations {
        let restore_user = match &self.user {
            SelectorUser::Exact(user) => Some(user.clone()),
            _ => None,
        };
        Generalisations {
            next: Some(self.clone()),
            restore_user,
            step: 0,
            levels_up: 0,
        }
    }
}

impl Iterator for Generalisations {
    type Item = Generalisation;

    fn next(&mut self) -> Option<Generalisation> {
        let current = self.next.take()?;
        let item = Generalisation {
            selector: current.clone(),
            step: self.step,
            levels_up: self.levels_up,
        };

        // Work out the following step: drop the user, or restore it one domain label up.
        let (user, domain, levels) = match (&current.user, &self.restore_user) {
            (SelectorUser::Exact(_), _) => (SelectorUser::AnyUser, Some(current.domain), 1),
            (SelectorUser::AnyUser, Some(user)) => (
                SelectorUser::Exact(user.clone()),
                parent_domain(&current.domain),
                1,
            ),
            (other, _) => (other.clone(), parent_domain(&current.domain), 2),
        };
        if let Some(domain) = domain {
            self.next = Some(Selector { user, domain });
            self.step += 1;
            self.levels_up += levels;
        }
        Some(item)
    }
}

/// Returns the domain pattern one label more general, or `None` after `.`.
fn parent_domain(domain: &SelectorDomain) -> Option<SelectorDomain> {
    let name = match domain {
        SelectorDomain::Any => return None,
        SelectorDomain::Exact(name) | SelectorDomain::Suffix(name) => name,
    };
    match name.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => Some(SelectorDomain::Suffix(rest.to_owned())),
        _ => Some(SelectorDomain::Any),
    }
}

impl fmt::Display for Donai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.domain)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            SelectorUser::NoUser => {}
            SelectorUser::AnyUser => f.write_str("@")?,
            SelectorUser::Exact(user) => write!(f, "{user}@")?,
        }
        match &self.domain {
            SelectorDomain::Exact(name) => f.write_str(name),
            SelectorDomain::Suffix(suffix) => write!(f, ".{suffix}"),
            SelectorDomain::Any => f.write_str("."),
        }
    }
}

impl FromStr for Donai {
    type Err = DbError;

    fn from_str(text: &str) -> Result<Self, DbError> {
        Self::parse(text)
    }
}

impl FromStr for Selector {
    type Err = DbError;

    fn from_str(text: &str) -> Result<Self, DbError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn donai(text: &str) -> Donai {
        Donai::parse(text).unwrap()
    }

    fn selector(text: &str) -> Selector {
        Selector::parse(text).unwrap()
    }

    fn walk(start: &Donai) -> Vec<String> {
        start
            .generalisations()
            .map(|g| g.selector.to_string())
            .collect()
    }

    #[test]
    fn donai_user_is_before_last_at() {
        let id = donai("a@b@example.com");
        assert_eq!(id.user(), Some("a@b"));
        assert_eq!(id.domain(), "example.com");
        assert_eq!(id.to_string(), "a@b@example.com");
    }

    #[test]
    fn donai_without_user_is_domain() {
        let id = donai("example.com");
        assert_eq!(id.user(), None);
        assert_eq!(id.domain(), "example.com");
    }

    #[test]
    fn donai_rejects_malformed_text() {
        for bad in [
            "",
            "@example.com",
            "user@",
            ".example.com",
            "user@.com",
            "a\0b",
        ] {
            assert!(Donai::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn selector_forms_parse_and_print_back() {
        for text in [
            "example.com",
            ".example.com",
            ".",
            "user@example.com",
            "@example.com",
            "@.example.com",
            "@.",
        ] {
            assert_eq!(selector(text).to_string(), text);
        }
        assert_eq!(selector(".").domain(), &SelectorDomain::Any);
        assert_eq!(selector("@.").user(), &SelectorUser::AnyUser);
        assert_eq!(
            selector(".example.com").domain(),
            &SelectorDomain::Suffix("example.com".into())
        );
    }

    #[test]
    fn selector_rejects_empty_domain() {
        for bad in ["", "@", "user@", "x\0"] {
            assert!(Selector::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn selector_table_matches() {
        // (selector, DoNAI, expected match)
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "sub.example.com", false),
            ("example.com", "user@example.com", false),
            (".example.com", "sub.example.com", true),
            (".example.com", "a.sub.example.com", true),
            (".example.com", "example.com", false),
            (".example.com", "badexample.com", false),
            (".example.com", "user@sub.example.com", false),
            (".", "example.com", true),
            (".", "localhost", true),
            (".", "user@example.com", false),
            ("user@example.com", "user@example.com", true),
            ("user@example.com", "other@example.com", false),
            ("user@example.com", "example.com", false),
            ("user@example.com", "user@sub.example.com", false),
            ("@example.com", "anyone@example.com", true),
            ("@example.com", "example.com", false),
            ("@example.com", "anyone@sub.example.com", false),
            ("@.example.com", "anyone@sub.example.com", true),
            ("@.example.com", "anyone@example.com", false),
            ("@.example.com", "sub.example.com", false),
            ("@.", "anyone@example.com", true),
            ("@.", "example.com", false),
            ("user@.example.com", "user@sub.example.com", true),
            ("user@.example.com", "other@sub.example.com", false),
        ];
        for (pattern, id, expected) in cases {
            assert_eq!(
                selector(pattern).matches(&donai(id)),
                expected,
                "{pattern} against {id}"
            );
        }
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!selector("Example.com").matches(&donai("example.com")));
        assert!(!selector("User@example.com").matches(&donai("user@example.com")));
    }

    #[test]
    fn user_donai_walk_alternates_user_and_domain() {
        assert_eq!(
            walk(&donai("user@sub.example.com")),
            [
                "user@sub.example.com",
                "@sub.example.com",
                "user@.example.com",
                "@.example.com",
                "user@.com",
                "@.com",
                "user@.",
                "@.",
            ]
        );
    }

    #[test]
    fn domain_donai_walk_drops_labels() {
        assert_eq!(
            walk(&donai("sub.example.com")),
            ["sub.example.com", ".example.com", ".com", "."]
        );
    }

    #[test]
    fn single_label_domain_walks_to_any() {
        assert_eq!(walk(&donai("localhost")), ["localhost", "."]);
        assert_eq!(
            walk(&donai("user@localhost")),
            ["user@localhost", "@localhost", "user@.", "@."]
        );
    }

    #[test]
    fn user_walk_counts_one_level_per_step() {
        let steps: Vec<(u32, u32)> = donai("user@sub.example.com")
            .generalisations()
            .map(|g| (g.step, g.levels_up))
            .collect();
        let expected: Vec<(u32, u32)> = (0..8).map(|i| (i, i)).collect();
        assert_eq!(steps, expected);

        let at_dot_example = donai("user@sub.example.com")
            .generalisations()
            .nth(3)
            .unwrap();
        assert_eq!(at_dot_example.selector.to_string(), "@.example.com");
        assert_eq!(at_dot_example.levels_up & 1, 1, "user removed");
        assert_eq!(at_dot_example.levels_up >> 1, 1, "one domain level up");
    }

    #[test]
    fn domain_walk_counts_two_levels_per_step() {
        let steps: Vec<(u32, u32)> = donai("sub.example.com")
            .generalisations()
            .map(|g| (g.step, g.levels_up))
            .collect();
        assert_eq!(steps, [(0, 0), (1, 2), (2, 4), (3, 6)]);
    }

    #[test]
    fn selector_walk_keeps_any_user() {
        let walked: Vec<String> = selector("@sub.example.com")
            .generalisations()
            .map(|g| g.selector.to_string())
            .collect();
        assert_eq!(walked, ["@sub.example.com", "@.example.com", "@.com", "@."]);
    }

    #[test]
    fn every_walk_step_matches_its_start() {
        let id = donai("user@a.b.example.org");
        for step in id.generalisations() {
            assert!(step.selector.matches(&id), "{} should match", step.selector);
        }
    }
}
