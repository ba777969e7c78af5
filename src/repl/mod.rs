//! `vitrine repl`: an interactive shell with line editing, history, multi-line statements, tab
//! completion of table names and Ctrl-C to cancel the running statement.
//!
//! Meta-commands: `\i FILE` runs a script, `\timing` toggles timings, `\d` lists tables, `\d NAME`
//! describes one, `\q` quits.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use clap::ValueEnum;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::runtime::Runtime;
use vitrine::sql::script::is_complete;
use vitrine::{EngineSession, Session, StatementResult};

use crate::console::{print_result, statement_spinner, OutputFormat, ResultOrigin};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "CREATE",
    "OR REPLACE",
    "TABLE",
    "INSERT INTO",
    "MERGE INTO",
    "UPDATE",
    "DELETE FROM",
    "DESCRIBE",
    "SHOW TABLES",
    "SHOW SCHEMAS",
    "OPTIMIZE",
    "ZORDER BY",
    "VERSION AS OF",
    "USE",
];

/// Completes table names and keywords.
struct VitrineHelper {
    tables: Arc<Mutex<Vec<String>>>,
}

impl Completer for VitrineHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos].to_lowercase();
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let tables = self.tables.lock().expect("completion lock");
        let mut candidates: Vec<Pair> = tables
            .iter()
            .flat_map(|full| {
                // Offer both the qualified name and the bare table name.
                let short = full.rsplit('.').next().unwrap_or(full).to_string();
                [full.clone(), short]
            })
            .filter(|name| name.starts_with(word.as_str()))
            .map(|name| Pair {
                display: name.clone(),
                replacement: name,
            })
            .collect();
        candidates.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_lowercase().starts_with(word.as_str()))
                .map(|k| Pair {
                    display: k.to_string(),
                    replacement: k.to_string(),
                }),
        );
        candidates.sort_by(|a, b| a.display.cmp(&b.display));
        candidates.dedup_by(|a, b| a.display == b.display);
        Ok((start, candidates))
    }
}

impl Hinter for VitrineHelper {
    type Hint = String;
}

impl Highlighter for VitrineHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for VitrineHelper {}

impl Helper for VitrineHelper {}

/// How the shell shows results: the output format and whether statements are timed.
#[derive(Debug, Clone, Copy)]
struct Shown {
    format: OutputFormat,
    timing: bool,
}

/// Runs the shell until `\q` or end of input, printing result sets in `format` (`\format`
/// changes it).
pub fn run(runtime: &Runtime, session: &EngineSession, format: OutputFormat) -> Result<()> {
    let tables = Arc::new(Mutex::new(
        runtime.block_on(session.table_names()).unwrap_or_default(),
    ));
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<VitrineHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(VitrineHelper {
        tables: Arc::clone(&tables),
    }));
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".vitrine_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "vitrine {} on warehouse '{}'. End statements with ';'. \\q quits, \\d lists tables.",
        env!("CARGO_PKG_VERSION"),
        session.warehouse().display()
    );
    let mut shown = Shown {
        format,
        timing: false,
    };
    let mut buffer = String::new();
    loop {
        let (catalog, schema) = session.current_schema();
        let prompt = if buffer.is_empty() {
            format!("{catalog}.{schema}> ")
        } else {
            "      ...> ".to_string()
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut parts = trimmed.splitn(2, char::is_whitespace);
            let command = parts.next().unwrap_or_default();
            let argument = parts.next().map(str::trim).unwrap_or_default();
            match command {
                "\\q" | "\\quit" => break,
                "\\timing" => {
                    shown.timing = !shown.timing;
                    eprintln!("timing is {}", if shown.timing { "on" } else { "off" });
                }
                "\\format" => match OutputFormat::from_str(argument, true) {
                    Ok(format) => shown.format = format,
                    Err(_) => eprintln!("formats: table, csv, json, jsonl"),
                },
                "\\d" if argument.is_empty() => {
                    for name in tables.lock().expect("completion lock").iter() {
                        println!("{name}");
                    }
                }
                "\\d" => run_statement(
                    runtime,
                    session,
                    &format!("DESCRIBE TABLE {argument}"),
                    shown,
                ),
                "\\i" => match std::fs::read_to_string(argument) {
                    Ok(script) => run_script(runtime, session, &script, argument, shown),
                    Err(e) => eprintln!("cannot read '{argument}': {e}"),
                },
                other => {
                    eprintln!(
                        "unknown command '{other}': \\i FILE, \\timing, \\format FORMAT, \\d [TABLE], \\q"
                    )
                }
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !is_complete(&buffer) {
            continue;
        }
        let script = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(script.trim());
        run_script(runtime, session, &script, "repl", shown);
        if let Ok(names) = runtime.block_on(session.table_names()) {
            *tables.lock().expect("completion lock") = names;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

fn run_statement(runtime: &Runtime, session: &EngineSession, sql: &str, shown: Shown) {
    run_script(runtime, session, sql, "repl", shown)
}

/// Runs a script; Ctrl-C cancels the statement running (its table stays as it was) and the rest.
fn run_script(runtime: &Runtime, session: &EngineSession, script: &str, name: &str, shown: Shown) {
    runtime.block_on(async {
        let spinner = statement_spinner(session);
        let started = Instant::now();
        let mut statement_started = started;
        let work = session.execute_script(script, name, |statement, outcome| {
            spinner.suspend(|| {
                let origin = ResultOrigin {
                    file: name,
                    line: statement.line,
                    statement: statement.index,
                };
                print(
                    outcome.as_ref().map_err(|e| e.to_string()),
                    shown.format,
                    origin,
                );
                if shown.timing {
                    eprintln!("Time: {:.3?}", statement_started.elapsed());
                }
            });
            statement_started = Instant::now();
            if outcome.is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        tokio::select! {
            _ = work => {}
            _ = tokio::signal::ctrl_c() => {
                spinner.suspend(|| eprintln!("cancelled after {:.1?}", started.elapsed()));
            }
        }
        spinner.finish_and_clear();
    });
}

fn print(outcome: Result<&StatementResult, String>, format: OutputFormat, origin: ResultOrigin) {
    match outcome {
        Ok(result) => {
            if let Err(e) = print_result(result, format, origin) {
                eprintln!("error printing the result: {e}");
            }
        }
        Err(e) => eprintln!("{e}"),
    }
}
