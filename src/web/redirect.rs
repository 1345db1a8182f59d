//! Where a `next` parameter may send the browser: only a local path.

/// Longest `next` kept.
const MAX_LEN: usize = 2048;

/// `next` when it is a local path (`/...`), else `None`.
///
/// Refused: anything not starting with exactly one `/` (`//host`, `/\host`,
/// schemes, relative paths), any backslash, control character, space or
/// non-ASCII character, and percent-encoded slashes or backslashes, which some
/// servers and browsers decode before following.
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let local = bytes.first() == Some(&b'/') && !matches!(bytes.get(1), Some(b'/' | b'\\'));
    let clean = next.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    let lower = next.to_ascii_lowercase();
    let encoded_separator = lower.contains("%2f") || lower.contains("%5c");
    (local && clean && !encoded_separator).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_kept() {
        for ok in [
            "/",
            "/protected",
            "/protected?tab=2",
            "/account#sessions",
            "/a/b?x=%20y",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn hostile_targets_are_refused() {
        let hostile = [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\\/evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "evil.example",
            "protected",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5c%5cevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nLocation: https://evil.example",
            "/ /evil.example",
            "/\u{0}",
            "/caf\u{e9}",
            "/\u{ff0f}evil.example",
            "\u{3000}//evil.example",
            " /protected",
        ];
        for bad in hostile {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }
}
