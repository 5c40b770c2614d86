//! Text from Campaign Monitor on its way into Salesforce fields (campaign names, bounce
//! reasons). Salesforce reports are exported to spreadsheets, where a cell that begins with
//! `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula (OWASP, "CSV Injection"):
//! such a value gets a leading `'`, which spreadsheets show as text and do not evaluate.

use std::borrow::Cow;

/// The characters that make a spreadsheet cell a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text`, made inert for spreadsheets if it would start a formula.
pub fn neutralise_formula(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_would_start_a_formula_is_made_inert_and_other_text_is_kept() {
        for formula in ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(formula), format!("'{formula}"), "{formula:?}");
        }
        for plain in ["November newsletter", "5xx", "a=b", " =x", ""] {
            assert_eq!(neutralise_formula(plain), plain);
        }
    }
}
