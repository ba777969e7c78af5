//! `DELETE`, `UPDATE` and `MERGE INTO` as queries that compute a table's new content.
//!
//! Each statement becomes one `SELECT` over the current version whose result replaces the table
//! as one new version: the statement is atomic whatever the storage format, and its semantics are
//! DataFusion's (subqueries, any expression) rather than a storage engine's predicate subset.
//! MERGE is a full outer join of target and source; a per-row action code says which `WHEN` clause
//! applies (the first whose condition holds, as in Databricks).

use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    self, Expr, MergeAction, MergeClauseKind, MergeInsertKind, TableFactor,
};

use super::parser::MERGE_ALL_COLUMNS;
use crate::error::{Result, VitrineError};

/// Quotes an identifier for the generated SQL.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_ref(table: &str, alias: Option<&str>) -> String {
    match alias {
        Some(a) => format!("{table} AS {}", quote(a)),
        None => table.to_string(),
    }
}

/// The rows that remain after `DELETE FROM table WHERE predicate`, and the query counting the
/// rows deleted.
pub fn delete_queries(
    table: &str,
    alias: Option<&str>,
    predicate: Option<&Expr>,
) -> (String, String) {
    let from = table_ref(table, alias);
    match predicate {
        Some(p) => (
            format!("SELECT * FROM {from} WHERE NOT COALESCE(({p}), false)"),
            format!("SELECT COUNT(*) FROM {from} WHERE COALESCE(({p}), false)"),
        ),
        None => (
            format!("SELECT * FROM {from} WHERE false"),
            format!("SELECT COUNT(*) FROM {from}"),
        ),
    }
}

/// The table's content after `UPDATE table SET … WHERE predicate`, and the query counting the rows
/// updated.
pub fn update_queries(
    table: &str,
    alias: Option<&str>,
    schema: &Schema,
    assignments: &[(String, Expr)],
    predicate: Option<&Expr>,
) -> Result<(String, String)> {
    for (column, _) in assignments {
        if schema.index_of(column).is_err() {
            return Err(VitrineError::Plan(format!(
                "UPDATE {table}: no column '{column}'"
            )));
        }
    }
    let condition = predicate.map_or("true".to_string(), |p| format!("COALESCE(({p}), false)"));
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let col = quote(f.name());
            match assignments.iter().rev().find(|(c, _)| c == f.name()) {
                Some((_, value)) => {
                    format!("CASE WHEN {condition} THEN {value} ELSE {col} END AS {col}")
                }
                None => col,
            }
        })
        .collect();
    let from = table_ref(table, alias);
    Ok((
        format!("SELECT {} FROM {from}", columns.join(", ")),
        format!("SELECT COUNT(*) FROM {from} WHERE {condition}"),
    ))
}

const IN_TARGET: &str = "__vitrine_in_target";
const IN_SOURCE: &str = "__vitrine_in_source";
const TARGET_ROW: &str = "__vitrine_row";
/// Action code of a target row that no clause changes.
const KEEP: i64 = 0;
/// Action code of a source row that no clause inserts.
const SKIP: i64 = -1;

/// A MERGE turned into queries.
#[derive(Debug)]
pub struct MergeQueries {
    /// The target's new content.
    pub content: String,
    /// `(updated, deleted, inserted)` row counts.
    pub counts: String,
    /// Target rows that more than one source row matches (Databricks refuses such a MERGE,
    /// since which source row wins is undefined): at most a few, as `__vitrine_row` numbers.
    pub ambiguous: String,
    /// For an upsert, the same MERGE as rows to write in place.
    pub upsert: Option<Upsert>,
}

/// A MERGE that is an upsert (`ON t.k = s.k [AND …] WHEN MATCHED THEN UPDATE SET * WHEN NOT
/// MATCHED THEN INSERT *`), as the rows that replace or join the target's.
#[derive(Debug)]
pub struct Upsert {
    /// The key columns, as the target names them.
    pub keys: Vec<String>,
    /// The source's rows, in the target's column order.
    pub rows: String,
    /// One row of two counts: the source rows that cannot be upserted by key (with a NULL key,
    /// which matches nothing and is inserted, or sharing their key with another source row,
    /// both inserted when unmatched), then all the source's rows. Only when no row is unfit
    /// does the upsert equal the MERGE; each source row then updates or inserts exactly one
    /// row, so the MERGE's ambiguity check and counts are not needed.
    pub check: String,
}

/// Builds the queries of `MERGE INTO target USING source ON … WHEN …`; `target_table` is the
/// target's resolved name and `schema` its columns.
pub fn merge_queries(
    merge: &ast::Merge,
    target_table: &str,
    schema: &Schema,
) -> Result<MergeQueries> {
    let target_alias = alias_of(&merge.table).unwrap_or_else(|| {
        target_table
            .rsplit('.')
            .next()
            .unwrap_or(target_table)
            .to_string()
    });
    let source_alias = alias_of(&merge.source).ok_or_else(|| {
        VitrineError::Plan("MERGE: give the source an alias (USING … AS s)".into())
    })?;
    let source = strip_alias(&merge.source);
    let (t, s) = (quote(&target_alias), quote(&source_alias));

    // One action code per row: which clause applies.
    let mut matched = Vec::new();
    let mut not_matched = Vec::new();
    let mut not_matched_by_source = Vec::new();
    for (i, clause) in merge.clauses.iter().enumerate() {
        let code = i as i64 + 1;
        let condition = clause
            .predicate
            .as_ref()
            .map_or("true".to_string(), |p| format!("COALESCE(({p}), false)"));
        let arm = format!("WHEN {condition} THEN {code}");
        match clause.clause_kind {
            MergeClauseKind::Matched => matched.push(arm),
            MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => {
                not_matched.push(arm)
            }
            MergeClauseKind::NotMatchedBySource => not_matched_by_source.push(arm),
        }
    }
    let case = |arms: &[String], default: i64| {
        if arms.is_empty() {
            default.to_string()
        } else {
            format!("CASE {} ELSE {default} END", arms.join(" "))
        }
    };
    let action = format!(
        "(CASE WHEN COALESCE({t}.{IN_TARGET}, false) AND COALESCE({s}.{IN_SOURCE}, false) THEN {} \
         WHEN COALESCE({t}.{IN_TARGET}, false) THEN {} ELSE {} END)",
        case(&matched, KEEP),
        case(&not_matched_by_source, KEEP),
        case(&not_matched, SKIP),
    );

    let mut removed = vec![SKIP];
    let mut columns = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        let mut arms = Vec::new();
        for (i, clause) in merge.clauses.iter().enumerate() {
            let code = i as i64 + 1;
            let value = match &clause.action {
                MergeAction::Delete { .. } => {
                    if !removed.contains(&code) {
                        removed.push(code);
                    }
                    continue;
                }
                MergeAction::Update(update) => {
                    let all = update
                        .assignments
                        .iter()
                        .any(|a| a.target.to_string() == MERGE_ALL_COLUMNS);
                    let assigned =
                        update.assignments.iter().rev().find(|a| {
                            assignment_column(&a.target).as_deref() == Some(name.as_str())
                        });
                    match (all, assigned) {
                        (_, Some(a)) => a.value.to_string(),
                        (true, None) => format!("{s}.{}", quote(name)),
                        (false, None) => continue,
                    }
                }
                MergeAction::Insert(insert) => insert_value(insert, name, &s)?,
            };
            arms.push(format!("WHEN {code} THEN {value}"));
        }
        let keep = format!("{t}.{}", quote(name));
        columns.push(if arms.is_empty() {
            format!("{keep} AS {}", quote(name))
        } else {
            format!(
                "CASE {action} {} ELSE {keep} END AS {}",
                arms.join(" "),
                quote(name)
            )
        });
    }
    for clause in &merge.clauses {
        if let MergeAction::Update(update) = &clause.action {
            for a in &update.assignments {
                let column = assignment_column(&a.target);
                if a.target.to_string() != MERGE_ALL_COLUMNS
                    && column
                        .as_deref()
                        .is_none_or(|c| schema.index_of(c).is_err())
                {
                    return Err(VitrineError::Plan(format!(
                        "MERGE: target {target_table} has no column '{}'",
                        a.target
                    )));
                }
            }
        }
    }

    let joined = format!(
        "(SELECT *, true AS {IN_TARGET} FROM {target_table}) AS {t} FULL OUTER JOIN (SELECT *, true AS {IN_SOURCE} FROM {source}) AS {s} ON {}",
        merge.on
    );
    let ambiguous = format!(
        "SELECT {t}.{TARGET_ROW} FROM (SELECT *, row_number() OVER () AS {TARGET_ROW} FROM {target_table}) AS {t} \
         JOIN {source} AS {s} ON {} GROUP BY {t}.{TARGET_ROW} HAVING COUNT(*) > 1 LIMIT 3",
        merge.on
    );
    let removed: Vec<String> = removed.iter().map(i64::to_string).collect();
    let content = format!(
        "SELECT {} FROM {joined} WHERE {action} NOT IN ({})",
        columns.join(", "),
        removed.join(", ")
    );

    let codes = |kind: fn(&MergeAction) -> bool| -> String {
        let list: Vec<String> = merge
            .clauses
            .iter()
            .enumerate()
            .filter(|(_, c)| kind(&c.action))
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if list.is_empty() {
            "NULL".to_string()
        } else {
            list.join(", ")
        }
    };
    let counts = format!(
        "SELECT COUNT(CASE WHEN a IN ({}) THEN 1 END) AS num_updated_rows, COUNT(CASE WHEN a IN ({}) THEN 1 END) AS num_deleted_rows, \
         COUNT(CASE WHEN a IN ({}) THEN 1 END) AS num_inserted_rows FROM (SELECT {action} AS a FROM {joined})",
        codes(|a| matches!(a, MergeAction::Update(_))),
        codes(|a| matches!(a, MergeAction::Delete { .. })),
        codes(|a| matches!(a, MergeAction::Insert(_))),
    );
    let upsert = upsert_keys(merge, &target_alias, &source_alias, schema).map(|keys| {
        let key_list: Vec<String> = keys.iter().map(|k| format!("{s}.{}", quote(k))).collect();
        let null_key: Vec<String> = key_list.iter().map(|k| format!("{k} IS NULL")).collect();
        let rows: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{s}.{}", quote(f.name())))
            .collect();
        Upsert {
            rows: format!("SELECT {} FROM {source} AS {s}", rows.join(", ")),
            check: format!(
                "SELECT (SELECT COUNT(*) FROM {source} AS {s} WHERE {}) + \
                 (SELECT COUNT(*) FROM (SELECT 1 FROM {source} AS {s} GROUP BY {} HAVING COUNT(*) > 1)), \
                 (SELECT COUNT(*) FROM {source})",
                null_key.join(" OR "),
                key_list.join(", ")
            ),
            keys,
        }
    });
    Ok(MergeQueries {
        content,
        counts,
        ambiguous,
        upsert,
    })
}

/// The key columns of a MERGE that is an upsert: `ON` equates target and source columns of the
/// same name (one or more, joined by `AND`), and its clauses are exactly `WHEN MATCHED THEN
/// UPDATE SET *` and `WHEN NOT MATCHED THEN INSERT *`, without conditions.
fn upsert_keys(
    merge: &ast::Merge,
    target_alias: &str,
    source_alias: &str,
    schema: &Schema,
) -> Option<Vec<String>> {
    let star = |columns: &[ast::ObjectName]| {
        columns.len() == 1 && columns[0].to_string() == MERGE_ALL_COLUMNS
    };
    let (mut updates_all, mut inserts_all) = (false, false);
    for clause in &merge.clauses {
        if clause.predicate.is_some() {
            return None;
        }
        match (&clause.clause_kind, &clause.action) {
            (MergeClauseKind::Matched, MergeAction::Update(update))
                if update.assignments.len() == 1
                    && update.assignments[0].target.to_string() == MERGE_ALL_COLUMNS =>
            {
                updates_all = true
            }
            (
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                MergeAction::Insert(insert),
            ) if insert.insert_predicate.is_none()
                && (star(&insert.columns)
                    || (matches!(insert.kind, MergeInsertKind::Row)
                        && insert.columns.is_empty())) =>
            {
                inserts_all = true
            }
            _ => return None,
        }
    }
    if merge.clauses.len() != 2 || !updates_all || !inserts_all {
        return None;
    }
    let mut keys = Vec::new();
    let mut pending: Vec<&Expr> = vec![&merge.on];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::Nested(inner) => pending.push(inner),
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => pending.extend([left.as_ref(), right.as_ref()]),
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } => {
                let column = |side: &Expr| match side {
                    Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                        Some((parts[0].value.to_lowercase(), parts[1].value.to_lowercase()))
                    }
                    _ => None,
                };
                let ((a, a_column), (b, b_column)) = (column(left)?, column(right)?);
                let (target, source) = (target_alias.to_lowercase(), source_alias.to_lowercase());
                if a_column != b_column
                    || !((a == target && b == source) || (a == source && b == target))
                {
                    return None;
                }
                let field = schema
                    .fields()
                    .iter()
                    .find(|f| f.name().to_lowercase() == a_column)?;
                keys.push(field.name().clone());
            }
            _ => return None,
        }
    }
    keys.sort();
    keys.dedup();
    Some(keys)
}

fn assignment_column(target: &ast::AssignmentTarget) -> Option<String> {
    match target {
        ast::AssignmentTarget::ColumnName(name) => name
            .0
            .last()
            .map(|p| p.to_string().trim_matches('`').to_lowercase()),
        ast::AssignmentTarget::Tuple(_) => None,
    }
}

fn insert_value(insert: &ast::MergeInsertExpr, column: &str, source: &str) -> Result<String> {
    let all = insert.columns.len() == 1 && insert.columns[0].to_string() == MERGE_ALL_COLUMNS;
    match &insert.kind {
        MergeInsertKind::Row => Ok(format!("{source}.{}", quote(column))),
        MergeInsertKind::Values(_) if all => Ok(format!("{source}.{}", quote(column))),
        MergeInsertKind::Values(values) => {
            let [row] = values.rows.as_slice() else {
                return Err(VitrineError::Plan(
                    "MERGE: INSERT VALUES takes one row".into(),
                ));
            };
            if insert.columns.is_empty() {
                return Err(VitrineError::Plan(
                    "MERGE: INSERT needs a column list, or use INSERT *".into(),
                ));
            }
            if insert.columns.len() != row.len() {
                return Err(VitrineError::Plan(format!(
                    "MERGE: INSERT names {} columns but gives {} values",
                    insert.columns.len(),
                    row.len()
                )));
            }
            let position = insert.columns.iter().position(|c| {
                c.0.last()
                    .is_some_and(|p| p.to_string().trim_matches('`').eq_ignore_ascii_case(column))
            });
            Ok(position.map_or("NULL".to_string(), |p| row[p].to_string()))
        }
    }
}

fn alias_of(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => {
            alias.as_ref().map(|a| a.name.value.clone())
        }
        _ => None,
    }
}

fn strip_alias(factor: &TableFactor) -> String {
    let mut factor = factor.clone();
    if let TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } = &mut factor {
        *alias = None;
    }
    factor.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn delete_keeps_rows_whose_predicate_is_null() {
        let p: Expr = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::DatabricksDialect {},
        )
        .try_with_sql("price > 10")
        .unwrap()
        .parse_expr()
        .unwrap();
        let (content, count) = delete_queries("main.s.t", None, Some(&p));
        assert_eq!(
            content,
            "SELECT * FROM main.s.t WHERE NOT COALESCE((price > 10), false)"
        );
        assert_eq!(
            count,
            "SELECT COUNT(*) FROM main.s.t WHERE COALESCE((price > 10), false)"
        );
    }

    #[test]
    fn update_rejects_unknown_columns() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int32, true)]);
        let value: Expr = Expr::value(ast::Value::Number("1".into(), false));
        assert!(update_queries("t", None, &schema, &[("b".into(), value)], None).is_err());
    }
}
