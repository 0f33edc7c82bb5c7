//! Page requests with Mattermost's defaults and cap, and the opaque page tokens of the
//! keyset listings (the audit trail, the token lists), in one place.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq as _;

use super::error::{Error, Reason, Result};
use super::lifecycle::AuditKey;

/// Default page size (Mattermost's `PerPageDefault`).
pub const DEFAULT_PER_PAGE: u64 = 60;
/// Largest page size; larger requests are capped (Mattermost's `PerPageMaximum`).
pub const MAX_PER_PAGE: u64 = 200;
/// Largest number of rows a query may skip: every supported database takes OFFSET as a
/// signed 64-bit integer. A page further out than this is empty without asking the database
/// (no table holds that many rows).
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u64,
    per_page: u64,
}

impl PageRequest {
    /// Strict form used by gRPC: absent values take the defaults, negatives are refused,
    /// `per_page` above the maximum is capped, `per_page` 0 yields an empty page.
    pub fn new(page: Option<i64>, per_page: Option<i64>) -> Result<Self> {
        let page = match page {
            None => 0,
            Some(p) if p < 0 => {
                return Err(Error::invalid(
                    "page",
                    Reason::InvalidUrlParam,
                    "must be zero or positive",
                ));
            }
            Some(p) => p as u64,
        };
        let per_page = match per_page {
            None => DEFAULT_PER_PAGE,
            Some(p) if p < 0 => {
                return Err(Error::invalid(
                    "per_page",
                    Reason::InvalidUrlParam,
                    "must be zero or positive",
                ));
            }
            Some(p) => (p as u64).min(MAX_PER_PAGE),
        };
        Ok(Self { page, per_page })
    }

    /// Lenient form, exactly as Mattermost parses `?page=&per_page=`: unparsable or negative
    /// values fall back to the defaults.
    pub fn from_query(page: Option<&str>, per_page: Option<&str>) -> Self {
        let page = page
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| *p >= 0)
            .map_or(0, |p| p as u64);
        let per_page = per_page
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| *p >= 0)
            .map_or(DEFAULT_PER_PAGE, |p| (p as u64).min(MAX_PER_PAGE));
        Self { page, per_page }
    }

    /// Whether the page is certainly empty: `per_page` is 0, or it starts beyond
    /// [`MAX_OFFSET`]. The store answers such a page without a query.
    pub fn is_empty(&self) -> bool {
        self.per_page == 0
            || self
                .page
                .checked_mul(self.per_page)
                .is_none_or(|offset| offset > MAX_OFFSET)
    }

    /// Rows to skip; never above [`MAX_OFFSET`] (check [`PageRequest::is_empty`] first).
    pub fn offset(&self) -> u64 {
        self.page.saturating_mul(self.per_page).min(MAX_OFFSET)
    }

    /// Rows to return.
    pub fn limit(&self) -> u64 {
        self.per_page
    }
}

/// How a keyset listing that also offers Mattermost's `page`/`per_page` is paged: by page
/// number (OFFSET, as Mattermost), or after the previous page's `next_page_token` (keyset:
/// the database seeks to the position in the index, whatever the page's depth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListPaging {
    /// `page`/`per_page`.
    Offset(PageRequest),
    /// The page after `page_token` ("": the first page), `limit` rows (at least 1).
    Keyset { page_token: String, limit: u64 },
}

impl ListPaging {
    /// Strict form used by gRPC: a non-empty `page_token` continues a keyset walk, with
    /// `per_page` rows; `page` must then be absent (a position and a page number together
    /// are `InvalidArgument` naming `page_token`). Otherwise [`PageRequest::new`].
    pub fn new(page: Option<i64>, per_page: Option<i64>, page_token: &str) -> Result<Self> {
        if page_token.is_empty() {
            return PageRequest::new(page, per_page).map(ListPaging::Offset);
        }
        if page.is_some() {
            return Err(page_and_page_token());
        }
        Self::keyset(page_token, PageRequest::new(None, per_page)?)
    }

    /// Lenient form of the REST shim: `page_token` present (even empty: the first page)
    /// asks for keyset paging, with Mattermost's lenient `per_page`; `page` must then be
    /// absent. Without `page_token`, exactly Mattermost's [`PageRequest::from_query`].
    pub fn from_query(
        page: Option<&str>,
        per_page: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<Self> {
        let Some(page_token) = page_token else {
            return Ok(ListPaging::Offset(PageRequest::from_query(page, per_page)));
        };
        if page.is_some() {
            return Err(page_and_page_token());
        }
        Self::keyset(page_token, PageRequest::from_query(None, per_page))
    }

    fn keyset(page_token: &str, size: PageRequest) -> Result<Self> {
        if size.limit() == 0 {
            return Err(Error::invalid(
                "per_page",
                Reason::InvalidUrlParam,
                "must be at least 1 with page_token",
            ));
        }
        Ok(ListPaging::Keyset {
            page_token: page_token.to_owned(),
            limit: size.limit(),
        })
    }

    /// Rows a page holds.
    pub fn limit(&self) -> u64 {
        match self {
            ListPaging::Offset(page) => page.limit(),
            ListPaging::Keyset { limit, .. } => *limit,
        }
    }
}

fn page_and_page_token() -> Error {
    Error::invalid(
        "page_token",
        Reason::InvalidUrlParam,
        "cannot be combined with page: pass one or the other",
    )
}

/// Longest accepted page token, in bytes (the server's are about 60-80).
const MAX_PAGE_TOKEN_BYTES: usize = 256;

/// An opaque page token: where a keyset listing's page ended (`position`, the listing's own
/// text form of it), authenticated under the audit key together with the listing's filters
/// (`fingerprint`), base64url. A token is only good for the listing (`domain`) and the
/// filters that issued it. The position is not secret (a client could decode it), only
/// not forgeable.
pub(super) fn seal_page_token(
    key: &AuditKey,
    domain: &[u8],
    fingerprint: &str,
    position: &str,
) -> String {
    let mac = page_token_mac(key, domain, fingerprint, position);
    URL_SAFE_NO_PAD.encode(format!("{position}.{mac}"))
}

fn page_token_mac(key: &AuditKey, domain: &[u8], fingerprint: &str, position: &str) -> String {
    let message = format!("{fingerprint}\0{position}");
    let mut mac = key.mac_hex(domain, message.as_bytes());
    // 128 bits are plenty to refuse an altered token, and keep it short.
    mac.truncate(32);
    mac
}

/// A page token decoded but not yet checked: read [`OpenedPageToken::position`], then
/// [`OpenedPageToken::verify`] it against the listing's filters before trusting it.
#[derive(Debug)]
pub(super) struct OpenedPageToken {
    position: String,
    mac: String,
}

/// `INVALID_ARGUMENT` naming `page_token`: not a token the server issued.
pub(super) fn malformed_page_token() -> Error {
    Error::invalid(
        "page_token",
        Reason::InvalidUrlParam,
        "is malformed: pass the previous page's next_page_token unchanged",
    )
}

/// Decodes a page token's form (the length, base64url, `position.mac`); anything else is
/// [`malformed_page_token`].
pub(super) fn open_page_token(token: &str) -> Result<OpenedPageToken> {
    if token.len() > MAX_PAGE_TOKEN_BYTES {
        return Err(malformed_page_token());
    }
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(malformed_page_token)?;
    let (position, mac) = text.split_once('.').ok_or_else(malformed_page_token)?;
    Ok(OpenedPageToken {
        position: position.to_owned(),
        mac: mac.to_owned(),
    })
}

impl OpenedPageToken {
    /// Where the previous page ended, as the listing wrote it (unchecked).
    pub(super) fn position(&self) -> &str {
        &self.position
    }

    /// Whether the token was issued by this server for this listing and these filters:
    /// `INVALID_ARGUMENT` naming `page_token` otherwise.
    pub(super) fn verify(&self, key: &AuditKey, domain: &[u8], fingerprint: &str) -> Result<()> {
        let expected = page_token_mac(key, domain, fingerprint, &self.position);
        if bool::from(expected.as_bytes().ct_eq(self.mac.as_bytes())) {
            Ok(())
        } else {
            Err(Error::invalid(
                "page_token",
                Reason::InvalidUrlParam,
                "does not belong to this query: it was altered, or the filters changed since \
                 the first page (repeat them unchanged)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cap_and_refusals() {
        let p = PageRequest::new(None, None).unwrap();
        assert_eq!((p.offset(), p.limit()), (0, 60));
        let p = PageRequest::new(Some(2), Some(500)).unwrap();
        assert_eq!((p.offset(), p.limit()), (400, 200));
        assert_eq!(PageRequest::new(Some(0), Some(0)).unwrap().limit(), 0);
        assert!(PageRequest::new(Some(-1), None).is_err());
        assert!(PageRequest::new(None, Some(-1)).is_err());
    }

    #[test]
    fn query_form_is_lenient_like_mattermost() {
        let p = PageRequest::from_query(Some("x"), Some("-3"));
        assert_eq!((p.offset(), p.limit()), (0, 60));
        let p = PageRequest::from_query(Some("1"), Some("1000"));
        assert_eq!((p.offset(), p.limit()), (200, 200));
    }

    #[test]
    fn list_paging_is_by_number_unless_a_page_token_is_given_and_never_both() {
        assert_eq!(
            ListPaging::new(Some(2), Some(10), "").unwrap(),
            ListPaging::Offset(PageRequest::new(Some(2), Some(10)).unwrap())
        );
        assert_eq!(
            ListPaging::new(None, Some(500), "abc").unwrap(),
            ListPaging::Keyset {
                page_token: "abc".into(),
                limit: MAX_PER_PAGE
            }
        );
        let both = ListPaging::new(Some(0), None, "abc").unwrap_err();
        assert!(both.to_string().starts_with("page_token:"), "{both}");
        let zero = ListPaging::new(None, Some(0), "abc").unwrap_err();
        assert!(zero.to_string().starts_with("per_page:"), "{zero}");
        // REST: Mattermost's lenient page numbers without page_token; with it (even empty),
        // keyset paging with the lenient per_page.
        assert_eq!(
            ListPaging::from_query(Some("x"), Some("-1"), None).unwrap(),
            ListPaging::Offset(PageRequest::from_query(None, None))
        );
        assert_eq!(
            ListPaging::from_query(None, Some("x"), Some("")).unwrap(),
            ListPaging::Keyset {
                page_token: String::new(),
                limit: DEFAULT_PER_PAGE
            }
        );
        assert!(ListPaging::from_query(Some("0"), None, Some("")).is_err());
        assert!(ListPaging::from_query(None, Some("0"), Some("")).is_err());
    }

    #[test]
    fn a_page_beyond_what_the_database_can_skip_is_empty_and_never_overflows() {
        let far = PageRequest::from_query(Some(&i64::MAX.to_string()), Some("200"));
        assert!(far.is_empty());
        assert!(far.offset() <= MAX_OFFSET);
        // i64::MAX * 60 overflows u64 too.
        let far = PageRequest::from_query(Some(&i64::MAX.to_string()), None);
        assert!(far.is_empty());
        assert_eq!(far.offset(), MAX_OFFSET);
        // The last page the database can still be asked for.
        let last = PageRequest::from_query(Some(&(i64::MAX / 200).to_string()), Some("200"));
        assert!(!last.is_empty());
        assert_eq!(last.offset(), (i64::MAX / 200 * 200) as u64);
        let past = PageRequest::from_query(Some(&(i64::MAX / 200 + 1).to_string()), Some("200"));
        assert!(past.is_empty());
        assert!(PageRequest::new(Some(0), Some(0)).unwrap().is_empty());
        assert!(!PageRequest::new(None, None).unwrap().is_empty());
    }
}
