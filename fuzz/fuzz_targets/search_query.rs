//! The search language's parser (`shared::domain::search_query::parse`) on hostile text.
//!
//! Input: the bytes, read as UTF-8 (lossily), are the query.
//!
//! Checks: parsing never panics and is linear enough to stay far inside libFuzzer's
//! timeout; a query over the length limit is `TooLong` and nothing else; an accepted
//! query nests parentheses (outside phrases) at most `MAX_DEPTH` deep, and a `TooDeep`
//! one deeper; an accepted query keeps the tree's invariants (groups of two or more of a
//! kind other than their parent's, every `AND` with a clause that must match, no
//! negative `OR` alternative or root, no double negation, words lowercased runs of
//! letters and digits, prefixes of one word of at least `MIN_PREFIX_CHARS`), and its
//! rendering parses back to the same query and renders the same again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::search_query::{
    MAX_DEPTH, MAX_QUERY_CHARS, MIN_PREFIX_CHARS, Query, QueryError, parse, words_of,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let outcome = parse(&text);
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        assert_eq!(outcome, Err(QueryError::TooLong));
        return;
    }
    assert_ne!(
        outcome,
        Err(QueryError::TooLong),
        "{text:?} is within the limit"
    );
    let nesting = paren_nesting(&text);
    match outcome {
        Ok(query) => {
            assert!(nesting <= MAX_DEPTH, "{text:?} nests {nesting} deep");
            check_tree(&query, true);
            assert!(query.depth() <= 3 * (MAX_DEPTH + 1) + 1);
            let rendered = query.to_string();
            if rendered.chars().count() <= MAX_QUERY_CHARS {
                let again = parse(&rendered)
                    .unwrap_or_else(|e| panic!("{text:?} renders as {rendered:?}: {e}"));
                assert_eq!(again, query, "{text:?} renders as {rendered:?}");
                assert_eq!(again.to_string(), rendered);
            }
        }
        Err(QueryError::TooDeep) => assert!(nesting > MAX_DEPTH, "{text:?}"),
        Err(QueryError::Syntax(message)) => assert!(!message.is_empty()),
        Err(QueryError::Empty) | Err(QueryError::TooLong) => {}
    }
});

/// The deepest run of open parentheses outside `"…"` (an unclosed quote ends the scan).
fn paren_nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut quoted) = (0usize, 0usize, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Panics unless the tree keeps the parser's invariants; `positive`: this node must be
/// able to match on its own (not a `Not`).
fn check_tree(query: &Query, positive: bool) {
    match query {
        Query::Match(m) => {
            assert!(!m.words.is_empty());
            for word in &m.words {
                assert_eq!(words_of(word), [word.clone()], "{word:?} is not canonical");
            }
            if m.prefix {
                assert_eq!(m.words.len(), 1);
                assert!(m.words[0].chars().count() >= MIN_PREFIX_CHARS);
            }
        }
        Query::Not(inner) => {
            assert!(!positive, "a NOT where something must match");
            check_tree(inner, true);
        }
        Query::And(clauses) => {
            assert!(clauses.len() >= 2);
            assert!(clauses.iter().any(|c| !matches!(c, Query::Not(_))));
            for clause in clauses {
                assert!(
                    !matches!(clause, Query::And(_)),
                    "an AND directly in an AND"
                );
                check_tree(clause, !matches!(clause, Query::Not(_)));
            }
        }
        Query::Or(alternatives) => {
            assert!(alternatives.len() >= 2);
            for alternative in alternatives {
                assert!(
                    !matches!(alternative, Query::Or(_)),
                    "an OR directly in an OR"
                );
                check_tree(alternative, true);
            }
        }
    }
}
