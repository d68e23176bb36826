//! `{placeholder}` templates: parsing and brace rules.

use crate::model::{Template, TemplatePart};

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// Which bytes of the text are wrong.
    pub span: std::ops::Range<usize>,
}

/// Every placeholder of a template that parses, with the byte range of its `{name}`.
pub fn placeholder_spans(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => match text[i + 1..].find(['{', '}']) {
                Some(n) if bytes[i + 1 + n] == b'}' => {
                    out.push((text[i + 1..i + 1 + n].to_string(), i..i + n + 2));
                    i += n + 2;
                }
                _ => break,
            },
            _ => i += 1,
        }
    }
    out
}

/// Parse `text`: `{name}` is a placeholder, `{{` and `}}` are literal braces. A lone
/// brace, an empty `{}` and a placeholder with spaces (`{ x }`) are errors, because they
/// are almost always a literal brace that was meant (`awk '{ print $1 }'`).
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = text.char_indices().peekable();
    let brace_help = "to write a literal brace, double it: `{{` or `}}`";
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '}' => {
                return Err(TemplateError {
                    message: "unmatched `}`".into(),
                    help: brace_help.into(),
                    span: at..at + 1,
                });
            }
            '{' => {
                let mut name = String::new();
                let mut closed = None;
                while let Some(&(end, d)) = chars.peek() {
                    if d == '{' {
                        break;
                    }
                    chars.next();
                    if d == '}' {
                        closed = Some(end + 1);
                        break;
                    }
                    name.push(d);
                }
                let Some(end) = closed else {
                    return Err(TemplateError {
                        message: "unmatched `{`".into(),
                        help: brace_help.into(),
                        span: at..at + 1,
                    });
                };
                let span = at..end;
                if name.is_empty() {
                    return Err(TemplateError {
                        message: "empty placeholder `{}`".into(),
                        help: format!("name an argument, e.g. `{{x}}`; {brace_help}"),
                        span,
                    });
                }
                if name.chars().any(char::is_whitespace) {
                    let trimmed = name.trim();
                    let help = if !trimmed.is_empty() && !trimmed.contains(char::is_whitespace) {
                        format!("write `{{{trimmed}}}` without spaces; {brace_help}")
                    } else {
                        format!("to write literal braces, double them: `{{{{{name}}}}}`")
                    };
                    return Err(TemplateError {
                        message: format!("placeholder `{{{name}}}` contains spaces"),
                        help,
                        span,
                    });
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Placeholder(name));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || parts.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(Template { source: text.to_string(), parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &str) -> Vec<String> {
        parse(t).unwrap().placeholders().map(String::from).collect()
    }

    #[test]
    fn placeholders_and_escapes() {
        assert_eq!(names("a {x} b {0} {{c}}"), ["x", "0"]);
        let t = parse("{{x}}").unwrap();
        assert_eq!(t.render(|_| None), "{x}");
        assert_eq!(parse("").unwrap().render(|_| None), "");
    }

    #[test]
    fn spans() {
        assert_eq!(
            placeholder_spans("a {x} {{y}} {0}"),
            [("x".into(), 2..5), ("0".into(), 12..15)]
        );
        assert_eq!(parse("ab {").unwrap_err().span, 3..4);
        assert_eq!(parse("ab {x{y}").unwrap_err().span, 3..4);
        assert_eq!(parse("a } b").unwrap_err().span, 2..3);
        assert_eq!(parse("a { x } b").unwrap_err().span, 2..7);
    }

    #[test]
    fn bad_braces() {
        for bad in ["{", "}", "a{b", "a}b", "{}", "{ 0 }", "{a b}", "{a{b}"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
