//! `<status folder>/_refused.yaml`: the controls no rollout could answer (a name no plan
//! defines, an ambiguous or malformed one), newest last, bounded (see `control::refusal`).

use serde::{Deserialize, Serialize};

use crate::control::RefusedRecord;

/// File name of the repository-level record, directly in the status folder (status documents
/// live one folder deeper, per namespace; a namespace cannot start with `_`).
pub const REFUSED_FILE: &str = "_refused.yaml";

const HEADER: &str = "# Written by tidegate: controls that named no rollout it knows, newest last. Push a new\n# control commit naming one of the plans listed; edits here are overwritten.\n";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    #[serde(default)]
    refused: Vec<RefusedRecord>,
}

/// The path of the record under `folder`.
pub fn refused_path(folder: &str) -> String {
    format!("{}/{REFUSED_FILE}", folder.trim_matches('/'))
}

/// The YAML text of the record (deterministic).
pub fn render_refused(records: &[RefusedRecord]) -> Result<String, String> {
    let doc = Document {
        refused: records.to_vec(),
    };
    serde_saphyr::to_string(&doc)
        .map(|body| format!("{HEADER}{body}"))
        .map_err(|e| e.to_string())
}

/// Read the record back.
pub fn parse_refused(text: &str) -> Result<Vec<RefusedRecord>, String> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        return Ok(Vec::new());
    }
    serde_saphyr::from_str::<Document>(text)
        .map(|d| d.refused)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn round_trips() {
        let r = RefusedRecord {
            commit: "abc".into(),
            author: "Ana <ana@example.com>".into(),
            trailer: "Tidegate: pause orders: now".into(),
            name: "orders".into(),
            why: "no plan in any namespace is named orders".into(),
            hint: "closest plans: prod/orders-svc; name one of them".into(),
            plans: vec!["prod/orders-svc".into()],
            at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        };
        let text = render_refused(std::slice::from_ref(&r)).expect("render");
        assert!(text.starts_with("# Written by tidegate"));
        assert_eq!(parse_refused(&text).expect("parse"), vec![r]);
        assert_eq!(parse_refused("# nothing\n").expect("empty"), vec![]);
        assert!(parse_refused("refused: 3\n").is_err());
    }
}
