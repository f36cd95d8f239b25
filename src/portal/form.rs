//! HTML form bodies (`application/x-www-form-urlencoded`).

use crate::error::GateError;

/// Most fields a portal form may carry.
const MAX_FIELDS: usize = 200;

/// A parsed form: its fields in order (a name may repeat, as checkboxes do).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a body; more than [`MAX_FIELDS`] fields, or bytes that are not
    /// UTF-8 once decoded, are a 400.
    pub fn parse(body: &[u8]) -> Result<Form, GateError> {
        let mut fields = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if fields.len() == MAX_FIELDS {
                return Err(GateError::BadRequest("Too many form fields"));
            }
            if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
                return Err(GateError::BadRequest("Form fields must be UTF-8"));
            }
            fields.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form(fields))
    }

    /// The first value of `name` (empty when absent).
    pub fn text(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_repeat_and_decode() {
        let f = Form::parse(b"name=My+key%21&scopes=a&scopes=b&csrf=x").unwrap();
        assert_eq!(f.text("name"), "My key!");
        assert_eq!(f.all("scopes"), ["a", "b"]);
        assert_eq!(f.text("missing"), "");
    }

    #[test]
    fn floods_and_broken_utf8_are_refused() {
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert!(Form::parse(many.as_bytes()).is_err());
        assert!(Form::parse(b"name=%C0%AE").is_err());
    }
}
