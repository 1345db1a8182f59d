//! Typed values at the edge: a `Username` that can only be built valid, and the
//! rules a new password must meet.

use std::fmt;

use super::breached::BreachedFilter;
use super::{common_passwords, fold};

/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 50;
/// Shortest new password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// bcrypt reads only this many bytes: a longer password is refused, never truncated.
pub const PASSWORD_MAX_BYTES: usize = 72;
/// A (folded) username at least this long may not appear in its password;
/// shorter names (`bob`) are too likely to occur by chance.
pub const USERNAME_IN_PASSWORD_MIN_CHARS: usize = 4;

/// Why a username was refused (the message is meant for the person who typed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("Username must not be empty.")]
    Empty,
    #[error("Username must be at most {USERNAME_MAX_CHARS} characters.")]
    TooLong,
    #[error("Username must not contain control characters.")]
    ControlCharacter,
    /// A Default_Ignorable code point: zero-width characters, bidi controls, ...
    #[error("Username must not contain invisible or text-direction characters (U+{:04X}).", u32::from(*.0))]
    InvisibleCharacter(char),
    #[error("Username must not start or end with whitespace.")]
    SurroundingWhitespace,
}

/// Why a new password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("Password is too long: at most {PASSWORD_MAX_BYTES} bytes (bcrypt ignores the rest).")]
    TooLong,
    #[error("Password must be at least {PASSWORD_MIN_CHARS} characters.")]
    TooShort,
    #[error("Password is too common: choose one that is harder to guess.")]
    Common,
    #[error("Password must not contain the username.")]
    ContainsUsername,
    #[error("Password appears in a list of breached passwords: choose another.")]
    Breached,
}

/// 1–50 characters, no control characters, no invisible or text-direction
/// characters, no surrounding whitespace; kept as written and in its folded
/// form ([`fold::fold`]), which is what identifies the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    name: String,
    folded: String,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(UsernameError::Empty);
        }
        if chars > USERNAME_MAX_CHARS {
            return Err(UsernameError::TooLong);
        }
        match fold::forbidden_char(raw) {
            Some(c) if c.is_control() => return Err(UsernameError::ControlCharacter),
            Some(c) => return Err(UsernameError::InvisibleCharacter(c)),
            None => {}
        }
        if raw.trim() != raw {
            return Err(UsernameError::SurroundingWhitespace);
        }
        Ok(Self::stored(raw))
    }

    /// The name of an existing account, not checked again: a name seeded by
    /// SQL may predate the rules. For comparing, never for creating.
    pub(super) fn stored(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            folded: fold::fold(name),
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The form compared for uniqueness, look-up and throttling.
    pub fn folded(&self) -> &str {
        &self.folded
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A password that meets the rules for setting one. Its `Debug` hides it.
pub struct NewPassword(String);

impl NewPassword {
    /// At least 8 characters, at most 72 bytes, and not a well-known common
    /// password. For a known account, use [`NewPassword::parse_for`].
    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        if raw.chars().count() < PASSWORD_MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if is_common(&raw) {
            return Err(PasswordError::Common);
        }
        Ok(Self(raw))
    }

    /// [`NewPassword::parse`]'s rules, and also: not containing the account's
    /// name (folded, when it has 4+ characters), not in the breached list.
    pub fn parse_for(
        raw: String,
        username: &Username,
        breached: Option<&BreachedFilter>,
    ) -> Result<Self, PasswordError> {
        let password = Self::parse(raw)?;
        let name = username.folded();
        if name.chars().count() >= USERNAME_IN_PASSWORD_MIN_CHARS
            && fold::fold(&password.0).contains(name)
        {
            return Err(PasswordError::ContainsUsername);
        }
        password.not_breached(breached)
    }

    /// Refuses a password the breached-password filter holds (when there is one).
    pub fn not_breached(self, breached: Option<&BreachedFilter>) -> Result<Self, PasswordError> {
        match breached {
            Some(filter) if filter.contains(&self.0) => Err(PasswordError::Breached),
            _ => Ok(self),
        }
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

/// A password is common when it (or its base, undressed of digits, punctuation
/// and l33t) is on the shipped list of common passwords; when zxcvbn's
/// dictionaries (common passwords, words, names), with case, reversal and l33t
/// variants, account for the whole of it in one match; or when zxcvbn rates it
/// the weakest there is.
fn is_common(password: &str) -> bool {
    if common_passwords::is_common(password) {
        return true;
    }
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
    fn invisible_and_direction_characters_are_refused() {
        for bad in [
            "alice\u{200B}",
            "al\u{200D}ice",
            "\u{202E}alice",
            "alice\u{2066}",
        ] {
            assert!(
                matches!(
                    Username::parse(bad),
                    Err(UsernameError::InvisibleCharacter(_))
                ),
                "{bad:?}"
            );
        }
        let err = Username::parse("alice\u{200B}").expect_err("zero-width space");
        assert!(err.to_string().contains("U+200B"), "{err}");
        assert_eq!(
            Username::parse("al\nice"),
            Err(UsernameError::ControlCharacter)
        );
    }

    #[test]
    fn a_username_keeps_its_spelling_and_its_folded_form() {
        let name = Username::parse("ＡＬＩＣＥ").expect("fullwidth is fine");
        assert_eq!(name.as_str(), "ＡＬＩＣＥ");
        assert_eq!(name.folded(), "alice");
        assert_eq!(Username::parse("Alice").unwrap().folded(), name.folded());
    }

    #[test]
    fn dressed_up_common_passwords_are_refused() {
        for bad in [
            "Password123!",
            "P@ssw0rd1",
            "Qwerty123!",
            "Welcome123!",
            "Summer2024!",
            "Changeme1",
            "letmein123",
        ] {
            assert_eq!(
                NewPassword::parse(bad.into()).map(drop),
                Err(PasswordError::Common),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_password_may_not_contain_the_username() {
        let alice = Username::parse("Alice").unwrap();
        for bad in [
            "alice-rocks-2024",
            "MyALICEpassphrase",
            "ｘｘａｌｉｃｅｘｘ ok",
        ] {
            assert_eq!(
                NewPassword::parse_for(bad.into(), &alice, None).map(drop),
                Err(PasswordError::ContainsUsername),
                "{bad}"
            );
        }
        assert!(NewPassword::parse_for("plinth-oboe-marsupial".into(), &alice, None).is_ok());
        // Three characters are too short a name to hold against a password.
        let bob = Username::parse("bob").unwrap();
        assert!(NewPassword::parse_for("bob's fine password".into(), &bob, None).is_ok());
        // The seed's user keeps the seed's password.
        let seed = Username::parse("test_user").unwrap();
        assert!(NewPassword::parse_for("test_password".into(), &seed, None).is_ok());
    }

    #[test]
    fn a_breached_password_is_refused_only_with_a_filter() {
        use sha1::Digest as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("breached.filter");
        let line = format!(
            "{}:42\n",
            hex::encode_upper(sha1::Sha1::digest(b"plinth-oboe-marsupial"))
        );
        super::super::breached::build(line.as_bytes(), &path).expect("build");
        let filter = BreachedFilter::open(&path).expect("open");
        let carol = Username::parse("carol").unwrap();
        let parse = |raw: &str, filter| NewPassword::parse_for(raw.into(), &carol, filter);

        assert_eq!(
            parse("plinth-oboe-marsupial", Some(&filter)).map(drop),
            Err(PasswordError::Breached)
        );
        assert!(parse("plinth-oboe-marsupial", None).is_ok());
        assert!(parse("quartz-lantern-fjord", Some(&filter)).is_ok());
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
