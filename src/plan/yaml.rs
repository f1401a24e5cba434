//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-saphyr reads the text; every node is wrapped in `Spanned` so that validation can point
//! at the exact line and column of every mistake, and can report all of them in one pass
//! instead of stopping at the first (which is what a typed `Deserialize` would do).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node with its position.
pub type SNode = Spanned<Node>;

/// The value of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<SNode>),
    Map(Vec<(Spanned<String>, SNode)>),
}

impl Node {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SNode>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyString>>()? {
            let value = map.next_value::<SNode>()?;
            let key = Spanned {
                value: key.value.0,
                referenced: key.referenced,
                defined: key.defined,
            };
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key rendered as text whatever its YAML type (`1: x` has the key "1").
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyString, D::Error> {
        let node = Node::deserialize(d)?;
        Ok(KeyString(match node {
            Node::Str(s) => s,
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Bool(b) => b.to_string(),
            Node::Null => "null".to_owned(),
            Node::Seq(_) | Node::Map(_) => "<complex key>".to_owned(),
        }))
    }
}

/// A YAML syntax error with its position (1-based; 0 when the parser could not tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Every document of a YAML stream (documents separated by `---`), in order. Empty documents
/// (a trailing `---`) are dropped. Booleans follow YAML 1.2 (`true`/`false` only), so that
/// `namespace: no` or `name: n` stay strings (the "Norway problem" of YAML 1.1).
pub fn documents(text: &str) -> Result<Vec<SNode>, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    match serde_saphyr::from_multiple_with_options::<SNode>(text, options) {
        Ok(docs) => Ok(docs
            .into_iter()
            .filter(|d| !matches!(d.value, Node::Null))
            .collect()),
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            // The first line of saphyr's message is the summary; the rest is a source snippet.
            let full = e.to_string();
            let summary = full.lines().next().unwrap_or("invalid YAML");
            let message = summary
                .trim_start_matches("error: ")
                .split_once(": ")
                .filter(|(head, _)| head.starts_with("line "))
                .map_or(summary, |(_, rest)| rest)
                .to_owned();
            Err(SyntaxError {
                line,
                column,
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_nested_values() {
        let docs = documents("a: 1\nb:\n  - x: \"true\"\n---\nc: 2m\n").expect("valid yaml");
        assert_eq!(docs.len(), 2);
        let Node::Map(entries) = &docs[0].value else {
            panic!("expected a map")
        };
        let Node::Seq(items) = &entries[1].1.value else {
            panic!("expected a list")
        };
        let Node::Map(inner) = &items[0].value else {
            panic!("expected a map")
        };
        assert_eq!(inner[0].1.value, Node::Str("true".into()));
        assert_eq!(
            (inner[0].1.referenced.line(), inner[0].1.referenced.column()),
            (3, 8)
        );
        let Node::Map(second) = &docs[1].value else {
            panic!("expected a map")
        };
        assert_eq!(second[0].0.referenced.line(), 5);
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        let docs = documents("a: n\nb: no\nc: true\n").expect("valid yaml");
        let Node::Map(entries) = &docs[0].value else {
            panic!("expected a map")
        };
        assert_eq!(entries[0].1.value, Node::Str("n".into()));
        assert_eq!(entries[1].1.value, Node::Str("no".into()));
        assert_eq!(entries[2].1.value, Node::Bool(true));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = documents("a: [1\nb: 2\n").expect_err("invalid yaml");
        assert_eq!(err.line, 2);
        assert!(!err.message.is_empty());
        assert!(!err.message.contains("-->"), "{}", err.message);
    }
}
