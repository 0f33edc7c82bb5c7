//! Rules every piece of free text a request asks us to store follows, whatever its field.

use super::error::{Error, Reason, Result};

/// Refuses text containing the NUL character (U+0000). PostgreSQL cannot store it in a text
/// column, and the service keeps one behaviour on every database, so it is refused
/// everywhere, before anything is written, as INVALID_ARGUMENT naming `field`.
pub fn require_no_nul(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        Err(Error::invalid(
            field,
            Reason::InvalidBodyParam,
            "must not contain the NUL character (U+0000)",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_naming_the_field() {
        assert!(require_no_nul("description", "ordinary text, ünïcode 🎉").is_ok());
        let err = require_no_nul("description", "a\0b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "description: must not contain the NUL character (U+0000)"
        );
        assert_eq!(err.reason(), Reason::InvalidBodyParam);
    }
}
