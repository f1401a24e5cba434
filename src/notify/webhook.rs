//! The HTTP sender behind both channel kinds: POST JSON, per-attempt timeout, bounded retries
//! with exponential backoff.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;

use super::config::{Channel, ChannelKind};
use super::payload::{JsonPayload, slack_payload};
use super::{Notification, Notifier, NotifyError, SendFuture, event_name};
use crate::rollout::Event;

/// Wait before retry `n` (0-based): `initial × 2ⁿ`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Install rustls' ring provider as the process default unless one is installed already.
///
/// reqwest is built with `rustls-no-provider` (kube uses ring; a second provider would make
/// kube panic), and panics when it builds a client with no provider installed. `main` installs
/// ring once at start-up; this makes the notifier safe to build from tests and tools too.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: some provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A Slack-compatible incoming webhook or a generic JSON webhook.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    channel: Channel,
    url: reqwest::Url,
    client: reqwest::Client,
    backoff: Backoff,
}

impl WebhookNotifier {
    /// Resolve the channel's URL (file or environment) and build the sender.
    pub fn from_channel(channel: Channel) -> Result<WebhookNotifier, NotifyError> {
        let url = channel.resolve_url()?;
        WebhookNotifier::new(channel, url)
    }

    /// Build the sender for an already resolved URL.
    pub fn new(channel: Channel, url: reqwest::Url) -> Result<WebhookNotifier, NotifyError> {
        ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("tidegate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(channel.timeout)
            // A redirect would send the message somewhere the configuration did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client {
                channel: channel.name.clone(),
                detail: describe(&e),
            })?;
        Ok(WebhookNotifier {
            channel,
            url,
            client,
            backoff: Backoff::default(),
        })
    }

    /// Replace the default backoff (500 ms doubling up to 8 s).
    pub fn with_backoff(mut self, backoff: Backoff) -> WebhookNotifier {
        self.backoff = backoff;
        self
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The longest a delivery can take: every attempt timing out plus every wait (a wait,
    /// `Retry-After` included, is never longer than the backoff's `max`).
    pub fn worst_case(&self) -> Duration {
        let attempts = self.channel.retries.saturating_add(1);
        self.channel
            .timeout
            .saturating_mul(attempts)
            .saturating_add(self.backoff.max.saturating_mul(self.channel.retries))
    }

    fn body(&self, n: &Notification) -> Result<Vec<u8>, serde_json::Error> {
        match self.channel.kind {
            ChannelKind::Slack => serde_json::to_vec(&slack_payload(n)),
            ChannelKind::Webhook => serde_json::to_vec(&JsonPayload::new(n)),
        }
    }

    /// Deliver one notification; returns the number of attempts it took.
    pub async fn deliver(&self, n: &Notification) -> Result<u32, NotifyError> {
        let name = &self.channel.name;
        let body = self.body(n).map_err(|e| NotifyError::Failed {
            channel: name.clone(),
            attempts: 0,
            detail: format!("cannot encode the message: {e}"),
        })?;
        let attempts = self.channel.retries.saturating_add(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let sent = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(self.channel.timeout)
                .body(body.clone())
                .send()
                .await;
            let mut wait = self.backoff.delay(attempt - 1);
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(channel = %name, rollout = %n.rollout, event = event_name(n.event), attempt, "notification delivered");
                    return Ok(attempt);
                }
                Ok(resp) if retryable(resp.status()) => {
                    if let Some(after) = retry_after(&resp) {
                        wait = wait.max(after.min(self.backoff.max));
                    }
                    last = format!("HTTP {}", resp.status().as_u16());
                }
                Ok(resp) => {
                    return Err(NotifyError::Rejected {
                        channel: name.clone(),
                        status: resp.status().as_u16(),
                    });
                }
                Err(e) if e.is_timeout() => {
                    last = format!(
                        "no answer within {}",
                        crate::units::duration(self.channel.timeout)
                    );
                }
                Err(e) => last = describe(&e),
            }
            tracing::debug!(channel = %name, rollout = %n.rollout, attempt, error = %last, "notification attempt failed");
            if attempt < attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(NotifyError::Failed {
            channel: name.clone(),
            attempts,
            detail: last,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, event: Event) -> bool {
        self.channel.events.contains(&event)
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move { self.deliver(notification).await.map(|_| ()) })
    }
}

/// 408, 429 and 5xx are worth another try; other answers will not change.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// A reqwest error with its causes, without the URL (a credential).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (0..6).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for (code, want) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (410, false),
            (302, false),
        ] {
            let status = StatusCode::from_u16(code).expect("status");
            assert_eq!(retryable(status), want, "{code}");
        }
    }
}
