//! Spark / Databricks SQL type names, turned into Arrow types.
//!
//! Databricks scripts declare columns as `STRING`, `ARRAY<INT>`, `MAP<STRING, DOUBLE>` or
//! `STRUCT<a: INT, b STRING>`; `from_json` takes a schema in the same language, either as one type
//! or as a DDL field list (`a INT, b ARRAY<STRING>`). DataFusion's parser rejects several of these
//! forms, so they are parsed here, from text.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

use crate::error::{Result, VitrineError};

/// Parses one Spark type, e.g. `ARRAY<STRUCT<name: STRING, score DOUBLE>>`.
pub fn parse_spark_type(text: &str) -> Result<DataType> {
    let mut parser = TypeParser::new(text);
    let ty = parser.parse_type()?;
    parser.expect_end()?;
    Ok(ty)
}

/// Parses a schema as `from_json` accepts it: either a struct type (`STRUCT<a: INT>`) or a DDL
/// field list (`a INT, b STRING`). Returns the struct's fields.
pub fn parse_spark_schema(text: &str) -> Result<Fields> {
    if let Ok(DataType::Struct(fields)) = parse_spark_type(text) {
        return Ok(fields);
    }
    let mut parser = TypeParser::new(text);
    let fields = parser.parse_fields(None)?;
    parser.expect_end()?;
    Ok(fields)
}

/// The Arrow type Vitrine stores for a Spark `TIMESTAMP` (microseconds, UTC, as Spark keeps it).
pub fn spark_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Spark name of an Arrow type, as `DESCRIBE` shows it (`array<string>`, `struct<a:int>`).
pub fn spark_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            format!("{data_type}").to_lowercase()
        }
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp".into(),
        DataType::Timestamp(_, None) => "timestamp_ntz".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "binary".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => {
            format!("array<{}>", spark_type_name(f.data_type()))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                spark_type_name(kv[0].data_type()),
                spark_type_name(kv[1].data_type())
            ),
            other => format!("map<{other}>"),
        },
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), spark_type_name(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(","))
        }
        DataType::Dictionary(_, value) => spark_type_name(value),
        other => other.to_string().to_lowercase(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Number(u32),
    Str(String),
    Sym(char),
}

struct TypeParser {
    text: String,
    toks: Vec<Tok>,
    pos: usize,
}

impl TypeParser {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            toks: tokenize(text),
            pos: 0,
        }
    }

    fn error(&self, what: &str) -> VitrineError {
        let found = match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => format!("'{w}'"),
            Some(Tok::Number(n)) => format!("'{n}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Sym(c)) => format!("'{c}'"),
            None => "end of text".to_string(),
        };
        VitrineError::Plan(format!(
            "invalid type '{}': expected {what}, found {found}",
            self.text
        ))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<()> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(self.error(&format!("'{c}'")))
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_end(&self) -> Result<()> {
        if self.pos < self.toks.len() {
            return Err(self.error("end of type"));
        }
        Ok(())
    }

    fn number(&mut self) -> Result<u32> {
        match self.next() {
            Some(Tok::Number(n)) => Ok(n),
            _ => {
                self.pos -= 1;
                Err(self.error("a number"))
            }
        }
    }

    fn parse_type(&mut self) -> Result<DataType> {
        let name = match self.next() {
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return Err(self.error("a type name"));
            }
        };
        let ty = match name.as_str() {
            "STRING" | "TEXT" => DataType::Utf8,
            "VARCHAR" | "CHAR" => {
                if self.eat_sym('(') {
                    self.number()?;
                    self.expect_sym(')')?;
                }
                DataType::Utf8
            }
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "TINYINT" | "BYTE" => DataType::Int8,
            "SMALLINT" | "SHORT" => DataType::Int16,
            "INT" | "INTEGER" => DataType::Int32,
            "BIGINT" | "LONG" => DataType::Int64,
            "FLOAT" | "REAL" => DataType::Float32,
            "DOUBLE" => DataType::Float64,
            "DATE" => DataType::Date32,
            "TIMESTAMP" | "TIMESTAMP_LTZ" => spark_timestamp(),
            "TIMESTAMP_NTZ" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "BINARY" => DataType::Binary,
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let (mut precision, mut scale) = (10, 0);
                if self.eat_sym('(') {
                    precision = self.number()?;
                    if self.eat_sym(',') {
                        scale = self.number()?;
                    }
                    self.expect_sym(')')?;
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "ARRAY" => {
                self.expect_sym('<')?;
                let item = self.parse_type()?;
                self.expect_sym('>')?;
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            "MAP" => {
                self.expect_sym('<')?;
                let key = self.parse_type()?;
                self.expect_sym(',')?;
                let value = self.parse_type()?;
                self.expect_sym('>')?;
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key, false),
                        Field::new("value", value, true),
                    ])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
            "STRUCT" => {
                self.expect_sym('<')?;
                let fields = if self.peek() == Some(&Tok::Sym('>')) {
                    Fields::empty()
                } else {
                    self.parse_fields(Some('>'))?
                };
                self.expect_sym('>')?;
                DataType::Struct(fields)
            }
            _ => {
                self.pos -= 1;
                return Err(
                    self.error("a Spark type (STRING, INT, ARRAY<…>, MAP<…>, STRUCT<…>, …)")
                );
            }
        };
        Ok(ty)
    }

    /// Parses `name [:] type [NOT NULL] [COMMENT 'text']`, separated by commas, up to `close`.
    fn parse_fields(&mut self, close: Option<char>) -> Result<Fields> {
        let mut fields = Vec::new();
        loop {
            let name = match self.next() {
                Some(Tok::Word(w)) => w,
                Some(Tok::Str(s)) => s,
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.error("a field name"));
                }
            };
            self.eat_sym(':');
            let ty = self.parse_type()?;
            let mut nullable = true;
            if self.eat_word("NOT") {
                if !self.eat_word("NULL") {
                    return Err(self.error("NULL"));
                }
                nullable = false;
            }
            if self.eat_word("COMMENT") && !matches!(self.next(), Some(Tok::Str(_))) {
                self.pos -= 1;
                return Err(self.error("a comment string"));
            }
            fields.push(Field::new(name, ty, nullable));
            if !self.eat_sym(',') {
                break;
            }
            if close.is_some() && self.peek() == close.map(Tok::Sym).as_ref() {
                break;
            }
        }
        Ok(Fields::from(fields))
    }
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_digit() {
            let mut n = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(d);
                chars.next();
            }
            toks.push(Tok::Number(n.parse().unwrap_or(u32::MAX)));
        } else if c.is_alphanumeric() || c == '_' {
            let mut w = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_alphanumeric() || **d == '_') {
                w.push(d);
                chars.next();
            }
            toks.push(Tok::Word(w));
        } else if c == '`' || c == '\'' || c == '"' {
            chars.next();
            let mut s = String::new();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                s.push(d);
            }
            toks.push(if c == '`' { Tok::Word(s) } else { Tok::Str(s) });
        } else {
            toks.push(Tok::Sym(c));
            chars.next();
        }
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(item: DataType) -> DataType {
        DataType::List(Arc::new(Field::new("item", item, true)))
    }

    #[test]
    fn simple_spark_types_map_to_arrow() {
        assert_eq!(parse_spark_type("STRING").unwrap(), DataType::Utf8);
        assert_eq!(parse_spark_type("int").unwrap(), DataType::Int32);
        assert_eq!(parse_spark_type("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(parse_spark_type("FLOAT").unwrap(), DataType::Float32);
        assert_eq!(parse_spark_type("TIMESTAMP").unwrap(), spark_timestamp());
        assert_eq!(
            parse_spark_type("DECIMAL(12, 2)").unwrap(),
            DataType::Decimal128(12, 2)
        );
        assert_eq!(parse_spark_type("VARCHAR(20)").unwrap(), DataType::Utf8);
    }

    #[test]
    fn nested_types_with_closing_angle_brackets_together() {
        assert_eq!(
            parse_spark_type("ARRAY<ARRAY<INT>>").unwrap(),
            list(list(DataType::Int32))
        );
        let ty = parse_spark_type("MAP<STRING, ARRAY<FLOAT>>").unwrap();
        let DataType::Map(entries, false) = ty else {
            panic!("not a map: {ty}")
        };
        let DataType::Struct(kv) = entries.data_type() else {
            panic!()
        };
        assert_eq!(kv[0].data_type(), &DataType::Utf8);
        assert_eq!(kv[1].data_type(), &list(DataType::Float32));
    }

    #[test]
    fn struct_fields_accept_colon_or_space_and_not_null() {
        let ty = parse_spark_type("STRUCT<a: INT, `b c` STRING NOT NULL COMMENT 'x'>").unwrap();
        let DataType::Struct(fields) = ty else {
            panic!()
        };
        assert_eq!(fields[0].name(), "a");
        assert_eq!(fields[1].name(), "b c");
        assert!(!fields[1].is_nullable());
    }

    #[test]
    fn ddl_field_lists_are_schemas() {
        let fields = parse_spark_schema("material STRING, details ARRAY<STRING>").unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].data_type(), &list(DataType::Utf8));
        assert_eq!(
            parse_spark_schema("STRUCT<x: DOUBLE>").unwrap()[0].data_type(),
            &DataType::Float64
        );
    }

    #[test]
    fn spark_names_round_trip() {
        for text in [
            "array<string>",
            "map<string,array<float>>",
            "struct<a:int,b:timestamp>",
            "decimal(12,2)",
            "bigint",
        ] {
            assert_eq!(spark_type_name(&parse_spark_type(text).unwrap()), text);
        }
    }

    #[test]
    fn unknown_types_are_named_in_the_error() {
        let err = parse_spark_type("ARRAY<INTEGRAL>").unwrap_err().to_string();
        assert!(err.contains("'INTEGRAL'"), "{err}");
        assert!(parse_spark_type("ARRAY<INT").is_err());
    }
}
