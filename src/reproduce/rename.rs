//! Points a recorded statement at another table: every place its text names the table it wrote
//! as a table (after `FROM`, `JOIN`, `INTO`, `TABLE`, `UPDATE`, `USING`, or a comma of a `FROM`
//! list) is replaced by the scratch table's name, token by token, so that the rest of the
//! statement runs exactly as written.

use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::catalog::QualifiedName;
use crate::error::Result;

/// Keywords after which a name is a table.
const TABLE_KEYWORDS: &[Keyword] = &[
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::INTO,
    Keyword::TABLE,
    Keyword::UPDATE,
    Keyword::USING,
];

/// Keywords that end a `FROM` list.
const AFTER_FROM: &[Keyword] = &[
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::ORDER,
    Keyword::HAVING,
    Keyword::LIMIT,
    Keyword::ON,
    Keyword::SET,
    Keyword::SELECT,
    Keyword::UNION,
    Keyword::WINDOW,
    Keyword::QUALIFY,
    Keyword::DISTRIBUTE,
    Keyword::SORT,
    Keyword::CLUSTER,
];

/// `sql` with each name of `target` (resolved in `current`, the catalog and schema the statement
/// ran in) replaced by `replacement`.
pub fn rename_table(
    sql: &str,
    target: &QualifiedName,
    replacement: &QualifiedName,
    current: (&str, &str),
) -> Result<String> {
    let tokens = Tokenizer::new(&DatabricksDialect {}, sql).tokenize()?;
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // The significant token before the one at `i`, and whether it is inside a `FROM` list.
    let mut previous: Option<&Token> = None;
    let mut in_from = false;
    while i < tokens.len() {
        let token = &tokens[i];
        if let (Token::Word(_), false) = (token, matches!(previous, Some(Token::Period))) {
            let (parts, end) = object_name(&tokens, i);
            let resolved = match parts.as_slice() {
                [table] => QualifiedName {
                    catalog: current.0.to_string(),
                    schema: current.1.to_string(),
                    table: table.clone(),
                },
                [schema, table] => QualifiedName {
                    catalog: current.0.to_string(),
                    schema: schema.clone(),
                    table: table.clone(),
                },
                [catalog, schema, table] => QualifiedName {
                    catalog: catalog.clone(),
                    schema: schema.clone(),
                    table: table.clone(),
                },
                _ => QualifiedName {
                    catalog: String::new(),
                    schema: String::new(),
                    table: String::new(),
                },
            };
            let is_table_position = match previous {
                Some(Token::Word(w)) => TABLE_KEYWORDS.contains(&w.keyword),
                Some(Token::Comma) => in_from,
                _ => false,
            };
            let called = matches!(next_significant(&tokens, end), Some(Token::LParen));
            if resolved == *target && is_table_position && !called {
                out.push_str(&replacement.to_string());
                previous = tokens[..end]
                    .iter()
                    .rev()
                    .find(|t| !matches!(t, Token::Whitespace(_)));
                i = end;
                continue;
            }
        }
        out.push_str(&token.to_string());
        match token {
            Token::Word(w) if matches!(w.keyword, Keyword::FROM | Keyword::JOIN) => in_from = true,
            Token::Word(w) if AFTER_FROM.contains(&w.keyword) => in_from = false,
            Token::RParen => in_from = false,
            _ => {}
        }
        if !matches!(token, Token::Whitespace(_)) {
            previous = Some(token);
        }
        i += 1;
    }
    Ok(out)
}

/// The parts of the dotted name starting at `start` (lower-cased unless quoted), and the index
/// after it.
fn object_name(tokens: &[Token], start: usize) -> (Vec<String>, usize) {
    let mut parts = Vec::new();
    let mut i = start;
    while let Some(Token::Word(word)) = tokens.get(i) {
        parts.push(match word.quote_style {
            Some(_) => word.value.clone(),
            None => word.value.to_lowercase(),
        });
        if matches!(tokens.get(i + 1), Some(Token::Period))
            && matches!(tokens.get(i + 2), Some(Token::Word(_)))
        {
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (parts, i)
}

fn next_significant(tokens: &[Token], from: usize) -> Option<&Token> {
    tokens[from..]
        .iter()
        .find(|t| !matches!(t, Token::Whitespace(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> QualifiedName {
        let p: Vec<&str> = s.split('.').collect();
        QualifiedName {
            catalog: p[0].into(),
            schema: p[1].into(),
            table: p[2].into(),
        }
    }

    fn renamed(sql: &str) -> String {
        rename_table(
            sql,
            &name("main.s.t"),
            &name("main.scratch.t"),
            ("main", "s"),
        )
        .unwrap()
    }

    #[test]
    fn the_written_table_is_renamed_where_it_is_a_table_and_nowhere_else() {
        assert_eq!(
            renamed("CREATE OR REPLACE TABLE main.s.t AS SELECT t.a, t FROM main.s.u t"),
            "CREATE OR REPLACE TABLE main.scratch.t AS SELECT t.a, t FROM main.s.u t"
        );
        assert_eq!(
            renamed("INSERT INTO t SELECT * FROM s.t JOIN main.s.tt ON t.x = tt.x"),
            "INSERT INTO main.scratch.t SELECT * FROM main.scratch.t JOIN main.s.tt ON t.x = tt.x"
        );
        assert_eq!(
            renamed("MERGE INTO main.s.t AS d USING main.s.u AS s ON d.k = s.k WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO main.scratch.t AS d USING main.s.u AS s ON d.k = s.k WHEN MATCHED THEN UPDATE SET *"
        );
        assert_eq!(
            renamed("UPDATE t SET x = 'main.s.t' WHERE y > 1"),
            "UPDATE main.scratch.t SET x = 'main.s.t' WHERE y > 1"
        );
        // Another catalog's t, a function named like the table and a column `s.t` stay.
        assert_eq!(
            renamed("DELETE FROM main.s.t WHERE k IN (SELECT s.t FROM other.s.t WHERE t(k))"),
            "DELETE FROM main.scratch.t WHERE k IN (SELECT s.t FROM other.s.t WHERE t(k))"
        );
        assert_eq!(
            renamed("SELECT * FROM main.s.u, t WHERE s.t = 1"),
            "SELECT * FROM main.s.u, main.scratch.t WHERE s.t = 1"
        );
    }
}
