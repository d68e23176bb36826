//! POSIX shell quoting for values substituted into a `shell = "..."` line.
//!
//! Owns: [`shell_quote`]. Must not: know about templates or processes.
//! A quoted value is always exactly one shell word whose text is the value: nothing in
//! it (`;`, `$(...)`, backquotes, newlines, globs, quotes) is interpreted by `/bin/sh`.

/// Quote `value` as one `/bin/sh` word.
///
/// Values made only of characters that are never special to the shell (letters, digits,
/// `_ - . / , : + = @ %`) are returned as they are, so command lines stay readable in
/// logs; everything else is wrapped in single quotes, with each embedded `'` written as
/// `'\''`. The empty string becomes `''`.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(is_plain) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Bytes that need no quoting anywhere in a word (not even at its start: no `~`, `#`, `=`
/// issues arise because `=` only matters before the command name, and a substituted
/// value that looks like an assignment is still just an argument after it).
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'_' | b'-' | b'.' | b'/' | b',' | b':' | b'+' | b'@' | b'%')
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn plain_values_stay_as_they_are() {
        assert_eq!(shell_quote("abc-1.5/x_y"), "abc-1.5/x_y");
        assert_eq!(shell_quote("42"), "42");
    }

    #[test]
    fn special_values_are_single_quoted() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(touch x)"), "'$(touch x)'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("\"; touch x #"), "'\"; touch x #'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        assert_eq!(shell_quote("*"), "'*'");
        assert_eq!(shell_quote("~"), "'~'");
    }

    #[test]
    fn sh_reads_back_the_exact_value() {
        // Round trip through a real shell: printf '%s' WORD must print the value.
        let values = [
            "",
            "plain",
            "a b",
            "it's",
            "''",
            "\\",
            "$(echo no)",
            "`echo no`",
            "a\nb",
            "*",
            "-n",
            "é ü",
        ];
        for value in values {
            let line = format!("printf '%s' {}", shell_quote(value));
            let out = std::process::Command::new("/bin/sh").arg("-c").arg(&line).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value, "line: {line}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any value (NUL cannot be in an argument at all) survives `sh -c` unchanged and
        /// stays one word.
        #[test]
        fn any_value_round_trips_through_sh(value in "[^\\x00]{0,40}") {
            let line = format!("set -- {}; printf '%s|%s' \"$1\" \"$#\"", shell_quote(&value));
            let out = std::process::Command::new("/bin/sh").arg("-c").arg(&line).output().unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{value}|1"));
        }
    }
}
