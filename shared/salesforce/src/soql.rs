//! SOQL literals and `IN (...)` lists that are always safe and always fit.
//!
//! Email addresses may legally hold apostrophes, backslashes, quotes and non-ASCII: every value
//! goes through [`quote`], which escapes per Salesforce's *Quoted String Escape Sequences*, so a
//! value can never end the literal early (no SOQL injection). `IN` lists are split so each
//! query's encoded URI stays under Salesforce's 16,384-byte limit.

/// Salesforce refuses request URIs longer than this.
pub const MAX_URI_BYTES: usize = 16_384;

/// A quoted SOQL string literal: `'o\'brien@example.com'`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A `LIKE` pattern literal matching text that contains `value` anywhere: `'%o\'brien\_x%'`.
/// `%` and `_` in `value` are escaped (`\%`, `\_`: SOQL's escapes for a literal percent and
/// underscore, meaningful only in `LIKE`), so a search for `50%_off` finds only that text.
pub fn like_containing(value: &str) -> String {
    let quoted = quote(value);
    let inner = &quoted[1..quoted.len() - 1];
    format!("'%{}%'", inner.replace('%', "\\%").replace('_', "\\_"))
}

/// The length of `q=<soql>` once form-encoded, as it travels in the query string.
pub fn encoded_len(soql: &str) -> usize {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("q", soql)
        .finish()
        .len()
}

/// Splits `values` into queries `before (v1,v2,...) after` of at most `max_values` values, each
/// costing at most `budget` as `cost` measures a piece of query text. A single value too long to
/// fit alone still gets a query of its own (Salesforce will refuse it, which the caller sees as
/// an error, never as silently lost data).
fn chunk_in_list(
    before: &str,
    values: &[String],
    after: &str,
    max_values: usize,
    budget: usize,
    cost: impl Fn(&str) -> usize,
) -> Vec<String> {
    let mut queries = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let base = cost(&format!("{before}(){after}"));
    let mut size = base;
    for value in values {
        let quoted = quote(value);
        // Each value adds itself and a comma.
        let added = cost(&format!("{quoted},"));
        if !current.is_empty() && (size + added > budget || current.len() >= max_values) {
            queries.push(format!("{before}({}){after}", current.join(",")));
            current.clear();
            size = base;
        }
        size += added;
        current.push(quoted);
    }
    if !current.is_empty() {
        queries.push(format!("{before}({}){after}", current.join(",")));
    }
    queries
}

/// Splits `values` into queries each fitting in `budget` encoded bytes of query string (a GET).
pub fn in_list_queries(before: &str, values: &[String], after: &str, budget: usize) -> Vec<String> {
    // Measured without the `q=` that `encoded_len` adds, which the budget then leaves room for.
    chunk_in_list(before, values, after, usize::MAX, budget.saturating_sub(2), |text| {
        encoded_len(text) - 2
    })
}

/// Splits `values` into queries of at most `max_values` values and `max_chars` characters of
/// SOQL each: for queries sent in a request body (Composite), where the URI limit does not
/// apply but the SOQL statement limit does.
pub fn in_list_queries_by_length(
    before: &str,
    values: &[String],
    after: &str,
    max_values: usize,
    max_chars: usize,
) -> Vec<String> {
    chunk_in_list(before, values, after, max_values, max_chars, |text| {
        text.chars().count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_like_pattern_matches_the_text_literally_and_cannot_end_early() {
        assert_eq!(like_containing("Spring"), "'%Spring%'");
        assert_eq!(like_containing("50%_off"), r"'%50\%\_off%'");
        assert_eq!(like_containing(r"o'brien\"), r"'%o\'brien\\%'");
    }

    #[test]
    fn body_queries_are_cut_by_value_count_and_by_length() {
        let values: Vec<String> = (0..10).map(|i| format!("v{i}@x.com")).collect();
        let by_count = in_list_queries_by_length("SELECT Id FROM Lead WHERE Email IN ", &values, "", 4, 100_000);
        assert_eq!(by_count.len(), 3);
        assert!(by_count[0].ends_with("('v0@x.com','v1@x.com','v2@x.com','v3@x.com')"));
        let by_length = in_list_queries_by_length("SELECT Id FROM Lead WHERE Email IN ", &values, "", 100, 80);
        assert!(by_length.iter().all(|q| q.chars().count() <= 80), "{by_length:?}");
        let joined: Vec<String> = by_length
            .iter()
            .flat_map(|q| q.matches("@x.com").map(str::to_owned))
            .collect();
        assert_eq!(joined.len(), 10, "every value once");
    }

    #[test]
    fn quoting_escapes_everything_that_could_end_the_literal() {
        assert_eq!(quote("o'brien@example.com"), r"'o\'brien@example.com'");
        assert_eq!(quote(r"back\slash"), r"'back\\slash'");
        assert_eq!(quote("say \"hi\""), r#"'say \"hi\"'"#);
        assert_eq!(quote("x' OR Name != '"), r"'x\' OR Name != \''");
        assert_eq!(quote("ünïcødé@例え.jp"), "'ünïcødé@例え.jp'");
        assert_eq!(quote("50%_off"), "'50%_off'", "% and _ are only special in LIKE");
    }

    #[test]
    fn in_lists_are_split_under_the_budget_and_keep_every_value() {
        let values: Vec<String> = (0..2000).map(|i| format!("person{i:05}+tag@example.com")).collect();
        let queries = in_list_queries("SELECT Id FROM Contact WHERE Email IN ", &values, " LIMIT 2000", 4000);
        assert!(queries.len() > 1);
        assert!(queries.iter().all(|q| encoded_len(q) <= 4000), "every query fits");
        let total: usize = queries.iter().map(|q| q.matches("@example.com").count()).sum();
        assert_eq!(total, 2000);
    }
}
