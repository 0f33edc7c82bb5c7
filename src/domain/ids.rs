//! Mattermost ids: 26 characters of base32 (alphabet `ybndrfg8ejkmcpqxot1uwisza345h769`)
//! over the 16 bytes of a random UUIDv4. Validation follows Mattermost's `IsValidId`:
//! exactly 26 bytes, every character a letter or a digit.

use std::fmt;

use super::error::{Error, Reason, Result};

const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// A new random Mattermost id (Mattermost's `model.NewId`).
pub fn new_id() -> String {
    encode(uuid::Uuid::new_v4().into_bytes())
}

/// 16 bytes in Mattermost's base32: 26 characters.
fn encode(bytes: [u8; 16]) -> String {
    encode_into(bytes).iter().map(|&c| char::from(c)).collect()
}

/// 16 bytes in Mattermost's base32, without allocating.
fn encode_into(bytes: [u8; 16]) -> [u8; 26] {
    let mut out = [0; 26];
    let mut next = 0;
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out[next] = ALPHABET[((buffer >> bits) & 31) as usize];
            next += 1;
        }
    }
    if bits > 0 {
        out[next] = ALPHABET[((buffer << (5 - bits)) & 31) as usize];
    }
    out
}

/// Mattermost's `IsValidId`.
pub fn is_valid_id(value: &str) -> bool {
    value.len() == 26 && value.chars().all(char::is_alphanumeric)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as a Mattermost id; `field` names it in the error.
            pub fn parse(value: &str, field: &'static str, reason: Reason) -> Result<Self> {
                if is_valid_id(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(Error::invalid(
                        field,
                        reason,
                        "must be a 26-character id of letters and digits",
                    ))
                }
            }

            /// A fresh random id.
            pub fn generate() -> Self {
                Self(new_id())
            }

            /// Wraps a value read back from the database, where it was validated on write.
            pub(crate) fn from_trusted(value: String) -> Self {
                Self(value)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A user id.
    UserId
);
id_type!(
    /// A personal access token id (not its secret).
    TokenId
);
id_type!(
    /// A session id (not its token).
    SessionId
);
id_type!(
    /// A slash command id.
    CommandId
);
id_type!(
    /// A team id.
    TeamId
);
id_type!(
    /// A webhook endpoint id.
    WebhookId
);

/// The id of one gRPC call or REST request: in its span, its log lines and (REST) the
/// `X-Request-ID` header and error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 26]);

impl RequestId {
    /// A fresh id in Mattermost's id shape. Request ids need to be unique, not secret, so
    /// they come from a counter scrambled by a bijection under a random start-up key, not
    /// from the system's random source (one system call per request otherwise). Each thread
    /// takes the counter's numbers a block at a time, so requests on different cores do not
    /// all write one shared counter.
    pub fn generate() -> Self {
        use std::{
            cell::Cell,
            sync::{
                OnceLock,
                atomic::{AtomicU64, Ordering},
            },
        };
        const BLOCK: u64 = 1 << 16;
        static KEY: OnceLock<u128> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            /// The thread's next number and the end of its block.
            static NUMBERS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        let key = *KEY.get_or_init(|| uuid::Uuid::new_v4().as_u128() | 1);
        let n = NUMBERS.with(|numbers| {
            let (mut next, mut end) = numbers.get();
            if next == end {
                next = COUNTER.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            numbers.set((next + 1, end));
            u128::from(next)
        });
        // Multiplying by an odd number and xoring are both bijections on u128, so distinct
        // counters give distinct ids.
        let mixed = (n ^ key.rotate_left(64)).wrapping_mul(key) ^ key;
        Self(encode_into(mixed.to_be_bytes()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII: written from the base32 alphabet.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_have_mattermost_shape() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| RequestId::generate().to_string())
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_valid_id(id)));
    }

    #[test]
    fn request_ids_of_different_threads_are_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5_000)
                        .map(|_| RequestId::generate().to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(all.insert(id), "an id was generated twice");
            }
        }
        assert_eq!(all.len(), 20_000);
    }

    #[test]
    fn new_ids_have_mattermost_shape() {
        for _ in 0..1000 {
            let id = new_id();
            assert_eq!(id.len(), 26);
            assert!(id.bytes().all(|b| ALPHABET.contains(&b)), "{id}");
            // 128 bits: the last character carries 3 data bits and 2 zero bits.
            assert!("yrecowah".contains(id.chars().last().unwrap()), "{id}");
            assert!(is_valid_id(&id));
        }
    }

    #[test]
    fn validation_follows_is_valid_id() {
        assert!(is_valid_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert!(!is_valid_id("notarealuserid"));
        assert!(!is_valid_id("abcdefghijklmnopqrstuvwxy-"));
        assert!(!is_valid_id(""));
        let err = UserId::parse("junk", "user_id", Reason::InvalidUrlParam).unwrap_err();
        assert!(err.to_string().starts_with("user_id: "));
    }
}
