//! `${VAR}` substitution from the environment, applied to the raw config text.

/// Replaces every `${NAME}` in `text` using `lookup`. `$${` is a literal `${`.
///
/// Returns the substituted text, or one problem per missing or malformed variable,
/// each naming its line.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    match substitute_all(text, lookup) {
        (out, problems) if problems.is_empty() => Ok(out),
        (_, problems) => Err(problems),
    }
}

/// [`substitute`], going on past problems: the text with every variable that
/// could not be read left empty, and the problems, so that the rest of the file
/// can still be checked.
pub fn substitute_all(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let name = &body[..end];
                        let valid = !name.is_empty()
                            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        if !valid {
                            problems.push(format!(
                                "line {}: invalid variable name `${{{name}}}`",
                                lineno + 1
                            ));
                        } else if let Some(value) = lookup(name) {
                            out.push_str(&value);
                        } else {
                            problems.push(format!(
                                "line {}: environment variable `{name}` is not set (checked as empty)",
                                lineno + 1
                            ));
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        problems.push(format!("line {}: unterminated `${{`", lineno + 1));
                        out.push_str(after);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "URL" => Some("http://x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_known_variables_and_keeps_the_rest() {
        assert_eq!(
            substitute("a: ${URL}\nb: $5 $${X}", env).unwrap(),
            "a: http://x\nb: $5 ${X}"
        );
        assert_eq!(substitute("${EMPTY}", env).unwrap(), "");
    }

    #[test]
    fn lists_every_missing_variable_with_its_line() {
        let errs =
            substitute("a: ${NOPE}\nb: ${ALSO_NOPE}\nc: ${bad-name}\nd: ${", env).unwrap_err();
        assert_eq!(errs.len(), 4);
        assert!(errs[0].starts_with("line 1:") && errs[0].contains("NOPE"));
        assert!(errs[1].starts_with("line 2:"));
        assert!(errs[2].contains("invalid variable name"));
        assert!(errs[3].contains("unterminated"));
    }
}
