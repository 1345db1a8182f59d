//! Username folding: the one spelling that uniqueness, look-up and throttling
//! compare, so `Alice`, `alice` and `ＡＬＩＣＥ` are one account.
//!
//! Tables come from ICU4X (the Unicode Consortium's Rust libraries), so they
//! track the Unicode version of the crates rather than a hand-kept copy.

use icu_casemap::CaseMapperBorrowed;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::DefaultIgnorableCodePoint;
use icu_properties::CodePointSetData;

/// NFKC, then full case folding, then NFKC again.
///
/// The first NFKC maps compatibility forms (fullwidth letters, ligatures,
/// superscripts) to their plain letters; case folding is the Unicode mapping
/// meant for caseless matching (`ß` → `ss`), unlike lowercasing; the final
/// NFKC recomposes what folding decomposed, so folding a folded name changes
/// nothing. Look-alikes from other scripts (Cyrillic `а` for Latin `a`) stay
/// distinct: they are different names. Callers refuse names for which
/// [`forbidden_char`] finds something before folding them.
pub fn fold(name: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let once = nfkc.normalize(name);
    let folded = CaseMapperBorrowed::new().fold_string(&once);
    nfkc.normalize(&folded).into_owned()
}

/// The first character a username must not contain: a control character
/// (general category Cc) or a Unicode Default_Ignorable_Code_Point
/// (zero-width spaces and joiners, bidi controls, soft hyphen, variation
/// selectors, ...). Both are invisible or reorder text, so they would let two
/// names that look the same be different accounts.
pub fn forbidden_char(name: &str) -> Option<char> {
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    name.chars()
        .find(|&c| c.is_control() || ignorable.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn case_and_width_variants_fold_together() {
        let alice = fold("alice");
        for spelling in [
            "Alice",
            "ALICE",
            "aLiCe",
            "ＡＬＩＣＥ",
            "ａｌｉｃｅ",
            "Ａlice",
        ] {
            assert_eq!(fold(spelling), alice, "{spelling}");
        }
        assert_eq!(alice, "alice");
    }

    #[test]
    fn full_case_folding_not_just_lowercase() {
        // ß folds to "ss" (lowercasing leaves it alone); final sigma to σ.
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("ΟΔΟΣ"), fold("οδος"));
        assert_eq!(fold("ΟΔΟΣ"), fold("οδοσ"));
    }

    #[test]
    fn compatibility_forms_fold_to_plain_letters() {
        assert_eq!(fold("ﬁle"), "file"); // U+FB01 ligature
        assert_eq!(fold("x²"), "x2");
        // Precomposed and decomposed é are one name.
        assert_eq!(fold("Jos\u{e9}"), fold("Jose\u{301}"));
    }

    #[test]
    fn other_scripts_stay_distinct() {
        // Cyrillic а (U+0430) is a different letter from Latin a.
        assert_ne!(fold("\u{430}lice"), fold("alice"));
    }

    #[test]
    fn plain_names_are_unchanged_apart_from_case() {
        assert_eq!(fold("bob_smith-42"), "bob_smith-42");
        assert_eq!(fold("Zoë"), "zoë");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn forbidden_chars_are_found() {
        let cases = [
            ("al\u{200B}ice", '\u{200B}'),   // zero-width space
            ("al\u{200C}ice", '\u{200C}'),   // zero-width non-joiner
            ("al\u{200D}ice", '\u{200D}'),   // zero-width joiner
            ("al\u{2060}ice", '\u{2060}'),   // word joiner
            ("\u{FEFF}alice", '\u{FEFF}'),   // BOM / zero-width no-break space
            ("alice\u{202E}", '\u{202E}'),   // right-to-left override
            ("\u{202A}alice", '\u{202A}'),   // left-to-right embedding
            ("a\u{2066}lice", '\u{2066}'),   // left-to-right isolate
            ("a\u{2069}lice", '\u{2069}'),   // pop directional isolate
            ("al\u{AD}ice", '\u{AD}'),       // soft hyphen
            ("al\u{180E}ice", '\u{180E}'),   // Mongolian vowel separator
            ("alice\u{FE0F}", '\u{FE0F}'),   // variation selector 16
            ("alice\u{E0100}", '\u{E0100}'), // variation selector 17
            ("al\u{34F}ice", '\u{34F}'),     // combining grapheme joiner
            ("al\u{115F}ice", '\u{115F}'),   // Hangul choseong filler
            ("alice\u{E0001}", '\u{E0001}'), // language tag
            ("al\nice", '\n'),
            ("al\tice", '\t'),
            ("\u{0}alice", '\u{0}'),
            ("alice\u{7F}", '\u{7F}'),
            ("alice\u{85}", '\u{85}'), // C1 next line
        ];
        for (name, bad) in cases {
            assert_eq!(forbidden_char(name), Some(bad), "{name:?}");
        }
    }

    #[test]
    fn the_first_forbidden_char_is_reported() {
        assert_eq!(forbidden_char("a\u{200B}b\u{7}c"), Some('\u{200B}'));
    }

    #[test]
    fn ordinary_names_have_no_forbidden_char() {
        for name in [
            "alice",
            "Alice Smith",
            "ＡＬＩＣＥ",
            "José",
            "Zoë",
            "\u{430}lice",
            "山田太郎",
            "محمد",
            "bob.o'neil-2",
            "",
        ] {
            assert_eq!(forbidden_char(name), None, "{name:?}");
        }
    }

    proptest! {
        // Folding is a normal form: applying it twice changes nothing, so a
        // stored folded name can be compared with a freshly folded one.
        #[test]
        fn fold_is_idempotent(name in any::<String>()) {
            let once = fold(&name);
            prop_assert_eq!(fold(&once), once);
        }

        // Letters that fold or normalize to several characters, or that
        // change under NFKC after folding, are where a single pass could fail.
        #[test]
        fn fold_is_idempotent_on_tricky_letters(
            name in "[ßẞİıǰΐΰͅᾳῼﬀﬅŉſǅǈǋǲ㎒ℌ①ｶﾞ가각\u{0345}\u{0301}\u{0308}a-zA-Z]{0,12}"
        ) {
            let once = fold(&name);
            prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn fold_ignores_ascii_case(name in "[A-Za-z0-9_.-]{0,24}") {
            prop_assert_eq!(fold(&name), name.to_ascii_lowercase());
        }
    }
}
