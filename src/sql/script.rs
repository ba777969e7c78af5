//! Splitting a SQL script into statements.
//!
//! DataFusion plans one statement at a time, so a script is cut at every `;` that is not inside a
//! string, a quoted identifier or a comment. Each piece remembers the line it starts on, so that
//! an error can be reported as `FILE:LINE: statement N: message`.

/// One statement of a script, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStatement {
    /// The statement's text, without the terminating `;` and surrounding blanks.
    pub sql: String,
    /// 1-based line of the statement's first character in the script.
    pub line: usize,
    /// 1-based position of the statement in the script.
    pub index: usize,
}

/// Splits `script` into statements. Comments are kept inside statements (the SQL parser skips
/// them); pieces holding only blanks and comments are dropped.
pub fn split_statements(script: &str) -> Vec<ScriptStatement> {
    let mut splitter = Splitter::default();
    for ch in script.chars() {
        splitter.push(ch);
    }
    splitter.finish()
}

/// Returns true when `text` holds a complete statement: it ends with a `;` outside any string or
/// comment. The REPL uses it to decide whether to ask for another line.
pub fn is_complete(text: &str) -> bool {
    let mut splitter = Splitter::default();
    for ch in text.chars() {
        splitter.push(ch);
    }
    splitter.current_is_blank() && !splitter.statements.is_empty() && splitter.mode == Mode::Code
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Code,
    Quoted(char),
    QuotedEscape(char),
    LineComment,
    BlockComment(usize),
}

#[derive(Default)]
struct Splitter {
    statements: Vec<ScriptStatement>,
    current: String,
    /// Whether `current` has anything but blanks and comments.
    has_code: bool,
    start_line: usize,
    line: usize,
    mode: Mode,
    prev: Option<char>,
}

impl Splitter {
    fn push(&mut self, ch: char) {
        if self.line == 0 {
            self.line = 1;
        }
        let prev = self.prev.replace(ch);
        match self.mode {
            Mode::Code => match ch {
                ';' => {
                    self.flush();
                    self.prev = None;
                    return;
                }
                '\'' | '"' | '`' => {
                    self.mark_code();
                    self.mode = Mode::Quoted(ch);
                }
                '-' if prev == Some('-') => self.mode = Mode::LineComment,
                '*' if prev == Some('/') => {
                    self.mode = Mode::BlockComment(1);
                    self.prev = None;
                }
                '-' | '/' => {}
                c if c.is_whitespace() => {}
                _ => self.mark_code(),
            },
            Mode::Quoted(q) => {
                if ch == '\\' && q == '\'' {
                    self.mode = Mode::QuotedEscape(q);
                } else if ch == q {
                    self.mode = Mode::Code;
                    self.prev = None;
                }
            }
            Mode::QuotedEscape(q) => self.mode = Mode::Quoted(q),
            Mode::LineComment => {
                if ch == '\n' {
                    self.mode = Mode::Code;
                }
            }
            Mode::BlockComment(depth) => {
                if ch == '/' && prev == Some('*') {
                    self.mode = if depth == 1 {
                        Mode::Code
                    } else {
                        Mode::BlockComment(depth - 1)
                    };
                    self.prev = None;
                } else if ch == '*' && prev == Some('/') {
                    self.mode = Mode::BlockComment(depth + 1);
                    self.prev = None;
                }
            }
        }
        self.current.push(ch);
        if ch == '\n' {
            self.line += 1;
        }
    }

    fn mark_code(&mut self) {
        if !self.has_code {
            self.has_code = true;
            self.start_line = self.line;
        }
    }

    fn current_is_blank(&self) -> bool {
        !self.has_code
    }

    fn flush(&mut self) {
        if self.has_code {
            let sql = strip_leading_comments(self.current.trim())
                .trim()
                .to_string();
            self.statements.push(ScriptStatement {
                sql,
                line: self.start_line,
                index: self.statements.len() + 1,
            });
        }
        self.current.clear();
        self.has_code = false;
    }

    fn finish(mut self) -> Vec<ScriptStatement> {
        self.flush();
        self.statements
    }
}

/// Drops the comments and blank lines that precede a statement, so that messages quote the
/// statement itself.
fn strip_leading_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if sql.starts_with("/*") {
            match sql.find("*/") {
                Some(end) => sql = &sql[end + 2..],
                None => return sql,
            }
        } else {
            return sql;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let script = "SELECT 'a;b';\n-- c; d\nSELECT 2 /* ; */;\n\n  SELECT `x;y` FROM t";
        let stmts = split_statements(script);
        let sqls: Vec<_> = stmts.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sqls,
            ["SELECT 'a;b'", "SELECT 2 /* ; */", "SELECT `x;y` FROM t"]
        );
        assert_eq!(stmts.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(stmts[2].index, 3);
    }

    #[test]
    fn comment_only_pieces_are_dropped() {
        let stmts = split_statements("-- header\n;\n/* nothing */ ;\nSELECT 1;");
        assert_eq!(stmts.len(), 1);
        assert_eq!(stmts[0].sql, "SELECT 1");
        assert_eq!(stmts[0].line, 4);
        assert_eq!(stmts[0].index, 1);
    }

    #[test]
    fn escaped_quote_does_not_end_a_string() {
        let stmts = split_statements("SELECT 'it\\'s; fine', 'a''b;c'; SELECT 3");
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[0].sql, "SELECT 'it\\'s; fine', 'a''b;c'");
    }

    #[test]
    fn minus_and_division_are_code() {
        let stmts = split_statements("\n\n-1;\n/2");
        assert_eq!(
            stmts
                .iter()
                .map(|s| (s.sql.as_str(), s.line))
                .collect::<Vec<_>>(),
            [("-1", 3), ("/2", 4)]
        );
    }

    #[test]
    fn completeness_follows_the_last_semicolon() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  -- done\n"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1; SELECT"));
    }
}
