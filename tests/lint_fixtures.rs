//! `tidegate lint` over every manifest of the shared Istio fixtures (upstream samples, Istio's
//! own analyzer and e2e data, Flagger, Argo Rollouts, Kiali), one file at a time as each is
//! meant to be applied: the exact set of findings, each one intended and one `istioctl
//! analyze` agrees with (the reason is written next to it). Anything else is a false alarm.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use tidegate::cli::lint;

/// Every YAML/JSON file under the fixture folder, CRDs included (they carry no Istio objects
/// to check, and must not trip the reader).
fn manifests() -> Vec<PathBuf> {
    let root = common::fixture("istio");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable fixture folder") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

type Row = (String, String, String, String, String);

fn row(file: &str, code: &str, istio: &str, object: &str, field: &str) -> Row {
    (
        file.into(),
        code.into(),
        istio.into(),
        object.into(),
        field.into(),
    )
}

#[test]
fn the_shared_istio_fixtures_give_exactly_the_intended_findings() {
    let files = manifests();
    assert!(
        files.len() >= 37,
        "expected the 37 manifests and the CRDs, found {}",
        files.len()
    );
    let mut found: BTreeSet<Row> = BTreeSet::new();
    for file in &files {
        let report =
            lint::lint(std::slice::from_ref(file), "default").expect("lint reads every fixture");
        assert!(
            report.plan_findings.is_empty(),
            "{}: {:?}",
            file.display(),
            report.plan_findings
        );
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        for f in report.findings {
            found.insert((
                name.clone(),
                f.code.to_string(),
                f.istio.unwrap_or("").to_string(),
                format!("{}/{}", f.object.namespace, f.object.name),
                f.field,
            ));
        }
    }
    let hosts = "istio-analyzers__virtualservice_destinationhosts.yaml";
    let expected: BTreeSet<Row> = [
        // Bookinfo's fault sample: the first route has no match, so the second can never be
        // reached (istioctl: IST0130 "only the last rule can have no matches"); and its fault
        // hits every request (tidegate's own TG112).
        row(
            "bookinfo__fault-injection-details-v1.yaml",
            "TG107",
            "IST0130",
            "default/details",
            "spec.http[1]",
        ),
        row(
            "bookinfo__fault-injection-details-v1.yaml",
            "TG112",
            "",
            "default/details",
            "spec.http[0].fault",
        ),
        // A kuttl assert (a partial object): its second route has two destinations and no
        // weights, which Istio's validation rejects ("total destination weight = 0", IST0106).
        row(
            "dynamic-environment__modify-valid-httproutes__01-assert.yaml",
            "TG106",
            "IST0106",
            "modify-valid-httproutes/details",
            "spec.http[1].route",
        ),
        // Istio's own DestinationHostAnalyzer test data: the eight messages its test expects
        // (IST0101 ×7, IST0112 ×1) ...
        row(
            hosts,
            "TG118",
            "IST0101",
            "default/reviews-bogushost",
            "spec.http[0].route[0].destination.host",
        ),
        row(
            hosts,
            "TG118",
            "IST0101",
            "default/reviews-bogushost",
            "spec.http[0].route[1].destination.host",
        ),
        row(
            hosts,
            "TG118",
            "IST0101",
            "default/reviews-bookinfo-other",
            "spec.http[0].route[0].destination.host",
        ),
        row(
            hosts,
            "TG118",
            "IST0101",
            "default/reviews-mirror-bogushost",
            "spec.http[0].mirror.host",
        ),
        row(
            hosts,
            "TG119",
            "IST0101",
            "default/reviews-bogusport",
            "spec.http[0].route[0].destination.port.number",
        ),
        row(
            hosts,
            "TG120",
            "IST0112",
            "default/reviews-2port-missing",
            "spec.http[0].route[0].destination",
        ),
        row(
            hosts,
            "TG118",
            "IST0101",
            "istio-system/cross-namespace-details",
            "spec.http[0].route[0].destination.host",
        ),
        row(
            hosts,
            "TG118",
            "IST0101",
            "hello/hello-export-to-bogus",
            "spec.http[0].route[0].destination.host",
        ),
        // ... plus what istioctl's other analyzers say about the same file: the empty
        // destination `{}` next to a weightless one fails validation (IST0106), and
        // hello/hello (exported everywhere) and hello/hello-export-to-bogus (exported to
        // `bogus`) both claim hello.hello for the mesh gateway, visible together in `bogus`
        // (ConflictingMeshGatewayHostsAnalyzer: IST0109 on each).
        row(
            hosts,
            "TG106",
            "IST0106",
            "default/reviews-bogushost",
            "spec.http[0].route",
        ),
        row(hosts, "TG115", "IST0109", "hello/hello", "spec.hosts"),
        row(
            hosts,
            "TG115",
            "IST0109",
            "hello/hello-export-to-bogus",
            "spec.hosts",
        ),
        // Istio's pilot test data: the VirtualService routes to subset v2 of host `c`, but the
        // only DestinationRule is for c-weighted.extsvc.com (IST0101 host+subset), and that
        // DestinationRule's host matches no ServiceEntry of the file (IST0174).
        row(
            "istio-tests__rule-fault-injection.yaml",
            "TG102",
            "IST0101",
            "testns/fault",
            "spec.http[0].route[0].destination.subset",
        ),
        row(
            "istio-tests__rule-fault-injection.yaml",
            "TG130",
            "IST0174",
            "testns/fault",
            "spec.host",
        ),
    ]
    .into_iter()
    .collect();
    let unexpected: Vec<&Row> = found.difference(&expected).collect();
    let missing: Vec<&Row> = expected.difference(&found).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "unexpected findings (false alarms?): {unexpected:#?}\nmissing: {missing:#?}"
    );
}
