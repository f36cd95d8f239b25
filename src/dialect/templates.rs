//! The template engine of dialects: MiniJinja, set up once so that every template
//! writes JSON. Every `{{ value }}` is written as a JSON value (a string quoted
//! and escaped, a list or an object whole), so a template cannot produce a
//! broken string whatever a message or a key name holds. Printing a value that
//! is not there is an error (a typo is found by `keygate check`), while
//! `{% if body.x %}` and `body.x | default(…)` may ask.

use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// Compiled templates, by name (their YAML path).
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_keep_trailing_newline(false);
        env.add_function("object", object);
        Templates { env }
    }
}

impl Templates {
    /// Compiles `source` under `name`; the error says what and where.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), String> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| describe(&e))
    }

    /// The top-level variables the template `name` reads.
    pub fn variables(&self, name: &str) -> std::collections::HashSet<String> {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// Renders the template `name` with `vars`: text that should be JSON.
    pub fn render(&self, name: &str, vars: Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        template.render(vars).map_err(|e| {
            // Name the expression that failed: `undefined value at body.user_name`.
            let at = e
                .range()
                .and_then(|r| template.source().get(r))
                .map(|text| format!(" at `{}`", text.trim()))
                .unwrap_or_default();
            format!("{}{at}", describe(&e))
        })
    }

    /// Renders the template `name` with `vars` and checks that it is one JSON
    /// value; its bytes.
    pub fn render_json(&self, name: &str, vars: Value) -> Result<Vec<u8>, String> {
        let text = self.render(name, vars)?;
        match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            Ok(_) => Ok(text.into_bytes()),
            Err(e) => Err(format!(
                "does not render valid JSON ({e}): {}",
                excerpt(&text)
            )),
        }
    }
}

/// `object(name=…, tier=…)`: an object of the arguments that are there, so a
/// request template passes on the fields a caller sent and no others:
/// `{{ object(name=body.name, scopes=body.permissions) }}`.
fn object(kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let mut out = std::collections::BTreeMap::new();
    for name in kwargs.args() {
        let v: Value = kwargs.peek(name)?;
        if !v.is_undefined() {
            out.insert(name.to_string(), v);
        }
    }
    Ok(Value::from(out))
}

/// The engine's error as one line: what went wrong and at which line.
fn describe(e: &minijinja::Error) -> String {
    let mut out = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    if let Some(line) = e.line() {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

/// The start of a rendered text, for an error message.
fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(120).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn one(source: &str, vars: Value) -> Result<String, String> {
        let mut t = Templates::default();
        t.add("t", source)?;
        t.render_json("t", vars)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn every_printed_value_is_json() {
        let vars = context! { message => "say \"hi\"\n</script>", n => 3, none => Value::from(()),
        list => vec!["a", "b"] };
        assert_eq!(
            one(
                r#"{"m": {{ message }}, "n": {{ n }}, "x": {{ none }}, "l": {{ list }}}"#,
                vars
            )
            .unwrap(),
            r#"{"m": "say \"hi\"\n</script>", "n": 3, "x": null, "l": ["a","b"]}"#
        );
    }

    #[test]
    fn what_is_not_there_may_be_asked_about_but_not_printed() {
        let vars = context! { body => context! { a => 1 } };
        assert!(one(r#"{"b": {{ body.b }}}"#, vars.clone())
            .unwrap_err()
            .contains("undefined"));
        assert_eq!(
            one(
                r#"{"b": {% if body.b %}{{ body.b }}{% else %}{{ body.a }}{% endif %}, "c": {{ body.c | default(0) }}}"#,
                vars
            )
            .unwrap(),
            r#"{"b": 1, "c": 0}"#
        );
    }

    #[test]
    fn object_passes_on_only_what_is_there_and_lists_concatenate() {
        let t = r#"{{ object(name=body.name, tier=body.tier, scopes=(body.permissions + ["keys:manage"]) | unique | list if body.permissions) }}"#;
        let all = context! { body => context! { name => "n", permissions => vec!["search", "keys:manage"] } };
        assert_eq!(
            one(t, all).unwrap(),
            r#"{"name":"n","scopes":["search","keys:manage"]}"#
        );
        let none = context! { body => context! { tier => "pro" } };
        assert_eq!(one(t, none).unwrap(), r#"{"tier":"pro"}"#);
        let filtered = r#"{{ body.permissions | reject("eq", "keys:manage") | list }}"#;
        let vars = context! { body => context! { permissions => vec!["search", "keys:manage"] } };
        assert_eq!(one(filtered, vars).unwrap(), r#"["search"]"#);
    }

    #[test]
    fn syntax_errors_and_text_that_is_not_json_are_said() {
        let mut t = Templates::default();
        assert!(t.add("t", "{{ message ").unwrap_err().contains("line 1"));
        t.add("q", r#"{"m": "{{ message }}"}"#).unwrap();
        let e = t.render_json("q", context! { message => "x" }).unwrap_err();
        assert!(e.starts_with("does not render valid JSON"), "{e}");
    }
}
