//! The text analysis of a document: word count, reading time, language and the terms
//! that weigh most.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shared::domain::{Analysis, Document, TopTerm};
use tantivy::tokenizer::{
    Language, LowerCaser, SimpleTokenizer, StopWordFilter, TextAnalyzer, TokenStream,
};

/// Reading speed for the reading time, in words per minute.
pub const WORDS_PER_MINUTE: u64 = 200;
/// How many top terms an analysis lists.
pub const TOP_TERMS: usize = 10;
/// How much more a title word weighs than a body word: the title says what the
/// document is about.
const TITLE_WEIGHT: f64 = 2.0;
/// Below this confidence the language is `und`.
const MIN_LANGUAGE_CONFIDENCE: f64 = 0.5;

/// English function words, removed from top terms whatever the detected language
/// (documents mix English in often); the detected language's own list applies too.
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "s",
    "t",
    "don",
    "isn",
    "aren",
    "wasn",
    "weren",
    "won",
    "also",
    "may",
    "us",
];

/// ISO 639-3 code of the text's language, or `und` when the detector is unsure.
pub fn language(text: &str) -> (String, Option<whatlang::Lang>) {
    match whatlang::detect(text) {
        Some(info) if info.is_reliable() || info.confidence() >= MIN_LANGUAGE_CONFIDENCE => {
            (info.lang().code().to_owned(), Some(info.lang()))
        }
        _ => ("und".to_owned(), None),
    }
}

fn stop_words_for(lang: Option<whatlang::Lang>) -> Option<StopWordFilter> {
    use whatlang::Lang;
    let language = match lang? {
        Lang::Dan => Language::Danish,
        Lang::Nld => Language::Dutch,
        Lang::Fin => Language::Finnish,
        Lang::Fra => Language::French,
        Lang::Deu => Language::German,
        Lang::Hun => Language::Hungarian,
        Lang::Ita => Language::Italian,
        Lang::Nob => Language::Norwegian,
        Lang::Por => Language::Portuguese,
        Lang::Rus => Language::Russian,
        Lang::Spa => Language::Spanish,
        Lang::Swe => Language::Swedish,
        _ => return None,
    };
    StopWordFilter::new(language)
}

fn analyzer(lang: Option<whatlang::Lang>) -> TextAnalyzer {
    let english = StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| (*w).to_owned()));
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(english)
        .dynamic();
    match stop_words_for(lang) {
        Some(own) => builder.filter_dynamic(own).build(),
        None => builder.build(),
    }
}

/// Words in a text: maximal runs of letters and digits.
pub fn word_count(text: &str) -> u64 {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .count() as u64
}

/// Reading time at [`WORDS_PER_MINUTE`], rounded up to the second.
pub fn reading_time_seconds(words: u64) -> u64 {
    (words * 60).div_ceil(WORDS_PER_MINUTE)
}

/// The terms that weigh most: frequency with stop words, numbers and single letters
/// left out, title words counting [`TITLE_WEIGHT`] times; weights are shares of the
/// total, heaviest first, ties in alphabetical order.
pub fn top_terms(title: &str, body: &str, lang: Option<whatlang::Lang>) -> Vec<TopTerm> {
    let mut analyzer = analyzer(lang);
    let mut weights: HashMap<String, f64> = HashMap::new();
    for (text, weight) in [(title, TITLE_WEIGHT), (body, 1.0)] {
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let term = &stream.token().text;
            if term.chars().count() < 2 || term.chars().all(|c| c.is_numeric()) {
                continue;
            }
            *weights.entry(term.clone()).or_default() += weight;
        }
    }
    let total: f64 = weights.values().sum();
    if total == 0.0 {
        return Vec::new();
    }
    let mut terms: Vec<(String, f64)> = weights.into_iter().collect();
    terms.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    terms
        .into_iter()
        .take(TOP_TERMS)
        .map(|(term, w)| TopTerm {
            term,
            weight: (w / total * 10_000.0).round() / 10_000.0,
        })
        .collect()
}

/// The analysis of a document's current version.
pub fn analyze(doc: &Document, at: DateTime<Utc>) -> Analysis {
    let body = doc.body.as_str();
    let words = word_count(body);
    let (language, lang) = language(body);
    Analysis {
        document_id: doc.id,
        version: doc.version,
        word_count: words,
        reading_time_seconds: reading_time_seconds(words),
        language,
        top_terms: top_terms(doc.title.as_str(), body, lang),
        analyzed_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_reading_time() {
        assert_eq!(word_count("Hello, world! It's 2024 — café au lait."), 8);
        assert_eq!(word_count("   "), 0);
        assert_eq!(reading_time_seconds(0), 0);
        assert_eq!(reading_time_seconds(200), 60);
        assert_eq!(reading_time_seconds(201), 61);
    }

    #[test]
    fn detects_languages_or_says_und() {
        let english = "The quick brown fox jumps over the lazy dog while the farmer watches \
                       the sunset over the fields and thinks about the harvest.";
        assert_eq!(language(english).0, "eng");
        let french = "Le renard brun rapide saute par-dessus le chien paresseux pendant que \
                      le fermier regarde le coucher du soleil sur les champs.";
        assert_eq!(language(french).0, "fra");
        assert_eq!(language("").0, "und");
        assert_eq!(language("42 17").0, "und");
    }

    #[test]
    fn top_terms_leave_out_stop_words_and_weigh_the_title() {
        let terms = top_terms(
            "Rust",
            "The compiler and the borrow checker: the compiler checks the borrow rules. 2024 a",
            Some(whatlang::Lang::Eng),
        );
        let names: Vec<&str> = terms.iter().map(|t| t.term.as_str()).collect();
        assert_eq!(names[..3], ["borrow", "compiler", "rust"]);
        assert!(!names.contains(&"the") && !names.contains(&"and") && !names.contains(&"2024"));
        assert_eq!(terms[0].weight, terms[2].weight);
        let total: f64 = terms.iter().map(|t| t.weight).sum();
        assert!((total - 1.0).abs() < 0.001);
        assert!(top_terms("", "the of and", None).is_empty());
    }
}
