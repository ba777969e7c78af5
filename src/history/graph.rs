//! `vitrine lineage`: the ancestry of a table version, from the lineage records: each version
//! came from a statement (its script and line), which read table versions, files and temporary
//! views and ran models; each version read came from its own statement, back to the files and to
//! the tables with no recorded lineage. Drawn as an indented tree, as Graphviz DOT or as Mermaid.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::record::{LineageRecord, QueryRecord};
use crate::catalog::QualifiedName;
use crate::error::{Result, VitrineError};

/// A thing in a table's ancestry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// A table version.
    Table {
        /// `catalog.schema.table`.
        name: String,
        /// The version.
        version: Option<u64>,
    },
    /// Files read by path.
    Path(String),
    /// A temporary view.
    View(String),
    /// The statement that wrote a version.
    Statement {
        /// Its id.
        id: String,
        /// What it did (`CREATE OR REPLACE TABLE AS SELECT`, …).
        operation: String,
        /// Its script and line.
        script: Option<String>,
    },
    /// A model a statement ran.
    Model {
        /// Its kind.
        kind: String,
        /// Its id.
        id: String,
        /// Its revision.
        revision: String,
    },
}

impl Node {
    fn label(&self) -> String {
        match self {
            Node::Table {
                name,
                version: Some(v),
            } => format!("{name} version {v}"),
            Node::Table {
                name,
                version: None,
            } => name.clone(),
            Node::Path(path) => format!("files {path}"),
            Node::View(name) => format!("temporary view {name}"),
            Node::Statement {
                id,
                operation,
                script,
            } => match script {
                Some(script) => format!("{operation} at {script} (statement {})", short(id)),
                None => format!("{operation} (statement {})", short(id)),
            },
            Node::Model { kind, id, revision } => {
                format!("model {kind} {id} @ {}", short(revision))
            }
        }
    }
}

fn short(id: &str) -> &str {
    let end = id.char_indices().nth(20).map_or(id.len(), |(i, _)| i);
    &id[..end]
}

/// A table version's ancestry: nodes, and for each node the nodes it came from.
#[derive(Debug, Clone, Default)]
pub struct LineageGraph {
    /// The version asked about first, then every ancestor.
    pub nodes: Vec<Node>,
    /// `(from, to)`: `to` came from (or ran) `from`, by index into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

/// The ancestry of `table` at `version` (the newest version with recorded lineage when `None`).
pub fn ancestry(
    lineage: &[LineageRecord],
    queries: &[QueryRecord],
    table: &QualifiedName,
    version: Option<u64>,
) -> Result<LineageGraph> {
    let version = match version {
        Some(v) => v,
        None => lineage
            .iter()
            .filter(|r| r.target_name() == *table)
            .map(|r| r.target_table_version)
            .max()
            .ok_or_else(|| VitrineError::NotFound(format!("no lineage is recorded for {table}")))?,
    };
    let scripts: BTreeMap<&str, String> = queries
        .iter()
        .filter_map(|q| {
            let script = format!("{}:{}", q.script_file.as_ref()?, q.script_line?);
            Some((q.statement_id.as_str(), script))
        })
        .collect();
    let mut graph = LineageGraph::default();
    let root = graph.add(Node::Table {
        name: table.to_string(),
        version: Some(version),
    });
    let mut pending = vec![(root, table.clone(), version)];
    while let Some((target_node, target, version)) = pending.pop() {
        let Some(last) = lineage
            .iter()
            .filter(|r| r.target_name() == target && r.target_table_version == version)
            .max_by_key(|r| r.event_time)
        else {
            continue;
        };
        let statement = graph.add(Node::Statement {
            id: last.statement_id.clone(),
            operation: last.operation.clone(),
            script: scripts.get(last.statement_id.as_str()).cloned(),
        });
        graph.link(statement, target_node);
        for model in &last.models {
            let node = graph.add(Node::Model {
                kind: model.kind.clone(),
                id: model.id.clone(),
                revision: model.revision.clone(),
            });
            graph.link(node, statement);
        }
        for row in lineage
            .iter()
            .filter(|r| r.statement_id == last.statement_id && r.target_name() == target)
        {
            let source = match (row.source_type.as_deref(), row.source_name()) {
                (Some("PATH"), _) => Node::Path(row.source_path.clone().unwrap_or_default()),
                (Some("VIEW"), Some(name)) => Node::View(name.to_string()),
                (_, Some(name)) => Node::Table {
                    name: name.to_string(),
                    version: row.source_table_version,
                },
                _ => continue,
            };
            let known = graph.nodes.contains(&source);
            let node = graph.add(source);
            graph.link(node, statement);
            if let (false, Some(name), Some(v)) =
                (known, row.source_name(), row.source_table_version)
            {
                pending.push((node, name, v));
            }
        }
    }
    Ok(graph)
}

impl LineageGraph {
    fn add(&mut self, node: Node) -> usize {
        match self.nodes.iter().position(|n| *n == node) {
            Some(i) => i,
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    fn link(&mut self, from: usize, to: usize) {
        if !self.edges.contains(&(from, to)) {
            self.edges.push((from, to));
        }
    }

    fn parents(&self, node: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter(|(_, to)| *to == node)
            .map(|(from, _)| *from)
            .collect()
    }

    /// An indented tree from the version asked about down to its origins; a node met again is
    /// named and not expanded twice.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.nodes.is_empty() {
            return out;
        }
        let mut shown = vec![false; self.nodes.len()];
        self.text_node(0, "", "", &mut shown, &mut out);
        out
    }

    fn text_node(
        &self,
        node: usize,
        lead: &str,
        child_lead: &str,
        shown: &mut [bool],
        out: &mut String,
    ) {
        let again = shown[node];
        let suffix = if again && !self.parents(node).is_empty() {
            " (above)"
        } else {
            ""
        };
        let _ = writeln!(out, "{lead}{}{suffix}", self.nodes[node].label());
        if again {
            return;
        }
        shown[node] = true;
        let parents = self.parents(node);
        for (i, parent) in parents.iter().enumerate() {
            let last = i + 1 == parents.len();
            let (branch, next) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            self.text_node(
                *parent,
                &format!("{child_lead}{branch}"),
                &format!("{child_lead}{next}"),
                shown,
                out,
            );
        }
    }

    /// Graphviz DOT, data flowing left to right.
    pub fn dot(&self) -> String {
        let mut out =
            String::from("digraph lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let shape = match node {
                Node::Table { .. } => "box",
                Node::Path(_) => "folder",
                Node::View(_) => "box, style=dashed",
                Node::Statement { .. } => "ellipse",
                Node::Model { .. } => "component",
            };
            let label = node.label().replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "  n{i} [label=\"{label}\", shape={shape}];");
        }
        for (from, to) in &self.edges {
            let _ = writeln!(out, "  n{from} -> n{to};");
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart, data flowing left to right.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let label = node.label().replace('"', "#quot;");
            let _ = match node {
                Node::Statement { .. } => writeln!(out, "  n{i}([\"{label}\"])"),
                Node::Model { .. } => writeln!(out, "  n{i}[[\"{label}\"]]"),
                Node::Path(_) => writeln!(out, "  n{i}[/\"{label}\"/]"),
                _ => writeln!(out, "  n{i}[\"{label}\"]"),
            };
        }
        for (from, to) in &self.edges {
            let _ = writeln!(out, "  n{from} --> n{to}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::ModelRecord;
    use chrono::Utc;

    fn row(
        statement: &str,
        source: Option<(&str, u64)>,
        path: Option<&str>,
        target: (&str, u64),
    ) -> LineageRecord {
        let split = |n: &str| n.split('.').map(String::from).collect::<Vec<_>>();
        let t = split(target.0);
        let s = source.map(|(n, _)| split(n));
        LineageRecord {
            record_id: format!("{statement}-0"),
            statement_id: statement.into(),
            entity_type: None,
            entity_id: None,
            event_time: Utc::now(),
            event_date: "2026-12-01".into(),
            source_table_full_name: source.map(|(n, _)| n.to_string()),
            source_table_catalog: s.as_ref().map(|p| p[0].clone()),
            source_table_schema: s.as_ref().map(|p| p[1].clone()),
            source_table_name: s.as_ref().map(|p| p[2].clone()),
            source_path: path.map(String::from),
            source_type: Some(if path.is_some() { "PATH" } else { "TABLE" }.into()),
            source_table_version: source.map(|(_, v)| v),
            source_view_definition: None,
            target_table_full_name: target.0.into(),
            target_table_catalog: t[0].clone(),
            target_table_schema: t[1].clone(),
            target_table_name: t[2].clone(),
            target_path: String::new(),
            target_type: "TABLE".into(),
            target_table_version: target.1,
            operation: "CREATE TABLE AS SELECT".into(),
            models: if statement == "s2" {
                vec![ModelRecord {
                    kind: "clip".into(),
                    id: "tiny".into(),
                    revision: "sha256:ab".into(),
                    dtype: "auto".into(),
                    device: "auto".into(),
                    settings: Default::default(),
                }]
            } else {
                Vec::new()
            },
            created_by: "me".into(),
        }
    }

    #[test]
    fn the_ancestry_reaches_back_to_the_files_through_each_statement() {
        let lineage = vec![
            row("s1", None, Some("/v/styles.csv"), ("main.s.products", 1)),
            row(
                "s2",
                Some(("main.s.products", 1)),
                None,
                ("main.s.embedded", 1),
            ),
            row(
                "s3",
                Some(("main.s.embedded", 1)),
                None,
                ("main.s.index", 4),
            ),
        ];
        let name = QualifiedName {
            catalog: "main".into(),
            schema: "s".into(),
            table: "index".into(),
        };
        let graph = ancestry(&lineage, &[], &name, None).unwrap();
        let text = graph.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "main.s.index version 4");
        assert!(
            lines[1].ends_with("CREATE TABLE AS SELECT (statement s3)"),
            "{text}"
        );
        assert!(text.contains("main.s.products version 1"), "{text}");
        assert!(text.contains("model clip tiny @ sha256:ab"), "{text}");
        assert!(
            lines.last().unwrap().ends_with("files /v/styles.csv"),
            "{text}"
        );
        let dot = graph.dot();
        assert_eq!(dot.matches(" -> ").count(), graph.edges.len());
        assert_eq!(graph.edges.len(), 7, "3 statements, 3 inputs, 1 model");
        assert!(graph.mermaid().contains("[/\"files /v/styles.csv\"/]"));
        assert!(ancestry(&lineage, &[], &name, Some(9))
            .unwrap()
            .edges
            .is_empty());
    }
}
