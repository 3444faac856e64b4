//! The tenant password policy (SPEC D2), following NIST SP 800-63B: a minimum length, a blocklist
//! of common passwords, and optional complexity and expiry (both off by default).

use serde::{Deserialize, Serialize};

/// Common passwords refused whatever their letter case or letter/digit substitutions.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
    "qwertyuiop",
    "qwerty123",
    "abc123",
    "letmein",
    "welcome",
    "welcome1",
    "welcome123",
    "admin",
    "administrator",
    "admin123",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "trustno1",
    "master",
    "superman",
    "batman",
    "starwars",
    "whatever",
    "shadow",
    "michael",
    "jennifer",
    "hunter2",
    "changeme",
    "secret",
    "default",
    "login",
    "passpass",
    "test1234",
    "testtest",
    "azerty",
    "11111111",
    "00000000",
    "87654321",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "asdfghjk",
    "asdfasdf",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
    "summer2025",
    "winter2025",
    "summer2026",
    "winter2026",
    "p@ssword",
    "letmein1",
    "football1",
    "mustang",
    "access",
    "flower",
    "computer",
    "internet",
    "corvette",
    "ferrari",
    "cheese",
    "killer",
    "pepper",
    "ginger",
    "charlie",
    "jordan23",
    "liverpool",
    "chelsea",
    "arsenal",
    "google",
    "microsoft",
    "windows",
    "linux",
    "ubuntu",
    "debian",
    "contoso",
    "fabrikam",
    "azure",
    "usher",
    "company",
    "companyname",
    "temp1234",
    "temporary",
    "newpassword",
    "mypassword",
];

/// A tenant's password policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordPolicy {
    /// Minimum length in characters (default 8).
    pub min_length: usize,
    /// Require three of: lower case, upper case, digit, symbol (default off).
    #[serde(default)]
    pub require_complexity: bool,
    /// Days after which a password expires and must be changed (default: never).
    #[serde(default)]
    pub max_age_days: Option<u32>,
    /// Extra words the tenant bans, matched like the built-in list.
    #[serde(default)]
    pub banned_words: Vec<String>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            require_complexity: false,
            max_age_days: None,
            banned_words: vec![],
        }
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Shorter than the minimum.
    #[error("the password must be at least {min} characters long")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// Longer than 256 characters.
    #[error("the password must be at most 256 characters long")]
    TooLong,
    /// On the blocklist.
    #[error("the password is too common; choose one that is harder to guess")]
    Common,
    /// Contains the user's name.
    #[error("the password must not contain the user name")]
    ContainsUserName,
    /// Complexity required and not met.
    #[error("the password must contain three of: lower-case letters, upper-case letters, digits, symbols")]
    NotComplex,
}

/// Maps a password to a canonical form: case folded, common substitutions undone.
fn canonical(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '0' => 'o',
            '1' | 'l' | '!' | '|' => 'i',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' | '+' => 't',
            '8' => 'b',
            '9' => 'g',
            other => other,
        })
        .collect()
}

impl PasswordPolicy {
    /// Checks a new password for the user whose sign-in name is `user_name`.
    pub fn check(&self, password: &str, user_name: &str) -> Result<(), PolicyViolation> {
        let len = password.chars().count();
        if len < self.min_length {
            return Err(PolicyViolation::TooShort { min: self.min_length });
        }
        if len > 256 {
            return Err(PolicyViolation::TooLong);
        }
        let canon = canonical(password);
        let banned = COMMON_PASSWORDS
            .iter()
            .map(|w| canonical(w))
            .chain(self.banned_words.iter().map(|w| canonical(w)));
        for word in banned {
            if canon == word {
                return Err(PolicyViolation::Common);
            }
        }
        let local = user_name.split('@').next().unwrap_or_default();
        if local.chars().count() >= 3 && canon.contains(&canonical(local)) {
            return Err(PolicyViolation::ContainsUserName);
        }
        if self.require_complexity {
            let classes = [
                password.chars().any(|c| c.is_lowercase()),
                password.chars().any(|c| c.is_uppercase()),
                password.chars().any(|c| c.is_ascii_digit()),
                password.chars().any(|c| !c.is_alphanumeric()),
            ];
            if classes.iter().filter(|b| **b).count() < 3 {
                return Err(PolicyViolation::NotComplex);
            }
        }
        Ok(())
    }

    /// Whether a password set at `set_at` (unix seconds) has expired at `now`.
    pub fn is_expired(&self, set_at: i64, now: i64) -> bool {
        match self.max_age_days {
            Some(days) => now.saturating_sub(set_at) > i64::from(days) * 86_400,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_accepts_a_long_uncommon_password() {
        assert_eq!(
            PasswordPolicy::default().check("correct horse battery", "ann@contoso.test"),
            Ok(())
        );
    }

    #[test]
    fn too_short_is_refused() {
        assert_eq!(
            PasswordPolicy::default().check("Xy7$abc", "ann@contoso.test"),
            Err(PolicyViolation::TooShort { min: 8 })
        );
    }

    #[test]
    fn blocklist_undoes_case_and_substitutions() {
        let p = PasswordPolicy::default();
        for pw in [
            "password",
            "PASSWORD1",
            "P@ssw0rd1",
            "p4$$w0rd",
            "Adm1n123",
            "W3lc0me123",
        ] {
            assert_eq!(
                p.check(pw, "x@contoso.test"),
                Err(PolicyViolation::Common),
                "{pw}"
            );
        }
        // A blocklisted word inside a longer password is fine (whole-password match only).
        assert_eq!(p.check("password-for-my-cat-tom", "x@contoso.test"), Ok(()));
    }

    #[test]
    fn tenant_words_are_banned_too() {
        let p = PasswordPolicy {
            banned_words: vec!["northwind".into()],
            ..Default::default()
        };
        assert_eq!(
            p.check("N0rthw1nd", "x@contoso.test"),
            Err(PolicyViolation::Common)
        );
    }

    #[test]
    fn user_name_is_refused() {
        assert_eq!(
            PasswordPolicy::default().check("xx-Annabel-99", "annabel@contoso.test"),
            Err(PolicyViolation::ContainsUserName)
        );
    }

    #[test]
    fn complexity_only_when_enabled() {
        let p = PasswordPolicy {
            require_complexity: true,
            ..Default::default()
        };
        assert_eq!(
            p.check("alllowercaseletters", "x@y"),
            Err(PolicyViolation::NotComplex)
        );
        assert_eq!(p.check("Mixed-case words", "x@y"), Ok(()));
        assert_eq!(
            PasswordPolicy::default().check("alllowercaseletters", "x@y"),
            Ok(())
        );
    }

    #[test]
    fn expiry_is_off_by_default() {
        assert!(!PasswordPolicy::default().is_expired(0, 10_000_000_000));
        let p = PasswordPolicy {
            max_age_days: Some(90),
            ..Default::default()
        };
        assert!(!p.is_expired(0, 90 * 86_400));
        assert!(p.is_expired(0, 90 * 86_400 + 1));
    }
}
