//! The search language: what `GET /search?q=` accepts, parsed into a small tree that
//! each search index maps to its own query objects (never handing user text to a
//! backend's own query parser).
//!
//! Syntax:
//! - `zebra plan` — words; every one must match (title or body).
//! - `"north wind"` — a phrase: the words in this order.
//! - `zebra OR giraffe`, `zebra AND plan` — `AND` is implied between neighbours and
//!   binds tighter than `OR`; both are keywords only in capitals.
//! - `-zebra`, `NOT zebra` — must not match. Every group needs at least one clause that
//!   must match, and `OR` alternatives cannot be negative.
//! - `(zebra OR giraffe) plan` — grouping, at most [`MAX_DEPTH`] levels deep.
//! - `title:zebra`, `body:"north wind"` — only in that field.
//! - `zeb*` — words starting with `zeb` (at least [`MIN_PREFIX_CHARS`] characters
//!   before the `*`, one word only).
//!
//! Words are split and lowercased the way the indexes split text: runs of letters and
//! digits. So `north-east` is the phrase `"north east"`, and a word of punctuation only
//! is refused.
//!
//! The whole query is at most [`MAX_QUERY_CHARS`] characters. The parser recurses only
//! into parentheses, and only after checking the depth, so no input can run it out of
//! stack; its work is linear in the input.

use std::fmt;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// The most levels of parenthesised grouping.
pub const MAX_DEPTH: usize = 8;
/// The fewest characters before a trailing `*`.
pub const MIN_PREFIX_CHARS: usize = 2;

/// The field a match is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchField {
    Title,
    Body,
}

impl SearchField {
    pub fn name(self) -> &'static str {
        match self {
            SearchField::Title => "title",
            SearchField::Body => "body",
        }
    }
}

/// One match against the text: a word, a phrase or a word prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// `None`: title or body.
    pub field: Option<SearchField>,
    /// Lowercased words, in order; never empty. Several words are a phrase.
    pub words: Vec<String>,
    /// Whether the (only) word is a prefix.
    pub prefix: bool,
}

/// A parsed query.
///
/// Invariants (kept by [`parse`]): `And` and `Or` have at least two children, neither
/// directly holds its own kind; every `And` has a child that is not `Not`; `Or`
/// children and the root are never `Not`, and a `Not` never holds a `Not`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Match(Match),
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is longer than {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("the query nests parentheses deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("{0}")]
    Syntax(String),
}

fn syntax(message: impl Into<String>) -> QueryError {
    QueryError::Syntax(message.into())
}

impl std::str::FromStr for Query {
    type Err = QueryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

/// Parses a query, enforcing the length and depth limits.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    if text.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(QueryError::TooLong);
    }
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(QueryError::Empty);
    }
    let mut parser = Parser { tokens, at: 0 };
    let query = parser.or(0)?;
    match parser.peek() {
        None => {}
        Some(Token::Close) => return Err(syntax("a ')' has no matching '('")),
        Some(_) => return Err(syntax("unexpected text after the query")),
    }
    check_positive(&query, "the query")?;
    Ok(query)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Field(SearchField),
    Word(String),
    Phrase(String),
}

fn is_boundary(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')' || c == '"'
}

fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '"' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|&c| c == '"') else {
                    return Err(syntax("a '\"' is not closed"));
                };
                tokens.push(Token::Phrase(chars[start..start + len].iter().collect()));
                i = start + len + 1;
            }
            '-' if chars
                .get(i + 1)
                .is_some_and(|&n| !is_boundary(n) || n == '"' || n == '(') =>
            {
                tokens.push(Token::Not);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !is_boundary(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let field = match word.split_once(':') {
                    Some(("title", rest)) => Some((SearchField::Title, rest)),
                    Some(("body", rest)) => Some((SearchField::Body, rest)),
                    _ => None,
                };
                match field {
                    // `title:"…"`: the phrase follows at once.
                    Some((field, "")) if chars.get(i) == Some(&'"') => {
                        tokens.push(Token::Field(field))
                    }
                    Some((field, "")) => {
                        return Err(syntax(format!(
                            "{}: needs a word or a \"phrase\" right after it",
                            field.name()
                        )));
                    }
                    Some((field, rest)) => {
                        tokens.push(Token::Field(field));
                        tokens.push(Token::Word(rest.to_owned()));
                    }
                    None => tokens.push(match word.as_str() {
                        "AND" => Token::And,
                        "OR" => Token::Or,
                        "NOT" => Token::Not,
                        _ => Token::Word(word),
                    }),
                }
            }
        }
    }
    Ok(tokens)
}

/// Splits text into lowercased runs of letters and digits, as the indexes do.
///
/// Lowercasing comes first so that the words are their own canonical form (a few
/// capitals lowercase to a letter and a combining mark, which then splits).
pub fn words_of(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    /// `and ("OR" and)*`, inside `depth` levels of parentheses.
    fn or(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut alternatives = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            alternatives.push(self.and(depth)?);
        }
        Ok(join(alternatives, Group::Or))
    }

    /// `unary (["AND"] unary)*`.
    fn and(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut clauses = Vec::new();
        loop {
            match self.peek() {
                None | Some(Token::Close) | Some(Token::Or) => break,
                Some(Token::And) => {
                    if clauses.is_empty() {
                        return Err(syntax("AND needs a query on both sides"));
                    }
                    self.at += 1;
                    match self.peek() {
                        None | Some(Token::Close) | Some(Token::Or) | Some(Token::And) => {
                            return Err(syntax("AND needs a query on both sides"));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            clauses.push(self.unary(depth)?);
        }
        if clauses.is_empty() {
            let previous = self.at.checked_sub(1).and_then(|i| self.tokens.get(i));
            return Err(match (previous, self.peek()) {
                (_, Some(Token::Or)) | (Some(Token::Or), None) => {
                    syntax("OR needs a query on both sides")
                }
                (Some(Token::Open), None) => syntax("a '(' is not closed"),
                (_, Some(Token::Close)) if depth > 0 => syntax("a group '()' is empty"),
                (_, Some(Token::Close)) => syntax("a ')' has no matching '('"),
                _ => QueryError::Empty,
            });
        }
        Ok(join(clauses, Group::And))
    }

    /// `("-" | "NOT")? primary`.
    fn unary(&mut self, depth: usize) -> Result<Query, QueryError> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            if self.peek() == Some(&Token::Not) {
                return Err(syntax("NOT of a NOT: say what must match"));
            }
            let negated = self.primary(depth)?;
            return Ok(Query::Not(Box::new(negated)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Query, QueryError> {
        match self.take() {
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(QueryError::TooDeep);
                }
                let inner = self.or(depth + 1)?;
                match self.take() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(syntax("a '(' is not closed")),
                }
            }
            Some(Token::Field(field)) => match self.take() {
                Some(Token::Word(word)) => word_match(Some(field), &word),
                Some(Token::Phrase(phrase)) => phrase_match(Some(field), &phrase),
                _ => Err(syntax(format!(
                    "{}: needs a word or a \"phrase\" right after it",
                    field.name()
                ))),
            },
            Some(Token::Word(word)) => word_match(None, &word),
            Some(Token::Phrase(phrase)) => phrase_match(None, &phrase),
            Some(Token::Close) => Err(syntax("a ')' has no matching '('")),
            Some(Token::And | Token::Or) => Err(syntax("AND and OR need a query on both sides")),
            Some(Token::Not) | None => Err(syntax("NOT needs a query after it")),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Group {
    And,
    Or,
}

/// One node for one clause; a flat list for several (a group of the same kind as its
/// parent adds nothing).
fn join(mut items: Vec<Query>, group: Group) -> Query {
    if items.len() == 1 {
        return items.remove(0);
    }
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Query::And(inner) if group == Group::And => flat.extend(inner),
            Query::Or(inner) if group == Group::Or => flat.extend(inner),
            item => flat.push(item),
        }
    }
    match group {
        Group::And => Query::And(flat),
        Group::Or => Query::Or(flat),
    }
}

fn word_match(field: Option<SearchField>, word: &str) -> Result<Query, QueryError> {
    let (stem, prefix) = match word.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (word, false),
    };
    if stem.contains('*') {
        return Err(syntax("'*' only ends a word, as in plan*"));
    }
    let words = words_of(stem);
    if words.is_empty() {
        return Err(syntax(format!(
            "'{word}' has no letters or digits to search for"
        )));
    }
    if prefix {
        if words.len() > 1 || !stem.chars().all(char::is_alphanumeric) {
            return Err(syntax(
                "'*' ends one word of letters and digits, as in plan*",
            ));
        }
        if words[0].chars().count() < MIN_PREFIX_CHARS {
            return Err(syntax(format!(
                "a prefix needs at least {MIN_PREFIX_CHARS} characters before '*'"
            )));
        }
    }
    Ok(Query::Match(Match {
        field,
        words,
        prefix,
    }))
}

fn phrase_match(field: Option<SearchField>, phrase: &str) -> Result<Query, QueryError> {
    let words = words_of(phrase);
    if words.is_empty() {
        return Err(syntax("a \"phrase\" needs letters or digits"));
    }
    Ok(Query::Match(Match {
        field,
        words,
        prefix: false,
    }))
}

/// Whether the query must match something itself (is not only exclusions).
fn check_positive(query: &Query, what: &str) -> Result<(), QueryError> {
    match query {
        Query::Match(_) => Ok(()),
        Query::Not(inner) => match **inner {
            Query::Not(_) => Err(syntax("NOT of a NOT: say what must match")),
            _ => {
                check_positive(inner, "NOT")?;
                Err(syntax(format!(
                    "{what} only excludes: add a word that must match"
                )))
            }
        },
        Query::Or(alternatives) => alternatives
            .iter()
            .try_for_each(|a| check_positive(a, "an OR alternative")),
        Query::And(clauses) => {
            let mut positive = false;
            for clause in clauses {
                match clause {
                    Query::Not(inner) => check_positive(inner, "NOT")?,
                    other => {
                        check_positive(other, what)?;
                        positive = true;
                    }
                }
            }
            if positive {
                Ok(())
            } else {
                Err(syntax(format!(
                    "{what} only excludes: add a word that must match"
                )))
            }
        }
    }
}

impl Query {
    /// The matches that must or may match (not those under `NOT`), for highlighting.
    pub fn positive_matches(&self) -> Vec<&Match> {
        let mut found = Vec::new();
        let mut stack = vec![self];
        while let Some(query) = stack.pop() {
            match query {
                Query::Match(m) => found.push(m),
                Query::And(items) | Query::Or(items) => stack.extend(items.iter().rev()),
                Query::Not(_) => {}
            }
        }
        found
    }

    /// The deepest nesting of groups (0 for a single match).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 0usize)];
        while let Some((query, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            match query {
                Query::Match(_) => {}
                Query::And(items) | Query::Or(items) => {
                    stack.extend(items.iter().map(|q| (q, depth + 1)))
                }
                Query::Not(inner) => stack.push((inner, depth + 1)),
            }
        }
        deepest
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = self.field {
            write!(f, "{}:", field.name())?;
        }
        match (&self.words[..], self.prefix) {
            ([word], true) => write!(f, "{word}*"),
            ([word], false) => write!(f, "{word}"),
            (words, _) => write!(f, "\"{}\"", words.join(" ")),
        }
    }
}

/// The canonical text of a query: it parses back to the same query.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Match(m) => write!(f, "{m}"),
            Query::Not(inner) => match **inner {
                Query::Match(ref m) => write!(f, "-{m}"),
                ref group => write!(f, "-({group})"),
            },
            Query::And(clauses) => {
                for (i, clause) in clauses.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match clause {
                        Query::Or(_) => write!(f, "({clause})")?,
                        _ => write!(f, "{clause}")?,
                    }
                }
                Ok(())
            }
            Query::Or(alternatives) => {
                for (i, alternative) in alternatives.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    write!(f, "{alternative}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> Query {
        Query::Match(Match {
            field: None,
            words: vec![w.into()],
            prefix: false,
        })
    }

    fn in_field(field: SearchField, words: &[&str], prefix: bool) -> Query {
        Query::Match(Match {
            field: Some(field),
            words: words.iter().map(|w| w.to_string()).collect(),
            prefix,
        })
    }

    fn not(q: Query) -> Query {
        Query::Not(Box::new(q))
    }

    #[test]
    fn every_construct_parses() {
        let phrase = Query::Match(Match {
            field: None,
            words: vec!["north".into(), "wind".into()],
            prefix: false,
        });
        let prefix = Query::Match(Match {
            field: None,
            words: vec!["zeb".into()],
            prefix: true,
        });
        let table: Vec<(&str, Query)> = vec![
            ("zebra", word("zebra")),
            ("  Zebra  ", word("zebra")),
            ("zebra plan", Query::And(vec![word("zebra"), word("plan")])),
            (
                "zebra AND plan",
                Query::And(vec![word("zebra"), word("plan")]),
            ),
            (
                "zebra OR plan",
                Query::Or(vec![word("zebra"), word("plan")]),
            ),
            (
                "zebra or plan",
                Query::And(vec![word("zebra"), word("or"), word("plan")]),
            ),
            ("\"North wind\"", phrase.clone()),
            ("north-wind", phrase.clone()),
            ("zeb*", prefix.clone()),
            (
                "zebra -plan",
                Query::And(vec![word("zebra"), not(word("plan"))]),
            ),
            (
                "zebra NOT plan",
                Query::And(vec![word("zebra"), not(word("plan"))]),
            ),
            (
                "title:zebra body:\"north wind\" title:pla*",
                Query::And(vec![
                    in_field(SearchField::Title, &["zebra"], false),
                    in_field(SearchField::Body, &["north", "wind"], false),
                    in_field(SearchField::Title, &["pla"], true),
                ]),
            ),
            (
                "a b OR c",
                Query::Or(vec![Query::And(vec![word("a"), word("b")]), word("c")]),
            ),
            (
                "a (b OR c)",
                Query::And(vec![word("a"), Query::Or(vec![word("b"), word("c")])]),
            ),
            (
                "a -b OR c",
                Query::Or(vec![Query::And(vec![word("a"), not(word("b"))]), word("c")]),
            ),
            ("((a))", word("a")),
            ("(a b) c", Query::And(vec![word("a"), word("b"), word("c")])),
            (
                "a -(b OR c)",
                Query::And(vec![word("a"), not(Query::Or(vec![word("b"), word("c")]))]),
            ),
            (
                "10:30",
                Query::Match(Match {
                    field: None,
                    words: vec!["10".into(), "30".into()],
                    prefix: false,
                }),
            ),
            ("title", word("title")),
            ("été", word("été")),
        ];
        for (text, expected) in table {
            let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed, expected, "{text}");
            let rendered = parsed.to_string();
            assert_eq!(parse(&rendered).unwrap(), parsed, "{text} → {rendered}");
        }
    }

    #[test]
    fn malformed_queries_are_refused() {
        for text in [
            "",
            "   ",
            "(",
            ")",
            "a)",
            "(a",
            "()",
            "\"a",
            "\"\"",
            "\"!!\"",
            "!!!",
            "-",
            "a OR",
            "OR a",
            "a AND",
            "AND a",
            "a AND OR b",
            "-a",
            "NOT a",
            "a OR -b",
            "a NOT NOT b",
            "a -(-b)",
            "z*",
            "*",
            "*ab",
            "a*b",
            "ab**",
            "north-ea*",
            "title:",
            "title: zebra",
            "title:(a b)",
            "body:",
            "NOT",
            "a NOT",
            "zebra - plan",
        ] {
            assert!(
                matches!(parse(text), Err(QueryError::Syntax(_) | QueryError::Empty)),
                "{text:?} gave {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn length_is_limited_in_characters() {
        let longest = "é".repeat(MAX_QUERY_CHARS);
        assert!(parse(&longest).is_ok());
        assert_eq!(parse(&format!("{longest}a")), Err(QueryError::TooLong));
        assert_eq!(parse(&"(".repeat(5_000)), Err(QueryError::TooLong));
    }

    #[test]
    fn depth_is_limited() {
        let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(parse(&nested(MAX_DEPTH)).unwrap(), word("a"));
        assert_eq!(parse(&nested(MAX_DEPTH + 1)), Err(QueryError::TooDeep));
        assert_eq!(parse(&nested(40)), Err(QueryError::TooDeep));
        // Unbalanced beyond the limit is refused for its depth before its balance.
        assert_eq!(parse(&"(".repeat(100)), Err(QueryError::TooDeep));
        // Alternating groups keep their structure up to the limit.
        let mut text = "a".to_owned();
        for i in 0..MAX_DEPTH {
            text = if i % 2 == 0 {
                format!("b ({text} OR c)")
            } else {
                format!("d OR ({text} e)")
            };
        }
        let parsed = parse(&text).unwrap();
        assert!(parsed.depth() >= MAX_DEPTH);
        assert_eq!(parse(&parsed.to_string()).unwrap(), parsed);
        assert_eq!(parse(&format!("({text})")), Err(QueryError::TooDeep));
        assert_eq!(parse(&format!("x ({text} OR y)")), Err(QueryError::TooDeep));
    }

    #[test]
    fn positive_matches_skip_exclusions() {
        let parsed = parse("a -b (c OR title:d) -(e f)").unwrap();
        let words: Vec<_> = parsed
            .positive_matches()
            .iter()
            .map(|m| m.words.join(" "))
            .collect();
        assert_eq!(words, ["a", "c", "d"]);
    }
}
