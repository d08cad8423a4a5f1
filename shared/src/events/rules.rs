//! The webhook rules of one machine (`--event-rules FILE`): which events go to which
//! receiver, validated whole before the server starts.
//!
//! ```json
//! {"rules": [{"name": "deletions",
//!             "pattern": {"detail-type": ["document.deleted"]},
//!             "target": {"url": "https://hooks.example/docfan",
//!                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}]}
//! ```
//!
//! Every refusal names the rule (by name, or by position when the name itself is the
//! problem) and what is wrong with it; no message repeats a secret.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use reqwest::Url;
use serde_json::{Map, Value};

use super::address::{RefusedAddress, check_addresses};
use super::pattern::EventPattern;
use super::webhook::WebhookSecret;

/// The largest rules file read, in bytes.
pub const MAX_RULES_BYTES: usize = 1024 * 1024;
/// The most rules one file may hold (each runs a delivery worker of its own).
pub const MAX_RULES: usize = 100;
/// The longest rule name (EventBridge's bound for rule names).
pub const MAX_RULE_NAME: usize = 64;
/// The longest target URL.
pub const MAX_URL_BYTES: usize = 2048;

/// Why a rules file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    /// The rule at fault: `"name"` or `#3` (1-based) when it has no usable name; `None`
    /// for the file as a whole.
    pub rule: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "event rule {rule}: {}", self.reason),
            None => write!(f, "event rules: {}", self.reason),
        }
    }
}

fn whole(reason: impl Into<String>) -> RulesError {
    RulesError {
        rule: None,
        reason: reason.into(),
    }
}

/// A rule's name: 1 to 64 of `A-Z a-z 0-9 . _ -` (EventBridge's rule names), so it is
/// safe in logs, metric labels and dead letters as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleName(String);

impl RuleName {
    /// Checks a name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_RULE_NAME {
            return Err(format!(
                "a rule name is 1 to {MAX_RULE_NAME} characters, not {}",
                text.chars().count()
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "a rule name holds only letters, digits, '.', '_' and '-', not {bad:?}"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as written in the file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a rule's events go: an `http` or `https` URL and the secret that signs them.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    /// Where events are POSTed.
    pub url: Url,
    /// What signs them (`whsec_…`).
    pub secret: WebhookSecret,
}

impl WebhookTarget {
    /// The URL's host as a literal IP address, when it is one.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        // The URL parser has already normalised IPv4 in every spelling (`0x7f.1`,
        // `2130706433`) to dotted decimal, and brackets IPv6.
        self.url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// Refuses a target whose host is a literal address that is not public (a name is
    /// checked when it is resolved, on every delivery).
    pub fn check_literal(&self) -> Result<(), RefusedAddress> {
        match self.literal_ip() {
            Some(ip) => check_addresses(self.url.host_str().unwrap_or_default(), [ip]),
            None => Ok(()),
        }
    }
}

/// One rule: the events its pattern matches go to its target.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRule {
    /// Unique in the file; labels the rule's metrics and dead letters.
    pub name: RuleName,
    /// The EventBridge event pattern selecting the rule's events.
    pub pattern: EventPattern,
    /// Where they go.
    pub target: WebhookTarget,
}

/// Every rule of a file, in the file's order, their names unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRules {
    rules: Vec<EventRule>,
}

impl EventRules {
    /// Reads and validates a rules file's text.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        if text.len() > MAX_RULES_BYTES {
            return Err(whole(format!(
                "the file is {} bytes; at most {MAX_RULES_BYTES} are read",
                text.len()
            )));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| whole(format!("the file is not valid JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(whole(format!(
                "the file must be an object {{\"rules\": [...]}}, not {}",
                json_kind(&value)
            )));
        };
        let rules = match top.remove("rules") {
            Some(Value::Array(rules)) => rules,
            Some(other) => {
                return Err(whole(format!(
                    "\"rules\" must be an array, not {}",
                    json_kind(&other)
                )));
            }
            None => return Err(whole("the file has no \"rules\" array")),
        };
        if let Some(extra) = top.keys().next() {
            return Err(whole(format!("unknown field {extra:?} beside \"rules\"")));
        }
        if rules.len() > MAX_RULES {
            return Err(whole(format!(
                "{} rules; at most {MAX_RULES} are allowed",
                rules.len()
            )));
        }
        let mut seen = BTreeSet::new();
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let rule = parse_rule(i, rule)?;
            if !seen.insert(rule.name.clone()) {
                return Err(RulesError {
                    rule: Some(format!("{:?}", rule.name.as_str())),
                    reason: "the name is used by an earlier rule; rule names are unique".to_owned(),
                });
            }
            parsed.push(rule);
        }
        Ok(Self { rules: parsed })
    }

    /// Reads and validates the rules file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, RulesError> {
        use std::io::Read;
        // Never more than one byte past the limit, whatever the path names (a device,
        // a pipe, a huge file).
        let mut text = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_RULES_BYTES as u64 + 1).read_to_end(&mut text))
            .map_err(|e| whole(format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(text)
            .map_err(|_| whole(format!("{} is not UTF-8 text", path.display())))?;
        Self::parse(&text)
    }

    /// The rules, in the file's order.
    pub fn rules(&self) -> &[EventRule] {
        &self.rules
    }

    /// Whether there are none (then nothing is published).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules `event` (as JSON) matches, in the file's order.
    pub fn matching<'a>(&'a self, event: &'a Value) -> impl Iterator<Item = &'a EventRule> + 'a {
        self.rules.iter().filter(|r| r.pattern.matches(event))
    }
}

fn parse_rule(index: usize, value: Value) -> Result<EventRule, RulesError> {
    let position = format!("#{}", index + 1);
    let at = |rule: &str, reason: String| RulesError {
        rule: Some(rule.to_owned()),
        reason,
    };
    let Value::Object(mut fields) = value else {
        return Err(at(
            &position,
            format!("a rule is an object, not {}", json_kind(&value)),
        ));
    };
    let name = match fields.remove("name") {
        Some(Value::String(name)) => {
            RuleName::parse(&name).map_err(|e| at(&position, format!("name: {e}")))?
        }
        Some(other) => {
            return Err(at(
                &position,
                format!("\"name\" must be a string, not {}", json_kind(&other)),
            ));
        }
        None => return Err(at(&position, "has no \"name\"".to_owned())),
    };
    let named = format!("{:?}", name.as_str());
    let pattern = fields
        .remove("pattern")
        .ok_or_else(|| at(&named, "has no \"pattern\"".to_owned()))?;
    let pattern = EventPattern::compile(&pattern).map_err(|e| at(&named, e.to_string()))?;
    let target = match fields.remove("target") {
        Some(Value::Object(target)) => parse_target(target).map_err(|e| at(&named, e))?,
        Some(other) => {
            return Err(at(
                &named,
                format!(
                    "\"target\" must be an object {{\"url\", \"secret\"}}, not {}",
                    json_kind(&other)
                ),
            ));
        }
        None => return Err(at(&named, "has no \"target\"".to_owned())),
    };
    if let Some(extra) = fields.keys().next() {
        return Err(at(
            &named,
            format!("unknown field {extra:?} (a rule has name, pattern and target)"),
        ));
    }
    Ok(EventRule {
        name,
        pattern,
        target,
    })
}

fn parse_target(mut target: Map<String, Value>) -> Result<WebhookTarget, String> {
    let url = match target.remove("url") {
        Some(Value::String(url)) => parse_url(&url)?,
        Some(other) => {
            return Err(format!(
                "target.url must be a string, not {}",
                json_kind(&other)
            ));
        }
        None => return Err("the target has no \"url\"".to_owned()),
    };
    let secret = match target.remove("secret") {
        Some(Value::String(secret)) => {
            WebhookSecret::parse(&secret).map_err(|e| format!("target.secret: {e}"))?
        }
        Some(other) => {
            return Err(format!(
                "target.secret must be a string, not {}",
                json_kind(&other)
            ));
        }
        None => return Err("the target has no \"secret\"".to_owned()),
    };
    if let Some(extra) = target.keys().next() {
        return Err(format!(
            "unknown field target.{extra} (a target has url and secret)"
        ));
    }
    Ok(WebhookTarget { url, secret })
}

fn parse_url(text: &str) -> Result<Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!(
            "target.url is {} bytes; at most {MAX_URL_BYTES}",
            text.len()
        ));
    }
    let url = Url::parse(text).map_err(|e| format!("target.url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "target.url must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("target.url has no host".to_owned());
    }
    // Credentials in the URL would travel into logs and dead letters; the signature
    // is how a receiver knows docfan.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("target.url must not carry a user name or password".to_owned());
    }
    Ok(url)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn file(rules: Value) -> String {
        json!({ "rules": rules }).to_string()
    }

    fn rule(name: &str, url: &str) -> Value {
        json!({"name": name, "pattern": {"source": ["docfan"]},
               "target": {"url": url, "secret": SECRET}})
    }

    fn refused(text: &str) -> String {
        EventRules::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_file_keeps_its_rules_in_order_and_matches_events() {
        let rules = EventRules::parse(&file(json!([
            rule("all", "https://hooks.example/all"),
            {"name": "deletions", "pattern": {"detail-type": ["document.deleted"]},
             "target": {"url": "http://hooks.example:8080/d?x=1", "secret": SECRET}},
        ])))
        .unwrap();
        let names: Vec<&str> = rules.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["all", "deletions"]);
        assert_eq!(rules.rules()[1].target.url.port(), Some(8080));
        let deleted = json!({"source": "docfan", "detail-type": "document.deleted"});
        let updated = json!({"source": "docfan", "detail-type": "document.updated"});
        let matched = |e| {
            rules
                .matching(e)
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(matched(&deleted), ["all", "deletions"]);
        assert_eq!(matched(&updated), ["all"]);
        assert!(EventRules::parse(&file(json!([]))).unwrap().is_empty());
    }

    #[test]
    fn loading_reads_no_more_than_the_limit_whatever_the_path_is() {
        let said = EventRules::load(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(said.contains("at most 1048576 are read"), "{said}");
        let missing = EventRules::load(std::path::Path::new("/nonexistent/rules.json"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("event rules: cannot read /nonexistent/rules.json"),
            "{missing}"
        );
    }

    #[test]
    fn hostile_files_are_refused_naming_the_rule_and_the_fault() {
        let cases: Vec<(String, &str)> = vec![
            (
                "{\"rules\": [".into(),
                "event rules: the file is not valid JSON",
            ),
            (
                "[]".into(),
                "must be an object {\"rules\": [...]}, not an array",
            ),
            ("{}".into(), "no \"rules\" array"),
            ("{\"rules\": {}}".into(), "\"rules\" must be an array"),
            (
                json!({"rules": [], "extra": 1}).to_string(),
                "unknown field \"extra\"",
            ),
            (
                file(json!([7])),
                "event rule #1: a rule is an object, not a number",
            ),
            (
                file(json!([{"pattern": {}}])),
                "event rule #1: has no \"name\"",
            ),
            (
                file(json!([
                    rule("ok", "https://a.example"),
                    rule("bad name", "https://a.example")
                ])),
                "event rule #2: name: a rule name holds only letters",
            ),
            (
                file(json!([rule(&"x".repeat(65), "https://a.example")])),
                "event rule #1: name: a rule name is 1 to 64",
            ),
            (
                file(
                    json!([{"name": "p", "pattern": {"detail": {"version": [{"numeric": [">"]}]}},
                          "target": {"url": "https://a.example", "secret": SECRET}}]),
                ),
                "event rule \"p\": invalid event pattern at detail.version",
            ),
            (
                file(json!([{"name": "p", "pattern": ["docfan"],
                          "target": {"url": "https://a.example", "secret": SECRET}}])),
                "event rule \"p\": invalid event pattern at pattern: must be a JSON object",
            ),
            (
                file(json!([rule("u", "ftp://a.example/x")])),
                "event rule \"u\": target.url must be http or https, not \"ftp\"",
            ),
            (
                file(json!([rule("u", "not a url")])),
                "event rule \"u\": target.url is not a URL",
            ),
            (
                file(json!([rule("u", "https://ann:pw@a.example/")])),
                "must not carry a user name or password",
            ),
            (
                file(json!([rule(
                    "u",
                    &format!("https://a.example/{}", "x".repeat(3000))
                )])),
                "target.url is 3018 bytes; at most 2048",
            ),
            (
                file(
                    json!([{"name": "s", "pattern": {"source": ["docfan"]}, "target": {"url": "https://a.example", "secret": "hunter2"}}]),
                ),
                "event rule \"s\": target.secret: a webhook secret starts with \"whsec_\"",
            ),
            (
                file(
                    json!([{"name": "s", "pattern": {"source": ["docfan"]}, "target": {"url": "https://a.example", "secret": "whsec_c2hvcnQ="}}]),
                ),
                "event rule \"s\": target.secret: the key is 5 bytes",
            ),
            (
                file(
                    json!([{"name": "s", "pattern": {"source": ["docfan"]}, "target": {"url": "https://a.example", "secret": "whsec_!!!"}}]),
                ),
                "target.secret: the key after \"whsec_\" is not valid base64",
            ),
            (
                file(
                    json!([{"name": "t", "pattern": {"source": ["docfan"]}, "target": "https://a.example"}]),
                ),
                "event rule \"t\": \"target\" must be an object",
            ),
            (
                file(
                    json!([{"name": "t", "pattern": {"source": ["docfan"]}, "target": {"url": "https://a.example", "secret": SECRET, "secert": 1}}]),
                ),
                "unknown field target.secert",
            ),
            (
                file(
                    json!([{"name": "t", "pattern": {"source": ["docfan"]}, "target": {"url": "https://a.example", "secret": SECRET}, "patern": {"source": ["docfan"]}}]),
                ),
                "event rule \"t\": unknown field \"patern\"",
            ),
            (
                file(json!([
                    rule("twice", "https://a.example"),
                    rule("twice", "https://b.example")
                ])),
                "event rule \"twice\": the name is used by an earlier rule",
            ),
            (
                file(Value::Array(
                    (0..=MAX_RULES)
                        .map(|i| rule(&format!("r{i}"), "https://a.example"))
                        .collect(),
                )),
                "101 rules; at most 100",
            ),
            (
                format!(
                    "{{\"rules\": [], \"pad\": \"{}\"}}",
                    "x".repeat(MAX_RULES_BYTES)
                ),
                "at most 1048576 are read",
            ),
            ("[".repeat(10_000), "the file is not valid JSON"),
        ];
        for (text, expected) in cases {
            let said = refused(&text);
            assert!(said.contains(expected), "expected {expected:?} in {said:?}");
            assert!(!said.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{said}");
        }
    }

    #[test]
    fn literal_private_hosts_are_recognised_at_load() {
        let rules = EventRules::parse(&file(json!([
            rule("loop", "http://127.0.0.1:9000/hook"),
            rule("v6", "http://[::1]:9000/hook"),
            rule("meta", "http://169.254.169.254/latest"),
            rule("public", "https://93.184.216.34/hook"),
            rule("named", "https://localhost/hook"),
            rule("hex", "http://0x7f.1/hook"),
            rule("decimal", "http://2130706433/hook"),
        ])))
        .unwrap();
        let kinds: Vec<Option<&str>> = rules
            .rules()
            .iter()
            .map(|r| r.target.check_literal().err().map(|e| e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some("loopback"),
                Some("loopback"),
                Some("link-local"),
                None,
                None,
                Some("loopback"),
                Some("loopback")
            ],
            "names are checked when they are resolved"
        );
    }
}
