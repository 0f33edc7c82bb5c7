//! Page requests with Mattermost's defaults and cap, in one place.

use super::error::{Error, Reason, Result};

/// Default page size (Mattermost's `PerPageDefault`).
pub const DEFAULT_PER_PAGE: u64 = 60;
/// Largest page size; larger requests are capped (Mattermost's `PerPageMaximum`).
pub const MAX_PER_PAGE: u64 = 200;

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

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.page.saturating_mul(self.per_page)
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
}
