//! Links typed into a Salesforce Campaign's link field. Anyone who may edit a Campaign can type
//! one, so a value is trusted only when it is a CM campaign id (32 hexadecimal characters) of a
//! campaign of a configured client; anything else is reported and never stored or synced.

use std::collections::BTreeSet;

/// Why a link field's value is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// Not 32 hexadecimal characters.
    #[error("not a Campaign Monitor campaign id (32 hexadecimal characters)")]
    NotAnId,
    /// A well-formed id, but of no campaign of the clients in `cm_clients`.
    #[error("not a campaign of a configured client (cm_clients)")]
    NotOfAConfiguredClient,
}

/// The CM campaign id a link field's `value` names (lower case, as CM writes ids), if it is one
/// of `campaigns` (every campaign of the configured clients).
pub fn validate_link(value: &str, campaigns: &BTreeSet<String>) -> Result<String, LinkRefused> {
    let id = value.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LinkRefused::NotAnId);
    }
    if !campaigns.contains(&id) {
        return Err(LinkRefused::NotOfAConfiguredClient);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_of_campaigns_of_configured_clients_are_used() {
        let ours = "0123456789abcdef0123456789abcdef";
        let campaigns = BTreeSet::from([ours.to_owned()]);
        assert_eq!(validate_link(ours, &campaigns).as_deref(), Ok(ours));
        assert_eq!(
            validate_link(" 0123456789ABCDEF0123456789ABCDEF ", &campaigns).as_deref(),
            Ok(ours)
        );
        assert_eq!(
            validate_link("fedcba9876543210fedcba9876543210", &campaigns),
            Err(LinkRefused::NotOfAConfiguredClient),
            "another client's campaign"
        );
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789abcdeg",
            "' OR Id != null",
            "../../clients",
        ] {
            assert_eq!(validate_link(bad, &campaigns), Err(LinkRefused::NotAnId), "{bad:?}");
        }
    }
}
