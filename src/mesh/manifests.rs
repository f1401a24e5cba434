//! Reading Kubernetes manifests (YAML, multi-document, or JSON) from files and folders, with
//! the file each document came from; `kind: List` documents (and `*List` kinds such as
//! `VirtualServiceList`, as `kubectl get -o yaml` writes them) are expanded into their items.
//! Used by `lint`, `preview` and the lab.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Reading manifests failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path} as YAML: {message}")]
    Parse { path: PathBuf, message: String },
}

/// One document of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: PathBuf,
    /// 0-based index of the document in its file.
    pub index: usize,
    pub value: Value,
}

impl Document {
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    /// `metadata.namespace`, or `default_ns` when absent.
    pub fn namespace<'a>(&'a self, default_ns: &'a str) -> &'a str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns)
    }
    /// The API group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

/// Files under `paths` ending in `.yaml`, `.yml` or `.json` (folders walked, sorted).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out, true)?;
    }
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>, explicit: bool) -> Result<(), ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: p.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(p).map_err(read_err)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out, false)?;
        }
    } else if explicit
        || matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Whether a document is a list of objects (`kind: List`, `VirtualServiceList`, …) with items.
fn is_list(v: &Value) -> bool {
    v.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && v.get("items").is_some_and(Value::is_array)
}

/// Parse one file's text into its documents (empty documents dropped, lists expanded: each
/// item keeps the index of the list document it came from).
pub fn parse_text(file: &Path, text: &str) -> Result<Vec<Document>, ManifestError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Parse {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (index, value) in docs.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let values = if is_list(&value) {
            match value {
                Value::Object(mut o) => match o.remove("items") {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            }
        } else {
            vec![value]
        };
        out.extend(
            values
                .into_iter()
                .filter(|v| !v.is_null())
                .map(|value| Document {
                    file: file.to_path_buf(),
                    index,
                    value,
                }),
        );
    }
    Ok(out)
}

/// Read every document under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for f in collect_files(paths)? {
        let text = std::fs::read_to_string(&f).map_err(|source| ManifestError::Read {
            path: f.clone(),
            source,
        })?;
        out.extend(parse_text(&f, &text)?);
    }
    Ok(out)
}
