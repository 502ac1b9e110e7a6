//! Event rules: which notification an event makes and on which channels it goes. Rules come
//! from `RULES_FILE` (YAML) or the built-in `rules.default.yaml`; a file with an error stops
//! start-up with a message naming the rule and the field.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::channels::Channel;
use crate::config::{Config, ConfigError};

/// The built-in rules (the seed's welcome notification on `user.registered`).
const DEFAULT_RULES: &str = include_str!("../../rules.default.yaml");
/// Longest rule name, event type or notification type.
const MAX_NAME: usize = 64;
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 4000;

/// Checks a name-like value (event type, rule name): 1 to 64 of `A-Z a-z 0-9 _ . : -`,
/// starting with a letter or digit.
pub fn check_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("must be 1 to {MAX_NAME} of A-Z a-z 0-9 _ . : - starting with a letter or digit"))
    }
}

/// A title/body template: text with `{{path}}` or `{{path ?? "fallback"}}` placeholders,
/// where `path` is dotted (`data.user.name`) into `{ userId, type, eventId, data }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field { path: String, fallback: Option<String> },
}

impl Template {
    /// Parses `source`; the error says what is wrong with which placeholder.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| format!("unclosed placeholder at {:?}", &rest[start..]))?;
            parts.push(parse_placeholder(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    /// Fills the placeholders from `context`. A missing field without a fallback, or one that
    /// is not a string, number or boolean, is an error naming its path.
    pub fn render(&self, context: &Value) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field { path, fallback } => {
                    let value = path.split('.').try_fold(context, |v, key| v.get(key));
                    match (value, fallback) {
                        (Some(Value::String(s)), _) => out.push_str(s),
                        (Some(v @ (Value::Number(_) | Value::Bool(_))), _) => out.push_str(&v.to_string()),
                        (None | Some(Value::Null), Some(fallback)) => out.push_str(fallback),
                        (None | Some(Value::Null), None) => return Err(format!("{path}: required")),
                        (Some(_), _) => return Err(format!("{path}: must be a string, number or boolean")),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_placeholder(inner: &str) -> Result<Part, String> {
    let (path, fallback) = match inner.split_once("??") {
        Some((path, fallback)) => {
            let fallback = fallback.trim();
            let text = fallback
                .strip_prefix('"')
                .and_then(|f| f.strip_suffix('"'))
                .filter(|f| !f.contains('"'))
                .ok_or_else(|| format!("fallback of {{{{{inner}}}}} must be one \"quoted\" string"))?;
            (path.trim(), Some(text.to_owned()))
        }
        None => (inner, None),
    };
    let valid = !path.is_empty()
        && path
            .split('.')
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !valid {
        return Err(format!("placeholder {{{{{inner}}}}} is not a dotted field path"));
    }
    Ok(Part::Field { path: path.to_owned(), fallback })
}

/// One rule as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    event: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    title: String,
    body: String,
    channels: Vec<Channel>,
    #[serde(default)]
    webhook: Option<WebhookSpec>,
    #[serde(default)]
    email: Option<EmailSpec>,
    #[serde(default)]
    sms: Option<SmsSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSpec {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailSpec {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsSpec {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<serde_yaml::Value>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name; part of notification and job ids.
    pub name: String,
    /// Event type it matches.
    pub event: String,
    /// Notification type.
    pub kind: String,
    title: Template,
    body: Template,
    /// Channels, without duplicates.
    pub channels: Vec<Channel>,
    /// Where the webhook channel posts.
    pub webhook_url: Option<String>,
    email_to: Template,
    email_subject: Template,
    sms_to: Template,
    sms_text: Template,
}

/// A rule filled in for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Recipient and subject, when the rule uses the email channel.
    pub email: Option<(String, String)>,
    /// Phone number and text, when the rule uses the sms channel. The number is checked
    /// when the job is delivered, so a bad one fails that job only.
    pub sms: Option<(String, String)>,
}

impl Rule {
    /// Fills the templates from `context`; the error names the field and the rule.
    pub fn render(&self, context: &Value) -> Result<Rendered, String> {
        let fill =
            |t: &Template, field: &str| t.render(context).map_err(|e| format!("{e} by rule {:?} ({field})", self.name));
        let email = if self.channels.contains(&Channel::Email) {
            let to = fill(&self.email_to, "email.to")?;
            if to.parse::<lettre::Address>().is_err() {
                return Err(format!("email recipient {to:?} of rule {:?} is not an email address", self.name));
            }
            Some((to, fill(&self.email_subject, "email.subject")?))
        } else {
            None
        };
        let sms = if self.channels.contains(&Channel::Sms) {
            Some((fill(&self.sms_to, "sms.to")?, fill(&self.sms_text, "sms.text")?))
        } else {
            None
        };
        Ok(Rendered { title: fill(&self.title, "title")?, body: fill(&self.body, "body")?, email, sms })
    }
}

/// Every rule, in file order.
#[derive(Debug, Clone)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Loads `RULES_FILE`, or the built-in rules without it. The error is one line naming
    /// the file, the rule and the field.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let fail = |reason: String| ConfigError { setting: "RULES_FILE", reason };
        match &config.notifications.rules_file {
            Some(path) if !path.as_os_str().is_empty() => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                Self::parse(&text, config, false).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            _ => Self::parse(DEFAULT_RULES, config, true).map_err(|e| fail(format!("built-in rules: {e}"))),
        }
    }

    /// Parses a rules document. With `defaults`, channels that are not configured are left
    /// out instead of being errors (the built-in rules must work with no configuration).
    fn parse(text: &str, config: &Config, defaults: bool) -> Result<Self, String> {
        let file: RulesFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for (index, raw) in file.rules.into_iter().enumerate() {
            let label = raw
                .get("name")
                .and_then(serde_yaml::Value::as_str)
                .map_or_else(|| format!("rule #{}", index + 1), |n| format!("rule {n:?}"));
            let spec: RuleSpec = serde_path_to_error::deserialize(raw).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." { format!("{label}: {inner}") } else { format!("{label}: field `{path}`: {inner}") }
            })?;
            if !names.insert(spec.name.clone()) {
                return Err(format!("{label}: field `name`: another rule has this name"));
            }
            if let Some(rule) =
                validate(spec, config, defaults).map_err(|(field, why)| format!("{label}: field `{field}`: {why}"))?
            {
                rules.push(rule);
            }
        }
        Ok(Self(rules))
    }

    /// The rules matching `event_type`.
    pub fn matching<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.0.iter().filter(move |r| r.event == event_type)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Turns a spec into a rule; `Ok(None)` for a built-in rule left without channels.
fn validate(spec: RuleSpec, config: &Config, defaults: bool) -> Result<Option<Rule>, (&'static str, String)> {
    let name = spec.name;
    if name.contains('.') {
        return Err(("name", "must not contain `.` (it separates the parts of notification ids)".into()));
    }
    check_name(&name).map_err(|e| ("name", e))?;
    check_name(&spec.event).map_err(|e| ("event", e))?;
    let kind = spec.kind.unwrap_or_else(|| spec.event.clone());
    check_name(&kind).map_err(|e| ("type", e))?;
    let text = |field: &'static str, value: &str, max: usize| -> Result<Template, (&'static str, String)> {
        if value.trim().is_empty() || value.chars().count() > max {
            return Err((field, format!("must be 1 to {max} characters")));
        }
        Template::parse(value).map_err(|e| (field, e))
    };
    let title = text("title", &spec.title, MAX_TITLE)?;
    let body = text("body", &spec.body, MAX_BODY)?;

    let mut channels = Vec::new();
    for channel in spec.channels {
        if channels.contains(&channel) {
            return Err(("channels", format!("{} is listed twice", channel.as_str())));
        }
        let missing = match channel {
            Channel::Browser => None,
            Channel::Webhook => configured(&config.webhook.webhook_secret).is_none().then_some("WEBHOOK_SECRET"),
            Channel::Email => configured(&config.smtp.smtp_host).is_none().then_some("SMTP_HOST"),
            Channel::Sms => configured(&config.smpp.smpp_address).is_none().then_some("SMPP_ADDRESS"),
        };
        match missing {
            None => channels.push(channel),
            Some(_) if defaults => {}
            Some(setting) => return Err(("channels", format!("the {} channel needs {setting}", channel.as_str()))),
        }
    }
    if channels.is_empty() {
        return if defaults { Ok(None) } else { Err(("channels", "name at least one channel".into())) };
    }

    let webhook_url = match (&spec.webhook, channels.contains(&Channel::Webhook)) {
        (Some(_), false) if !defaults => return Err(("webhook", "given, but `webhook` is not in channels".into())),
        (_, false) => None,
        (spec, true) => {
            let url = spec.as_ref().and_then(|w| w.url.clone()).or_else(|| configured(&config.webhook.webhook_url));
            let url = url.ok_or(("webhook.url", "set it here or set WEBHOOK_URL".to_owned()))?;
            let parsed = reqwest::Url::parse(&url).map_err(|e| ("webhook.url", format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(("webhook.url", "must be an http(s) URL".into()));
            }
            Some(url)
        }
    };
    if spec.email.is_some() && !channels.contains(&Channel::Email) && !defaults {
        return Err(("email", "given, but `email` is not in channels".into()));
    }
    let email = spec.email.unwrap_or(EmailSpec { to: None, subject: None });
    let email_to = text("email.to", email.to.as_deref().unwrap_or("{{data.email}}"), MAX_TITLE)?;
    let email_subject = match &email.subject {
        Some(subject) => text("email.subject", subject, MAX_TITLE)?,
        None => title.clone(),
    };
    if spec.sms.is_some() && !channels.contains(&Channel::Sms) && !defaults {
        return Err(("sms", "given, but `sms` is not in channels".into()));
    }
    let sms = spec.sms.unwrap_or(SmsSpec { to: None, text: None });
    let sms_to = text("sms.to", sms.to.as_deref().unwrap_or("{{data.phone}}"), MAX_TITLE)?;
    let sms_text = match &sms.text {
        Some(t) => text("sms.text", t, MAX_BODY)?,
        None => body.clone(),
    };
    Ok(Some(Rule {
        name,
        event: spec.event,
        kind,
        title,
        body,
        channels,
        webhook_url,
        email_to,
        email_subject,
        sms_to,
        sms_text,
    }))
}

/// A setting that is set and not blank.
pub fn configured(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["s"];
        argv.extend_from_slice(args);
        // Parsed without validation: validation itself loads rules.
        <Config as clap::Parser>::try_parse_from(argv).unwrap()
    }

    fn parse(yaml: &str) -> Result<Rules, String> {
        let settings =
            ["--webhook-secret", "0123456789abcdef", "--smtp-host", "localhost", "--smpp-address", "smsc:2775"];
        Rules::parse(yaml, &config(&settings), false)
    }

    #[test]
    fn templates_fill_paths_and_fallbacks() {
        let t = Template::parse("Hi {{ data.name ?? \"there\" }}, {{data.n}} {{userId}}!").unwrap();
        let ctx = json!({ "userId": "u1", "data": { "name": "Ann", "n": 3 } });
        assert_eq!(t.render(&ctx).unwrap(), "Hi Ann, 3 u1!");
        let ctx = json!({ "userId": "u1", "data": { "n": true } });
        assert_eq!(t.render(&ctx).unwrap(), "Hi there, true u1!");
        assert_eq!(t.render(&json!({ "userId": "u" , "data": {} })).unwrap_err(), "data.n: required");
        assert_eq!(
            t.render(&json!({ "userId": "u", "data": { "n": [1] } })).unwrap_err(),
            "data.n: must be a string, number or boolean"
        );
        assert!(Template::parse("{{ data.x").unwrap_err().starts_with("unclosed placeholder"));
        assert!(Template::parse("{{}}").unwrap_err().contains("not a dotted field path"));
        assert!(Template::parse("{{a ?? b}}").unwrap_err().contains("quoted"));
    }

    #[test]
    fn the_built_in_rules_need_no_configuration() {
        let rules = Rules::load(&config(&[])).unwrap();
        let names: Vec<_> = rules.matching("user.registered").map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["welcome"]);
        let rules = Rules::load(&config(&["--smtp-host", "mail"])).unwrap();
        assert_eq!(rules.matching("user.registered").count(), 2);
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let base = "  - name: hello\n    event: a.b\n    title: T\n    body: B\n";
        let err = parse(&format!("rules:\n{base}    channels: [browser, fax]\n")).unwrap_err();
        assert!(err.starts_with("rule \"hello\": field `channels[1]`: unknown variant `fax`"), "{err}");
        let err = Rules::parse(&format!("rules:\n{base}    channels: [sms]\n"), &config(&[]), false).unwrap_err();
        assert_eq!(err, "rule \"hello\": field `channels`: the sms channel needs SMPP_ADDRESS");
        let err = parse("rules:\n  - name: hello\n    event: a.b\n    body: B\n    channels: [browser]\n").unwrap_err();
        assert_eq!(err, "rule \"hello\": missing field `title`");
        let err = parse(&format!("rules:\n{base}    channels: [browser]\n    titel: x\n")).unwrap_err();
        assert!(err.starts_with("rule \"hello\": field `titel`: unknown field `titel`"), "{err}");
        let err =
            parse("rules:\n  - name: x\n    event: a\n    title: \"{{oops\"\n    body: B\n    channels: [browser]\n")
                .unwrap_err();
        assert!(err.starts_with("rule \"x\": field `title`: unclosed placeholder"), "{err}");
        let err = parse(&format!("rules:\n{base}    channels: [webhook]\n")).unwrap_err();
        assert_eq!(err, "rule \"hello\": field `webhook.url`: set it here or set WEBHOOK_URL");
        let err =
            parse(&format!("rules:\n{base}    channels: [browser]\n{base}    channels: [browser]\n")).unwrap_err();
        assert_eq!(err, "rule \"hello\": field `name`: another rule has this name");
        let err = Rules::parse(&format!("rules:\n{base}    channels: [email]\n"), &config(&[]), false).unwrap_err();
        assert_eq!(err, "rule \"hello\": field `channels`: the email channel needs SMTP_HOST");
        let err = parse("rules:\n  - event: a\n").unwrap_err();
        assert!(err.starts_with("rule #1: missing field `name`"), "{err}");
    }

    #[test]
    fn rendering_reports_missing_data_per_rule() {
        let rules = parse(
            "rules:\n  - name: mail\n    event: a\n    title: \"Hi {{data.name}}\"\n    body: B\n    channels: [email]\n",
        )
        .unwrap();
        let rule = rules.matching("a").next().unwrap();
        let err = rule.render(&json!({ "data": { "name": "x" } })).unwrap_err();
        assert_eq!(err, "data.email: required by rule \"mail\" (email.to)");
        let err = rule.render(&json!({ "data": { "name": "x", "email": "nope" } })).unwrap_err();
        assert!(err.contains("is not an email address"), "{err}");
        let ok = rule.render(&json!({ "data": { "name": "Ann", "email": "a@example.com" } })).unwrap();
        assert_eq!(ok.email, Some(("a@example.com".into(), "Hi Ann".into())));

        let rules = parse(
            "rules:\n  - name: text\n    event: a\n    title: T\n    body: \"Hi {{data.name}}\"\n    channels: [sms]\n",
        )
        .unwrap();
        let rule = rules.matching("a").next().unwrap();
        let err = rule.render(&json!({ "data": { "name": "x" } })).unwrap_err();
        assert_eq!(err, "data.phone: required by rule \"text\" (sms.to)");
        let ok = rule.render(&json!({ "data": { "name": "Ann", "phone": "+4915112345678" } })).unwrap();
        assert_eq!(ok.sms, Some(("+4915112345678".into(), "Hi Ann".into())), "the text defaults to the body");
        let err = parse(
            "rules:\n  - name: t\n    event: a\n    title: T\n    body: B\n    channels: [browser]\n    sms: {to: x}\n",
        )
        .unwrap_err();
        assert_eq!(err, "rule \"t\": field `sms`: given, but `sms` is not in channels");
    }
}
