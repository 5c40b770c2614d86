//! Email addresses: normalisation for matching, redaction for logs and reports, and the key
//! that stands for a person where an address must not be kept.

use std::sync::OnceLock;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The deployment's secret peppers: what person keys and webhook dedupe hashes are keyed with,
/// so a table export plus a list of candidate addresses (the CRM itself) does not say whose
/// they are. `previous` is kept during a key change: look-ups match keys made with either.
#[derive(Clone, PartialEq, Eq)]
pub struct Peppers {
    /// Keys are made with this one.
    pub current: [u8; 32],
    /// Keys made before the change still match, until it is dropped.
    pub previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for Peppers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peppers(***)")
    }
}

/// The process's peppers: installed once at start from the deployment's keys secret (every
/// deployed function and the admin CLI do). Without them, keys use a public tag: what unit
/// tests and a scratch local run get, never a deployment.
static PEPPERS: OnceLock<Peppers> = OnceLock::new();

/// Installs the deployment's peppers for this process. `false`: others were installed first
/// (a process has one deployment).
pub fn install_peppers(peppers: Peppers) -> bool {
    PEPPERS.set(peppers.clone()).is_ok() || PEPPERS.get() == Some(&peppers)
}

/// A keyed digest of `parts` (each ended by a NUL): HMAC-SHA256 under `pepper`, or SHA-256
/// under the public tag when there is none.
pub fn keyed_digest(pepper: Option<&[u8; 32]>, tag: &str, parts: &[&str]) -> [u8; 32] {
    match pepper {
        Some(pepper) => {
            // HMAC pads a key shorter than its block with zeros: the same MAC as the 32-byte
            // key, with no fallible constructor.
            let mut block = [0u8; 64];
            block[..32].copy_from_slice(pepper);
            let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
            mac.update(tag.as_bytes());
            mac.update(&[0]);
            for part in parts {
                mac.update(part.as_bytes());
                mac.update(&[0]);
            }
            mac.finalize().into_bytes().into()
        }
        None => {
            let mut hash = Sha256::new();
            hash.update(tag.as_bytes());
            hash.update([0u8]);
            for part in parts {
                hash.update(part.as_bytes());
                hash.update([0u8]);
            }
            hash.finalize().into()
        }
    }
}

/// The installed peppers, current first (none: the public tag).
pub fn installed_peppers() -> Vec<Option<&'static [u8; 32]>> {
    match PEPPERS.get() {
        Some(peppers) => std::iter::once(Some(&peppers.current))
            .chain(peppers.previous.as_ref().map(Some))
            .collect(),
        None => vec![None],
    }
}

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
/// address they type) without the table holding the address itself. HMAC-SHA256 of the
/// normalised address under the deployment's pepper ([`install_peppers`]), 128 bits in hex,
/// `p-` first.
pub fn person_key(email: &str) -> String {
    person_key_with(installed_peppers()[0], email)
}

/// Every key `email` may be stored under: the current pepper's, and the previous one's during
/// a key change (what look-ups and erasure match).
pub fn person_keys(email: &str) -> Vec<String> {
    installed_peppers()
        .into_iter()
        .map(|pepper| person_key_with(pepper, email))
        .collect()
}

/// The person key under `pepper` (none: the public tag).
pub fn person_key_with(pepper: Option<&[u8; 32]>, email: &str) -> String {
    let digest = keyed_digest(pepper, "cm-sf-sync person", &[&normalize_email(email)]);
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

    /// With a pepper, nobody holding the table and a list of candidate addresses can compute a
    /// person's key (the public tag's key is not it), and another deployment's keys differ.
    #[test]
    fn a_peppered_person_key_cannot_be_computed_without_the_pepper() {
        let address = "jo.bloggs@example.com";
        let ours = person_key_with(Some(&[7; 32]), address);
        assert_ne!(ours, person_key_with(None, address));
        assert_ne!(ours, person_key_with(Some(&[8; 32]), address));
        assert_eq!(ours, person_key_with(Some(&[7; 32]), " Jo.Bloggs@EXAMPLE.com"));
        assert!(ours.starts_with("p-") && ours.len() == 34);
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
