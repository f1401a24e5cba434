//! The Prometheus adapter: instant queries over the HTTP API (prometheus-http-query on a
//! reqwest/rustls client) with a timeout, bearer-token or basic auth read from files, an
//! optional custom CA, and errors classified into unreachable / timeout / bad query / bad data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as PromError};
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::analysis::batch::{RangeSeries, Series};
use crate::metrics::{MetricsError, MetricsSource};

/// How to authenticate to Prometheus. Secrets are read from files on every query, so rotated
/// tokens (projected service-account tokens) are picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    BearerTokenFile(PathBuf),
    Basic {
        username: String,
        password_file: PathBuf,
    },
}

/// Where and how to reach Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.istio-system:9090`.
    pub url: String,
    /// Per-query timeout (request and evaluation).
    pub timeout: Duration,
    pub auth: Auth,
    /// PEM file with extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

impl PrometheusConfig {
    pub fn new(url: impl Into<String>) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            timeout: Duration::from_secs(10),
            auth: Auth::None,
            ca_file: None,
        }
    }
}

/// A Prometheus server answering instant queries.
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    timeout: Duration,
    auth: Auth,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.client.base_url().as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Build the reqwest client for `config` (rustls with the ring provider, extra CA, timeout).
pub fn build_client(config: &PrometheusConfig) -> Result<reqwest::Client, MetricsError> {
    // The process installs ring once; this is a no-op when it already did.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(config.timeout);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            MetricsError::Config(format!("failed to read CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            MetricsError::Config(format!("failed to parse CA file {}: {e}", path.display()))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| MetricsError::Config(format!("failed to build HTTP client: {e}")))
}

impl Prometheus {
    /// A source with its own HTTP client.
    pub fn new(config: &PrometheusConfig) -> Result<Prometheus, MetricsError> {
        Prometheus::with_client(build_client(config)?, config)
    }

    /// A source on a shared HTTP client (its timeout and CA settings apply).
    pub fn with_client(
        client: reqwest::Client,
        config: &PrometheusConfig,
    ) -> Result<Prometheus, MetricsError> {
        let client = Client::from(client, &config.url).map_err(|e| {
            MetricsError::Config(format!("invalid Prometheus URL {:?}: {e}", config.url))
        })?;
        Ok(Prometheus {
            client,
            timeout: config.timeout,
            auth: config.auth.clone(),
        })
    }

    pub fn url(&self) -> &str {
        self.client.base_url().as_str()
    }

    fn authorization(&self) -> Result<Option<HeaderValue>, MetricsError> {
        use base64::Engine as _;
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    MetricsError::Config(format!(
                        "failed to read Prometheus credentials from {}: {e}",
                        p.display()
                    ))
                })
        };
        let value = match &self.auth {
            Auth::None => return Ok(None),
            Auth::BearerTokenFile(p) => format!("Bearer {}", read(p)?),
            Auth::Basic {
                username,
                password_file,
            } => {
                let raw = format!("{username}:{}", read(password_file)?);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            }
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            MetricsError::Config("Prometheus credentials contain invalid header characters".into())
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

/// Sort a client error into the bounded classes.
fn classify(e: PromError) -> MetricsError {
    match e {
        PromError::Prometheus(p) => {
            use prometheus_http_query::error::PrometheusErrorType as T;
            let msg = p.to_string();
            match p.error_type() {
                T::Timeout | T::Canceled => MetricsError::Timeout(msg),
                T::BadData | T::Execution | T::NotFound => MetricsError::BadQuery(msg),
                T::Internal | T::Unavailable => MetricsError::Unreachable(msg),
                _ => MetricsError::BadData(msg),
            }
        }
        PromError::Client(c) => {
            let mut msg = c.to_string();
            match c.inner() {
                Some(r) => {
                    // reqwest's own message hides the cause ("connection refused", …).
                    let mut chain = format!("{msg}: {r}");
                    let mut cause = std::error::Error::source(r);
                    while let Some(c) = cause {
                        chain.push_str(&format!(": {c}"));
                        cause = c.source();
                    }
                    msg = chain;
                    if r.is_timeout() {
                        MetricsError::Timeout(msg)
                    } else if r.is_decode() || r.is_body() {
                        MetricsError::BadData(msg)
                    } else {
                        // Connect errors, HTTP error statuses without an API body, redirects.
                        MetricsError::Unreachable(msg)
                    }
                }
                None => MetricsError::BadData(msg),
            }
        }
        PromError::ParseUrl(u) => MetricsError::Config(u.to_string()),
        other => MetricsError::BadData(other.to_string()),
    }
}

/// Turn an instant-query answer into series; a matrix is not an instant answer.
pub fn series_from(data: Data) -> Result<Vec<Series>, MetricsError> {
    match data {
        Data::Vector(v) => Ok(v
            .into_iter()
            .map(|iv| {
                let (labels, sample) = iv.into_inner();
                Series {
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    value: sample.value(),
                }
            })
            .collect()),
        Data::Scalar(s) => Ok(vec![Series {
            labels: BTreeMap::new(),
            value: s.value(),
        }]),
        Data::Matrix(m) => Err(MetricsError::BadData(format!(
            "instant query returned a range vector ({} series); a check needs an instant vector or scalar",
            m.len()
        ))),
    }
}

/// Turn a range-query answer into series; anything but a matrix is not a range answer.
pub fn range_series_from(data: Data) -> Result<Vec<RangeSeries>, MetricsError> {
    match data {
        Data::Matrix(m) => Ok(m
            .into_iter()
            .map(|rv| {
                let (labels, samples) = rv.into_inner();
                RangeSeries {
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    points: samples
                        .iter()
                        .filter_map(|s| {
                            let ms = (s.timestamp() * 1000.0).round() as i64;
                            DateTime::from_timestamp_millis(ms).map(|t| (t, s.value()))
                        })
                        .collect(),
                }
            })
            .collect()),
        _ => Err(MetricsError::BadData(
            "range query returned an instant vector or scalar; expected a matrix".into(),
        )),
    }
}

impl MetricsSource for Prometheus {
    async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, MetricsError> {
        let mut q = self
            .client
            .query_range(
                query,
                start.timestamp(),
                end.timestamp(),
                step.as_secs_f64(),
            )
            .timeout(i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX));
        if let Some(auth) = self.authorization()? {
            q = q.header(AUTHORIZATION, auth);
        }
        let result = q.post().await.map_err(classify)?;
        range_series_from(result.into_inner().0)
    }

    async fn instant(
        &self,
        query: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Series>, MetricsError> {
        let mut q = self
            .client
            .query(query)
            .timeout(i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX));
        if let Some(at) = at {
            q = q.at(at.timestamp());
        }
        if let Some(auth) = self.authorization()? {
            q = q.header(AUTHORIZATION, auth);
        }
        // POST: batched queries can exceed URL length limits of proxies.
        let result = q.post().await.map_err(classify)?;
        series_from(result.into_inner().0)
    }
}
