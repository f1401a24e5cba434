//! Custom PromQL queries: the closed set of `{{ variable }}` placeholders a plan may use.

use std::fmt;

/// Why a custom query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unclosed placeholder starting at byte {0}: `{{{{` without `}}}}`")]
    Unclosed(usize),
    #[error("unknown variable `{0}`")]
    UnknownVariable(String),
}

/// Variables without a subset prefix.
pub const PLAIN_VARIABLES: [&str; 3] = ["service", "namespace", "interval"];

/// A placeholder found in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    Service,
    Namespace,
    Interval,
    /// `canary.<label>` / `stable.<label>`: a label of the subset (`version`, or `subset` for
    /// the subset name itself).
    Subset {
        canary: bool,
        label: String,
    },
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variable::Service => f.write_str("service"),
            Variable::Namespace => f.write_str("namespace"),
            Variable::Interval => f.write_str("interval"),
            Variable::Subset { canary, label } => {
                write!(f, "{}.{label}", if *canary { "canary" } else { "stable" })
            }
        }
    }
}

/// Split a query into literal text and variables, refusing unknown ones.
pub fn placeholders(query: &str) -> Result<Vec<(std::ops::Range<usize>, Variable)>, QueryError> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = query[from..].find("{{").map(|i| i + from) {
        let end = query[start..]
            .find("}}")
            .map(|i| i + start)
            .ok_or(QueryError::Unclosed(start))?;
        let name = query[start + 2..end].trim();
        let var = match name {
            "service" => Variable::Service,
            "namespace" => Variable::Namespace,
            "interval" => Variable::Interval,
            _ => match name.split_once('.') {
                Some((side @ ("canary" | "stable"), label))
                    if !label.is_empty()
                        && label.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || b == b'_'
                                || b == b'-'
                                || b == b'.'
                                || b == b'/'
                        }) =>
                {
                    Variable::Subset {
                        canary: side == "canary",
                        label: label.to_owned(),
                    }
                }
                _ => return Err(QueryError::UnknownVariable(name.to_owned())),
            },
        };
        out.push((start..end + 2, var));
        from = end + 2;
    }
    Ok(out)
}

/// Check that a custom query only uses known variables.
pub fn check_query(query: &str) -> Result<(), QueryError> {
    placeholders(query).map(|_| ())
}

/// The fix hint for a refused query.
pub fn query_hint() -> String {
    "variables are {{ service }}, {{ namespace }}, {{ interval }}, {{ canary.<label> }} and {{ stable.<label> }} (label: a DestinationRule subset label such as version, or `subset` for the subset name)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_variable() {
        let vars =
            placeholders("sum(rate(x{v=\"{{ canary.version }}\"}[{{interval}}]))").expect("valid");
        let names: Vec<String> = vars.iter().map(|(_, v)| v.to_string()).collect();
        assert_eq!(names, ["canary.version", "interval"]);
    }

    #[test]
    fn refuses_unknown_and_unclosed() {
        assert_eq!(
            check_query("x{a=\"{{ secret }}\"}"),
            Err(QueryError::UnknownVariable("secret".into()))
        );
        assert!(matches!(
            check_query("x{{ service"),
            Err(QueryError::Unclosed(1))
        ));
    }
}
