//! Channel configuration as written in the daemon configuration, and its one-pass validation.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ALL_EVENTS, NotifyError, event_name};
use crate::rollout::Event;

/// Per-attempt timeout when the channel does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest per-attempt timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries after the first attempt when the channel does not set them.
pub const DEFAULT_RETRIES: u32 = 3;
/// The most retries accepted.
pub const MAX_RETRIES: u32 = 10;

/// How a channel's endpoint understands messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelKind {
    /// A Slack (or Mattermost, Rocket.Chat, ...) incoming webhook: `{"text": ..., "blocks": ...}`.
    Slack,
    /// Any HTTP endpoint: the JSON document described in docs/notifications.md.
    Webhook,
}

/// One notification channel as written in the daemon configuration.
///
/// The URL is a credential (anyone holding a Slack webhook URL can post), so it is never
/// written inline: it comes from a file (a mounted Secret) or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelConfig {
    /// The name plans use in `notify: [...]`.
    pub name: String,
    pub kind: ChannelKind,
    /// A file holding the URL (surrounding whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The events this channel wants; omitted means every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
    /// Per-attempt timeout as a duration (`5s`, `1500ms`); default 5s, at most 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retries after the first attempt; default 3, at most 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// Where a channel's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    File(PathBuf),
    Env(String),
}

/// A validated channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: UrlSource,
    /// Wanted events, without duplicates, in the order of [`ALL_EVENTS`].
    pub events: Vec<Event>,
    pub timeout: Duration,
    pub retries: u32,
}

impl Channel {
    /// Read the URL from its file or environment variable and check it is an http(s) URL.
    pub fn resolve_url(&self) -> Result<reqwest::Url, NotifyError> {
        self.resolve_url_with(|name| std::env::var(name).ok())
    }

    /// [`Channel::resolve_url`] with the environment given as a function (for tests).
    pub fn resolve_url_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<reqwest::Url, NotifyError> {
        let raw = match &self.url {
            UrlSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| NotifyError::UrlSource {
                    channel: self.name.clone(),
                    detail: format!("cannot read {}: {e}", path.display()),
                })?
            }
            UrlSource::Env(var) => env(var).ok_or_else(|| NotifyError::UrlSource {
                channel: self.name.clone(),
                detail: format!("environment variable {var} is not set"),
            })?,
        };
        parse_url(&self.name, raw.trim())
    }
}

fn parse_url(channel: &str, raw: &str) -> Result<reqwest::Url, NotifyError> {
    if raw.is_empty() {
        return Err(NotifyError::InvalidUrl {
            channel: channel.to_owned(),
            detail: "the URL is empty".into(),
        });
    }
    // The parse error names the problem, never the URL (it is a credential).
    let url = reqwest::Url::parse(raw).map_err(|e| NotifyError::InvalidUrl {
        channel: channel.to_owned(),
        detail: format!("not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NotifyError::InvalidUrl {
            channel: channel.to_owned(),
            detail: format!("scheme {:?} is not http or https", url.scheme()),
        });
    }
    if url.host_str().is_none() {
        return Err(NotifyError::InvalidUrl {
            channel: channel.to_owned(),
            detail: "the URL has no host".into(),
        });
    }
    Ok(url)
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(|b| *b != b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validate every channel and report every problem at once, each naming the channel.
pub fn validate_channels(configs: &[ChannelConfig]) -> Result<Vec<Channel>, NotifyError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut channels = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let at = if c.name.is_empty() {
            format!("notifications[{i}]")
        } else {
            format!("notifications[{i}] ({})", c.name)
        };
        let before = errors.len();
        if !valid_name(&c.name) {
            errors.push(format!(
                "{at}: name {:?} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
                c.name
            ));
        } else if !seen.insert(c.name.as_str()) {
            errors.push(format!(
                "{at}: the name {:?} is used by an earlier channel; names must be unique",
                c.name
            ));
        }
        let url = match (&c.url_file, &c.url_env) {
            (Some(_), Some(_)) => {
                errors.push(format!("{at}: set either urlFile or urlEnv, not both"));
                None
            }
            (None, None) => {
                errors.push(format!(
                    "{at}: the URL is missing: set urlFile (a mounted Secret) or urlEnv (an environment variable)"
                ));
                None
            }
            (Some(path), None) => {
                if path.as_os_str().is_empty() {
                    errors.push(format!("{at}: urlFile is empty"));
                    None
                } else {
                    Some(UrlSource::File(path.clone()))
                }
            }
            (None, Some(var)) => {
                if valid_env_name(var) {
                    Some(UrlSource::Env(var.clone()))
                } else {
                    errors.push(format!(
                        "{at}: urlEnv {var:?} is not an environment variable name (letters, digits, '_', not starting with a digit)"
                    ));
                    None
                }
            }
        };
        let events = match &c.events {
            None => ALL_EVENTS.to_vec(),
            Some(list) if list.is_empty() => {
                errors.push(format!(
                    "{at}: events is empty, so the channel would never be used; list events (e.g. [rolledBack, aborted]) or omit the field for all"
                ));
                Vec::new()
            }
            Some(list) => ALL_EVENTS
                .iter()
                .copied()
                .filter(|e| list.contains(e))
                .collect(),
        };
        let timeout = match c.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(raw) => match humantime::parse_duration(raw) {
                Ok(d) if d.is_zero() => {
                    errors.push(format!("{at}: timeout must be more than 0"));
                    d
                }
                Ok(d) if d > MAX_TIMEOUT => {
                    errors.push(format!(
                        "{at}: timeout {raw} is longer than the maximum of 60s"
                    ));
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    errors.push(format!(
                        "{at}: timeout {raw:?} is not a duration ({e}); write e.g. 5s or 1500ms"
                    ));
                    DEFAULT_TIMEOUT
                }
            },
        };
        let retries = c.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            errors.push(format!(
                "{at}: retries {retries} is more than the maximum of {MAX_RETRIES}"
            ));
        }
        if errors.len() == before
            && let Some(url) = url
        {
            channels.push(Channel {
                name: c.name.clone(),
                kind: c.kind,
                url,
                events,
                timeout,
                retries,
            });
        }
    }
    if errors.is_empty() {
        Ok(channels)
    } else {
        Err(NotifyError::InvalidChannels { errors })
    }
}

/// Names in `wanted` (a plan's `notify` list) that no channel has.
pub fn unknown_channels<'a>(channels: &[Channel], wanted: &'a [String]) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|w| !channels.iter().any(|c| &c.name == *w))
        .map(String::as_str)
        .collect()
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events: Vec<&str> = self.events.iter().map(|e| event_name(*e)).collect();
        write!(
            f,
            "{} ({:?}, events [{}], timeout {:?}, retries {})",
            self.name,
            self.kind,
            events.join(", "),
            self.timeout,
            self.retries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            kind: ChannelKind::Slack,
            url_file: None,
            url_env: Some("SLACK_URL".into()),
            events: None,
            timeout: None,
            retries: None,
        }
    }

    #[test]
    fn defaults_apply() {
        let channels = validate_channels(&[base("default")]).expect("valid");
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(channels[0].retries, DEFAULT_RETRIES);
        assert_eq!(channels[0].events, ALL_EVENTS.to_vec());
        assert_eq!(channels[0].url, UrlSource::Env("SLACK_URL".into()));
    }

    #[test]
    fn collects_every_error() {
        let mut both = base("both");
        both.url_file = Some("/x".into());
        let mut none = base("none");
        none.url_env = None;
        let mut bad = base("Bad_Name");
        bad.timeout = Some("soon".into());
        bad.retries = Some(99);
        bad.events = Some(vec![]);
        let mut slow = base("slow");
        slow.timeout = Some("2m".into());
        let mut env = base("env");
        env.url_env = Some("1X".into());
        let configs = [base("dup"), base("dup"), both, none, bad, slow, env];
        let Err(NotifyError::InvalidChannels { errors }) = validate_channels(&configs) else {
            panic!("expected invalid channels");
        };
        let expect = [
            "notifications[1] (dup): the name \"dup\" is used by an earlier channel",
            "notifications[2] (both): set either urlFile or urlEnv, not both",
            "notifications[3] (none): the URL is missing",
            "notifications[4] (Bad_Name): name \"Bad_Name\" must be",
            "notifications[4] (Bad_Name): events is empty",
            "notifications[4] (Bad_Name): timeout \"soon\" is not a duration",
            "notifications[4] (Bad_Name): retries 99 is more than the maximum of 10",
            "notifications[5] (slow): timeout 2m is longer than the maximum of 60s",
            "notifications[6] (env): urlEnv \"1X\" is not an environment variable name",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn events_are_deduplicated_in_life_order() {
        let mut c = base("ops");
        c.events = Some(vec![Event::RolledBack, Event::Started, Event::RolledBack]);
        let channels = validate_channels(&[c]).expect("valid");
        assert_eq!(channels[0].events, vec![Event::Started, Event::RolledBack]);
    }

    #[test]
    fn parses_from_yaml_and_rejects_unknown_fields() {
        let yaml = "- name: ops\n  kind: webhook\n  urlFile: /etc/tidegate/notify/ops-url\n  events: [rolledBack, aborted]\n  timeout: 2s\n  retries: 1\n";
        let configs: Vec<ChannelConfig> = serde_saphyr::from_str(yaml).expect("parse");
        let channels = validate_channels(&configs).expect("valid");
        assert_eq!(channels[0].kind, ChannelKind::Webhook);
        assert_eq!(channels[0].timeout, Duration::from_secs(2));
        assert_eq!(
            channels[0].url,
            UrlSource::File("/etc/tidegate/notify/ops-url".into())
        );
        let typo = "- name: ops\n  kind: slack\n  urlEnv: X\n  retry: 1\n";
        assert!(serde_saphyr::from_str::<Vec<ChannelConfig>>(typo).is_err());
    }

    #[test]
    fn url_resolution_checks_scheme_and_hides_the_url() {
        let channel = &validate_channels(&[base("default")]).expect("valid")[0];
        let ok = channel
            .resolve_url_with(|_| Some("  https://hooks.example.com/services/T/B/secret\n".into()))
            .expect("url");
        assert_eq!(ok.host_str(), Some("hooks.example.com"));
        let err = channel
            .resolve_url_with(|_| Some("ftp://hooks.example.com/secret".into()))
            .expect_err("ftp refused");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = channel.resolve_url_with(|_| None).expect_err("unset");
        assert!(err.to_string().contains("SLACK_URL is not set"), "{err}");
    }

    #[test]
    fn unknown_channel_names_are_reported() {
        let channels = validate_channels(&[base("default")]).expect("valid");
        let wanted = vec!["default".to_string(), "pager".to_string()];
        assert_eq!(unknown_channels(&channels, &wanted), vec!["pager"]);
    }
}
