//! The Prometheus adapter against recorded real responses (`../shared/fixtures/prometheus/`)
//! and broken servers, served on loopback: decoding, verdicts and error classification.

#[path = "common/prom.rs"]
mod prom;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use tidegate::analysis::batch::{self, ErrorKind, Target};
use tidegate::analysis::subset::SubsetLabels;
use tidegate::analysis::{Outcome, Verdict};
use tidegate::metrics::prometheus::{Auth, Prometheus, PrometheusConfig};
use tidegate::metrics::{MetricsError, MetricsSource, run_tick};
use tidegate::plan::{Analysis, MetricSource, MetricSpec, RolloutId};

#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    delay: Duration,
    /// Required `Authorization` header, if any (401 otherwise).
    auth: Option<String>,
}

fn json(body: impl Into<String>) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        body: body.into(),
        delay: Duration::ZERO,
        auth: None,
    }
}

/// Serve `reply` for every instant query on a fresh loopback port.
async fn serve(reply: Reply) -> String {
    let reply = Arc::new(reply);
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::any(move |headers: HeaderMap| {
            let r = reply.clone();
            async move {
                tokio::time::sleep(r.delay).await;
                let got = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if r.auth.is_some() && got != r.auth {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [("content-type", "text/plain")],
                        "unauthorized".to_string(),
                    );
                }
                (
                    StatusCode::from_u16(r.status).expect("status"),
                    [("content-type", r.content_type)],
                    r.body.clone(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn source(url: &str) -> Prometheus {
    prom::install_crypto();
    Prometheus::new(&PrometheusConfig {
        timeout: Duration::from_millis(500),
        ..PrometheusConfig::new(url)
    })
    .expect("source")
}

fn fixture(name: &str) -> String {
    let path = prom::fixtures_dir().join("prometheus").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()))
}

/// One rollout with one custom-query check `value >= 99`.
async fn verdict_for(url: &str) -> Result<Verdict, ErrorKind> {
    let target = Target {
        id: RolloutId {
            namespace: "shop".into(),
            name: "cart".into(),
        },
        service: "cart".into(),
        namespace: "shop".into(),
        reporter: "destination".into(),
        subsets: SubsetLabels::fallback()
            .mapping("v2", "v1")
            .expect("mapping"),
        analysis: Analysis {
            interval: Duration::from_secs(60),
            failure_limit: 1,
            min_requests: 0,
            unreachable_limit: Duration::from_secs(60),
            metrics: vec![MetricSpec {
                name: "custom".into(),
                source: MetricSource::Query("up{service=\"{{ service }}\"}".into()),
                min: Some(99.0),
                max: None,
                compare_to_stable: false,
                tolerance: 0.0,
                test: None,
            }],
        },
        since: None,
    };
    let plan = batch::plan(&[target]);
    let (r, _) = run_tick(&source(url), &plan, None).await;
    match (r[0].verdicts.first(), r[0].errors.first()) {
        (Some(v), None) => Ok(v.clone()),
        (_, Some(e)) => Err(e.kind),
        (None, None) => panic!("neither verdict nor error: {r:?}"),
    }
}

#[tokio::test]
async fn recorded_responses_decode_into_the_right_verdicts() {
    let single = verdict_for(
        &serve(json(fixture(
            "flagger__prometheus_test.go__vector-single-value.json",
        )))
        .await,
    )
    .await
    .expect("verdict");
    assert_eq!((single.outcome, single.value), (Outcome::Pass, Some(100.0)));

    let empty = verdict_for(
        &serve(json(fixture(
            "flagger__prometheus_test.go__vector-empty-result.json",
        )))
        .await,
    )
    .await
    .expect("verdict");
    assert_eq!(empty.outcome, Outcome::Inconclusive);
    assert!(
        empty.reason.starts_with("no data for canary"),
        "{}",
        empty.reason
    );

    let nan = verdict_for(
        &serve(json(fixture(
            "flagger__prometheus_test.go__vector-nan-value.json",
        )))
        .await,
    )
    .await
    .expect("verdict");
    assert_eq!(nan.outcome, Outcome::Inconclusive);
    assert!(nan.value.is_some_and(f64::is_nan));
    assert!(nan.reason.contains("NaN"), "{}", nan.reason);

    let several =
        verdict_for(&serve(json(fixture("prometheus__api.md__instant-query-up.json"))).await)
            .await
            .expect("verdict");
    assert_eq!(several.outcome, Outcome::Inconclusive);
    assert!(
        several.reason.contains("returned 2 series"),
        "{}",
        several.reason
    );

    let matrix = verdict_for(
        &serve(json(fixture(
            "flagger__prometheus_test.go__matrix-multiple-series-nan.json",
        )))
        .await,
    )
    .await;
    assert_eq!(matrix, Err(ErrorKind::BadData));
}

#[tokio::test]
async fn recorded_series_keep_their_labels() {
    let url = serve(json(fixture("prometheus__api.md__instant-query-up.json"))).await;
    let series = source(&url).instant("up", None).await.expect("decodes");
    let jobs: Vec<(&str, f64)> = series
        .iter()
        .map(|s| (s.labels["job"].as_str(), s.value))
        .collect();
    assert_eq!(jobs, vec![("prometheus", 1.0), ("node", 0.0)]);
}

#[tokio::test]
async fn errors_are_classified() {
    let cases = [
        (
            Reply {
                status: 502,
                content_type: "text/html",
                body: "<html>bad gateway</html>".into(),
                ..json("")
            },
            ErrorKind::Unreachable,
        ),
        (
            Reply {
                status: 400,
                ..json(
                    r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}"#,
                )
            },
            ErrorKind::BadQuery,
        ),
        (
            Reply {
                status: 422,
                ..json(
                    r#"{"status":"error","errorType":"execution","error":"found duplicate series"}"#,
                )
            },
            ErrorKind::BadQuery,
        ),
        (
            Reply {
                status: 503,
                ..json(
                    r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
                )
            },
            ErrorKind::Timeout,
        ),
        (json("{not json"), ErrorKind::BadData),
        (
            json(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"many"]}]}}"#,
            ),
            ErrorKind::BadData,
        ),
        (
            Reply {
                content_type: "text/plain",
                ..json("up 1")
            },
            ErrorKind::BadData,
        ),
        (
            Reply {
                delay: Duration::from_secs(3),
                ..json(fixture(
                    "flagger__prometheus_test.go__vector-single-value.json",
                ))
            },
            ErrorKind::Timeout,
        ),
    ];
    for (reply, kind) in cases {
        let what = format!("{} {} {:?}", reply.status, reply.content_type, reply.body);
        let url = serve(reply).await;
        let err = source(&url).instant("up", None).await.expect_err(&what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
    }
    // Nothing listening.
    let url = format!("http://127.0.0.1:{}", prom::free_port());
    let err = source(&url).instant("up", None).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(matches!(err, MetricsError::Unreachable(_)));
}

#[tokio::test]
async fn credentials_are_read_from_files() {
    prom::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let body = fixture("flagger__prometheus_test.go__vector-single-value.json");
    let url = serve(Reply {
        auth: Some("Bearer s3cret".into()),
        ..json(body.clone())
    })
    .await;
    let bearer = Prometheus::new(&PrometheusConfig {
        auth: Auth::BearerTokenFile(token.clone()),
        ..PrometheusConfig::new(&url)
    })
    .expect("source");
    assert_eq!(
        bearer.instant("up", None).await.expect("authorized")[0].value,
        100.0
    );
    // Without credentials the server refuses: the source cannot be used.
    let err = source(&url).instant("up", None).await.expect_err("401");
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    // A rotated token is picked up without a new source.
    std::fs::write(&token, "other").expect("rotate");
    assert!(bearer.instant("up", None).await.is_err());

    let password = dir.path().join("password");
    std::fs::write(&password, "pw").expect("write password");
    // base64("admin:pw")
    let url = serve(Reply {
        auth: Some("Basic YWRtaW46cHc=".into()),
        ..json(body)
    })
    .await;
    let basic = Prometheus::new(&PrometheusConfig {
        auth: Auth::Basic {
            username: "admin".into(),
            password_file: password,
        },
        ..PrometheusConfig::new(&url)
    })
    .expect("source");
    assert_eq!(
        basic.instant("up", None).await.expect("authorized").len(),
        1
    );
    // A missing credentials file is a configuration error, reported as unreachable.
    let missing = Prometheus::new(&PrometheusConfig {
        auth: Auth::BearerTokenFile(dir.path().join("nope")),
        ..PrometheusConfig::new(&url)
    })
    .expect("source");
    let err = missing.instant("up", None).await.expect_err("no file");
    assert!(
        err.to_string()
            .contains("failed to read Prometheus credentials"),
        "{err}"
    );
}

#[test]
fn a_missing_ca_file_is_a_configuration_error() {
    prom::install_crypto();
    let err = Prometheus::new(&PrometheusConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..PrometheusConfig::new("https://127.0.0.1:1")
    })
    .expect_err("no CA");
    assert!(matches!(err, MetricsError::Config(_)), "{err}");
}

/// Run the built binary; (exit code, stdout, stderr).
fn tidegate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn analyze_exit_codes_for_bad_input_and_an_unreachable_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: cart, namespace: shop}\nspec:\n  service: cart\n  stable: v1\n  canary: v2\n  steps: [{setWeight: 10}]\n  analysis:\n    metrics:\n      - {name: success, template: istio-success-rate, min: 99}\n",
    )
    .expect("write plan");
    let plan = plan.display().to_string();
    let nobody = format!("http://127.0.0.1:{}", prom::free_port());

    let (code, out, _) = tidegate(&["analyze", &plan, "--prometheus", &nobody, "--timeout", "2s"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("Error(unreachable) success"), "{out}");
    assert!(out.contains("note: no --manifests given"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec:\n  service: x\n  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, query: 'x{a={{ service }}}', max: 1}]}\n",
    )
    .expect("write bad plan");
    let (code, _, err) = tidegate(&[
        "analyze",
        &bad.display().to_string(),
        "--prometheus",
        &nobody,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("must be written inside a double-quoted string"),
        "{err}"
    );

    let (code, _, err) = tidegate(&[
        "analyze",
        &plan,
        "--prometheus",
        &nobody,
        "--manifests",
        "/nonexistent/manifests",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/manifests"), "{err}");

    // A manifest folder whose DestinationRule leaves the canary subset unlabelled.
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).expect("mkdir");
    std::fs::write(
        m.join("dr.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cart, namespace: shop}\nspec:\n  host: cart\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {app: cart}}\n",
    )
    .expect("write manifests");
    let (code, _, err) = tidegate(&[
        "analyze",
        &plan,
        "--prometheus",
        &nobody,
        "--manifests",
        &m.display().to_string(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("subset \"v2\" of DestinationRule shop/cart has no `version`"),
        "{err}"
    );
}
