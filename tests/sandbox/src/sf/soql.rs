//! The SOQL subset the product and the official clients use: `SELECT` fields (with parent
//! relationship fields) `FROM` one object, `WHERE` with `AND`/`OR`/`NOT` and parentheses, `=`,
//! `!=`/`<>`, `<`, `<=`, `>`, `>=`, `IN`, `NOT IN`, `LIKE`; `ORDER BY`; `LIMIT`. String literals
//! follow Salesforce's escape rules; anything else is `MALFORMED_QUERY`.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Selected fields as written (`Name`, `Campaign.Name`).
    pub fields: Vec<String>,
    /// The object.
    pub object: String,
    /// The filter.
    pub condition: Option<Condition>,
    /// Sort keys: field and ascending.
    pub order_by: Vec<(String, bool)>,
    /// Row limit.
    pub limit: Option<usize>,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`
    Text(String),
    /// `12`, `1.5`
    Number(f64),
    /// `true`/`false`
    Bool(bool),
    /// `null`
    Null,
    /// `2026-01-01` or `2026-01-01T00:00:00Z`, kept as text
    Date(String),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`, `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A WHERE condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `a AND b`
    And(Box<Condition>, Box<Condition>),
    /// `a OR b`
    Or(Box<Condition>, Box<Condition>),
    /// `NOT a`
    Not(Box<Condition>),
    /// `field op literal`
    Compare(String, Op, Literal),
    /// `field [NOT] IN (...)`
    In(String, Vec<Literal>, bool),
    /// `field LIKE 'pattern'`
    Like(String, String),
}

/// Why a query is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(&'static str),
}

fn tokenize(soql: &str) -> Result<Vec<Token>, Malformed> {
    let chars: Vec<char> = soql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(Malformed("unterminated string literal".into()));
                };
                i += 1;
                match c {
                    '\'' => break,
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return Err(Malformed("unterminated escape".into()));
                        };
                        i += 1;
                        match e {
                            '\'' | '"' | '\\' => text.push(e),
                            'n' => text.push('\n'),
                            'r' => text.push('\r'),
                            't' => text.push('\t'),
                            'b' => text.push('\u{8}'),
                            'f' => text.push('\u{c}'),
                            // Kept escaped: only meaningful inside LIKE patterns.
                            '%' | '_' => {
                                text.push('\\');
                                text.push(e);
                            }
                            'u' => {
                                let hex: String = chars.get(i..i + 4).map(|h| h.iter().collect()).unwrap_or_default();
                                let code = u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or_else(|| Malformed(format!("invalid unicode escape \\u{hex}")))?;
                                text.push(code);
                                i += 4;
                            }
                            other => return Err(Malformed(format!("Invalid string literal: bad escape \\{other}"))),
                        }
                    }
                    other => text.push(other),
                }
            }
            tokens.push(Token::Text(text));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | ':' | '-' | '+')) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            match text.parse::<f64>() {
                Ok(number) if !text.contains('-') || text.starts_with('-') && text[1..].parse::<f64>().is_ok() => {
                    tokens.push(Token::Number(number));
                }
                _ => tokens.push(Token::Word(text)),
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = match (two.as_str(), c) {
                ("!=", _) => "!=",
                ("<>", _) => "!=",
                ("<=", _) => "<=",
                (">=", _) => ">=",
                (_, '=') => "=",
                (_, '<') => "<",
                (_, '>') => ">",
                (_, '(') => "(",
                (_, ')') => ")",
                (_, ',') => ",",
                _ => return Err(Malformed(format!("unexpected character '{c}'"))),
            };
            // Two-character operators (`!=`, `<>`, `<=`, `>=`) consume two characters.
            i += if two.len() == 2 && matches!(two.as_str(), "!=" | "<>" | "<=" | ">=") {
                2
            } else {
                1
            };
            tokens.push(Token::Symbol(symbol));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), Malformed> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(Malformed(format!("expecting {word}")))
        }
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Result<String, Malformed> {
        match self.next() {
            Some(Token::Word(word)) if !is_reserved(&word) => Ok(word),
            other => Err(Malformed(format!("expecting a field name, found {other:?}"))),
        }
    }

    fn literal(&mut self) -> Result<Literal, Malformed> {
        match self.next() {
            Some(Token::Text(text)) => Ok(Literal::Text(text)),
            Some(Token::Number(n)) => Ok(Literal::Number(n)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Some(Token::Word(w)) if w.len() >= 10 && w.as_bytes()[4] == b'-' => Ok(Literal::Date(w)),
            other => Err(Malformed(format!("expecting a value, found {other:?}"))),
        }
    }

    fn condition(&mut self) -> Result<Condition, Malformed> {
        let mut left = self.conjunction()?;
        while self.keyword("OR") {
            left = Condition::Or(Box::new(left), Box::new(self.conjunction()?));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Condition, Malformed> {
        let mut left = self.unary()?;
        while self.keyword("AND") {
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, Malformed> {
        if self.keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.symbol("(") {
            let inner = self.condition()?;
            if !self.symbol(")") {
                return Err(Malformed("expecting ')'".into()));
            }
            return Ok(inner);
        }
        let field = self.identifier()?;
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            if !self.symbol("(") {
                return Err(Malformed("expecting '(' after IN".into()));
            }
            if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("SELECT")) {
                return Err(Malformed(
                    "semi-join sub-selects are not supported by the sandbox".into(),
                ));
            }
            let mut values = vec![self.literal()?];
            while self.symbol(",") {
                values.push(self.literal()?);
            }
            if !self.symbol(")") {
                return Err(Malformed("expecting ')' to close IN".into()));
            }
            return Ok(Condition::In(field, values, negated));
        }
        if negated {
            return Err(Malformed("expecting IN after NOT".into()));
        }
        if self.keyword("LIKE") {
            return match self.next() {
                Some(Token::Text(pattern)) => Ok(Condition::Like(field, pattern)),
                _ => Err(Malformed("LIKE needs a string pattern".into())),
            };
        }
        let op = match self.next() {
            Some(Token::Symbol("=")) => Op::Eq,
            Some(Token::Symbol("!=")) => Op::Ne,
            Some(Token::Symbol("<")) => Op::Lt,
            Some(Token::Symbol("<=")) => Op::Le,
            Some(Token::Symbol(">")) => Op::Gt,
            Some(Token::Symbol(">=")) => Op::Ge,
            other => return Err(Malformed(format!("unexpected token: {other:?}"))),
        };
        Ok(Condition::Compare(field, op, self.literal()?))
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "ASC", "DESC", "NULLS",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a query.
pub fn parse(soql: &str) -> Result<Query, Malformed> {
    let mut p = Parser {
        tokens: tokenize(soql)?,
        at: 0,
    };
    p.expect_keyword("SELECT")?;
    let mut fields = vec![p.identifier()?];
    while p.symbol(",") {
        fields.push(p.identifier()?);
    }
    p.expect_keyword("FROM")?;
    let object = p.identifier()?;
    let condition = if p.keyword("WHERE") { Some(p.condition()?) } else { None };
    let mut order_by = Vec::new();
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        loop {
            let field = p.identifier()?;
            let ascending = !p.keyword("DESC");
            if ascending {
                p.keyword("ASC");
            }
            if p.keyword("NULLS") && !(p.keyword("FIRST") || p.keyword("LAST")) {
                return Err(Malformed("expecting FIRST or LAST".into()));
            }
            order_by.push((field, ascending));
            if !p.symbol(",") {
                break;
            }
        }
    }
    let limit = if p.keyword("LIMIT") {
        match p.next() {
            Some(Token::Number(n)) if n >= 0.0 && n.fract() == 0.0 => Some(n as usize),
            _ => return Err(Malformed("LIMIT needs a whole number".into())),
        }
    } else {
        None
    };
    if let Some(extra) = p.peek() {
        return Err(Malformed(format!("unexpected token: {extra:?}")));
    }
    Ok(Query {
        fields,
        object,
        condition,
        order_by,
        limit,
    })
}

/// Compares a stored value with a literal the way Salesforce does: strings case-insensitively,
/// numbers numerically, dates and date-times by instant.
pub fn compare(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Literal::Null) => None,
        (Value::String(a), Literal::Text(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::String(a), Literal::Date(b)) => compare_dates(a, b),
        (Value::Number(a), Literal::Number(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn compare_dates(stored: &str, literal: &str) -> Option<Ordering> {
    let parse = |text: &str| -> Option<chrono::DateTime<chrono::Utc>> {
        crate::sf::parse_datetime(text).or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        })
    };
    Some(parse(stored)?.cmp(&parse(literal)?))
}

/// `LIKE` matching: `%` any run, `_` one character, case-insensitive; `\%` and `\_` literal.
pub fn like(value: &str, pattern: &str) -> bool {
    let value: Vec<char> = value.to_lowercase().chars().collect();
    let mut tokens: Vec<(char, bool)> = Vec::new(); // (char, is_wildcard)
    let mut chars = pattern.to_lowercase().chars().collect::<Vec<_>>().into_iter();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    tokens.push((escaped, false));
                }
            }
            '%' | '_' => tokens.push((c, true)),
            other => tokens.push((other, false)),
        }
    }
    fn matches(value: &[char], pattern: &[(char, bool)]) -> bool {
        match pattern.split_first() {
            None => value.is_empty(),
            Some((('%', true), rest)) => (0..=value.len()).any(|skip| matches(&value[skip..], rest)),
            Some((('_', true), rest)) => !value.is_empty() && matches(&value[1..], rest),
            Some(((c, _), rest)) => value.first() == Some(c) && matches(&value[1..], rest),
        }
    }
    matches(&value, &tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_product_queries() {
        let q = parse(
            "SELECT Id, Email, Contact.Email FROM CampaignMember WHERE CampaignId = '701A' AND (Email IN ('a@x.com','o\\'brien@x.com') OR NOT HasResponded = true) ORDER BY Email DESC LIMIT 10",
        )
        .unwrap();
        assert_eq!(q.fields, ["Id", "Email", "Contact.Email"]);
        assert_eq!(q.object, "CampaignMember");
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.order_by, vec![("Email".to_owned(), false)]);
        let Some(Condition::And(_, right)) = q.condition else {
            panic!()
        };
        let Condition::Or(left, _) = *right else { panic!() };
        assert_eq!(
            *left,
            Condition::In(
                "Email".into(),
                vec![Literal::Text("a@x.com".into()), Literal::Text("o'brien@x.com".into())],
                false
            )
        );
    }

    #[test]
    fn refuses_bad_escapes_and_injection() {
        assert!(parse("SELECT Id FROM Lead WHERE Email = 'a\\qb'").is_err());
        assert!(parse("SELECT Id FROM Lead WHERE Email = 'x' OR '1'='1'").is_err());
        assert!(parse("SELECT Id FROM Lead WHERE Email = 'unterminated").is_err());
        assert!(parse("SELECT FROM Lead").is_err());
        assert!(parse("DELETE FROM Lead").is_err());
    }

    #[test]
    fn like_and_dates() {
        assert!(like("Jo@Example.com", "%@example.com"));
        assert!(like("a_b", "a\\_b"));
        assert!(!like("axb", "a\\_b"));
        assert!(like("axb", "a_b"));
        let q =
            parse("SELECT Id FROM Lead WHERE LastModifiedDate > 2026-01-01T00:00:00Z AND NumberSent >= 10").unwrap();
        assert!(matches!(q.condition, Some(Condition::And(..))));
    }
}
