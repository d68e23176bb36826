//! The script language as a job file may use it: a syntax check that `jobpool check`
//! runs on every `script` task (inline or `file`).
//!
//! Owns: [`check_syntax`] and [`offset_of`] (Rhai's line and column as a byte offset in
//! the script). The symbols a script may not use are the model's
//! ([`ScriptTask::DISABLED_SYMBOLS`]), applied here and by the worker's engine in
//! `task::script`, so that what `check` accepts is what a worker compiles.
//! Must not: evaluate anything. Compiling an AST is pure: no threads, no processes, no
//! files. `task` (which owns the sandbox and depends on the pool) is not used from here,
//! nor does it use this module: both take the rule from `model`.

use rhai::Engine;

use crate::model::ScriptTask;

/// A script that does not parse: Rhai's message and where (1-based, columns in
/// characters, as Rhai counts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Rhai's message, without the position.
    pub message: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
}

/// Compile `source` without running it. A raw engine parses as the worker's does: the
/// functions a script calls are looked up only when it runs.
pub fn check_syntax(source: &str) -> Result<(), SyntaxError> {
    let mut engine = Engine::new_raw();
    for symbol in ScriptTask::DISABLED_SYMBOLS {
        engine.disable_symbol(*symbol);
    }
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    match engine.compile(source) {
        Ok(_) => Ok(()),
        Err(e) => {
            Err(SyntaxError { message: e.0.to_string(), line: e.1.line(), column: e.1.position() })
        }
    }
}

/// The byte range in `source` of the character at Rhai's `line` and `column` (1-based,
/// characters). A place past the end of its line (Rhai reports "incomplete" one column
/// after the last character) is the empty range at the end of the line's text; a line
/// past the end is the empty range at the end of `source`. A place at the end of the
/// script (nothing but whitespace after it, as for "Script is incomplete") is its last
/// character instead: a label there has a line to be drawn on. A line ends at `\n`,
/// and a `\r` before it is not part of the line's text.
pub fn offset_of(source: &str, line: usize, column: usize) -> std::ops::Range<usize> {
    let at = place(source, line, column);
    if at.is_empty() && source[at.start..].trim().is_empty() {
        let text = source.trim_end();
        if let Some((i, c)) = text.char_indices().next_back() {
            return i..i + c.len_utf8();
        }
    }
    at
}

fn place(source: &str, line: usize, column: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for _ in 1..line.max(1) {
        match source[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return source.len()..source.len(),
        }
    }
    let text = source[start..].split('\n').next().unwrap_or("");
    let text = text.strip_suffix('\r').unwrap_or(text);
    match text.char_indices().nth(column.saturating_sub(1)) {
        Some((i, c)) => start + i..start + i + c.len_utf8(),
        None => start + text.len()..start + text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &str) -> (String, &str) {
        let e = check_syntax(source).unwrap_err();
        let span = offset_of(source, e.line.unwrap(), e.column.unwrap());
        (e.message, &source[span])
    }

    #[test]
    fn positions_map_to_the_offending_character() {
        assert!(check_syntax("let v = random(); sleep(v); x + v").is_ok());
        assert_eq!(at("let x = 1;\nlet y = ;").1, ";");
        assert_eq!(at("\tx +* 2").1, "*");
        assert_eq!(at("let s = \"é\";\r\nlet t = é;").1, "é");
        // At the end: the last character.
        let source = "1 +";
        let e = check_syntax(source).unwrap_err();
        assert_eq!(offset_of(source, 1, e.column.unwrap()), 2..3);
        assert_eq!(offset_of("a\r\nb", 1, 5), 1..1);
        assert_eq!(offset_of("a", 4, 1), 0..1);
        assert_eq!(offset_of("a {\n é\n\n", 4, 1), 5..7);
        assert_eq!(offset_of("", 1, 1), 0..0);
    }

    #[test]
    fn eval_is_refused_at_parse_time() {
        let (message, text) = at("1 + eval(\"2\")");
        assert!(message.contains("eval"), "{message}");
        assert_eq!(text, "e");
    }
}
