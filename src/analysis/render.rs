//! PromQL rendering of the built-in Istio templates and batched matchers. The escaping and the
//! custom-query language live with the plan model (`plan::query`) and are re-exported here.
//! Pure: no I/O.

#[cfg(test)]
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::plan::query::*;
use crate::plan::template::Template;

/// The labels every built-in query groups by: service name, namespace and the subset label.
pub fn group_labels(subset_label: &str) -> String {
    if subset_label == SERVICE_LABEL {
        return format!("destination_service_namespace, {SERVICE_LABEL}");
    }
    format!("destination_service_namespace, destination_service_name, {subset_label}")
}

/// Matchers covering many services and subsets at once (anchored regex alternations of
/// escaped values). The result is a superset; callers pick their exact series from the groups.
pub fn batch_matchers<'a>(
    reporter: &str,
    namespaces: impl IntoIterator<Item = &'a str>,
    services: impl IntoIterator<Item = &'a str>,
    subset_label: &str,
    subset_values: impl IntoIterator<Item = &'a str>,
) -> String {
    fn alternation<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
        let parts: Vec<String> = values.into_iter().map(escape_regex).collect();
        quote(&parts.join("|"))
    }
    format!(
        "reporter={}, destination_service_namespace=~{}, destination_service_name=~{}{}",
        quote(reporter),
        alternation(namespaces),
        alternation(services),
        subset_matcher(subset_label, "=~", &alternation(subset_values)),
    )
}

/// A built-in template over `matchers`, grouped by service and subset, over `window`.
pub fn template(
    template: Template,
    matchers: &str,
    subset_label: &str,
    window: Duration,
) -> String {
    template_with(template, matchers, subset_label, "rate", window)
}

/// A built-in template per scrape: `irate` (the last two samples) over a lookback of three
/// scrape intervals, so that a range query stepping by the scrape interval yields one value
/// per scrape from disjoint counter increments.
pub fn per_scrape(
    template: Template,
    matchers: &str,
    subset_label: &str,
    scrape_interval: Duration,
) -> String {
    template_with(
        template,
        matchers,
        subset_label,
        "irate",
        scrape_interval * 3,
    )
}

fn template_with(
    template: Template,
    matchers: &str,
    subset_label: &str,
    rate: &str,
    window: Duration,
) -> String {
    let group = group_labels(subset_label);
    let w = duration(window);
    match template {
        Template::SuccessRate => format!(
            "(sum by ({group}) ({rate}(istio_requests_total{{{matchers}, response_code!~\"5..\"}}[{w}])) \
or 0 * sum by ({group}) ({rate}(istio_requests_total{{{matchers}}}[{w}]))) \
/ sum by ({group}) ({rate}(istio_requests_total{{{matchers}}}[{w}])) * 100"
        ),
        Template::LatencyP50 | Template::LatencyP90 | Template::LatencyP99 => {
            let q = match template {
                Template::LatencyP50 => "0.5",
                Template::LatencyP90 => "0.9",
                _ => "0.99",
            };
            format!(
                "histogram_quantile({q}, sum by ({group}, le) \
({rate}(istio_request_duration_milliseconds_bucket{{{matchers}}}[{w}])))"
            )
        }
        Template::RequestRate => {
            format!("sum by ({group}) ({rate}(istio_requests_total{{{matchers}}}[{w}]))")
        }
    }
}

/// Requests per service subset and response code over each `window`: evaluated as a range
/// query stepping by `window`, the pooled counts behind `test: counts`.
pub fn counts_by_code(matchers: &str, subset_label: &str, window: Duration) -> String {
    format!(
        "sum by ({}, response_code) (increase(istio_requests_total{{{matchers}}}[{}]))",
        group_labels(subset_label),
        duration(window)
    )
}

/// Requests in the window per service subset: the sample count behind `minRequests`.
pub fn request_count(matchers: &str, subset_label: &str, window: Duration) -> String {
    format!(
        "sum by ({}) (increase(istio_requests_total{{{matchers}}}[{}]))",
        group_labels(subset_label),
        duration(window)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(
        service: &'a str,
        labels: &'a BTreeMap<String, String>,
        empty: &'a BTreeMap<String, String>,
    ) -> QueryVars<'a> {
        QueryVars {
            service,
            namespace: "shop",
            reporter: "destination",
            window: Duration::from_secs(60),
            subset_label: "destination_version",
            canary: SubsetVars {
                name: "canary",
                value: "v2",
                labels,
            },
            stable: SubsetVars {
                name: "stable",
                value: "v1",
                labels: empty,
            },
            evaluate_stable: false,
        }
    }

    #[test]
    fn quoting_escapes_delimiters_and_controls() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny\u{1}"), "\"x\\ny\\u0001\"");
        assert_eq!(quote("ünï"), "\"ünï\"");
    }

    #[test]
    fn regex_escape_covers_re2_meta() {
        assert_eq!(escape_regex("a.b|c*"), r"a\.b\|c\*");
        assert_eq!(
            escape_regex(r"(x)[y]{z}^$\+?"),
            r"\(x\)\[y\]\{z\}\^\$\\\+\?"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(60)), "60s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::ZERO), "1ms");
    }

    #[test]
    fn renders_values_in_their_context() {
        let labels = BTreeMap::from([("app".to_string(), "shop\"x".to_string())]);
        let empty = BTreeMap::new();
        let v = vars("cart.*", &labels, &empty);
        let q = r#"sum(rate(m{a="{{ service }}", b=~"{{service}}", c='{{ canary.app }}', d="{{version}}"}[{{ interval }}]))"#;
        assert_eq!(
            render_query(q, &v).expect("renders"),
            r#"sum(rate(m{a="cart.*", b=~"cart\\.\\*", c='shop"x', d="v2"}[60s]))"#
        );
        let q = "sum(rate(m{ {{ selector }} }[{{interval}}]))";
        assert_eq!(
            render_query(q, &v).expect("renders"),
            r#"sum(rate(m{ reporter="destination", destination_service_namespace="shop", destination_service_name="cart.*", destination_version="v2" }[60s]))"#
        );
        let stable = QueryVars {
            evaluate_stable: true,
            ..v.clone()
        };
        assert_eq!(
            render_query(r#"x{v="{{ version }}",s="{{subset}}"}"#, &stable).expect("renders"),
            r#"x{v="v1",s="stable"}"#
        );
    }

    #[test]
    fn rejects_unknown_unquoted_and_misplaced_variables() {
        assert!(matches!(
            check_query("up{a=\"{{ pod }}\"}"),
            Err(RenderError::UnknownVariable { .. })
        ));
        assert!(matches!(
            check_query("up{a={{ service }}}"),
            Err(RenderError::NotQuoted { .. })
        ));
        assert!(matches!(
            check_query("up{a=`{{ service }}`}"),
            Err(RenderError::InRawString { .. })
        ));
        assert!(matches!(
            check_query("up{a=\"{{ selector }}\"}"),
            Err(RenderError::Quoted { .. })
        ));
        assert!(matches!(
            check_query("up{a=\"{{ service \"}"),
            Err(RenderError::Unterminated { .. })
        ));
        assert!(matches!(check_query("  "), Err(RenderError::Empty)));
        assert!(matches!(
            check_query("up # don't {{ service }}"),
            Err(RenderError::InComment { .. })
        ));
        assert!(check_query("up # don't\n+ x{a=\"{{ service }}\"}").is_ok());
        assert!(
            check_query("rate(x{ {{selector}}, k=\"{{ canary.app }}\" }[{{interval}}])").is_ok()
        );
        // An escaped quote does not end the string the placeholder sits in.
        assert!(check_query(r#"x{a="\"{{ service }}"}"#).is_ok());
    }

    #[test]
    fn missing_subset_label_is_reported() {
        let empty = BTreeMap::new();
        let v = vars("cart", &empty, &empty);
        assert_eq!(
            render_query("x{a=\"{{ canary.app }}\"}", &v),
            Err(RenderError::MissingLabel {
                name: "canary.app".into(),
                subset: "canary".into(),
                label: "app".into()
            })
        );
    }

    #[test]
    fn templates_render_grouped_queries() {
        let m = exact_matchers("destination", "shop", "cart", "destination_version", "v2");
        let q = template(
            Template::LatencyP99,
            &m,
            "destination_version",
            Duration::from_secs(60),
        );
        assert_eq!(
            q,
            "histogram_quantile(0.99, sum by (destination_service_namespace, destination_service_name, destination_version, le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\", destination_service_namespace=\"shop\", destination_service_name=\"cart\", destination_version=\"v2\"}[60s])))"
        );
        let b = batch_matchers(
            "destination",
            ["shop"],
            ["a.b", "c"],
            "destination_version",
            ["v1", "v2"],
        );
        assert!(b.contains(r#"destination_service_name=~"a\\.b|c""#), "{b}");
    }

    /// Test-side PromQL lexer: the query with every string literal's content removed, and the
    /// decoded contents. `None` when a string is unterminated.
    fn skeleton(q: &str) -> Option<(String, Vec<String>)> {
        let mut out = String::new();
        let mut strings = Vec::new();
        let mut it = q.chars();
        while let Some(c) = it.next() {
            out.push(c);
            if c == '"' || c == '\'' {
                let mut content = String::new();
                loop {
                    match it.next()? {
                        '\\' => match it.next()? {
                            'n' => content.push('\n'),
                            'r' => content.push('\r'),
                            't' => content.push('\t'),
                            'u' => {
                                let hex: String = it.by_ref().take(4).collect();
                                content.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            e => content.push(e),
                        },
                        '\n' => return None,
                        d if d == c => break,
                        o => content.push(o),
                    }
                }
                strings.push(content);
                out.push(c);
            }
        }
        Some((out, strings))
    }

    fn render_all(service: &str, ns: &str, label: &str) -> Vec<String> {
        let labels = BTreeMap::from([("app".to_string(), label.to_string())]);
        let v = QueryVars {
            namespace: ns,
            ..vars(service, &labels, &labels)
        };
        let mut out: Vec<String> = Template::ALL
            .iter()
            .map(|t| {
                template(
                    *t,
                    &exact_matchers("destination", ns, service, "destination_version", label),
                    "destination_version",
                    Duration::from_secs(30),
                )
            })
            .collect();
        out.push(request_count(
            &batch_matchers(
                "destination",
                [ns, "x"],
                [service],
                "destination_version",
                [label, "v1"],
            ),
            "destination_version",
            Duration::from_secs(30),
        ));
        let custom = "sum(rate(m{ {{selector}}, a=\"{{service}}\", b=~'{{ namespace }}', c!~\"x|{{canary.app}}\" }[{{interval}}])) # c";
        out.push(render_query(custom, &v).expect("custom query renders"));
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn quote_round_trips(s in "\\PC*|[\"'\\\\}{\n]*") {
            let (skel, strings) = skeleton(&quote(&s)).expect("lexes");
            proptest::prop_assert_eq!(skel, "\"\"");
            proptest::prop_assert_eq!(&strings, &vec![s]);
        }

        #[test]
        fn escaped_regex_matches_only_itself(s in "\\PC{0,12}|[.*+?()|\\[\\]{}^$\\\\a]{0,12}") {
            let re = regex::Regex::new(&format!("^(?:{})$", escape_regex(&s))).expect("valid regex");
            proptest::prop_assert!(re.is_match(&s));
            let longer = format!("{s}x");
            proptest::prop_assert!(!re.is_match(&longer));
            if !s.is_empty() {
                proptest::prop_assert!(!re.is_match(""));
            }
        }

        /// No value can change a query's shape: with hostile values the queries lex to the
        /// same skeleton as with benign ones, and every value comes back out of its string.
        #[test]
        fn values_cannot_change_query_shape(
            service in "\\PC{0,16}|[\"'`}{)(\\\\|.*#\n ]{0,16}",
            ns in "\\PC{0,8}|[\"}\\\\]{0,8}",
            label in "\\PC{0,8}|[\"'}\\\\\n]{0,8}",
        ) {
            let benign = render_all("svc", "ns", "v2");
            let hostile = render_all(&service, &ns, &label);
            for (b, h) in benign.iter().zip(&hostile) {
                let (bs, _) = skeleton(b).expect("benign lexes");
                let (hs, strings) = skeleton(h).expect("hostile lexes");
                proptest::prop_assert_eq!(&bs, &hs, "query shape changed: {}", h);
                proptest::prop_assert!(strings.iter().any(|s| s == &service || s.contains(&escape_regex(&service))));
            }
        }
    }
}
