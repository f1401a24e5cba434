//! Which rollout a control names: `namespace/name` must be a plan's id; a bare `name` resolves
//! when exactly one plan in any namespace has it. Unknown, ambiguous and malformed names are
//! refused with the closest known plans, so a typo gets a useful answer (the daemon records it,
//! the CLI exits 2).

use std::fmt;

use crate::plan::RolloutId;

/// How many known plans an answer names at most.
pub const CLOSEST: usize = 3;

/// A rollout name as written in a trailer or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a name names no single plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Not a rollout name at all (empty part, a second `/`, characters a name cannot have).
    Malformed { written: String, why: String },
    /// No plan has this name (in this namespace); `closest` are the nearest known plans.
    Unknown {
        target: Target,
        closest: Vec<RolloutId>,
    },
    /// A bare name that plans in several namespaces have.
    Ambiguous {
        target: Target,
        candidates: Vec<RolloutId>,
    },
}

impl Unresolved {
    /// One line saying what is wrong.
    pub fn why(&self) -> String {
        match self {
            Unresolved::Malformed { written, why } => format!("{written:?} {why}"),
            Unresolved::Unknown { target, .. } => match &target.namespace {
                Some(_) => format!("no plan defines {target}"),
                None => format!("no plan in any namespace is named {target}"),
            },
            Unresolved::Ambiguous { target, candidates } => format!(
                "{target} is ambiguous: plans in {} namespaces have this name ({})",
                candidates.len(),
                join(candidates)
            ),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Unresolved::Malformed { .. } => {
                "write NAME or NAMESPACE/NAME, e.g. production/orders-svc".to_owned()
            }
            Unresolved::Unknown { closest, .. } if closest.is_empty() => {
                "no plan is defined yet; check the plans branch and the plan glob".to_owned()
            }
            Unresolved::Unknown { closest, .. } => {
                format!("closest plans: {}; name one of them", join(closest))
            }
            Unresolved::Ambiguous { candidates, .. } => match candidates.first() {
                Some(c) => format!("name the namespace too, e.g. {c}"),
                None => "name the namespace too".to_owned(),
            },
        }
    }

    /// The plans the answer names (closest or candidates).
    pub fn plans(&self) -> &[RolloutId] {
        match self {
            Unresolved::Malformed { .. } => &[],
            Unresolved::Unknown { closest, .. } => closest,
            Unresolved::Ambiguous { candidates, .. } => candidates,
        }
    }
}

fn join(ids: &[RolloutId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `part` can be a namespace or a rollout name (the characters a status file name may
/// hold; plans themselves are stricter, DNS labels).
fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Read `NAME` or `NAMESPACE/NAME`.
pub fn parse_target(written: &str) -> Result<Target, Unresolved> {
    let malformed = |why: &str| Unresolved::Malformed {
        written: written.to_owned(),
        why: why.to_owned(),
    };
    let (namespace, name) = match written.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, written),
    };
    if written.is_empty() {
        return Err(malformed("names no rollout"));
    }
    if name.contains('/') {
        return Err(malformed("has more than one `/`"));
    }
    if namespace.is_some_and(|ns| !valid_part(ns)) || !valid_part(name) {
        return Err(malformed(
            "is not a rollout name (NAME or NAMESPACE/NAME, letters, digits, `-`, `_`, `.`)",
        ));
    }
    Ok(Target {
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    })
}

/// The plan `target` names among `known`.
pub fn resolve(target: &Target, known: &[RolloutId]) -> Result<RolloutId, Unresolved> {
    if let Some(ns) = &target.namespace {
        let id = RolloutId {
            namespace: ns.clone(),
            name: target.name.clone(),
        };
        return if known.contains(&id) {
            Ok(id)
        } else {
            Err(Unresolved::Unknown {
                target: target.clone(),
                closest: closest(target, known),
            })
        };
    }
    let mut same: Vec<RolloutId> = known
        .iter()
        .filter(|id| id.name == target.name)
        .cloned()
        .collect();
    same.sort();
    same.dedup();
    match same.len() {
        1 => Ok(same.remove(0)),
        0 => Err(Unresolved::Unknown {
            target: target.clone(),
            closest: closest(target, known),
        }),
        _ => Err(Unresolved::Ambiguous {
            target: target.clone(),
            candidates: same,
        }),
    }
}

/// Read and resolve `written` in one go.
pub fn resolve_written(written: &str, known: &[RolloutId]) -> Result<RolloutId, Unresolved> {
    resolve(&parse_target(written)?, known)
}

/// The known plans nearest to `target` (edit distance of the name; a namespace that differs
/// counts as a little further), at most [`CLOSEST`], nearest first.
pub fn closest(target: &Target, known: &[RolloutId]) -> Vec<RolloutId> {
    let want = target.name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &RolloutId)> = known
        .iter()
        .map(|id| {
            let mut d = strsim::levenshtein(&want, &id.name.to_ascii_lowercase());
            if id.name.starts_with(&target.name) || target.name.starts_with(&id.name) {
                d = d.min(1);
            }
            if target
                .namespace
                .as_ref()
                .is_some_and(|ns| ns != &id.namespace)
            {
                d += 1;
            }
            (d, id)
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(CLOSEST)
        .map(|(_, id)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ns: &str, n: &str) -> RolloutId {
        RolloutId {
            namespace: ns.into(),
            name: n.into(),
        }
    }

    fn known() -> Vec<RolloutId> {
        vec![
            id("production", "orders-svc"),
            id("staging", "orders-svc"),
            id("production", "cart"),
            id("production", "payments"),
            id("tools", "search"),
        ]
    }

    #[test]
    fn a_full_id_must_be_a_plan() {
        assert_eq!(
            resolve_written("production/cart", &known()),
            Ok(id("production", "cart"))
        );
        let err = resolve_written("production/orders", &known()).expect_err("unknown");
        assert_eq!(err.why(), "no plan defines production/orders");
        assert_eq!(err.plans()[0], id("production", "orders-svc"));
        assert!(
            err.hint()
                .starts_with("closest plans: production/orders-svc")
        );
    }

    #[test]
    fn a_bare_name_resolves_in_any_namespace_when_unique() {
        assert_eq!(
            resolve_written("search", &known()),
            Ok(id("tools", "search"))
        );
        let err = resolve_written("orders-svc", &known()).expect_err("ambiguous");
        assert_eq!(
            err.plans(),
            &[id("production", "orders-svc"), id("staging", "orders-svc")]
        );
        assert!(err.why().contains("ambiguous"), "{}", err.why());
        assert_eq!(
            err.hint(),
            "name the namespace too, e.g. production/orders-svc"
        );
        let err = resolve_written("payment", &known()).expect_err("unknown");
        assert_eq!(err.plans()[0], id("production", "payments"));
        assert_eq!(err.plans().len(), CLOSEST);
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["", "a/b/c", "/x", "ns/", "..", "a b", "ns/na*me"] {
            let err = resolve_written(bad, &known()).expect_err(bad);
            assert!(
                matches!(err, Unresolved::Malformed { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.plans().is_empty());
        }
    }

    #[test]
    fn nothing_known_says_so() {
        let err = resolve_written("x", &[]).expect_err("unknown");
        assert!(err.hint().contains("no plan is defined yet"));
    }
}
