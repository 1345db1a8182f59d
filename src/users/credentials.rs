//! Typed values at the edge: a `Username` that can only be built valid, and the
//! rules a new password must meet.

use std::fmt;

/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 50;
/// Shortest new password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// bcrypt reads only this many bytes: a longer password is refused, never truncated.
pub const PASSWORD_MAX_BYTES: usize = 72;

/// 1–50 characters, no control characters, no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err("Username must not be empty.".to_owned());
        }
        if chars > USERNAME_MAX_CHARS {
            return Err(format!(
                "Username must be at most {USERNAME_MAX_CHARS} characters."
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("Username must not contain control characters.".to_owned());
        }
        if raw.trim() != raw {
            return Err("Username must not start or end with whitespace.".to_owned());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the rules for setting one. Its `Debug` hides it.
pub struct NewPassword(String);

impl NewPassword {
    /// At least 8 characters, at most 72 bytes, and not a well-known common password.
    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(format!(
                "Password is too long: at most {PASSWORD_MAX_BYTES} bytes (bcrypt ignores the rest)."
            ));
        }
        if raw.chars().count() < PASSWORD_MIN_CHARS {
            return Err(format!(
                "Password must be at least {PASSWORD_MIN_CHARS} characters."
            ));
        }
        if is_common(&raw) {
            return Err("Password is too common: choose one that is harder to guess.".to_owned());
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

/// A password is common when zxcvbn's dictionaries (common passwords, words, names),
/// with case, reversal and l33t variants, account for the whole of it in one match,
/// or when zxcvbn rates it the weakest there is.
fn is_common(password: &str) -> bool {
    let estimate = zxcvbn::zxcvbn(password, &[]);
    let whole_word = match estimate.sequence() {
        [only] => matches!(
            only.pattern,
            zxcvbn::matching::patterns::MatchPattern::Dictionary(_)
        ),
        _ => false,
    };
    whole_word || estimate.score() == zxcvbn::Score::Zero
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_one_to_fifty_printable_characters() {
        assert!(Username::parse("test_user").is_ok());
        assert!(Username::parse(&"é".repeat(50)).is_ok());
        for bad in ["", " alice", "alice ", "al\u{0}ice", "al\nice", "a\u{7f}"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Username::parse(&"a".repeat(51)).is_err());
    }

    #[test]
    fn the_seed_password_is_acceptable() {
        assert!(NewPassword::parse("test_password".into()).is_ok());
        assert!(NewPassword::parse("correct horse battery staple".into()).is_ok());
    }

    #[test]
    fn short_long_and_common_passwords_are_refused() {
        for bad in [
            "short",
            "password",
            "Password",
            "password1",
            "p@ssw0rd",
            "12345678",
            "iloveyou",
            "qwertyuiop",
            "drowssap",
            "aaaaaaaa",
            "football",
        ] {
            assert!(NewPassword::parse(bad.into()).is_err(), "{bad}");
        }
        assert!(NewPassword::parse("x".repeat(73)).is_err());
        assert!(
            NewPassword::parse("Zq8#vL2!".repeat(9)).is_ok(),
            "72 bytes exactly is fine"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let p = NewPassword::parse("test_password".into()).unwrap();
        assert!(!format!("{p:?}").contains("test_password"));
    }
}
