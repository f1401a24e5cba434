//! The rules of one VirtualService read on their own: routes that can never match
//! (`VirtualServiceUnreachableRule`, IST0130), match clauses an earlier clause already covers
//! (`VirtualServiceIneffectiveMatch`, IST0131) for http, tcp and tls routes, destination
//! weights as Istio's validation reads them, retries against timeouts and unmatched faults.
//!
//! Istio's rules (`analyzeUnreachable*Rules` in `pkg/config/validation`) are followed for
//! what they compare: a route after a route without matches, clauses equal to an earlier
//! one (ignoring clause names), and http clauses whose `uri.prefix` extends an earlier
//! clause's prefix. Whether one clause covers another is decided soundly (every request the
//! later clause matches, the earlier one matches too), so istioctl's known false positives
//! (a clause without `method` read as `GET`, header prefixes compared backwards, regexes
//! read as equal) are not repeated. tidegate also reports a route all of whose clauses are
//! covered by earlier routes (TG107 without an Istio code: istioctl misses these).

use serde_json::{Map, Value};

use super::{Finding, Index, Object, codes, parse_duration};
use crate::mesh::istio::routes::route_label;

/// Why a route can never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub index: usize,
    /// The earlier route that takes its traffic.
    pub by: usize,
    pub reason: String,
    /// Whether istioctl reports it (IST0130).
    pub istio: bool,
}

/// A clause stripped of what does not select traffic (its name, the stat prefix) and of
/// default values, so that equal selections compare equal (Istio's `asJSON` comparison).
fn plain(clause: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null | Value::Bool(false) => None,
            Value::String(s) if s.is_empty() => None,
            Value::Number(n) if n.as_f64() == Some(0.0) => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Object(o) => {
                let m: Map<String, Value> = o
                    .iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            other => Some(other.clone()),
        }
    }
    let mut v = strip(clause).unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(o) = v.as_object_mut() {
        o.remove("name");
        o.remove("statPrefix");
    }
    v
}

/// [`plain`], and a uri condition that every path meets (`prefix: /`, `regex: .*`) dropped:
/// the form coverage is decided on.
fn normalized(clause: &Value) -> Value {
    let mut v = plain(clause);
    if let Some(o) = v.as_object_mut() {
        let uri = o.get("uri");
        let whole = uri.and_then(|u| u.get("prefix")).and_then(Value::as_str) == Some("/")
            || uri.and_then(|u| u.get("regex")).and_then(Value::as_str) == Some(".*");
        if whole {
            o.remove("uri");
            o.remove("ignoreUriCase");
        }
    }
    v
}

fn matches_of(route: &Value) -> &[Value] {
    route
        .get("match")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether a route takes every request: no match list, or a clause that selects nothing.
pub fn is_catch_all(route: &Value) -> bool {
    let ms = matches_of(route);
    ms.is_empty()
        || ms
            .iter()
            .any(|m| normalized(m).as_object().is_some_and(Map::is_empty))
}

/// Whether string match `a` accepts every value string match `b` accepts.
fn string_covers(a: &Value, b: &Value, a_icase: bool, b_icase: bool) -> bool {
    if b_icase && !a_icase {
        return false;
    }
    let norm = |s: &str| {
        if a_icase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(norm);
    if a.as_object().is_some_and(Map::is_empty) {
        return true;
    }
    if let Some(x) = get(a, "exact") {
        return get(b, "exact").is_some_and(|y| y == x);
    }
    if let Some(p) = get(a, "prefix") {
        return get(b, "exact")
            .or_else(|| get(b, "prefix"))
            .is_some_and(|y| y.starts_with(&p));
    }
    if let Some(r) = a.get("regex") {
        return b.get("regex") == Some(r);
    }
    false
}

/// Whether clause `a` matches every request clause `b` matches (both normalized).
fn covers(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return false;
    };
    let icase =
        |o: &Map<String, Value>| o.get("ignoreUriCase").and_then(Value::as_bool) == Some(true);
    a.iter().all(|(k, av)| {
        let bv = b.get(k);
        match k.as_str() {
            "ignoreUriCase" => true,
            "uri" => bv.is_some_and(|bv| string_covers(av, bv, icase(a), icase(b))),
            "method" | "authority" | "scheme" => {
                bv.is_some_and(|bv| string_covers(av, bv, false, false))
            }
            "headers" | "queryParams" => av.as_object().is_some_and(|am| {
                am.iter().all(|(hk, hv)| {
                    bv.and_then(|bv| bv.get(hk))
                        .is_some_and(|bh| string_covers(hv, bh, false, false))
                })
            }),
            _ => bv == Some(av),
        }
    })
}

fn prefix_of(clause: &Value) -> Option<&str> {
    clause.pointer("/uri/prefix").and_then(Value::as_str)
}

/// A match clause that never selects anything: an earlier clause takes its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ineffective {
    pub index: usize,
    pub clause: usize,
    pub by: usize,
    pub why: String,
}

/// A clause already read: its route and clause index, its [`plain`] and [`normalized`] forms.
struct Seen {
    route: usize,
    clause: usize,
    plain: Value,
    norm: Value,
}

/// The earliest route with a clause covering `clause` (normalized).
fn earliest_cover(seen: &[Seen], clause: &Value) -> Option<usize> {
    seen.iter()
        .find(|s| covers(&s.norm, clause))
        .map(|s| s.route)
}

/// Read the clauses of route `i` (which has a match list) into `seen`, recording the
/// ineffective ones; returns how many repeat an earlier clause.
fn read_clauses(
    i: usize,
    ms: &[Value],
    seen: &mut Vec<Seen>,
    ineffective: &mut Vec<Ineffective>,
) -> usize {
    let mut dups = 0;
    for (j, m) in ms.iter().enumerate() {
        let (p, n) = (plain(m), normalized(m));
        if let Some(dup) = seen.iter().find(|s| s.plain == p) {
            let why = "it repeats a clause".to_string();
            ineffective.push(Ineffective {
                index: i,
                clause: j,
                by: dup.route,
                why,
            });
            dups += 1;
            continue;
        }
        if let Some(prefix) = prefix_of(&p) {
            let earlier = seen.iter().filter(|s| prefix_of(&s.plain).is_some());
            if let Some(s) = earlier.into_iter().find(|s| covers(&s.norm, &n)) {
                let theirs = prefix_of(&s.plain).unwrap_or("");
                let why = format!(
                    "its prefix {prefix:?} is covered by clause {} (prefix {theirs:?})",
                    s.clause
                );
                ineffective.push(Ineffective {
                    index: i,
                    clause: j,
                    by: s.route,
                    why,
                });
            }
        }
        seen.push(Seen {
            route: i,
            clause: j,
            plain: p,
            norm: n,
        });
    }
    dups
}

/// The http routes that can never match, and the clauses that are never used.
pub fn analyze_http(http: &[Value]) -> (Vec<Unreachable>, Vec<Ineffective>) {
    let mut unreachable = Vec::new();
    let mut ineffective = Vec::new();
    let mut no_match: Option<usize> = None;
    let mut seen: Vec<Seen> = Vec::new();
    for (i, route) in http.iter().enumerate() {
        let ms = matches_of(route);
        if let Some(by) = no_match {
            unreachable.push(after_no_match(i, by, ms.is_empty()));
            continue;
        }
        if ms.is_empty() {
            no_match = Some(i);
            let all = Value::Object(Map::new());
            if let Some(by) = earliest_cover(&seen, &all) {
                unreachable.push(covered(i, by));
            }
            seen.push(Seen {
                route: i,
                clause: 0,
                plain: all.clone(),
                norm: all,
            });
            continue;
        }
        // Which earlier route covers each clause, before this route's clauses are added.
        let coverers: Vec<Option<usize>> = ms
            .iter()
            .map(|m| earliest_cover(&seen, &normalized(m)))
            .collect();
        let dups = read_clauses(i, ms, &mut seen, &mut ineffective);
        if dups == ms.len() {
            let by = coverers.iter().flatten().copied().max().unwrap_or(0);
            let reason = "all its match clauses repeat earlier ones".into();
            unreachable.push(Unreachable {
                index: i,
                by,
                reason,
                istio: true,
            });
        } else if let Some(by) = coverers
            .iter()
            .copied()
            .collect::<Option<Vec<usize>>>()
            .and_then(|c| c.into_iter().max())
        {
            unreachable.push(covered(i, by));
        }
    }
    (unreachable, ineffective)
}

fn covered(index: usize, by: usize) -> Unreachable {
    let reason = "earlier routes already match every request it matches".into();
    Unreachable {
        index,
        by,
        reason,
        istio: false,
    }
}

fn after_no_match(index: usize, by: usize, has_no_match: bool) -> Unreachable {
    let reason = if has_no_match {
        "only the last route can have no match"
    } else {
        "a route without match comes before it"
    };
    Unreachable {
        index,
        by,
        reason: reason.into(),
        istio: true,
    }
}

/// tcp and tls routes: Istio's rules (no-match routes and repeated clauses).
fn analyze_l4(routes: &[Value]) -> (Vec<Unreachable>, Vec<(usize, usize, usize)>) {
    let mut unreachable = Vec::new();
    let mut ineffective = Vec::new();
    let mut no_match: Option<usize> = None;
    let mut seen: Vec<(usize, Value)> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let ms = matches_of(route);
        if let Some(by) = no_match {
            let reason = if ms.is_empty() {
                "only the last route can have no match"
            } else {
                "a route without match comes before it"
            };
            unreachable.push(Unreachable {
                index: i,
                by,
                reason: reason.into(),
                istio: true,
            });
            continue;
        }
        if ms.is_empty() {
            no_match = Some(i);
            continue;
        }
        let mut dups = Vec::new();
        for (j, m) in ms.iter().enumerate() {
            let n = plain(m);
            match seen.iter().find(|(_, s)| *s == n) {
                Some((d, _)) => {
                    ineffective.push((i, j, *d));
                    dups.push(*d);
                }
                None => seen.push((i, n)),
            }
        }
        if dups.len() == ms.len() {
            let by = dups.into_iter().max().unwrap_or(0);
            unreachable.push(Unreachable {
                index: i,
                by,
                reason: "all its match clauses repeat earlier ones".into(),
                istio: true,
            });
        }
    }
    (unreachable, ineffective)
}

fn l4_label(kind: &str, i: usize) -> String {
    format!("{kind}[{i}]")
}

pub fn check_virtual_service(ix: &Index<'_>, vs: &Object, out: &mut Vec<Finding>) {
    check_http_rules(ix, vs, out);
    for kind in ["tcp", "tls"] {
        check_l4_rules(ix, vs, kind, out);
    }
    check_weights(ix, vs, out);
    check_retries_and_faults(ix, vs, out);
}

fn check_http_rules(ix: &Index<'_>, vs: &Object, out: &mut Vec<Finding>) {
    let r = ix.reference(vs);
    let http = vs.array_at("/spec/http");
    let (unreachable, ineffective) = analyze_http(http);
    for u in unreachable {
        out.push(
            Finding::new(
                codes::SHADOWED_ROUTE,
                r.clone(),
                format!("spec.http[{}]", u.index),
                format!("route {} can never match: {} ({} comes first; Istio uses the first route that matches)", route_label(&http[u.index], u.index), u.reason, route_label(&http[u.by], u.by)),
                "move the broader route after the narrower ones (a route without match goes last), or remove the unreachable one",
            )
            .istio(u.istio.then_some("IST0130")),
        );
    }
    for Ineffective {
        index: i,
        clause: j,
        by,
        why,
    } in ineffective
    {
        out.push(Finding::new(
            codes::INEFFECTIVE_MATCH,
            r.clone(),
            format!("spec.http[{i}].match[{j}]"),
            format!(
                "match clause {j} of route {} is never used: {why} (in {})",
                route_label(&http[i], i),
                route_label(&http[by], by)
            ),
            "remove the clause, or move the narrower route before the broader one",
        ));
    }
}

fn check_l4_rules(ix: &Index<'_>, vs: &Object, kind: &str, out: &mut Vec<Finding>) {
    let r = ix.reference(vs);
    let (unreachable, ineffective) = analyze_l4(vs.array_at(&format!("/spec/{kind}")));
    for u in unreachable {
        out.push(
            Finding::new(
                codes::SHADOWED_ROUTE,
                r.clone(),
                format!("spec.{kind}[{}]", u.index),
                format!(
                    "route {} can never match: {} ({} comes first)",
                    l4_label(kind, u.index),
                    u.reason,
                    l4_label(kind, u.by)
                ),
                "give each route its own match, with the route without match last",
            )
            .istio(Some("IST0130")),
        );
    }
    for (i, j, by) in ineffective {
        out.push(Finding::new(
            codes::INEFFECTIVE_MATCH,
            r.clone(),
            format!("spec.{kind}[{i}].match[{j}]"),
            format!(
                "match clause {j} of route {} repeats a clause of {}: it is never used",
                l4_label(kind, i),
                l4_label(kind, by)
            ),
            "remove the repeated clause",
        ));
    }
}

/// Istio's validation: no negative weight, and several destinations must not all weigh 0
/// (`total destination weight = 0`). Other sums are accepted: Envoy splits in proportion.
fn check_weights(ix: &Index<'_>, vs: &Object, out: &mut Vec<Finding>) {
    for kind in ["http", "tcp", "tls"] {
        for (i, route) in vs.array_at(&format!("/spec/{kind}")).iter().enumerate() {
            let dests = route
                .get("route")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let weights: Vec<i64> = dests
                .iter()
                .map(|d| d.get("weight").and_then(Value::as_i64).unwrap_or(0))
                .collect();
            let message = if weights.iter().any(|w| *w < 0) {
                format!(
                    "destination weights {weights:?} include a negative weight, which Istio rejects"
                )
            } else if weights.len() > 1 && weights.iter().all(|w| *w == 0) {
                format!(
                    "the {} destinations all weigh 0 (none set counts as 0): Istio rejects the route (total destination weight = 0)",
                    weights.len()
                )
            } else {
                continue;
            };
            out.push(Finding::new(
                codes::WEIGHTS_INVALID,
                ix.reference(vs),
                format!("spec.{kind}[{i}].route"),
                message,
                "give each destination a weight of 0 or more, at least one above 0 (Istio splits in proportion to the weights)",
            ));
        }
    }
}

fn check_retries_and_faults(ix: &Index<'_>, vs: &Object, out: &mut Vec<Finding>) {
    for (i, r) in vs.array_at("/spec/http").iter().enumerate() {
        let timeout = r
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(parse_duration);
        let attempts = r
            .pointer("/retries/attempts")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let per_try = r
            .pointer("/retries/perTryTimeout")
            .and_then(Value::as_str)
            .and_then(parse_duration);
        if let (Some(timeout), true) = (timeout, attempts > 0) {
            match per_try {
                None => out.push(Finding::new(
                    codes::RETRIES_WITHOUT_PER_TRY_TIMEOUT,
                    ix.reference(vs),
                    format!("spec.http[{i}].retries"),
                    format!("{attempts} retries without perTryTimeout: the first try may use the whole {} timeout, leaving no time for retries", crate::units::duration(timeout)),
                    "set retries.perTryTimeout so that attempts × perTryTimeout fits in the route timeout",
                )),
                Some(pt) if pt.saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX)) > timeout => out.push(Finding::new(
                    codes::RETRIES_EXCEED_TIMEOUT,
                    ix.reference(vs),
                    format!("spec.http[{i}].retries.perTryTimeout"),
                    format!("{attempts} attempts × perTryTimeout {} exceed the route timeout {}: the later retries can never happen", crate::units::duration(pt), crate::units::duration(timeout)),
                    "lower attempts or perTryTimeout, or raise the route timeout",
                )),
                Some(_) => {}
            }
        }
        if r.get("fault").is_some() && is_catch_all(r) {
            out.push(Finding::new(
                codes::FAULT_WITHOUT_MATCH,
                ix.reference(vs),
                format!("spec.http[{i}].fault"),
                "fault injection on a route without a match hits all of its traffic",
                "add a match (e.g. a test header) to the route that injects faults",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(v: Value) -> Value {
        normalized(&v)
    }

    #[test]
    fn prefixes_cover_longer_prefixes_and_exact_paths() {
        let a = n(json!({"uri": {"prefix": "/api"}}));
        assert!(covers(
            &a,
            &n(json!({"uri": {"prefix": "/api/v1"}, "method": {"exact": "GET"}}))
        ));
        assert!(covers(&a, &n(json!({"uri": {"exact": "/api/x"}}))));
        assert!(!covers(&a, &n(json!({"uri": {"prefix": "/ap"}}))));
        assert!(!covers(&a, &n(json!({"method": {"exact": "GET"}}))));
    }

    #[test]
    fn a_method_or_header_only_covers_the_same_or_narrower() {
        let get = n(json!({"uri": {"prefix": "/a"}, "method": {"exact": "GET"}}));
        // A later clause without a method matches POST too: not covered (istioctl says it is).
        assert!(!covers(&get, &n(json!({"uri": {"prefix": "/a/b"}}))));
        let h = n(json!({"uri": {"prefix": "/a"}, "headers": {"x": {"prefix": "ab"}}}));
        assert!(!covers(
            &h,
            &n(json!({"uri": {"prefix": "/a/b"}, "headers": {"x": {"prefix": "a"}}}))
        ));
        assert!(covers(
            &h,
            &n(json!({"uri": {"prefix": "/a/b"}, "headers": {"x": {"exact": "abc"}}}))
        ));
        let re = n(json!({"uri": {"prefix": "/a"}, "headers": {"x": {"regex": "a.*"}}}));
        assert!(!covers(
            &re,
            &n(json!({"uri": {"prefix": "/a/b"}, "headers": {"x": {"regex": "b"}}}))
        ));
    }

    #[test]
    fn the_whole_path_is_no_condition() {
        assert!(is_catch_all(&json!({"match": [{"uri": {"prefix": "/"}}]})));
        assert!(is_catch_all(&json!({"match": [{"name": "all"}]})));
        assert!(!is_catch_all(
            &json!({"match": [{"uri": {"prefix": "/api"}}]})
        ));
    }
}
