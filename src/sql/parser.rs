//! The Databricks dialect layer: parses one statement into a [`VitrineStatement`].
//!
//! Statements that DataFusion plans as they are (queries, views, `EXPLAIN`) pass through as
//! sqlparser ASTs. Statements that touch storage or the catalog (`CREATE TABLE … USING DELTA`,
//! `ALTER TABLE … SET TBLPROPERTIES`, `OPTIMIZE`, `DESCRIBE HISTORY`, …) are parsed here, on top of
//! sqlparser's tokenizer and expression parser, because the Databricks forms do not parse upstream.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::Field;
use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, ObjectNamePart, Query, Statement};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use crate::catalog::scalar_index::ScalarIndexKind;
use crate::catalog::{TableFormat, TableName};
use crate::config::TIME_ZONE_KEY;
use crate::error::{Result, VitrineError};
use crate::sql::types::parse_spark_type;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum VitrineStatement {
    /// `CREATE CATALOG [IF NOT EXISTS] name`.
    CreateCatalog {
        /// The object's name.
        name: String,
        /// `IF NOT EXISTS`: do nothing when it exists.
        if_not_exists: bool,
    },
    /// `CREATE SCHEMA|DATABASE [IF NOT EXISTS] [catalog.]name`.
    CreateSchema {
        /// The catalog, when given.
        catalog: Option<String>,
        /// The object's name.
        name: String,
        /// `IF NOT EXISTS`: do nothing when it exists.
        if_not_exists: bool,
    },
    /// `DROP SCHEMA|DATABASE [IF EXISTS] [catalog.]name [CASCADE]`.
    DropSchema {
        /// The catalog, when given.
        catalog: Option<String>,
        /// The object's name.
        name: String,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
        /// `CASCADE`: drop the schema's tables too.
        cascade: bool,
    },
    /// `USE [CATALOG|SCHEMA|DATABASE] name`.
    Use {
        /// Which default changes.
        kind: UseKind,
        /// The object's name.
        name: Vec<String>,
    },
    /// `SHOW CATALOGS`.
    ShowCatalogs,
    /// `SHOW SCHEMAS|DATABASES [IN|FROM catalog]`.
    ShowSchemas {
        /// The catalog, when given.
        catalog: Option<String>,
    },
    /// `SHOW TABLES [IN|FROM [catalog.]schema]`.
    ShowTables {
        /// The schema, when given.
        schema: Option<Vec<String>>,
    },
    /// `SHOW TBLPROPERTIES table`.
    ShowTblProperties {
        /// The table.
        table: TableName,
    },
    /// `DESCRIBE [TABLE] [EXTENDED] table`.
    Describe {
        /// The table.
        table: TableName,
        /// `EXTENDED`: add the table's details.
        extended: bool,
    },
    /// `DESCRIBE HISTORY table`.
    DescribeHistory {
        /// The table.
        table: TableName,
    },
    /// `CREATE [OR REPLACE] VECTOR INDEX [IF NOT EXISTS] name ON table (column) [USING kind]
    /// [WITH (key = value, …)]`.
    CreateVectorIndex(Box<CreateVectorIndex>),
    /// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name OPTIONS (…) AS query`: trains a model.
    CreateModel(Box<CreateModel>),
    /// `SHOW MODELS [IN|FROM [catalog.]schema]`.
    ShowModels {
        /// The schema, when given.
        schema: Option<Vec<String>>,
    },
    /// `DESCRIBE MODEL name`.
    DescribeModel {
        /// The model.
        name: TableName,
    },
    /// `DROP MODEL [IF EXISTS] name`.
    DropModel {
        /// The model.
        name: TableName,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
    },
    /// `SYNC [VECTOR] INDEX name`.
    SyncIndex {
        /// The index.
        name: TableName,
    },
    /// `SHOW [VECTOR] INDEXES [IN|FROM [catalog.]schema]`.
    ShowIndexes {
        /// The schema, when given.
        schema: Option<Vec<String>>,
    },
    /// `DESCRIBE [VECTOR] INDEX name`.
    DescribeIndex {
        /// The index.
        name: TableName,
    },
    /// `CREATE INDEX [IF NOT EXISTS] name ON table (column) [USING BTREE|BITMAP]`: a scalar
    /// index of a Lance table.
    CreateScalarIndex(Box<CreateScalarIndex>),
    /// `DROP INDEX [IF EXISTS] name ON table`: a scalar index.
    DropScalarIndex {
        /// The index, unique within its table.
        name: String,
        /// The table.
        table: TableName,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
    },
    /// `SHOW INDEXES ON|FOR table`: a table's scalar indexes.
    ShowTableIndexes {
        /// The table.
        table: TableName,
    },
    /// `DROP [VECTOR] INDEX [IF EXISTS] name`: a vector index.
    DropIndex {
        /// The object's name.
        name: TableName,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
    },
    /// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] name AS query`: a view kept in the warehouse.
    CreateView {
        /// The view.
        name: TableName,
        /// `OR REPLACE`.
        or_replace: bool,
        /// `IF NOT EXISTS`: do nothing when it exists.
        if_not_exists: bool,
        /// `COMMENT`.
        comment: Option<String>,
        /// The view's query.
        query: Box<Query>,
    },
    /// `DROP VIEW [IF EXISTS] name`.
    DropView {
        /// The view.
        name: TableName,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
    },
    /// `DROP TABLE [IF EXISTS] table`.
    DropTable {
        /// The table.
        table: TableName,
        /// `IF EXISTS`: do nothing when it does not exist.
        if_exists: bool,
    },
    /// `CREATE [OR REPLACE] TABLE …`.
    CreateTable(Box<CreateTable>),
    /// `INSERT INTO|OVERWRITE [TABLE] table [(columns)] query`.
    Insert {
        /// The table.
        table: TableName,
        /// Target columns, when listed.
        columns: Vec<String>,
        /// `OVERWRITE`: replace the rows instead of adding.
        overwrite: bool,
        /// The rows to write.
        query: Box<Query>,
    },
    /// `DELETE FROM table [WHERE predicate]`.
    Delete {
        /// The table.
        table: TableName,
        /// The table's alias, when given.
        alias: Option<String>,
        /// `WHERE`: the rows affected (all when absent).
        predicate: Option<Expr>,
    },
    /// `UPDATE table [alias] SET col = expr, … [WHERE predicate]`.
    Update {
        /// The table.
        table: TableName,
        /// The table's alias, when given.
        alias: Option<String>,
        /// `SET column = value` pairs.
        assignments: Vec<(String, Expr)>,
        /// `WHERE`: the rows affected (all when absent).
        predicate: Option<Expr>,
    },
    /// `MERGE INTO target USING source ON … WHEN …`.
    Merge(Box<ast::Merge>),
    /// `ALTER TABLE table SET TBLPROPERTIES (…)`.
    SetTblProperties {
        /// The table.
        table: TableName,
        /// The properties to set.
        properties: BTreeMap<String, String>,
    },
    /// `ALTER TABLE table UNSET TBLPROPERTIES [IF EXISTS] (…)`.
    UnsetTblProperties {
        /// The table.
        table: TableName,
        /// The property keys to remove.
        keys: Vec<String>,
    },
    /// `COMMENT ON TABLE table IS 'text' | NULL`.
    CommentOnTable {
        /// The table.
        table: TableName,
        /// The comment (NULL removes it).
        comment: Option<String>,
    },
    /// `OPTIMIZE table [ZORDER BY (columns)]`.
    Optimize {
        /// The table.
        table: TableName,
        /// `ZORDER BY` columns (none: compaction only).
        zorder_by: Vec<String>,
    },
    /// `RESTORE [TABLE] table TO VERSION AS OF n`.
    Restore {
        /// The table.
        table: TableName,
        /// The version number.
        version: u64,
    },
    /// `SET key = value`, or `SET key` / `SET` to show.
    Set {
        /// The setting's key (none: show all).
        key: Option<String>,
        /// The new value (none: show the key).
        value: Option<String>,
    },
    /// `RESET key`: the setting back to its default; `RESET`: every setting of the session.
    Reset {
        /// The setting's key (none: all).
        key: Option<String>,
    },
    /// Anything DataFusion plans itself (queries, views, `EXPLAIN`, …).
    Query(Box<Statement>),
    /// `COPY (query | table) TO 'path' …`, DataFusion's export, as text (sqlparser does not parse
    /// DataFusion's form).
    Copy(String),
    /// DataFusion's own statements that sqlparser does not parse (`CREATE EXTERNAL TABLE`),
    /// passed to DataFusion as text.
    DataFusion(String),
}

/// Which default `USE` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseKind {
    /// `USE CATALOG c`.
    Catalog,
    /// `USE SCHEMA s`, `USE DATABASE s` or plain `USE [c.]s`.
    Schema,
}

/// `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] name [(columns)] [USING format] [OPTIONS (…)]
/// [LOCATION 'uri'] [COMMENT '…'] [TBLPROPERTIES (…)] [AS query]`.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// The table being created.
    pub name: TableName,
    /// `OR REPLACE`: replace the table's content as a new version.
    pub or_replace: bool,
    /// `IF NOT EXISTS`: do nothing when the table exists.
    pub if_not_exists: bool,
    /// Declared columns, when given.
    pub columns: Option<Vec<Field>>,
    /// `USING …`; Lance when absent.
    pub format: Option<TableFormat>,
    /// `OPTIONS (…)`: reader options for CSV and Parquet files.
    pub options: BTreeMap<String, String>,
    /// `LOCATION 'uri'`: attach existing data instead of writing a managed table.
    pub location: Option<String>,
    /// `COMMENT '…'`.
    pub comment: Option<String>,
    /// `TBLPROPERTIES (…)`.
    pub properties: BTreeMap<String, String>,
    /// `AS query`.
    pub query: Option<Box<Query>>,
}

/// `CREATE VECTOR INDEX`, the SQL form of Databricks' `create_delta_sync_index`.
#[derive(Debug, Clone)]
pub struct CreateVectorIndex {
    /// The index.
    pub name: TableName,
    /// `OR REPLACE`: rebuild an existing index.
    pub or_replace: bool,
    /// `IF NOT EXISTS`: do nothing when the index exists.
    pub if_not_exists: bool,
    /// The source table.
    pub source: TableName,
    /// The embedding column.
    pub column: String,
    /// `USING IVF_PQ | IVF_HNSW_SQ | …`, when given.
    pub index_type: Option<String>,
    /// `WITH (…)`: keys lower-cased; a list value `(a, b)` becomes `a,b`.
    pub options: BTreeMap<String, String>,
}

/// `CREATE INDEX`: a scalar index on one column of a table.
#[derive(Debug, Clone)]
pub struct CreateScalarIndex {
    /// The index, unique within its table.
    pub name: String,
    /// `IF NOT EXISTS`: do nothing when the table has an index of that name.
    pub if_not_exists: bool,
    /// The table.
    pub table: TableName,
    /// The indexed column.
    pub column: String,
    /// `USING …`; BTREE when not given.
    pub kind: ScalarIndexKind,
}

/// `CREATE MODEL`, BigQuery ML's form: a model object trained on a query's rows.
#[derive(Debug, Clone)]
pub struct CreateModel {
    /// The model object.
    pub name: TableName,
    /// `OR REPLACE`: train again over an existing model.
    pub or_replace: bool,
    /// `IF NOT EXISTS`: do nothing when the model exists.
    pub if_not_exists: bool,
    /// `OPTIONS (…)`: keys lower-cased (`model_type`, `base`, `epochs`, …).
    pub options: BTreeMap<String, String>,
    /// `AS query`: the training rows.
    pub query: Box<Query>,
}

/// Parses one statement of the Databricks dialect.
pub fn parse_statement(sql: &str) -> Result<VitrineStatement> {
    let sql = rewrite_star_merge_actions(sql)?;
    let dialect = DatabricksDialect {};
    let mut p = StatementParser {
        p: Parser::new(&dialect).try_with_sql(&sql)?,
        sql: &sql,
    };
    let statement = p.parse()?;
    p.expect_end()?;
    Ok(statement)
}

/// Turns the Databricks MERGE shorthands `UPDATE SET *` and `INSERT *`, which sqlparser does not
/// know, into `UPDATE SET __all__ = __all__` and `INSERT (__all__) VALUES (__all__)`, which it
/// parses; the MERGE planner reads them back as "every column".
fn rewrite_star_merge_actions(sql: &str) -> Result<String> {
    let dialect = DatabricksDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize()?;
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::MERGE))
    {
        return Ok(sql.to_string());
    }
    let significant: Vec<(usize, &Token)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut replace: BTreeMap<usize, &str> = BTreeMap::new();
    for w in significant.windows(3) {
        let kw = |i: usize, k: Keyword| matches!(w[i].1, Token::Word(x) if x.keyword == k);
        if kw(0, Keyword::UPDATE) && kw(1, Keyword::SET) && matches!(w[2].1, Token::Mul) {
            replace.insert(w[2].0, "__all__ = __all__");
        }
        if kw(0, Keyword::THEN) && kw(1, Keyword::INSERT) && matches!(w[2].1, Token::Mul) {
            replace.insert(w[2].0, "(__all__) VALUES (__all__)");
        }
    }
    Ok(tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            replace
                .get(&i)
                .map(|r| r.to_string())
                .unwrap_or_else(|| t.to_string())
        })
        .collect())
}

/// The name the MERGE planner reads as "every column" (see `rewrite_star_merge_actions`).
pub const MERGE_ALL_COLUMNS: &str = "__all__";

struct StatementParser<'a> {
    p: Parser<'a>,
    sql: &'a str,
}

impl StatementParser<'_> {
    fn peek_word(&self, n: usize) -> Option<String> {
        match self.p.peek_nth_token(n).token {
            Token::Word(Word {
                value,
                quote_style: None,
                ..
            }) => Some(value.to_ascii_uppercase()),
            _ => None,
        }
    }

    /// Consumes the next tokens when they are these words (case-insensitive, unquoted).
    fn eat_words(&mut self, words: &[&str]) -> bool {
        if words
            .iter()
            .enumerate()
            .all(|(i, w)| self.peek_word(i).as_deref() == Some(*w))
        {
            for _ in words {
                self.p.next_token();
            }
            true
        } else {
            false
        }
    }

    fn expect_words(&mut self, words: &[&str]) -> Result<()> {
        if self.eat_words(words) {
            Ok(())
        } else {
            Err(self.unexpected(&words.join(" ")))
        }
    }

    fn unexpected(&self, expected: &str) -> VitrineError {
        let t = self.p.peek_token();
        let found = if t.token == Token::EOF {
            "end of statement".to_string()
        } else {
            format!("'{}'", t.token)
        };
        VitrineError::Parse(format!(
            "expected {expected}, found {found} at line {}, column {}",
            t.span.start.line, t.span.start.column
        ))
    }

    fn expect_end(&mut self) -> Result<()> {
        while self.p.consume_token(&Token::SemiColon) {}
        if self.p.peek_token().token != Token::EOF {
            return Err(self.unexpected("end of statement"));
        }
        Ok(())
    }

    fn name_parts(&mut self) -> Result<Vec<String>> {
        let name = self.p.parse_object_name(false)?;
        object_name_parts(&name)
    }

    fn table_name(&mut self) -> Result<TableName> {
        let parts = self.name_parts()?;
        TableName::from_parts(&parts)
    }

    fn string_literal(&mut self) -> Result<String> {
        Ok(self.p.parse_literal_string()?)
    }

    fn parse(&mut self) -> Result<VitrineStatement> {
        let first = self.peek_word(0).unwrap_or_default();
        match first.as_str() {
            "CREATE" => self.parse_create(),
            "DROP"
                if matches!(
                    self.peek_word(1).as_deref(),
                    Some("TABLE" | "VIEW" | "INDEX" | "MODEL")
                ) || (self.peek_word(1).as_deref() == Some("VECTOR")
                    && self.peek_word(2).as_deref() == Some("INDEX")) =>
            {
                self.p.next_token();
                self.eat_words(&["VECTOR"]);
                let kind = self.peek_word(0).unwrap_or_default();
                self.p.next_token();
                let if_exists = self.eat_words(&["IF", "EXISTS"]);
                let name = self.table_name()?;
                if kind == "INDEX" && self.eat_words(&["ON"]) {
                    let name = self.scalar_index_name(name)?;
                    let table = self.table_name()?;
                    return Ok(VitrineStatement::DropScalarIndex {
                        name,
                        table,
                        if_exists,
                    });
                }
                Ok(match kind.as_str() {
                    "TABLE" => VitrineStatement::DropTable {
                        table: name,
                        if_exists,
                    },
                    "VIEW" => VitrineStatement::DropView { name, if_exists },
                    "MODEL" => VitrineStatement::DropModel { name, if_exists },
                    _ => VitrineStatement::DropIndex { name, if_exists },
                })
            }
            "DROP" if matches!(self.peek_word(1).as_deref(), Some("SCHEMA" | "DATABASE")) => {
                self.p.next_token();
                self.p.next_token();
                let if_exists = self.eat_words(&["IF", "EXISTS"]);
                let (catalog, name) = self.schema_name()?;
                let cascade = self.eat_words(&["CASCADE"]);
                self.eat_words(&["RESTRICT"]);
                Ok(VitrineStatement::DropSchema {
                    catalog,
                    name,
                    if_exists,
                    cascade,
                })
            }
            "SYNC" => {
                self.p.next_token();
                self.eat_words(&["VECTOR"]);
                self.expect_words(&["INDEX"])?;
                Ok(VitrineStatement::SyncIndex {
                    name: self.table_name()?,
                })
            }
            "USE" => {
                self.p.next_token();
                let kind = if self.eat_words(&["CATALOG"]) {
                    UseKind::Catalog
                } else {
                    let _ = self.eat_words(&["SCHEMA"]) || self.eat_words(&["DATABASE"]);
                    UseKind::Schema
                };
                Ok(VitrineStatement::Use {
                    kind,
                    name: self.name_parts()?,
                })
            }
            "SHOW" => self.parse_show(),
            "DESCRIBE" | "DESC" => self.parse_describe(),
            "ALTER" => self.parse_alter(),
            "COMMENT" => {
                self.expect_words(&["COMMENT", "ON", "TABLE"])?;
                let table = self.table_name()?;
                self.expect_words(&["IS"])?;
                let comment = if self.eat_words(&["NULL"]) {
                    None
                } else {
                    Some(self.string_literal()?)
                };
                Ok(VitrineStatement::CommentOnTable { table, comment })
            }
            "OPTIMIZE" => {
                self.p.next_token();
                let table = self.table_name()?;
                let mut zorder_by = Vec::new();
                if self.eat_words(&["ZORDER", "BY"]) {
                    let parenthesised = self.p.consume_token(&Token::LParen);
                    loop {
                        zorder_by.push(self.p.parse_identifier()?.value.to_lowercase());
                        if !self.p.consume_token(&Token::Comma) {
                            break;
                        }
                    }
                    if parenthesised {
                        self.p.expect_token(&Token::RParen)?;
                    }
                }
                Ok(VitrineStatement::Optimize { table, zorder_by })
            }
            "RESTORE" => {
                self.p.next_token();
                self.eat_words(&["TABLE"]);
                let table = self.table_name()?;
                self.expect_words(&["TO", "VERSION", "AS", "OF"])?;
                let version = self.unsigned()?;
                Ok(VitrineStatement::Restore { table, version })
            }
            "SET" if self.peek_word(1).as_deref() == Some("TIME") => self.parse_set_time_zone(),
            "SET" if self.peek_word(1).as_deref() != Some("ROLE") => self.parse_set(),
            "RESET" => {
                self.p.next_token();
                let key = match self.p.peek_token().token {
                    Token::EOF | Token::SemiColon => None,
                    _ => Some(self.property_key()?),
                };
                Ok(VitrineStatement::Reset { key })
            }
            "COPY" => Ok(VitrineStatement::Copy(self.whole_statement())),
            _ => self.parse_sqlparser_statement(),
        }
    }

    /// The statement's text, for statements handed to DataFusion as they are.
    fn whole_statement(&mut self) -> String {
        while self.p.next_token().token != Token::EOF {}
        self.sql.trim().trim_end_matches(';').to_string()
    }

    fn unsigned(&mut self) -> Result<u64> {
        let t = self.p.next_token();
        match &t.token {
            Token::Number(n, _) => n.parse().map_err(|_| {
                VitrineError::Parse(format!("expected a version number, found '{n}'"))
            }),
            other => Err(VitrineError::Parse(format!(
                "expected a version number, found '{other}'"
            ))),
        }
    }

    fn schema_name(&mut self) -> Result<(Option<String>, String)> {
        let parts = self.name_parts()?;
        match parts.as_slice() {
            [s] => Ok((None, s.clone())),
            [c, s] => Ok((Some(c.clone()), s.clone())),
            _ => Err(VitrineError::Parse(format!(
                "'{}' is not a schema name: use [catalog.]schema",
                parts.join(".")
            ))),
        }
    }

    fn parse_create(&mut self) -> Result<VitrineStatement> {
        if self.eat_words(&["CREATE", "CATALOG"]) {
            let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
            let name = self.p.parse_identifier()?.value.to_lowercase();
            return Ok(VitrineStatement::CreateCatalog {
                name,
                if_not_exists,
            });
        }
        if self.eat_words(&["CREATE", "SCHEMA"]) || self.eat_words(&["CREATE", "DATABASE"]) {
            let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
            let (catalog, name) = self.schema_name()?;
            // COMMENT / LOCATION / WITH DBPROPERTIES carry nothing Vitrine stores for schemas.
            while self.p.peek_token().token != Token::EOF
                && self.p.peek_token().token != Token::SemiColon
            {
                self.p.next_token();
            }
            return Ok(VitrineStatement::CreateSchema {
                catalog,
                name,
                if_not_exists,
            });
        }
        if self.peek_word(1).as_deref() == Some("EXTERNAL") {
            return Ok(VitrineStatement::DataFusion(self.whole_statement()));
        }
        let vector_at = if self.peek_word(1).as_deref() == Some("OR") {
            3
        } else {
            1
        };
        if self.peek_word(vector_at).as_deref() == Some("VECTOR") {
            return self.parse_create_vector_index();
        }
        if self.peek_word(vector_at).as_deref() == Some("MODEL") {
            return self.parse_create_model();
        }
        if self.peek_word(1).as_deref() == Some("INDEX") {
            return self.parse_create_scalar_index();
        }
        let is_table = (self.peek_word(1).as_deref() == Some("TABLE"))
            || (self.peek_word(1).as_deref() == Some("OR")
                && self.peek_word(2).as_deref() == Some("REPLACE")
                && self.peek_word(3).as_deref() == Some("TABLE"));
        if !is_table {
            return self.parse_sqlparser_statement();
        }
        self.expect_words(&["CREATE"])?;
        let or_replace = self.eat_words(&["OR", "REPLACE"]);
        self.expect_words(&["TABLE"])?;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        if or_replace && if_not_exists {
            return Err(VitrineError::Parse(
                "OR REPLACE and IF NOT EXISTS cannot be used together".into(),
            ));
        }
        let name = self.table_name()?;
        let mut create = CreateTable {
            name,
            or_replace,
            if_not_exists,
            columns: None,
            format: None,
            options: BTreeMap::new(),
            location: None,
            comment: None,
            properties: BTreeMap::new(),
            query: None,
        };
        if self.p.peek_token().token == Token::LParen {
            create.columns = Some(self.parse_column_definitions()?);
        }
        loop {
            if self.eat_words(&["USING"]) {
                let format = self.p.parse_identifier()?.value;
                create.format = Some(TableFormat::parse(&format)?);
            } else if self.eat_words(&["OPTIONS"]) {
                create.options = self.parse_properties()?;
            } else if self.eat_words(&["LOCATION"]) {
                create.location = Some(self.string_literal()?);
            } else if self.eat_words(&["COMMENT"]) {
                create.comment = Some(self.string_literal()?);
            } else if self.eat_words(&["TBLPROPERTIES"]) {
                create.properties = self.parse_properties()?;
            } else if self.eat_words(&["PARTITIONED", "BY"]) || self.eat_words(&["CLUSTER", "BY"]) {
                // Layout hints: Lance and single-node Delta writes do not partition; accept and ignore.
                self.p.expect_token(&Token::LParen)?;
                let mut depth = 1;
                while depth > 0 {
                    match self.p.next_token().token {
                        Token::LParen => depth += 1,
                        Token::RParen => depth -= 1,
                        Token::EOF => return Err(self.unexpected("')'")),
                        _ => {}
                    }
                }
            } else if self.eat_words(&["AS"])
                || matches!(self.peek_word(0).as_deref(), Some("SELECT" | "WITH"))
            {
                create.query = Some(self.p.parse_query()?);
                break;
            } else {
                break;
            }
        }
        Ok(VitrineStatement::CreateTable(Box::new(create)))
    }

    /// `(name type [NOT NULL] [COMMENT '…'], …)`, types in Spark's language.
    fn parse_column_definitions(&mut self) -> Result<Vec<Field>> {
        self.p.expect_token(&Token::LParen)?;
        let mut fields = Vec::new();
        loop {
            let name = self.p.parse_identifier()?.value.to_lowercase();
            let mut type_text = String::new();
            let mut depth = 0i32;
            let mut nullable = true;
            loop {
                let tok = self.p.peek_token().token;
                match &tok {
                    Token::EOF => return Err(self.unexpected("')'")),
                    Token::Comma | Token::RParen if depth == 0 => break,
                    Token::Word(w)
                        if depth == 0
                            && w.quote_style.is_none()
                            && w.value.eq_ignore_ascii_case("NOT") =>
                    {
                        self.p.next_token();
                        self.expect_words(&["NULL"])?;
                        nullable = false;
                        continue;
                    }
                    Token::Word(w)
                        if depth == 0
                            && w.quote_style.is_none()
                            && w.value.eq_ignore_ascii_case("COMMENT") =>
                    {
                        self.p.next_token();
                        self.string_literal()?;
                        continue;
                    }
                    Token::Lt | Token::LParen => depth += 1,
                    Token::Gt | Token::RParen => depth -= 1,
                    Token::ShiftRight => depth -= 2,
                    _ => {}
                }
                type_text.push_str(&tok.to_string());
                type_text.push(' ');
                self.p.next_token();
            }
            let data_type = parse_spark_type(&type_text)
                .map_err(|e| VitrineError::Parse(format!("column '{name}': {e}")))?;
            fields.push(Field::new(name, data_type, nullable));
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.p.expect_token(&Token::RParen)?;
        Ok(fields)
    }

    /// `(key = value, …)` where a key is a dotted name or a string, and `=` is optional.
    fn parse_create_vector_index(&mut self) -> Result<VitrineStatement> {
        self.expect_words(&["CREATE"])?;
        let or_replace = self.eat_words(&["OR", "REPLACE"]);
        self.expect_words(&["VECTOR", "INDEX"])?;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = self.table_name()?;
        self.expect_words(&["ON"])?;
        let source = self.table_name()?;
        self.p.expect_token(&Token::LParen)?;
        let column = self.p.parse_identifier()?.value;
        self.p.expect_token(&Token::RParen)?;
        let index_type = if self.eat_words(&["USING"]) {
            Some(self.p.parse_identifier()?.value.to_ascii_uppercase())
        } else {
            None
        };
        let options = if self.eat_words(&["WITH"]) {
            self.parse_index_options()?
        } else {
            BTreeMap::new()
        };
        Ok(VitrineStatement::CreateVectorIndex(Box::new(
            CreateVectorIndex {
                name,
                or_replace,
                if_not_exists,
                source,
                column,
                index_type,
                options,
            },
        )))
    }

    fn parse_create_scalar_index(&mut self) -> Result<VitrineStatement> {
        self.expect_words(&["CREATE", "INDEX"])?;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = self.table_name()?;
        let name = self.scalar_index_name(name)?;
        self.expect_words(&["ON"])?;
        self.eat_words(&["TABLE"]);
        let table = self.table_name()?;
        self.p.expect_token(&Token::LParen)?;
        let column = self.p.parse_identifier()?.value;
        if self.p.consume_token(&Token::Comma) {
            return Err(VitrineError::Parse(format!(
                "index '{name}': a scalar index covers one column"
            )));
        }
        self.p.expect_token(&Token::RParen)?;
        let kind = if self.eat_words(&["USING"]) {
            self.p.parse_identifier()?.value.parse()?
        } else {
            ScalarIndexKind::BTree
        };
        Ok(VitrineStatement::CreateScalarIndex(Box::new(
            CreateScalarIndex {
                name,
                if_not_exists,
                table,
                column,
                kind,
            },
        )))
    }

    /// A scalar index's name: one part, since it lives inside its table.
    fn scalar_index_name(&self, name: TableName) -> Result<String> {
        if name.catalog.is_some() || name.schema.is_some() {
            return Err(VitrineError::Parse(format!(
                "'{name}': a scalar index is named within its table (CREATE INDEX name ON \
                 schema.table …); a vector index is CREATE VECTOR INDEX"
            )));
        }
        Ok(name.table)
    }

    fn parse_create_model(&mut self) -> Result<VitrineStatement> {
        self.expect_words(&["CREATE"])?;
        let or_replace = self.eat_words(&["OR", "REPLACE"]);
        self.expect_words(&["MODEL"])?;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        if or_replace && if_not_exists {
            return Err(VitrineError::Parse(
                "OR REPLACE and IF NOT EXISTS cannot be used together".into(),
            ));
        }
        let name = self.table_name()?;
        self.expect_words(&["OPTIONS"])?;
        let options = self
            .parse_properties()?
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        self.expect_words(&["AS"])?;
        let query = self.p.parse_query()?;
        Ok(VitrineStatement::CreateModel(Box::new(CreateModel {
            name,
            or_replace,
            if_not_exists,
            options,
            query,
        })))
    }

    /// `(key = value, …)` where a value is a literal, a word or a list `(a, 'b', …)`.
    fn parse_index_options(&mut self) -> Result<BTreeMap<String, String>> {
        self.p.expect_token(&Token::LParen)?;
        let mut options = BTreeMap::new();
        loop {
            let key = self.property_key()?.to_ascii_lowercase();
            let _ = self.p.consume_token(&Token::Eq) || self.p.consume_token(&Token::RArrow);
            let value = if self.p.consume_token(&Token::LParen) {
                let mut items = Vec::new();
                loop {
                    items.push(self.option_value(&key)?);
                    if !self.p.consume_token(&Token::Comma) {
                        break;
                    }
                }
                self.p.expect_token(&Token::RParen)?;
                items.join(",")
            } else {
                self.option_value(&key)?
            };
            options.insert(key, value);
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.p.expect_token(&Token::RParen)?;
        Ok(options)
    }

    fn option_value(&mut self, key: &str) -> Result<String> {
        match self.p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
            Token::Number(n, _) => Ok(n),
            Token::Word(w) => Ok(w.value),
            other => Err(VitrineError::Parse(format!(
                "expected a value for '{key}', found '{other}'"
            ))),
        }
    }

    fn parse_properties(&mut self) -> Result<BTreeMap<String, String>> {
        self.p.expect_token(&Token::LParen)?;
        let mut props = BTreeMap::new();
        if self.p.consume_token(&Token::RParen) {
            return Ok(props);
        }
        loop {
            let key = self.property_key()?;
            let _ = self.p.consume_token(&Token::Eq);
            let value = match self.p.next_token().token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                Token::Number(n, _) => n,
                Token::Word(w) => w.value.to_lowercase(),
                other => {
                    return Err(VitrineError::Parse(format!(
                        "expected a value for property '{key}', found '{other}'"
                    )))
                }
            };
            props.insert(key, value);
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.p.expect_token(&Token::RParen)?;
        Ok(props)
    }

    fn property_key(&mut self) -> Result<String> {
        match self.p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
            Token::Word(w) => {
                let mut key = w.value;
                while self.p.consume_token(&Token::Period) {
                    match self.p.next_token().token {
                        Token::Word(w) => {
                            key.push('.');
                            key.push_str(&w.value);
                        }
                        other => {
                            return Err(VitrineError::Parse(format!(
                                "expected a property name after '{key}.', found '{other}'"
                            )))
                        }
                    }
                }
                Ok(key)
            }
            other => Err(VitrineError::Parse(format!(
                "expected a property name, found '{other}'"
            ))),
        }
    }

    fn parse_show(&mut self) -> Result<VitrineStatement> {
        self.p.next_token();
        if self.eat_words(&["CATALOGS"]) {
            return Ok(VitrineStatement::ShowCatalogs);
        }
        if self.eat_words(&["SCHEMAS"]) || self.eat_words(&["DATABASES"]) {
            let catalog = if self.eat_words(&["IN"]) || self.eat_words(&["FROM"]) {
                Some(self.p.parse_identifier()?.value.to_lowercase())
            } else {
                None
            };
            return Ok(VitrineStatement::ShowSchemas { catalog });
        }
        if self.eat_words(&["TABLES"]) {
            let schema = if self.eat_words(&["IN"]) || self.eat_words(&["FROM"]) {
                Some(self.name_parts()?)
            } else {
                None
            };
            return Ok(VitrineStatement::ShowTables { schema });
        }
        if (self.peek_word(0).as_deref() == Some("INDEXES"))
            && matches!(self.peek_word(1).as_deref(), Some("ON" | "FOR"))
        {
            self.p.next_token();
            self.p.next_token();
            return Ok(VitrineStatement::ShowTableIndexes {
                table: self.table_name()?,
            });
        }
        if self.eat_words(&["INDEXES"])
            || self.eat_words(&["VECTOR", "INDEXES"])
            || self.eat_words(&["INDEX"])
        {
            let schema = if self.eat_words(&["IN"]) || self.eat_words(&["FROM"]) {
                Some(self.name_parts()?)
            } else {
                None
            };
            return Ok(VitrineStatement::ShowIndexes { schema });
        }
        if self.eat_words(&["MODELS"]) {
            let schema = if self.eat_words(&["IN"]) || self.eat_words(&["FROM"]) {
                Some(self.name_parts()?)
            } else {
                None
            };
            return Ok(VitrineStatement::ShowModels { schema });
        }
        if self.eat_words(&["TBLPROPERTIES"]) {
            return Ok(VitrineStatement::ShowTblProperties {
                table: self.table_name()?,
            });
        }
        self.p.prev_token();
        self.parse_sqlparser_statement()
    }

    fn parse_describe(&mut self) -> Result<VitrineStatement> {
        self.p.next_token();
        if self.eat_words(&["HISTORY"]) {
            return Ok(VitrineStatement::DescribeHistory {
                table: self.table_name()?,
            });
        }
        if self.eat_words(&["INDEX"]) || self.eat_words(&["VECTOR", "INDEX"]) {
            return Ok(VitrineStatement::DescribeIndex {
                name: self.table_name()?,
            });
        }
        if self.eat_words(&["MODEL"]) {
            return Ok(VitrineStatement::DescribeModel {
                name: self.table_name()?,
            });
        }
        self.eat_words(&["TABLE"]);
        let extended = self.eat_words(&["EXTENDED"]) || self.eat_words(&["FORMATTED"]);
        Ok(VitrineStatement::Describe {
            table: self.table_name()?,
            extended,
        })
    }

    fn parse_alter(&mut self) -> Result<VitrineStatement> {
        if self.peek_word(1).as_deref() != Some("TABLE") {
            return self.parse_sqlparser_statement();
        }
        self.expect_words(&["ALTER", "TABLE"])?;
        let table = self.table_name()?;
        if self.eat_words(&["SET", "TBLPROPERTIES"]) {
            let properties = self.parse_properties()?;
            return Ok(VitrineStatement::SetTblProperties { table, properties });
        }
        if self.eat_words(&["UNSET", "TBLPROPERTIES"]) {
            self.eat_words(&["IF", "EXISTS"]);
            self.p.expect_token(&Token::LParen)?;
            let mut keys = Vec::new();
            loop {
                keys.push(self.property_key()?);
                if !self.p.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.p.expect_token(&Token::RParen)?;
            return Ok(VitrineStatement::UnsetTblProperties { table, keys });
        }
        Err(self.unexpected(
            "SET TBLPROPERTIES or UNSET TBLPROPERTIES (other ALTER TABLE forms are not supported)",
        ))
    }

    /// `SET TIME ZONE LOCAL | 'zone'`: Spark's form of `SET spark.sql.session.timeZone = zone`.
    fn parse_set_time_zone(&mut self) -> Result<VitrineStatement> {
        self.expect_words(&["SET", "TIME", "ZONE"])?;
        let zone = match self.p.next_token().token {
            Token::SingleQuotedString(zone) | Token::DoubleQuotedString(zone) => zone,
            Token::Word(w) if w.value.eq_ignore_ascii_case("LOCAL") => {
                iana_time_zone::get_timezone().unwrap_or_else(|_| "UTC".to_string())
            }
            other => {
                return Err(VitrineError::Parse(format!(
                    "SET TIME ZONE takes LOCAL or a quoted zone such as 'UTC', got '{other}'"
                )))
            }
        };
        Ok(VitrineStatement::Set {
            key: Some(TIME_ZONE_KEY.to_string()),
            value: Some(zone),
        })
    }

    fn parse_set(&mut self) -> Result<VitrineStatement> {
        self.p.next_token();
        if self.p.peek_token().token == Token::EOF {
            return Ok(VitrineStatement::Set {
                key: None,
                value: None,
            });
        }
        let key = self.property_key()?;
        if !self.p.consume_token(&Token::Eq) && !self.eat_words(&["TO"]) {
            return Ok(VitrineStatement::Set {
                key: Some(key),
                value: None,
            });
        }
        let mut value = String::new();
        while !matches!(self.p.peek_token().token, Token::EOF | Token::SemiColon) {
            match self.p.next_token().token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => value.push_str(&s),
                other => value.push_str(&other.to_string()),
            }
        }
        Ok(VitrineStatement::Set {
            key: Some(key),
            value: Some(value.trim().to_string()),
        })
    }

    fn parse_sqlparser_statement(&mut self) -> Result<VitrineStatement> {
        let statement = self.p.parse_statement()?;
        Ok(match statement {
            Statement::Insert(insert) => {
                let ast::TableObject::TableName(name) = &insert.table else {
                    return Err(VitrineError::Plan(
                        "INSERT INTO a table function is not supported".into(),
                    ));
                };
                let Some(query) = insert.source else {
                    return Err(VitrineError::Plan("INSERT needs a query or VALUES".into()));
                };
                VitrineStatement::Insert {
                    table: TableName::from_parts(&object_name_parts(name)?)?,
                    columns: insert
                        .columns
                        .iter()
                        .map(|c| c.value.to_lowercase())
                        .collect(),
                    overwrite: insert.overwrite,
                    query,
                }
            }
            Statement::Delete(delete) => {
                let tables = match &delete.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                let [table] = tables.as_slice() else {
                    return Err(VitrineError::Plan("DELETE takes exactly one table".into()));
                };
                let (table, alias) = single_table(&table.relation)?;
                VitrineStatement::Delete {
                    table,
                    alias,
                    predicate: delete.selection,
                }
            }
            Statement::Update(update) => {
                if update.from.is_some() || !update.table.joins.is_empty() {
                    return Err(VitrineError::Plan(
                        "UPDATE … FROM is not supported: use MERGE INTO".into(),
                    ));
                }
                let (table, alias) = single_table(&update.table.relation)?;
                let assignments = update
                    .assignments
                    .into_iter()
                    .map(|a| match a.target {
                        ast::AssignmentTarget::ColumnName(name) => {
                            let parts = object_name_parts(&name)?;
                            Ok((parts.last().cloned().unwrap_or_default(), a.value))
                        }
                        ast::AssignmentTarget::Tuple(_) => Err(VitrineError::Plan(
                            "UPDATE SET (a, b) = … is not supported".into(),
                        )),
                    })
                    .collect::<Result<_>>()?;
                VitrineStatement::Update {
                    table,
                    alias,
                    assignments,
                    predicate: update.selection,
                }
            }
            Statement::Merge(merge) => VitrineStatement::Merge(Box::new(merge)),
            Statement::CreateView(mut view) if view.temporary => {
                // A temporary view lives in the session (see `catalog::provider`).
                view.temporary = false;
                VitrineStatement::Query(Box::new(Statement::CreateView(view)))
            }
            Statement::CreateView(view) => VitrineStatement::CreateView {
                name: TableName::from_parts(&object_name_parts(&view.name)?)?,
                or_replace: view.or_replace,
                if_not_exists: view.if_not_exists,
                comment: view.comment.clone(),
                query: view.query,
            },
            other => VitrineStatement::Query(Box::new(other)),
        })
    }
}

/// The lower-cased parts of a dotted name.
pub fn object_name_parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident.value.to_lowercase()),
            ObjectNamePart::Function(f) => Err(VitrineError::Plan(format!(
                "'{}' is not a plain name",
                f.name
            ))),
        })
        .collect()
}

/// The table and alias of a plain table reference.
pub fn single_table(factor: &ast::TableFactor) -> Result<(TableName, Option<String>)> {
    match factor {
        ast::TableFactor::Table { name, alias, .. } => Ok((
            TableName::from_parts(&object_name_parts(name)?)?,
            alias.as_ref().map(|a| a.name.value.to_lowercase()),
        )),
        other => Err(VitrineError::Plan(format!(
            "expected a table name, found '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn parse(sql: &str) -> VitrineStatement {
        parse_statement(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn create_table_with_spark_types_and_delta_format() {
        let VitrineStatement::CreateTable(c) = parse(
            "CREATE TABLE IF NOT EXISTS main.fashion_demo.t (id INT NOT NULL, tags ARRAY<STRING>, \
             m MAP<STRING, INT>, s STRUCT<a: INT, b: ARRAY<ARRAY<DOUBLE>>> COMMENT 'nested') USING DELTA \
             TBLPROPERTIES (delta.enableChangeDataFeed = true, 'owner' = 'me')",
        ) else {
            panic!()
        };
        assert!(c.if_not_exists && !c.or_replace);
        assert_eq!(c.name.to_string(), "main.fashion_demo.t");
        assert_eq!(c.format, Some(TableFormat::Delta));
        let cols = c.columns.unwrap();
        assert_eq!(
            cols.iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
            ["id", "tags", "m", "s"]
        );
        assert!(!cols[0].is_nullable());
        assert!(matches!(cols[2].data_type(), DataType::Map(..)));
        assert_eq!(
            c.properties
                .get("delta.enableChangeDataFeed")
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(c.properties.get("owner").map(String::as_str), Some("me"));
    }

    #[test]
    fn create_or_replace_as_select_keeps_the_query() {
        let VitrineStatement::CreateTable(c) =
            parse("CREATE OR REPLACE TABLE a.b.c COMMENT 'x' AS SELECT 1 AS one")
        else {
            panic!()
        };
        assert!(c.or_replace);
        assert_eq!(c.comment.as_deref(), Some("x"));
        assert_eq!(c.query.unwrap().to_string(), "SELECT 1 AS one");
    }

    #[test]
    fn model_statements_bigquery_ml_form() {
        let VitrineStatement::CreateModel(c) = parse(
            "CREATE OR REPLACE MODEL main.s.clip_ft OPTIONS (model_type = 'clip', base = 'openai/clip', \
             EPOCHS = 2, learning_rate = 1e-5) AS SELECT image_path AS image, description AS text FROM main.s.t",
        ) else {
            panic!()
        };
        assert!(c.or_replace && !c.if_not_exists);
        assert_eq!(c.name.to_string(), "main.s.clip_ft");
        assert_eq!(c.options["model_type"], "clip");
        assert_eq!(c.options["epochs"], "2");
        assert_eq!(c.options["learning_rate"], "1e-5");
        assert!(c
            .query
            .to_string()
            .starts_with("SELECT image_path AS image"));
        assert!(
            matches!(parse("SHOW MODELS IN main.s"), VitrineStatement::ShowModels { schema: Some(s) } if s == ["main", "s"])
        );
        assert!(
            matches!(parse("DESCRIBE MODEL s.m"), VitrineStatement::DescribeModel { name } if name.to_string() == "s.m")
        );
        assert!(matches!(
            parse("DROP MODEL IF EXISTS m"),
            VitrineStatement::DropModel {
                if_exists: true,
                ..
            }
        ));
        let error = parse_statement("CREATE MODEL m AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("OPTIONS"), "{error}");
    }

    #[test]
    fn alter_optimize_comment_and_restore() {
        assert!(matches!(
            parse("ALTER TABLE t SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"),
            VitrineStatement::SetTblProperties { properties, .. } if properties["delta.enableChangeDataFeed"] == "true"
        ));
        assert!(matches!(
            parse("OPTIMIZE main.s.t ZORDER BY (article_type, master_category)"),
            VitrineStatement::Optimize { zorder_by, .. } if zorder_by == ["article_type", "master_category"]
        ));
        assert!(
            matches!(parse("COMMENT ON TABLE t IS 'hello'"), VitrineStatement::CommentOnTable { comment: Some(c), .. } if c == "hello")
        );
        assert!(matches!(
            parse("RESTORE TABLE t TO VERSION AS OF 3"),
            VitrineStatement::Restore { version: 3, .. }
        ));
        assert!(matches!(
            parse("DESCRIBE HISTORY t"),
            VitrineStatement::DescribeHistory { .. }
        ));
        assert!(matches!(
            parse("DESCRIBE TABLE EXTENDED t"),
            VitrineStatement::Describe { extended: true, .. }
        ));
    }

    #[test]
    fn merge_star_actions_parse() {
        let VitrineStatement::Merge(m) =
            parse("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
        else {
            panic!()
        };
        assert_eq!(m.clauses.len(), 2);
        assert!(m.to_string().contains("__all__ = __all__"), "{m}");
        assert!(
            m.to_string().contains("INSERT (__all__) VALUES (__all__)"),
            "{m}"
        );
    }

    #[test]
    fn set_takes_dotted_keys_and_quoted_values() {
        assert!(matches!(
            parse("SET vitrine.model.clip = 'openai/clip-vit-base-patch32'"),
            VitrineStatement::Set { key: Some(k), value: Some(v) } if k == "vitrine.model.clip" && v == "openai/clip-vit-base-patch32"
        ));
    }

    #[test]
    fn parse_errors_say_where() {
        let err = parse_statement("OPTIMIZE t ZORDER (a)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, column"), "{err}");
    }
}
