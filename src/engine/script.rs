//! Running whole scripts, statement by statement, with errors located as `FILE:LINE: statement N`.

use std::ops::ControlFlow;
use std::path::Path;

use super::EngineSession;
use crate::error::VitrineError;
use crate::session::StatementResult;
use crate::sql::script::{split_statements, ScriptStatement};

/// A statement of a script that failed, and where it is.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: statement {index}: {error}")]
pub struct ScriptError {
    /// The script's name (its path, or `-e` for a command-line statement).
    pub file: String,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// 1-based position of the statement in the script.
    pub index: usize,
    /// What went wrong.
    #[source]
    pub error: VitrineError,
}

impl EngineSession {
    /// Runs `script` statement by statement, handing each outcome to `each`, which says whether
    /// to go on. Returns the number of statements run.
    pub async fn execute_script<F>(&self, script: &str, file: &str, mut each: F) -> usize
    where
        F: FnMut(&ScriptStatement, Result<StatementResult, ScriptError>) -> ControlFlow<()>,
    {
        let mut count = 0;
        for statement in split_statements(script) {
            count += 1;
            let outcome = self
                .execute_in_script(&statement.sql, file, statement.line)
                .await
                .map_err(|error| ScriptError {
                    file: file.to_string(),
                    line: statement.line,
                    index: statement.index,
                    error,
                });
            if each(&statement, outcome).is_break() {
                break;
            }
        }
        count
    }

    /// Runs a script file, stopping at the first error; returns every statement's result.
    pub async fn run_file(&self, path: &Path) -> Result<Vec<StatementResult>, ScriptError> {
        let file = path.display().to_string();
        let script = std::fs::read_to_string(path).map_err(|e| ScriptError {
            file: file.clone(),
            line: 0,
            index: 0,
            error: VitrineError::Io(e),
        })?;
        self.run_script(&script, &file).await
    }

    /// Runs a script given as text, stopping at the first error.
    pub async fn run_script(
        &self,
        script: &str,
        file: &str,
    ) -> Result<Vec<StatementResult>, ScriptError> {
        let mut results = Vec::new();
        let mut failure = None;
        self.execute_script(script, file, |_, outcome| match outcome {
            Ok(result) => {
                results.push(result);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        })
        .await;
        match failure {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}
