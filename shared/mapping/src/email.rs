//! Email addresses: normalisation for matching, redaction for logs and reports, and the key
//! that stands for a person where an address must not be kept.

use sha2::{Digest, Sha256};

/// Trims and lower-cases an address, so CM and SF spellings of one address compare equal
/// (PRODUCT.md §3.6: matching is case-insensitive).
pub fn normalize_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Whether a (normalised) address looks like one: something before the `@`, a dot after it,
/// no spaces or characters an address cannot hold unquoted, at most 254 characters.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';' | '(' | ')'))
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

/// A stable key for a person's address that holds no address: what run records and the retry
/// queue keep, so an admin can still find a person's failures by address (the key of the
/// address they type) without the table holding the address itself. SHA-256 of the normalised
/// address under a fixed domain tag, 128 bits in hex, `p-` first.
pub fn person_key(email: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"cm-sf-sync person\0")
        .chain_update(normalize_email(email).as_bytes())
        .finalize();
    let mut key = String::with_capacity(34);
    key.push_str("p-");
    for byte in &digest[..16] {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// `text` with every token holding an `@` redacted ([`redact_email`]): an error message from
/// Salesforce or Campaign Monitor can quote the value it refused, well-formed or not.
pub fn redact_emails_in(text: &str) -> String {
    if !text.contains('@') {
        return text.to_owned();
    }
    let is_delimiter = |c: char| c.is_whitespace() || "\"<>()[],;`".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.contains('@') && !token.contains("***@") {
            out.push_str(&redact_email(token));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_delimiter(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
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

    #[test]
    fn a_person_key_is_the_same_for_every_spelling_and_holds_no_address() {
        let key = person_key("Jo.Bloggs@Example.com ");
        assert_eq!(key, person_key("jo.bloggs@example.com"));
        assert_ne!(key, person_key("jo.bloggs@example.org"));
        assert!(key.starts_with("p-") && key.len() == 34, "{key}");
        assert!(!key.contains("bloggs") && !key.contains('@'));
    }

    #[test]
    fn addresses_inside_a_message_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_emails_in("duplicate value jo.bloggs@example.com on record 003x (see a@b)"),
            "duplicate value j***@example.com on record 003x (see a***@b)"
        );
        assert_eq!(
            redact_emails_in("EmailAddress is not an email address: jo@@example.com"),
            "EmailAddress is not an email address: j***@example.com"
        );
        assert_eq!(
            redact_emails_in("<o'brien+news@mail.example.co.uk>: refused; x@y.io too"),
            "<o***@mail.example.co.uk>: refused; x***@y.io too"
        );
        assert_eq!(redact_emails_in("already j***@example.com"), "already j***@example.com");
        assert_eq!(redact_emails_in("no address here"), "no address here");
    }
}
