//! Fuzzing that runs under plain `cargo test`: property tests (proptest) of the id and
//! token formats, and of the parsers that read what a client presents (the presented-token
//! parser and its shapes, the `Authorization` header, the `Cookie` headers, the query
//! string). Each parser target also replays its corpus, `tests/fuzz-corpus/<target>/` (one
//! input per file, bytes as sent), and mutates corpus entries at random, so inputs that
//! once mattered are tried on every run and serve as seeds. `PROPTEST_CASES` raises the
//! number of cases (256 by default); `.ci/run` runs these tests once more with more cases.
//!
//! The REST bodies and the Go-compatible JSON decoder are fuzzed in `rest::fuzz_tests`,
//! which shares the corpus and mutation helpers here.

use std::path::PathBuf;

use proptest::prelude::*;

use super::{
    credentials::{
        authorization_header_token, cookie, parse_authorization_header, presented_token, query_get,
        query_unescape,
    },
    ids::{self, is_valid_id, new_id},
    token_format::{
        CHECKSUM_CHARS, MATTERMOST_TOKEN_CHARS, MAX_PREFIX_CHARS, RANDOM_CHARS, SecretKind, Shape,
        TokenFormat, shape,
    },
};

/// The inputs of `tests/fuzz-corpus/<target>/`, sorted by file name; a target whose corpus
/// is missing or empty fails, so a replay cannot pass by reading nothing.
pub(crate) fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(
        inputs.len() >= 3,
        "corpus {} has fewer than 3 inputs",
        dir.display()
    );
    inputs
}

/// One edit of a mutation: what to do, where (modulo the length), and with which byte.
#[derive(Debug, Clone, Copy)]
enum Edit {
    Insert(usize, u8),
    Remove(usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for &edit in edits {
        let len = input.len();
        match edit {
            Edit::Insert(at, b) => input.insert(at % (len + 1), b),
            Edit::Remove(at) if len > 0 => {
                input.remove(at % len);
            }
            Edit::Replace(at, b) if len > 0 => input[at % len] = b,
            Edit::Duplicate(at, n) if len > 0 => {
                let start = at % len;
                let end = (start + n).min(len);
                let copy = input[start..end].to_vec();
                input.splice(end..end, copy);
            }
            _ => {}
        }
    }
    input
}

/// Inputs for a parser target: a corpus entry with up to 8 random edits, or random bytes.
pub(crate) fn fuzz_input(target: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds = corpus(target);
    prop_oneof![
        3 => (proptest::sample::select(seeds), proptest::collection::vec(edit(), 0..8))
            .prop_map(|(seed, edits)| apply(seed, &edits)),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// Inputs as text (lossy), for parsers that take a `&str`.
pub(crate) fn fuzz_text(target: &str) -> impl Strategy<Value = String> + use<> {
    fuzz_input(target).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Splits a corpus file into lines (a file may hold one input per line).
fn lines(input: &[u8]) -> impl Iterator<Item = String> + '_ {
    input
        .split(|b| *b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
}

// ----- the properties each target keeps, whatever the input -----

/// The presented-token parser: truncation to 50 characters on a character boundary, a
/// prefix of what was sent, and a shape that is consistent with what the text is.
fn presented_token_holds(raw: &str) {
    let Some(token) = presented_token(raw) else {
        assert!(raw.is_empty(), "only an empty token is no token: {raw:?}");
        return;
    };
    let text = token.expose();
    assert!(raw.starts_with(text));
    assert_eq!(text.chars().count(), raw.chars().count().min(50));
    assert_eq!(format!("{token:?}"), "PlainToken(<redacted>)");
    match token.shape() {
        Shape::Mattermost => {
            assert_eq!(text.len(), MATTERMOST_TOKEN_CHARS);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        Shape::Checksummed(_) | Shape::BadChecksum => {
            let tail = RANDOM_CHARS + CHECKSUM_CHARS;
            assert!(text.is_ascii());
            assert!(text.len() > tail + 2 && text.len() <= tail + 2 + MAX_PREFIX_CHARS);
            assert_eq!(text.as_bytes()[text.len() - tail - 1], b'_');
        }
        Shape::Malformed => {}
    }
}

/// The `Authorization` header: `Bearer`/`Token` in any case and one separator, else
/// nothing; the token part is the rest of the value, untouched.
fn authorization_holds(value: &str) {
    let token = authorization_header_token(value);
    let lower = value.to_ascii_lowercase();
    if let Some(token) = token {
        assert!(value.ends_with(token));
        let head = value.len() - token.len();
        assert!(
            (lower.starts_with("bearer") && head == 7) || (lower.starts_with("token") && head == 6),
            "{value:?} cut at {head}"
        );
    } else {
        let cut_at = |n: usize| value.is_char_boundary(n);
        let scheme_and_token =
            (lower.starts_with("bearer") && cut_at(7)) || (lower.starts_with("token") && cut_at(6));
        assert!(!scheme_and_token, "{value:?} has a scheme and a token");
    }
    let parsed = parse_authorization_header(value);
    assert_eq!(
        parsed.as_ref().map(|t| t.expose().to_owned()),
        token
            .and_then(presented_token)
            .map(|t| t.expose().to_owned())
    );
}

/// The `Cookie` headers: a value found is free of the bytes Go refuses, and appears in
/// the header as sent (possibly quoted).
fn cookie_holds(headers: &[&[u8]], name: &str) {
    if let Some(value) = cookie(headers.iter().copied(), name) {
        assert!(
            value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && !b"\";\\".contains(&b)),
            "{value:?}"
        );
        let needle = value.as_bytes();
        assert!(
            needle.is_empty()
                || headers
                    .iter()
                    .any(|h| h.windows(needle.len()).any(|w| w == needle)),
            "{value:?} is not in the headers"
        );
    }
}

/// The query string: `query_get` is the first of what a pair-by-pair read finds.
fn query_holds(query: &str) {
    for name in ["access_token", "actions", ""] {
        let first = query_get(Some(query), name);
        let mut by_hand = None;
        for pair in query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if query_unescape(key).as_deref() == Some(name)
                && let Some(value) = query_unescape(value)
            {
                by_hand = Some(value);
                break;
            }
        }
        assert_eq!(first, by_hand, "{query:?} {name:?}");
    }
}

// ----- corpus replays -----

#[test]
fn the_presented_token_corpus_replays() {
    for input in corpus("presented-token") {
        for line in lines(&input) {
            presented_token_holds(&line);
            let _ = shape(&line);
        }
    }
}

#[test]
fn the_authorization_corpus_replays() {
    for input in corpus("authorization") {
        for line in lines(&input) {
            authorization_holds(&line);
        }
    }
}

#[test]
fn the_cookie_corpus_replays() {
    for input in corpus("cookie") {
        let headers: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        cookie_holds(&headers, "MMAUTHTOKEN");
    }
}

#[test]
fn the_query_corpus_replays() {
    for input in corpus("query") {
        for line in lines(&input) {
            query_holds(&line);
        }
    }
}

fn kind() -> impl Strategy<Value = SecretKind> {
    prop_oneof![
        Just(SecretKind::PersonalAccessToken),
        Just(SecretKind::Session),
        Just(SecretKind::Command),
    ]
}

/// A valid deployment prefix.
fn prefix() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,11}"
}

proptest! {
    #[test]
    fn presented_tokens_hold_whatever_is_sent(raw in fuzz_text("presented-token")) {
        presented_token_holds(&raw);
    }

    #[test]
    fn any_text_is_a_presented_token_or_nothing(raw in "\\PC{0,80}") {
        presented_token_holds(&raw);
    }

    #[test]
    fn authorization_headers_hold_whatever_is_sent(value in fuzz_text("authorization")) {
        authorization_holds(&value);
    }

    #[test]
    fn cookies_hold_whatever_is_sent(input in fuzz_input("cookie")) {
        let headers: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        cookie_holds(&headers, "MMAUTHTOKEN");
    }

    #[test]
    fn query_strings_hold_whatever_is_sent(query in fuzz_text("query")) {
        query_holds(&query);
    }

    /// Any scheme casing and separator: the token comes back as sent (truncated to 50).
    #[test]
    fn a_bearer_or_token_header_gives_back_its_token(
        scheme in prop_oneof![Just("bearer"), Just("token")],
        upper in proptest::collection::vec(any::<bool>(), 6),
        separator in any::<char>().prop_filter("one byte", |c| c.is_ascii()),
        token in "[A-Za-z0-9_]{1,80}",
    ) {
        let scheme: String = scheme
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        let value = format!("{scheme}{separator}{token}");
        prop_assert_eq!(authorization_header_token(&value), Some(token.as_str()));
        let parsed = parse_authorization_header(&value).unwrap();
        prop_assert_eq!(parsed.expose(), &token[..token.len().min(50)]);
    }

    /// MMAUTHTOKEN among other cookies, in any header, optionally quoted, is found; an
    /// earlier malformed one of the same name does not hide it.
    #[test]
    fn the_session_cookie_is_found_among_others(
        before in proptest::collection::vec(("[A-Za-z]{1,8}", "[A-Za-z0-9]{0,12}"), 0..4),
        after in proptest::collection::vec(("[A-Za-z]{1,8}", "[A-Za-z0-9]{0,12}"), 0..4),
        value in "[A-Za-z0-9]{0,40}",
        quoted in any::<bool>(),
        broken_first in any::<bool>(),
        split in any::<bool>(),
    ) {
        let before: Vec<String> = before
            .into_iter()
            .filter(|(n, _)| n != "MMAUTHTOKEN")
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let after: Vec<String> = after.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
        let sent = if quoted { format!("\"{value}\"") } else { value.clone() };
        let mut first = before.clone();
        if broken_first {
            first.push("MMAUTHTOKEN=a\\b".to_owned());
        }
        let ours = format!("MMAUTHTOKEN={sent}");
        let (one, two) = if split {
            (first.join("; "), [vec![ours], after].concat().join("; "))
        } else {
            ([first, vec![ours], after].concat().join("; "), String::new())
        };
        let headers = [one.as_bytes(), two.as_bytes()];
        prop_assert_eq!(cookie(headers, "MMAUTHTOKEN"), Some(value));
    }

    /// Percent-encoding any text and decoding it is the identity.
    #[test]
    fn query_escapes_round_trip(text in "\\PC{0,40}", name in "p_[a-z]{1,10}") {
        let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
        prop_assert_eq!(query_unescape(&encoded), Some(text.clone()));
        let query = format!("x=1&{name}={encoded}&{name}=second");
        prop_assert_eq!(query_get(Some(&query), &name), Some(text));
    }

    /// Minted tokens have their format's shape, and checksummed ones name their kind.
    #[test]
    fn minted_tokens_have_their_shape(prefix in prefix(), kind in kind()) {
        let token = TokenFormat::Mattermost.mint(kind);
        prop_assert_eq!(shape(&token), Shape::Mattermost);
        prop_assert!(is_valid_id(&token));
        let format = TokenFormat::checksummed(&prefix).unwrap();
        let token = format.mint(kind);
        prop_assert_eq!(shape(&token), Shape::Checksummed(kind));
        prop_assert!(token.starts_with(&prefix));
        prop_assert_eq!(token.len(), prefix.len() + 2 + RANDOM_CHARS + CHECKSUM_CHARS);
        presented_token_holds(&token);
    }

    /// Any one character of a checksummed token's random part or checksum replaced by
    /// another letter or digit is caught offline (never `Checksummed`); a truncation or
    /// an extension is never `Checksummed` either.
    #[test]
    fn a_typo_in_a_checksummed_token_is_caught(
        prefix in prefix(),
        kind in kind(),
        at in 0..(RANDOM_CHARS + CHECKSUM_CHARS),
        replacement in "[A-Za-z0-9]",
        cut in 1usize..10,
    ) {
        let token = TokenFormat::checksummed(&prefix).unwrap().mint(kind);
        let position = token.len() - RANDOM_CHARS - CHECKSUM_CHARS + at;
        let original = &token[position..=position];
        prop_assume!(replacement != original);
        let typo = format!("{}{replacement}{}", &token[..position], &token[position + 1..]);
        prop_assert_ne!(shape(&typo), Shape::Checksummed(kind));
        prop_assert!(!shape(&typo).may_authenticate() || shape(&typo) == Shape::Mattermost);
        let short = &token[..token.len() - cut];
        prop_assert!(!matches!(shape(short), Shape::Checksummed(_)));
        let long = format!("{token}{replacement}");
        prop_assert!(!matches!(shape(&long), Shape::Checksummed(_)));
    }

    /// Prefixes: exactly lower-case letters and digits, starting with a letter, 1 to 12.
    #[test]
    fn prefixes_are_checked_by_the_documented_rule(prefix in "\\PC{0,14}") {
        let valid = (1..=MAX_PREFIX_CHARS).contains(&prefix.len())
            && prefix.as_bytes()[0].is_ascii_lowercase()
            && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        prop_assert_eq!(TokenFormat::checksummed(&prefix).is_ok(), valid);
    }

    /// Ids: what is minted is valid, in Mattermost's alphabet, and 26 characters.
    #[test]
    fn new_ids_are_valid_mattermost_ids(_round in 0..4u8) {
        let id = new_id();
        prop_assert!(is_valid_id(&id));
        prop_assert!(id.bytes().all(|b| b"ybndrfg8ejkmcpqxot1uwisza345h769".contains(&b)));
        prop_assert_eq!(id.len(), 26);
    }

    /// Id validation accepts exactly 26 bytes of letters and digits (Unicode ones too, as
    /// Go's `unicode.IsLetter`/`IsDigit`), and a typed id parses exactly what validates,
    /// naming the field otherwise.
    #[test]
    fn id_validation_is_length_and_alphanumerics(value in prop_oneof![
        "[a-z0-9]{26}",
        "[a-zA-Z0-9]{20,30}",
        "\\PC{0,30}",
        "[a-z0-9]{25}[-_ .]",
    ]) {
        let expected = value.len() == 26 && value.chars().all(char::is_alphanumeric);
        prop_assert_eq!(is_valid_id(&value), expected);
        let parsed = ids::UserId::parse(&value, "user_id", super::error::Reason::InvalidUrlParam);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Err(e) = parsed {
            prop_assert!(e.to_string().contains("user_id"), "{}", e);
        }
    }
}
