//! Token material as types.
//!
//! A [`PlainToken`] is a secret as a client sent it or as it is minted: it is never logged
//! (its `Debug` is redacted, it has no `Display`) and never stored. What the database holds is
//! its [`TokenDigest`], HMAC-SHA256 under the server key, so a copy of the database alone
//! cannot be used to forge or check tokens. Digests are compared in constant time.

use std::fmt;

use std::collections::BTreeMap;

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::token_format::{SecretKind, Shape, TokenFormat, shape};

/// A secret token in plaintext. Redacted in `Debug`; no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken(TokenText);

impl PlainToken {
    /// Mints a new random secret of `kind` in `format`.
    pub fn mint(format: &TokenFormat, kind: SecretKind) -> Self {
        let token = format.mint(kind);
        minted::note(&token);
        Self(TokenText::new(&token))
    }

    /// Wraps a token presented by a client (copied; a token of the usual length without an
    /// allocation).
    pub fn from_presented(value: impl AsRef<str>) -> Self {
        Self(TokenText::new(value.as_ref()))
    }

    /// The secret itself, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Constant-time equality of two tokens (the length is not hidden).
    pub fn matches(&self, other: &PlainToken) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }

    /// What the token looks like, decided offline: a token that is not of a shape this
    /// service mints (or whose checksum is wrong) cannot authenticate, so it is refused
    /// without a cache or database lookup.
    pub fn shape(&self) -> Shape {
        shape(self.expose())
    }
}

/// Longest token text held without an allocation: every token this service mints (26
/// characters, or a checksummed token's prefix, kind, 30 random characters and checksum)
/// fits, so checking a presented token copies it to the stack, not to the heap.
const INLINE_TOKEN_BYTES: usize = 64;

/// A token's text: inline up to [`INLINE_TOKEN_BYTES`], on the heap beyond.
#[derive(Clone)]
enum TokenText {
    Inline(arrayvec::ArrayString<INLINE_TOKEN_BYTES>),
    Heap(Box<str>),
}

impl TokenText {
    fn new(text: &str) -> Self {
        arrayvec::ArrayString::from(text).map_or_else(|_| Self::Heap(Box::from(text)), Self::Inline)
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Inline(text) => text.as_str(),
            Self::Heap(text) => text,
        }
    }
}

impl PartialEq for TokenText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TokenText {}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainToken(<redacted>)")
    }
}

/// The keyed digest of a token, as stored: 64 lower-case hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest(String);

impl TokenDigest {
    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The stored form of a digest computed as bytes ([`TokenHasher::mac`]).
    pub fn from_mac(mac: &[u8; 32]) -> Self {
        Self(to_hex(mac))
    }

    /// Constant-time equality (a lookup by digest is followed by this check, so timing never
    /// depends on how much of a guess matched).
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

/// The server key: at least 32 bytes. Every replica of a deployment needs the same key.
#[derive(Clone)]
pub struct ServerKey(Vec<u8>);

/// Minimum server key length in bytes.
pub const SERVER_KEY_MIN_BYTES: usize = 32;

impl ServerKey {
    /// Parses a key given as hex (at least 64 hex digits).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the server key must be written in hexadecimal digits".into());
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("checked hex"))
            .collect();
        if bytes.len() < SERVER_KEY_MIN_BYTES {
            return Err(format!(
                "the server key must be at least {SERVER_KEY_MIN_BYTES} bytes ({} hex digits)",
                SERVER_KEY_MIN_BYTES * 2
            ));
        }
        Ok(Self(bytes))
    }

    /// The key's bytes (to derive other keys from).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A new random key, as hex.
    pub fn generate_hex() -> Result<String, String> {
        let mut bytes = [0u8; SERVER_KEY_MIN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| format!("no system randomness: {e}"))?;
        let hex = to_hex(&bytes);
        minted::note(&hex);
        Ok(hex)
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

/// Computes token digests under the server key.
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
    /// The key of [`TokenHasher::quick_key`]: random, drawn when the process starts, never
    /// stored or sent.
    quick: siphasher::sip128::SipHasher24,
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher(<redacted>)")
    }
}

/// The fixed message whose digest identifies a server key without revealing it.
const KEY_CHECK_MESSAGE: &[u8] = b"token-service server key check v1";

impl TokenHasher {
    /// A hasher keyed with `key`.
    pub fn new(key: &ServerKey) -> Self {
        let mut quick_key = [0u8; 16];
        getrandom::fill(&mut quick_key).expect("the system's random source is available");
        Self {
            mac: Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC accepts any key length"),
            quick: siphasher::sip128::SipHasher24::new_with_key(&quick_key),
        }
    }

    /// A 128-bit keyed hash of `token` (SipHash-2-4 under this process's random key) that
    /// finds a thread's copy of the token's cached principal without computing its MAC: a
    /// cache hit on a thread's copy costs a third of an HMAC-SHA-256. Nobody outside the
    /// process sees a quick key or its key, so no one can choose a token that collides with
    /// another's (2^-128 by chance); the MAC stays the key of everything stored or shared.
    pub fn quick_key(&self, token: &PlainToken) -> u128 {
        use siphasher::sip128::Hasher128 as _;
        use std::hash::Hasher as _;
        let mut hasher = self.quick;
        hasher.write(token.expose().as_bytes());
        hasher.finish128().as_u128()
    }

    /// The digest of `token`.
    pub fn digest(&self, token: &PlainToken) -> TokenDigest {
        TokenDigest::from_mac(&self.mac(token))
    }

    /// The digest of `token` as bytes, before it is written as text: the token cache's key
    /// (a cache hit never needs the text).
    pub fn mac(&self, token: &PlainToken) -> [u8; 32] {
        self.mac_of(token.expose().as_bytes())
    }

    /// A public fingerprint of the key, stored in the database so a server started with a
    /// different key refuses to run instead of silently rejecting every token.
    pub fn key_check(&self) -> String {
        to_hex(&self.mac_of(KEY_CHECK_MESSAGE))
    }

    fn mac_of(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

/// Encrypts slash-command tokens at rest with AES-256-GCM. A command token is sent with
/// every slash-command request, so it must be recoverable and cannot be hashed.
///
/// Stored form: `<key id>.<base64url(nonce || ciphertext || tag)>`, with the command id as
/// associated data, so a ciphertext copied onto another command does not decrypt. The keyring
/// always holds the key derived from the server key (id `server`) plus any configured keys;
/// new tokens use the current key and every known key still decrypts, so keys can rotate.
#[derive(Clone)]
pub struct CommandTokenCipher {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for CommandTokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandTokenCipher")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The id of the key derived from the server key.
pub const DERIVED_COMMAND_KEY_ID: &str = "server";

impl CommandTokenCipher {
    /// A keyring of the key derived from `server_key`, plus `configured` keys (id to hex key of
    /// 32 bytes); `current` names the key new tokens use (default: the derived key).
    pub fn new(
        server_key: &ServerKey,
        configured: &BTreeMap<String, String>,
        current: Option<&str>,
    ) -> Result<Self, String> {
        let mut derive = Hmac::<Sha256>::new_from_slice(&server_key.0).expect("any key length");
        derive.update(b"token-service command token encryption key v1");
        let derived = derive.finalize().into_bytes();
        let mut keys = BTreeMap::new();
        keys.insert(
            DERIVED_COMMAND_KEY_ID.to_owned(),
            Aes256Gcm::new_from_slice(&derived).expect("32-byte key"),
        );
        for (id, hex) in configured {
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "command_tokens.keys.{id}: a key id is 1 to 32 lower-case letters, digits, '_' or '-'"
                ));
            }
            let bytes = ServerKey::from_hex(hex)
                .map_err(|e| format!("command_tokens.keys.{id}: {e}"))?
                .0;
            if bytes.len() != 32 {
                return Err(format!(
                    "command_tokens.keys.{id}: an AES-256 key is exactly 32 bytes (64 hex digits)"
                ));
            }
            keys.insert(
                id.clone(),
                Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            );
        }
        let current = current.unwrap_or(DERIVED_COMMAND_KEY_ID).to_owned();
        if !keys.contains_key(&current) {
            return Err(format!(
                "command_tokens.current_key: no key {current:?} in command_tokens.keys"
            ));
        }
        Ok(Self { current, keys })
    }

    /// The id of the key new tokens are encrypted with.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `token` for the record identified by `record_id`.
    pub fn encrypt(&self, token: &PlainToken, record_id: &str) -> Result<String, String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no system randomness: {e}"))?;
        let cipher = &self.keys[&self.current];
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: record_id.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{}.{}", self.current, URL_SAFE_NO_PAD.encode(blob)))
    }

    /// Decrypts a stored token of the record `record_id`.
    pub fn decrypt(&self, stored: &str, record_id: &str) -> Result<PlainToken, String> {
        let (key_id, encoded) = stored
            .split_once('.')
            .ok_or("stored command token is malformed")?;
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| format!("command token encrypted with unknown key {key_id:?}"))?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| "stored command token is not base64")?;
        if blob.len() < 12 + 16 {
            return Err("stored command token is truncated".into());
        }
        let (nonce, sealed) = blob.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: record_id.as_bytes(),
                },
            )
            .map_err(|_| format!("command token does not decrypt with key {key_id:?}"))?;
        String::from_utf8(plain)
            .map(|text| PlainToken(TokenText::new(&text)))
            .map_err(|_| "decrypted command token is not text".into())
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Test support: every secret this process mints (tokens, webhook signing secrets, TURN
/// passwords, generated server keys) is also written, one a line, to a sink the test
/// harness installs, so that a scan of the logs can look for each of them
/// (`tests/integration/common/secret_scan.rs`). Compiled only with the
/// `record-minted-secrets` feature, which only this crate's own tests enable (a dev-dependency
/// on itself); a release build contains none of it.
#[cfg(feature = "record-minted-secrets")]
pub mod minted {
    use std::{
        io::Write,
        sync::{Mutex, OnceLock},
    };

    static SINK: OnceLock<Mutex<Box<dyn Write + Send>>> = OnceLock::new();

    /// Sends every secret minted from now on to `sink`; `false` if a sink is already set.
    pub fn record_to(sink: Box<dyn Write + Send>) -> bool {
        SINK.set(Mutex::new(sink)).is_ok()
    }

    pub(crate) fn note(secret: &str) {
        if let Some(sink) = SINK.get() {
            let mut sink = sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(sink, "{secret}").and_then(|()| sink.flush());
        }
    }
}

/// Without the `record-minted-secrets` feature nothing is recorded.
#[cfg(not(feature = "record-minted-secrets"))]
pub(crate) mod minted {
    #[inline(always)]
    pub(crate) fn note(_secret: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> TokenHasher {
        TokenHasher::new(&ServerKey::from_hex(&"ab".repeat(32)).unwrap())
    }

    #[test]
    fn a_quick_key_is_stable_per_token_and_keyed_per_process_not_by_the_server_key() {
        let (one, two) = (hasher(), hasher());
        let token = PlainToken::from_presented("abcdefghijklmnopqrstuvwxyz");
        let other = PlainToken::from_presented("abcdefghijklmnopqrstuvwxyA");
        assert_eq!(one.quick_key(&token), one.quick_key(&token));
        assert_ne!(one.quick_key(&token), one.quick_key(&other));
        // Same server key, same MAC; each hasher draws its own quick key.
        assert_eq!(one.mac(&token), two.mac(&token));
        assert_ne!(one.quick_key(&token), two.quick_key(&token));
    }

    #[test]
    fn digests_are_keyed_and_stable() {
        let token = PlainToken::from_presented("abcdefghijklmnopqrstuvwxyz");
        let a = hasher().digest(&token);
        assert_eq!(a, hasher().digest(&token));
        assert_eq!(a.as_str().len(), 64);
        let other = TokenHasher::new(&ServerKey::from_hex(&"cd".repeat(32)).unwrap());
        assert_ne!(a, other.digest(&token));
        assert!(a.matches(&hasher().digest(&token)));
        assert!(!a.matches(&other.digest(&token)));
    }

    #[test]
    fn secrets_are_redacted() {
        let token = PlainToken::mint(
            &TokenFormat::checksummed("mm").unwrap(),
            SecretKind::PersonalAccessToken,
        );
        assert!(!format!("{token:?}").contains(token.expose()));
        let digest = hasher().digest(&token);
        assert!(!format!("{digest:?}").contains(digest.as_str()));
        let key = ServerKey::from_hex(&"ab".repeat(32)).unwrap();
        assert!(!format!("{key:?}").contains("ab"));
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        assert!(ServerKey::from_hex("abcd").is_err());
        assert!(ServerKey::from_hex(&"zz".repeat(32)).is_err());
        let generated = ServerKey::generate_hex().unwrap();
        assert!(ServerKey::from_hex(&generated).is_ok());
    }

    #[test]
    fn tokens_of_any_length_keep_their_text_and_digest() {
        let hasher = hasher();
        for text in ["a", &"b".repeat(64), &"c".repeat(65), &"é".repeat(40)] {
            let token = PlainToken::from_presented(text);
            assert_eq!(token.expose(), text);
            assert_eq!(hasher.mac(&token), hasher.mac_of(text.as_bytes()));
            assert!(token.matches(&PlainToken::from_presented(text)));
            assert!(!token.matches(&PlainToken::from_presented(format!("{text}x"))));
        }
        let minted = PlainToken::mint(
            &TokenFormat::Checksummed {
                prefix: "abcdefghijkl".into(),
            },
            SecretKind::PersonalAccessToken,
        );
        assert!(
            matches!(minted.0, TokenText::Inline(_)),
            "a minted token (the longest prefix) is held inline"
        );
    }

    #[test]
    fn command_tokens_round_trip_rotate_and_bind_to_their_record() {
        let key = ServerKey::from_hex(&"ab".repeat(32)).unwrap();
        let derived = CommandTokenCipher::new(&key, &BTreeMap::new(), None).unwrap();
        let token = PlainToken::mint(&TokenFormat::Mattermost, SecretKind::Command);
        let stored = derived.encrypt(&token, "cmd1").unwrap();
        assert!(stored.starts_with("server."));
        assert!(!stored.contains(token.expose()));
        assert_eq!(derived.decrypt(&stored, "cmd1").unwrap(), token);
        assert!(
            derived.decrypt(&stored, "cmd2").is_err(),
            "bound to its record"
        );

        let mut keys = BTreeMap::new();
        keys.insert("k2".to_owned(), "cd".repeat(32));
        let rotated = CommandTokenCipher::new(&key, &keys, Some("k2")).unwrap();
        assert_eq!(
            rotated.decrypt(&stored, "cmd1").unwrap(),
            token,
            "old rows still decrypt"
        );
        let newer = rotated.encrypt(&token, "cmd1").unwrap();
        assert!(newer.starts_with("k2."));
        assert!(
            derived.decrypt(&newer, "cmd1").is_err(),
            "the old keyring lacks k2"
        );

        assert!(CommandTokenCipher::new(&key, &keys, Some("k9")).is_err());
        let mut bad = BTreeMap::new();
        bad.insert("k3".to_owned(), "ab".repeat(40));
        assert!(CommandTokenCipher::new(&key, &bad, None).is_err());
        assert!(!format!("{rotated:?}").contains(&"cd".repeat(4)));
    }

    #[test]
    fn shape_check_accepts_what_is_minted_in_either_format() {
        let mattermost = PlainToken::mint(&TokenFormat::Mattermost, SecretKind::Session);
        assert_eq!(mattermost.shape(), Shape::Mattermost);
        let ours = TokenFormat::checksummed("mm").unwrap();
        let checksummed = PlainToken::mint(&ours, SecretKind::Session);
        assert_eq!(checksummed.shape(), Shape::Checksummed(SecretKind::Session));
        assert_eq!(
            PlainToken::from_presented("short").shape(),
            Shape::Malformed
        );
        assert_eq!(
            PlainToken::from_presented("a".repeat(27)).shape(),
            Shape::Malformed
        );
    }
}
