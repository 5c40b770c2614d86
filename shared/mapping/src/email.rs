//! Email addresses: normalisation for matching, redaction for logs and reports.

/// Trims and lower-cases an address, so CM and SF spellings of one address compare equal
/// (PRODUCT.md §3.6: matching is case-insensitive).
pub fn normalize_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// A form of the address that is safe to log: the first character of the local part, then
/// `***`, then the domain (`j***@example.com`). Never log the whole address.
pub fn redact_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(normalize_email("  Jo.Bloggs@Example.COM \n"), "jo.bloggs@example.com");
    }

    #[test]
    fn redaction_keeps_only_a_hint() {
        assert_eq!(redact_email("jo.bloggs@example.com"), "j***@example.com");
        assert_eq!(redact_email("not-an-email"), "***");
        assert!(!redact_email("o'brien@example.com").contains("brien"));
    }
}
