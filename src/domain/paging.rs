//! Page requests with Mattermost's defaults and cap, in one place.

use super::error::{Error, Reason, Result};

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
