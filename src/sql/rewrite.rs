//! Rewrites of a parsed statement that bring Spark SQL onto DataFusion's planner.
//!
//! - Spark function names DataFusion spells differently (`explode` → `unnest`, `rand` → `random`),
//!   and Spark functions DataFusion computes as another expression ([`functions::expand`]).
//! - Spark's timestamp types in casts and literals: `TIMESTAMP` (`TIMESTAMP_LTZ`) is an instant
//!   in microseconds in the session time zone, `TIMESTAMP_NTZ` microseconds without a zone
//!   (DataFusion's own `TIMESTAMP` is zone-less nanoseconds).
//! - Hive's `DISTRIBUTE BY` (a partitioning hint, meaningless on one node) is dropped and
//!   `SORT BY` becomes the query's `ORDER BY`.
//! - `t TABLESAMPLE (…)`, which DataFusion would ignore, becomes a derived table that keeps the
//!   sampled rows, drawn with `rand()` from the statement's seed or `REPEATABLE (seed)`.
//! - Table references DataFusion cannot resolve by name, `t VERSION AS OF n`, `read_files(…)`,
//!   `vector_search(…)` and `retrieval_quality(…)`, are replaced by placeholders; the engine opens them and registers each under
//!   its placeholder name before planning ([`TableRequest`]).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, ArrayElemTypeDef, DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, Ident,
    Join, ObjectName, OrderBy, OrderByKind, Query, SetExpr, Statement, Subscript, TableAlias,
    TableFactor, TableSampleKind, TableSampleUnit, TableVersion, TableWithJoins, TimezoneInfo,
    Value, VisitMut, VisitorMut,
};

use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::functions;
use super::parser::object_name_parts;
use crate::catalog::TableName;
use crate::error::{Result, VitrineError};

/// A table reference the engine must open before planning, and the name it must register.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRequest {
    /// The unqualified name that now stands in the statement.
    pub placeholder: String,
    /// What to open.
    pub kind: TableRequestKind,
}

/// What a [`TableRequest`] opens.
#[derive(Debug, Clone, PartialEq)]
pub enum TableRequestKind {
    /// A warehouse table at an older version.
    Version {
        /// The table.
        table: TableName,
        /// The version number.
        version: u64,
    },
    /// A warehouse table as it was at a time: its newest version committed at or before it.
    AsOfTime {
        /// The table.
        table: TableName,
        /// The SQL expression giving the time.
        timestamp: String,
    },
    /// `read_files(path, name => value, …)`: plain files.
    ReadFiles {
        /// The file, folder or glob.
        path: String,
        /// Reader options (`format`, `header`, …).
        options: BTreeMap<String, String>,
    },
    /// `vector_search(index => …, query_vector => … | query_text => …, num_results => …, …)`:
    /// nearest neighbours from a vector index.
    VectorSearch {
        /// Argument name (positional ones named `index`, `query`, `num_results` in that order)
        /// → the SQL expression given.
        arguments: BTreeMap<String, String>,
    },
    /// `retrieval_quality(baseline => …, candidate => …, k => …, …)`: the metric table of two
    /// vector indexes judged on the same queries.
    RetrievalQuality {
        /// Argument name (positional ones named `baseline`, `candidate` in that order) → the
        /// literal given.
        arguments: BTreeMap<String, String>,
    },
    /// `left, LATERAL vector_search(…, query_text => left.column, …) alias`: one search per
    /// distinct query value of `left`; the statement joins the results on `__query_key`.
    LateralVectorSearch {
        /// The arguments, as for [`TableRequestKind::VectorSearch`].
        arguments: BTreeMap<String, String>,
        /// The argument that varies per row (`query_text`, `query` or `query_vector`).
        query_argument: String,
        /// The table beside the search, as written (`main.s.queries AS q`).
        left: String,
        /// The SQL of the join key over `left`'s columns.
        key: String,
    },
}

/// Applies every rewrite to `statement`; returns the tables the engine must open.
pub fn rewrite_statement(statement: &mut Statement) -> Result<Vec<TableRequest>> {
    let mut rewriter = SparkRewriter::default();
    if let ControlFlow::Break(e) = statement.visit(&mut rewriter) {
        return Err(e);
    }
    Ok(rewriter.requests)
}

/// Spark functions that DataFusion has under another name.
const RENAMED_FUNCTIONS: &[(&str, &str)] = &[
    ("explode", "unnest"),
    ("rand", "random"),
    ("collect_set_distinct", "array_agg"),
];

/// Turns Spark's timestamp types (also as array elements) into the ones DataFusion plans as
/// Spark means them: `TIMESTAMP` and `TIMESTAMP_LTZ` into microseconds with the session time zone,
/// `TIMESTAMP_NTZ` and `TIMESTAMP WITHOUT TIME ZONE` into microseconds without one.
fn spark_timestamp_type(data_type: &mut SqlType) {
    let zoned = match data_type {
        SqlType::Timestamp(_, TimezoneInfo::WithoutTimeZone) | SqlType::TimestampNtz(_) => false,
        SqlType::Timestamp(_, _) => true,
        SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("TIMESTAMP_LTZ") => true,
        SqlType::Array(
            ArrayElemTypeDef::AngleBracket(element) | ArrayElemTypeDef::SquareBracket(element, _),
        ) => return spark_timestamp_type(element),
        _ => return,
    };
    let zone = if zoned {
        TimezoneInfo::WithTimeZone
    } else {
        TimezoneInfo::WithoutTimeZone
    };
    *data_type = SqlType::Timestamp(Some(6), zone);
}

#[derive(Default)]
struct SparkRewriter {
    requests: Vec<TableRequest>,
}

impl SparkRewriter {
    fn placeholder(&self) -> String {
        format!("__vitrine_table_{}", self.requests.len() + 1)
    }
}

impl VisitorMut for SparkRewriter {
    type Break = VitrineError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        match expr {
            Expr::Cast { data_type, .. } => spark_timestamp_type(data_type),
            Expr::TypedString(typed) => spark_timestamp_type(&mut typed.data_type),
            _ => {}
        }
        // Spark's `f(x).field`: DataFusion takes struct fields by subscript, `f(x)['field']`.
        if let Expr::CompoundFieldAccess { access_chain, .. } = expr {
            for access in access_chain.iter_mut() {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    let key = Expr::value(Value::SingleQuotedString(field.value.clone()));
                    *access = AccessExpr::Subscript(Subscript::Index { index: key });
                }
            }
        }
        if let Expr::Function(function) = expr {
            match functions::expand(function) {
                Ok(Some(expanded)) => {
                    *expr = expanded;
                    return ControlFlow::Continue(());
                }
                Ok(None) => {}
                Err(e) => return ControlFlow::Break(e),
            }
        }
        if let Expr::Function(function) = expr {
            if let [part] = function.name.0.as_slice() {
                let name = part.to_string().to_lowercase();
                if let Some((_, to)) = RENAMED_FUNCTIONS.iter().find(|(from, _)| *from == name) {
                    function.name = ObjectName::from(vec![Ident::new(*to)]);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            if let Err(e) = self.rewrite_lateral_searches(&mut select.from) {
                return ControlFlow::Break(e);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            select.distribute_by.clear();
            if !select.sort_by.is_empty() {
                let sort_by = std::mem::take(&mut select.sort_by);
                if query.order_by.is_none() {
                    query.order_by = Some(OrderBy {
                        kind: OrderByKind::Expressions(sort_by),
                        interpolate: None,
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        if let Err(e) = sample_as_subquery(factor) {
            return ControlFlow::Break(e);
        }
        match self.table_request(factor) {
            Ok(Some(kind)) => {
                let placeholder = self.placeholder();
                if let TableFactor::Table {
                    name,
                    args,
                    version,
                    ..
                } = factor
                {
                    *name = ObjectName::from(vec![Ident::new(&placeholder)]);
                    *args = None;
                    *version = None;
                }
                self.requests.push(TableRequest { placeholder, kind });
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// Spark's `t TABLESAMPLE (p PERCENT | n ROWS | BUCKET x OUT OF y) [REPEATABLE (seed)]`, which
/// DataFusion ignores, as a derived table over `t`: rows kept where `rand(seed)` falls in the
/// share or bucket (the statement's seed without `REPEATABLE`), or the first `n` rows.
fn sample_as_subquery(factor: &mut TableFactor) -> Result<()> {
    let TableFactor::Table {
        name,
        alias,
        sample,
        ..
    } = factor
    else {
        return Ok(());
    };
    let Some(kind) = sample.take() else {
        return Ok(());
    };
    let (TableSampleKind::BeforeTableAlias(spec) | TableSampleKind::AfterTableAlias(spec)) = kind;
    let rand = match &spec.seed {
        Some(seed) => format!("rand({})", seed.value),
        None => "rand()".to_string(),
    };
    let filter = match (&spec.quantity, &spec.bucket) {
        (Some(q), None) if q.unit == Some(TableSampleUnit::Rows) => {
            format!("LIMIT {}", q.value)
        }
        (Some(q), None) => format!("WHERE {rand} < ({}) / 100.0", q.value),
        (None, Some(b)) => format!("WHERE floor({rand} * {}) = {} - 1", b.total, b.bucket),
        _ => {
            return Err(VitrineError::Plan(format!(
                "TABLESAMPLE takes (p PERCENT), (n ROWS) or (BUCKET x OUT OF y), got '{spec}'"
            )))
        }
    };
    let alias = alias.take().unwrap_or_else(|| TableAlias {
        explicit: true,
        name: name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .cloned()
            .unwrap_or_else(|| Ident::new("sampled")),
        columns: Vec::new(),
    });
    let inner = factor.clone();
    let mut subquery = Parser::new(&DatabricksDialect {})
        .try_with_sql(&format!("SELECT * FROM __vitrine_sampled {filter}"))?
        .parse_query()?;
    if let SetExpr::Select(select) = subquery.body.as_mut() {
        select.from[0].relation = inner;
    }
    *factor = TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias),
        sample: None,
    };
    Ok(())
}

impl SparkRewriter {
    fn table_request(&self, factor: &TableFactor) -> Result<Option<TableRequestKind>> {
        let TableFactor::Table {
            name,
            args,
            version,
            ..
        } = factor
        else {
            return Ok(None);
        };
        let parts = object_name_parts(name)?;
        if let Some(args) = args {
            if parts.len() == 1 && parts[0] == "read_files" {
                return read_files_request(&args.args).map(Some);
            }
            if parts.len() == 1 && parts[0] == "vector_search" {
                return vector_search_request(&args.args).map(Some);
            }
            if parts.len() == 1 && parts[0] == "retrieval_quality" {
                return retrieval_quality_request(&args.args).map(Some);
            }
            return Ok(None);
        }
        match version {
            None => Ok(None),
            Some(TableVersion::VersionAsOf(expr)) => {
                let version = literal(expr)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        VitrineError::Plan(format!(
                            "VERSION AS OF takes a version number, got '{expr}'"
                        ))
                    })?;
                Ok(Some(TableRequestKind::Version {
                    table: TableName::from_parts(&parts)?,
                    version,
                }))
            }
            Some(TableVersion::TimestampAsOf(expr)) => Ok(Some(TableRequestKind::AsOfTime {
                table: TableName::from_parts(&parts)?,
                timestamp: expr.to_string(),
            })),
            Some(other) => Err(VitrineError::Plan(format!(
                "'{other}' is not supported: use VERSION AS OF n or TIMESTAMP AS OF t"
            ))),
        }
    }
}

fn read_files_request(args: &[FunctionArg]) -> Result<TableRequestKind> {
    let mut path = None;
    let mut options = BTreeMap::new();
    for arg in args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if path.is_none() => {
                path = Some(literal(e).ok_or_else(|| {
                    VitrineError::Plan(format!("read_files takes a path string, got '{e}'"))
                })?);
            }
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                options.insert(name.value.to_lowercase(), option_value(&name.value, e)?);
            }
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                let name = name.to_string();
                options.insert(name.to_lowercase(), option_value(&name, e)?);
            }
            other => {
                return Err(VitrineError::Plan(format!(
                    "unexpected read_files argument '{other}'"
                )))
            }
        }
    }
    let path = path.ok_or_else(|| VitrineError::Plan("read_files needs a path".into()))?;
    Ok(TableRequestKind::ReadFiles { path, options })
}

fn vector_search_request(args: &[FunctionArg]) -> Result<TableRequestKind> {
    Ok(TableRequestKind::VectorSearch {
        arguments: vector_search_arguments(args)?,
    })
}

fn retrieval_quality_request(args: &[FunctionArg]) -> Result<TableRequestKind> {
    let arguments =
        table_function_arguments("retrieval_quality", &["baseline", "candidate"], args)?
            .into_iter()
            .map(|(name, expr)| {
                literal(&expr)
                    .map(|value| (name.clone(), value))
                    .ok_or_else(|| {
                        VitrineError::Plan(format!(
                            "retrieval_quality: argument '{name}' takes a literal, got '{expr}'"
                        ))
                    })
            })
            .collect::<Result<_>>()?;
    Ok(TableRequestKind::RetrievalQuality { arguments })
}

/// The arguments of a table function call by name (the first ones may be given by position, in
/// the order of `positional`), each once.
fn table_function_arguments(
    function: &str,
    positional: &[&str],
    args: &[FunctionArg],
) -> Result<BTreeMap<String, Expr>> {
    let mut arguments = BTreeMap::new();
    for (i, arg) in args.iter().enumerate() {
        let (name, expr) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => match positional.get(i) {
                Some(name) => (name.to_string(), e),
                None => {
                    return Err(VitrineError::Plan(format!(
                        "{function} takes at most {} positional arguments ({}), got '{e}'",
                        positional.len(),
                        positional.join(", ")
                    )))
                }
            },
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (name.value.to_lowercase(), e),
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (name.to_string().to_lowercase(), e),
            other => {
                return Err(VitrineError::Plan(format!(
                    "unexpected {function} argument '{other}'"
                )))
            }
        };
        if arguments.insert(name.clone(), expr.clone()).is_some() {
            return Err(VitrineError::Plan(format!(
                "{function}: argument '{name}' is given twice"
            )));
        }
    }
    Ok(arguments)
}

/// The arguments of a `vector_search` call by name (positional ones named `index`, `query`,
/// `num_results`), as SQL text.
fn vector_search_arguments(args: &[FunctionArg]) -> Result<BTreeMap<String, String>> {
    Ok(
        table_function_arguments("vector_search", &["index", "query", "num_results"], args)?
            .into_iter()
            .map(|(name, expr)| (name, expr.to_string()))
            .collect(),
    )
}

fn is_lateral_search(factor: &TableFactor) -> bool {
    matches!(factor, TableFactor::Function { lateral: true, name, .. }
        if object_name_parts(name).is_ok_and(|p| p.len() == 1 && p[0] == "vector_search"))
}

impl SparkRewriter {
    /// Turns `left, LATERAL vector_search(…) r` (or `left [CROSS] JOIN LATERAL vector_search(…) r`)
    /// into `left JOIN <placeholder> r ON r.__query_key = <key over left>`.
    fn rewrite_lateral_searches(&mut self, from: &mut Vec<TableWithJoins>) -> Result<()> {
        let mut i = 1;
        while i < from.len() {
            if is_lateral_search(&from[i].relation) {
                if !from[i].joins.is_empty() || !from[i - 1].joins.is_empty() {
                    return Err(unsupported_lateral());
                }
                let lateral = from.remove(i);
                let join = self.lateral_join(&from[i - 1].relation, lateral.relation)?;
                from[i - 1].joins.push(join);
            } else {
                i += 1;
            }
        }
        for item in from.iter_mut() {
            for j in 0..item.joins.len() {
                if is_lateral_search(&item.joins[j].relation) {
                    if j > 0 {
                        return Err(unsupported_lateral());
                    }
                    let relation = item.joins[j].relation.clone();
                    item.joins[j] = self.lateral_join(&item.relation, relation)?;
                }
            }
        }
        Ok(())
    }

    fn lateral_join(&mut self, left: &TableFactor, lateral: TableFactor) -> Result<Join> {
        let TableFactor::Function { args, alias, .. } = lateral else {
            return Err(unsupported_lateral());
        };
        let arguments = vector_search_arguments(&args)?;
        let (query_argument, query) = ["query_vector", "query_text", "query"]
            .iter()
            .find_map(|name| arguments.get(*name).map(|q| (name.to_string(), q.clone())))
            .ok_or_else(|| {
                VitrineError::Plan("vector_search: give query_vector or query_text".into())
            })?;
        let key = if query_argument == "query_vector" {
            format!("array_to_string({query}, ',')")
        } else {
            format!("CAST({query} AS VARCHAR)")
        };
        let placeholder = self.placeholder();
        let alias = alias.map_or_else(|| placeholder.clone(), |a| a.name.value);
        self.requests.push(TableRequest {
            placeholder: placeholder.clone(),
            kind: TableRequestKind::LateralVectorSearch {
                arguments,
                query_argument,
                left: left.to_string(),
                key: key.clone(),
            },
        });
        let sql = format!(
            "SELECT 1 FROM __left JOIN {placeholder} AS {alias} ON {alias}.__query_key = {key}"
        );
        let dialect = datafusion::sql::sqlparser::dialect::DatabricksDialect {};
        let mut parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql)?;
        let Some(Statement::Query(query)) = parsed.pop() else {
            return Err(unsupported_lateral());
        };
        let SetExpr::Select(select) = *query.body else {
            return Err(unsupported_lateral());
        };
        select
            .from
            .into_iter()
            .next()
            .and_then(|mut item| item.joins.pop())
            .ok_or_else(unsupported_lateral)
    }
}

fn unsupported_lateral() -> VitrineError {
    VitrineError::Plan(
        "LATERAL vector_search must follow exactly one table: FROM t, LATERAL vector_search(…) r"
            .into(),
    )
}

fn option_value(name: &str, value: &Expr) -> Result<String> {
    literal(value).ok_or_else(|| {
        VitrineError::Plan(format!(
            "read_files option '{name}' takes a literal, got '{value}'"
        ))
    })
}

/// The text of a literal: a string, number or boolean.
pub fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::Identifier(ident)
            if matches!(ident.value.to_lowercase().as_str(), "true" | "false") =>
        {
            Some(ident.value.to_lowercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::{parse_statement, VitrineStatement};

    fn rewritten(sql: &str) -> (String, Vec<TableRequest>) {
        let VitrineStatement::Query(mut statement) = parse_statement(sql).unwrap() else {
            panic!("not a query")
        };
        let requests = rewrite_statement(&mut statement).unwrap();
        (statement.to_string(), requests)
    }

    #[test]
    fn distribute_by_is_dropped_and_sort_by_orders_the_query() {
        let (sql, _) =
            rewritten("SELECT * FROM t DISTRIBUTE BY article_type SORT BY RAND() LIMIT 5");
        assert_eq!(sql, "SELECT * FROM t ORDER BY random() LIMIT 5");
    }

    #[test]
    fn tablesample_keeps_a_share_a_bucket_or_the_first_rows() {
        let (sql, _) = rewritten("SELECT * FROM t TABLESAMPLE (10 PERCENT) REPEATABLE (3)");
        assert_eq!(
            sql,
            "SELECT * FROM (SELECT * FROM t WHERE random(3) < (10) / 100.0) AS t"
        );
        let (sql, _) = rewritten("SELECT p.id FROM s.t AS p TABLESAMPLE (BUCKET 2 OUT OF 4)");
        assert_eq!(
            sql,
            "SELECT p.id FROM (SELECT * FROM s.t WHERE FLOOR(random() * 4) = 2 - 1) AS p"
        );
        let (sql, _) = rewritten("SELECT * FROM t TABLESAMPLE (5 ROWS)");
        assert_eq!(sql, "SELECT * FROM (SELECT * FROM t LIMIT 5) AS t");
    }

    #[test]
    fn explode_becomes_unnest() {
        let (sql, _) = rewritten("SELECT explode(style_keywords) AS k FROM t");
        assert_eq!(sql, "SELECT unnest(style_keywords) AS k FROM t");
    }

    #[test]
    fn version_as_of_and_read_files_become_placeholders() {
        let (sql, requests) = rewritten(
            "SELECT * FROM main.s.t VERSION AS OF 2 JOIN read_files('/Volumes/main/s/v/x.csv', format => 'csv', header => true) f ON true",
        );
        assert_eq!(
            sql,
            "SELECT * FROM __vitrine_table_1 JOIN __vitrine_table_2 f ON true"
        );
        assert!(
            matches!(&requests[0].kind, TableRequestKind::Version { version: 2, table } if table.to_string() == "main.s.t")
        );
        let TableRequestKind::ReadFiles { path, options } = &requests[1].kind else {
            panic!()
        };
        assert_eq!(path, "/Volumes/main/s/v/x.csv");
        assert_eq!(options["format"], "csv");
        assert_eq!(options["header"], "true");
    }

    #[test]
    fn retrieval_quality_becomes_a_placeholder_with_its_literal_arguments() {
        let (sql, requests) = rewritten(
            "SELECT * FROM retrieval_quality('main.s.base', candidate => 'main.s.rich', k => 5) WHERE kind = 'all'",
        );
        assert_eq!(sql, "SELECT * FROM __vitrine_table_1 WHERE kind = 'all'");
        let TableRequestKind::RetrievalQuality { arguments } = &requests[0].kind else {
            panic!("{requests:?}")
        };
        assert_eq!(arguments["baseline"], "main.s.base");
        assert_eq!(arguments["candidate"], "main.s.rich");
        assert_eq!(arguments["k"], "5");
        let mut statement =
            match parse_statement("SELECT * FROM retrieval_quality('a', 'b', 'c')").unwrap() {
                VitrineStatement::Query(s) => s,
                _ => panic!(),
            };
        let error = rewrite_statement(&mut statement).unwrap_err().to_string();
        assert!(error.contains("at most 2 positional arguments"), "{error}");
        let mut statement = match parse_statement(
            "SELECT * FROM retrieval_quality(baseline => a.b, candidate => 'c')",
        )
        .unwrap()
        {
            VitrineStatement::Query(s) => s,
            _ => panic!(),
        };
        let error = rewrite_statement(&mut statement).unwrap_err().to_string();
        assert!(error.contains("'baseline' takes a literal"), "{error}");
    }
}
