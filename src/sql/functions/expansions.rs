//! Spark functions that DataFusion computes as another expression: `isnull(x)` is `x IS NULL`,
//! `month(d)` is `date_part('month', d)` as an INT, `count_if(c)` counts the rows where `c` holds.
//!
//! Each is a template over the call's arguments (`{0}`, `{1}`, …), written in SQL and parsed
//! when a statement calls it ([`expand`]): an argument appears in parentheses, so precedence
//! holds. A call with a `FILTER`, `OVER`, `DISTINCT` or named arguments is left alone (DataFusion
//! then says what it lacks), as is a call with a number of arguments no template takes.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Result, VitrineError};

/// `(Spark function, number of arguments, the expression it is)`.
const EXPANSIONS: &[(&str, usize, &str)] = &[
    // Names DataFusion spells otherwise.
    ("ceiling", 1, "ceil({0})"),
    ("lcase", 1, "lower({0})"),
    ("ucase", 1, "upper({0})"),
    ("len", 1, "char_length({0})"),
    ("sign", 1, "signum({0})"),
    ("positive", 1, "{0}"),
    ("startswith", 2, "starts_with({0}, {1})"),
    ("endswith", 2, "ends_with({0}, {1})"),
    ("rlike", 2, "regexp_like({0}, {1})"),
    ("regexp", 2, "regexp_like({0}, {1})"),
    ("std", 1, "stddev({0})"),
    ("some", 1, "bool_or({0})"),
    ("any", 1, "bool_or({0})"),
    ("every", 1, "bool_and({0})"),
    ("any_value", 1, "first_value({0})"),
    ("first", 1, "first_value({0})"),
    ("last", 1, "last_value({0})"),
    ("approx_count_distinct", 1, "approx_distinct({0})"),
    ("array_size", 1, "cardinality({0})"),
    // Spark's sequence counts down when it starts above its end.
    (
        "sequence",
        2,
        "generate_series({0}, {1}, CASE WHEN {0} <= {1} THEN 1 ELSE -1 END)",
    ),
    ("sequence", 3, "generate_series({0}, {1}, {2})"),
    ("sort_array", 1, "array_sort({0}, 'ASC', 'NULLS FIRST')"),
    (
        "sort_array",
        2,
        "CASE WHEN {1} THEN array_sort({0}, 'ASC', 'NULLS FIRST') \
         ELSE array_sort({0}, 'DESC', 'NULLS LAST') END",
    ),
    // Spark's locate(substring, string) is DataFusion's strpos(string, substring).
    ("locate", 2, "strpos({1}, {0})"),
    (
        "locate",
        3,
        "CASE WHEN {2} < 1 THEN 0 WHEN strpos(substr({1}, {2}), {0}) = 0 THEN 0 \
         ELSE strpos(substr({1}, {2}), {0}) + {2} - 1 END",
    ),
    // Predicates and null handling.
    ("isnull", 1, "({0} IS NULL)"),
    ("isnotnull", 1, "({0} IS NOT NULL)"),
    ("equal_null", 2, "({0} IS NOT DISTINCT FROM {1})"),
    ("nullifzero", 1, "nullif({0}, 0)"),
    ("zeroifnull", 1, "coalesce({0}, 0)"),
    ("count_if", 1, "count(CASE WHEN {0} THEN 1 END)"),
    // Aggregates of one column by another: the value where the other is largest or smallest.
    ("max_by", 2, "first_value({0} ORDER BY {1} DESC NULLS LAST)"),
    ("min_by", 2, "first_value({0} ORDER BY {1} ASC NULLS LAST)"),
    // Arithmetic.
    ("log1p", 1, "ln(1 + {0})"),
    ("hypot", 2, "sqrt(power({0}, 2) + power({1}, 2))"),
    ("e", 0, "exp(1)"),
    (
        "try_divide",
        2,
        "CASE WHEN {1} = 0 THEN NULL ELSE CAST({0} AS DOUBLE) / {1} END",
    ),
    // Parts of dates and times, as Spark's INTs (Spark's week starts on Sunday = 1).
    ("month", 1, "CAST(date_part('month', {0}) AS INT)"),
    ("day", 1, "CAST(date_part('day', {0}) AS INT)"),
    ("dayofmonth", 1, "CAST(date_part('day', {0}) AS INT)"),
    ("dayofyear", 1, "CAST(date_part('doy', {0}) AS INT)"),
    ("quarter", 1, "CAST(date_part('quarter', {0}) AS INT)"),
    ("dayofweek", 1, "CAST(date_part('dow', {0}) AS INT) + 1"),
    ("weekday", 1, "(CAST(date_part('dow', {0}) AS INT) + 6) % 7"),
    // Spark's cast functions.
    ("date", 1, "CAST({0} AS DATE)"),
    ("timestamp", 1, "CAST({0} AS TIMESTAMP(6) WITH TIME ZONE)"),
    ("string", 1, "CAST({0} AS STRING)"),
    ("boolean", 1, "CAST({0} AS BOOLEAN)"),
    ("tinyint", 1, "CAST({0} AS TINYINT)"),
    ("smallint", 1, "CAST({0} AS SMALLINT)"),
    ("int", 1, "CAST({0} AS INT)"),
    ("bigint", 1, "CAST({0} AS BIGINT)"),
    ("float", 1, "CAST({0} AS FLOAT)"),
    ("double", 1, "CAST({0} AS DOUBLE)"),
    ("binary", 1, "CAST({0} AS BINARY)"),
    // Seconds, milliseconds and microseconds since the epoch, as Spark's TIMESTAMP.
    (
        "timestamp_seconds",
        1,
        "CAST(to_timestamp_micros(CAST({0} * 1000000 AS BIGINT)) AS TIMESTAMP(6) WITH TIME ZONE)",
    ),
    (
        "timestamp_millis",
        1,
        "CAST(to_timestamp_millis({0}) AS TIMESTAMP(6) WITH TIME ZONE)",
    ),
    (
        "timestamp_micros",
        1,
        "CAST(to_timestamp_micros({0}) AS TIMESTAMP(6) WITH TIME ZONE)",
    ),
    ("unix_timestamp", 0, "CAST(to_unixtime(now()) AS BIGINT)"),
    ("unix_timestamp", 1, "CAST(to_unixtime({0}) AS BIGINT)"),
    ("to_unix_timestamp", 1, "CAST(to_unixtime({0}) AS BIGINT)"),
    // regexp_extract(string, pattern [, group = 1]): '' when nothing matches; group 0 is the
    // whole match.
    (
        "regexp_extract",
        2,
        "CASE WHEN {0} IS NULL OR {1} IS NULL THEN NULL \
         ELSE coalesce(regexp_match({0}, {1})[1], '') END",
    ),
    (
        "regexp_extract",
        3,
        "CASE WHEN {0} IS NULL OR {1} IS NULL OR {2} IS NULL THEN NULL \
         WHEN {2} = 0 THEN coalesce(regexp_match({0}, concat('(', {1}, ')'))[1], '') \
         ELSE coalesce(regexp_match({0}, {1})[{2}], '') END",
    ),
];

/// The expression a call of a Spark function stands for, when it is one of the expansions and
/// the call is a plain one.
pub fn expand(function: &Function) -> Result<Option<Expr>> {
    let [name] = function.name.0.as_slice() else {
        return Ok(None);
    };
    let name = name.to_string().to_lowercase();
    if function.filter.is_some() || function.over.is_some() || !function.within_group.is_empty() {
        return Ok(None);
    }
    let args: Vec<&Expr> = match &function.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            let mut plain = Vec::with_capacity(list.args.len());
            for arg in &list.args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => plain.push(e),
                    _ => return Ok(None),
                }
            }
            plain
        }
        _ => return Ok(None),
    };
    let Some((_, _, template)) = EXPANSIONS
        .iter()
        .find(|(n, arity, _)| *n == name && *arity == args.len())
    else {
        return Ok(None);
    };
    let mut text = template.to_string();
    for (i, arg) in args.iter().enumerate() {
        text = text.replace(&format!("{{{i}}}"), &format!("({arg})"));
    }
    Parser::new(&DatabricksDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map(Some)
        .map_err(|e| VitrineError::Parse(format!("{name}(…) as '{text}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};

    fn call(sql: &str) -> Function {
        let statement = Parser::new(&DatabricksDialect {})
            .try_with_sql(&format!("SELECT {sql}"))
            .unwrap()
            .parse_statement()
            .unwrap();
        let Statement::Query(query) = statement else {
            panic!()
        };
        let SetExpr::Select(select) = *query.body else {
            panic!()
        };
        match &select.projection[0] {
            SelectItem::UnnamedExpr(Expr::Function(f)) => f.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_go_into_the_template_in_parentheses() {
        let expanded = expand(&call("locate('b', a || 'c')")).unwrap().unwrap();
        assert_eq!(expanded.to_string(), "strpos((a || 'c'), ('b'))");
        let expanded = expand(&call("ISNULL(x + 1)")).unwrap().unwrap();
        assert_eq!(expanded.to_string(), "((x + 1) IS NULL)");
    }

    #[test]
    fn calls_no_template_takes_are_left_alone() {
        assert!(expand(&call("month(a, b)")).unwrap().is_none());
        assert!(expand(&call("first(x) OVER (ORDER BY y)"))
            .unwrap()
            .is_none());
        assert!(expand(&call("upper(x)")).unwrap().is_none());
    }
}
