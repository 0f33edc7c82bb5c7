//! The shape of the secrets this service mints, and recognising a presented one offline.
//!
//! Two formats authenticate, whatever the configuration says new tokens look like:
//!
//! * **Mattermost's**: 26 letters and digits (Mattermost mints lower-case ids of 128 random
//!   bits), with nothing to tell it from any other id. Tokens minted before the switch keep working forever.
//! * **Checksummed** (ours, chosen by `[token_format] style = "checksummed"`): a readable prefix
//!   naming the deployment and the kind (`mmp_` for a personal access token, `mms_` for a
//!   session, `mmc_` for a slash-command token with the default prefix `mm`), then 30 base62
//!   characters of randomness (178 bits) and 6 base62 characters holding the CRC32 of
//!   everything before them. Letters, digits and one `_`: a double-click selects the whole
//!   token. At most 50 characters, the length Mattermost's header parser keeps.
//!
//! A presented token of neither shape, or of the checksummed shape with a wrong checksum, is
//! refused before any cache or database lookup: a guess costs a CRC, not a query.

use std::fmt;

/// The longest deployment prefix: with the kind letter, `_`, 30 random and 6 checksum
/// characters, a token is at most 50 characters.
pub const MAX_PREFIX_CHARS: usize = 12;

/// Random characters of a checksummed token (base62: 30 × log2(62) ≈ 178.6 bits).
pub const RANDOM_CHARS: usize = 30;

/// Checksum characters: a CRC32 in base62 (62^6 > 2^32), most significant digit first.
pub const CHECKSUM_CHARS: usize = 6;

/// Mattermost's token length.
pub const MATTERMOST_TOKEN_CHARS: usize = 26;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a secret authenticates as, as its checksummed prefix names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A personal access token (`…p_`).
    PersonalAccessToken,
    /// A login session (`…s_`).
    Session,
    /// A slash command's token (`…c_`).
    Command,
}

impl SecretKind {
    fn letter(self) -> u8 {
        match self {
            SecretKind::PersonalAccessToken => b'p',
            SecretKind::Session => b's',
            SecretKind::Command => b'c',
        }
    }

    fn from_letter(letter: u8) -> Option<Self> {
        match letter {
            b'p' => Some(SecretKind::PersonalAccessToken),
            b's' => Some(SecretKind::Session),
            b'c' => Some(SecretKind::Command),
            _ => None,
        }
    }

    /// The kind's name in configuration, metrics and documentation.
    pub fn id(self) -> &'static str {
        match self {
            SecretKind::PersonalAccessToken => "personal_access_token",
            SecretKind::Session => "session",
            SecretKind::Command => "command",
        }
    }
}

/// What a presented token looks like, decided without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A Mattermost-format token (26 ASCII letters and digits, as before the checksummed format
    /// existed).
    Mattermost,
    /// A checksummed token whose checksum holds.
    Checksummed(SecretKind),
    /// A checksummed token (prefix, kind and length right) whose checksum is wrong: a typo,
    /// a truncation or a guess.
    BadChecksum,
    /// Neither format: this service never minted it.
    Malformed,
}

impl Shape {
    /// The shape's name in answers and documentation.
    pub fn id(self) -> &'static str {
        match self {
            Shape::Mattermost => "mattermost",
            Shape::Checksummed(_) => "checksummed",
            Shape::BadChecksum => "bad_checksum",
            Shape::Malformed => "malformed",
        }
    }

    /// Whether a token of this shape could authenticate.
    pub fn may_authenticate(self) -> bool {
        matches!(self, Shape::Mattermost | Shape::Checksummed(_))
    }
}

/// The format new secrets are minted in.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum TokenFormat {
    /// Mattermost's 26-character ids (the default: byte-for-byte what Mattermost mints).
    #[default]
    Mattermost,
    /// Prefixed and checksummed, with this deployment prefix (`mm` by default).
    Checksummed {
        /// Lower-case letters and digits, starting with a letter, at most 12.
        prefix: String,
    },
}

impl fmt::Debug for TokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFormat::Mattermost => f.write_str("Mattermost"),
            TokenFormat::Checksummed { prefix } => write!(f, "Checksummed({prefix})"),
        }
    }
}

impl TokenFormat {
    /// The checksummed format with `prefix`, checked: lower-case ASCII letters and digits,
    /// starting with a letter, 1 to 12 characters.
    pub fn checksummed(prefix: &str) -> Result<Self, String> {
        check_prefix(prefix)?;
        Ok(TokenFormat::Checksummed {
            prefix: prefix.to_owned(),
        })
    }

    /// A new random secret of `kind` in this format.
    pub fn mint(&self, kind: SecretKind) -> String {
        match self {
            TokenFormat::Mattermost => super::ids::new_id(),
            TokenFormat::Checksummed { prefix } => mint_checksummed(prefix, kind),
        }
    }
}

/// Checks a deployment prefix.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let bytes = prefix.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PREFIX_CHARS {
        return Err(format!("must be 1 to {MAX_PREFIX_CHARS} characters"));
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lower-case letter (a-z)".into());
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err("must hold only lower-case letters and digits (a-z, 0-9)".into());
    }
    Ok(())
}

fn mint_checksummed(prefix: &str, kind: SecretKind) -> String {
    let mut token = String::with_capacity(prefix.len() + 2 + RANDOM_CHARS + CHECKSUM_CHARS);
    token.push_str(prefix);
    token.push(char::from(kind.letter()));
    token.push('_');
    let mut filled = 0;
    let mut pool = [0u8; 64];
    while filled < RANDOM_CHARS {
        getrandom::fill(&mut pool).expect("the system's random source failed");
        // Rejection sampling: 248 = 4 × 62, so `b % 62` is uniform over the accepted bytes.
        for b in pool.iter().copied().filter(|&b| b < 248) {
            if filled == RANDOM_CHARS {
                break;
            }
            token.push(char::from(BASE62[usize::from(b % 62)]));
            filled += 1;
        }
    }
    let checksum = encode_checksum(crc32fast::hash(token.as_bytes()));
    token.push_str(std::str::from_utf8(&checksum).expect("base62 is ASCII"));
    token
}

fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_CHARS] {
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

fn base62_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 36),
        _ => None,
    }
}

/// Recognises a presented token offline (no lookup): what shape it has and, for a
/// checksummed token, whether its checksum holds.
pub fn shape(token: &str) -> Shape {
    let bytes = token.as_bytes();
    if bytes.len() == MATTERMOST_TOKEN_CHARS && bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Shape::Mattermost;
    }
    let tail = RANDOM_CHARS + CHECKSUM_CHARS;
    // prefix (1..=12) + kind letter + '_' + tail
    if bytes.len() < tail + 3 || bytes.len() > tail + 2 + MAX_PREFIX_CHARS {
        return Shape::Malformed;
    }
    let underscore = bytes.len() - tail - 1;
    let (head, rest) = bytes.split_at(underscore);
    let (prefix, letter) = head.split_at(head.len() - 1);
    let Some(kind) = SecretKind::from_letter(letter[0]) else {
        return Shape::Malformed;
    };
    if rest[0] != b'_'
        || !prefix[0].is_ascii_lowercase()
        || !prefix
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Shape::Malformed;
    }
    let (random, checksum) = rest[1..].split_at(RANDOM_CHARS);
    if !random.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Shape::Malformed;
    }
    let mut value: u64 = 0;
    for &b in checksum {
        let Some(digit) = base62_value(b) else {
            return Shape::Malformed;
        };
        value = value * 62 + u64::from(digit);
    }
    let expected = crc32fast::hash(&bytes[..bytes.len() - CHECKSUM_CHARS]);
    if value == u64::from(expected) {
        Shape::Checksummed(kind)
    } else {
        Shape::BadChecksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksummed(prefix: &str) -> TokenFormat {
        TokenFormat::checksummed(prefix).unwrap()
    }

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let format = checksummed("mm");
        for kind in [
            SecretKind::PersonalAccessToken,
            SecretKind::Session,
            SecretKind::Command,
        ] {
            let token = format.mint(kind);
            assert_eq!(token.len(), 2 + 2 + RANDOM_CHARS + CHECKSUM_CHARS);
            assert_eq!(&token[2..4], format!("{}_", char::from(kind.letter())));
            assert!(token[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(shape(&token), Shape::Checksummed(kind), "{token}");
        }
        let longest = checksummed("abcdefghijkl").mint(SecretKind::Session);
        assert_eq!(longest.len(), 50);
        assert_eq!(shape(&longest), Shape::Checksummed(SecretKind::Session));
    }

    #[test]
    fn mattermost_tokens_keep_their_shape() {
        let token = TokenFormat::Mattermost.mint(SecretKind::PersonalAccessToken);
        assert_eq!(token.len(), MATTERMOST_TOKEN_CHARS);
        assert_eq!(shape(&token), Shape::Mattermost);
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let format = checksummed("acme7");
        for _ in 0..200 {
            let token = format.mint(SecretKind::PersonalAccessToken);
            let bytes = token.as_bytes();
            for at in 0..bytes.len() {
                for replacement in BASE62.iter().copied().chain([b'_', b'-']) {
                    if replacement == bytes[at] {
                        continue;
                    }
                    let mut changed = bytes.to_vec();
                    changed[at] = replacement;
                    let changed = String::from_utf8(changed).unwrap();
                    assert!(
                        !shape(&changed).may_authenticate(),
                        "{token} -> {changed} passed as {:?}",
                        shape(&changed)
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_and_extended_tokens_are_refused() {
        let token = checksummed("mm").mint(SecretKind::Session);
        for end in 0..token.len() {
            assert!(
                !shape(&token[..end]).may_authenticate(),
                "{}",
                &token[..end]
            );
        }
        assert!(!shape(&format!("{token}0")).may_authenticate());
        assert_eq!(shape(&format!("x{token}")), Shape::BadChecksum);
    }

    #[test]
    fn look_alikes_are_malformed_or_bad_checksum() {
        let random = "0".repeat(RANDOM_CHARS);
        assert_eq!(shape(&format!("mmp_{random}000000")), Shape::BadChecksum);
        assert_eq!(shape(&format!("mmx_{random}000000")), Shape::Malformed);
        assert_eq!(shape(&format!("MMp_{random}000000")), Shape::Malformed);
        assert_eq!(shape(&format!("mmp-{random}000000")), Shape::Malformed);
        assert_eq!(shape("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), Shape::Mattermost);
        assert_eq!(shape("abcdefghijklmnopqrstuvwxy_"), Shape::Malformed);
        assert_eq!(shape(""), Shape::Malformed);
        assert_eq!(shape("p_"), Shape::Malformed);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(TokenFormat::checksummed("mm").is_ok());
        assert!(TokenFormat::checksummed("acme2").is_ok());
        for bad in ["", "Mm", "1mm", "m_m", "m-m", "abcdefghijklm", "mé"] {
            assert!(TokenFormat::checksummed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_digits_cover_every_crc() {
        assert_eq!(&encode_checksum(0), b"000000");
        let max = encode_checksum(u32::MAX);
        let value = max.iter().fold(0u64, |acc, &b| {
            acc * 62 + u64::from(base62_value(b).unwrap())
        });
        assert_eq!(value, u64::from(u32::MAX));
    }
}
