//! The portal's forms, posted as a browser posts them: a visitor with a cookie
//! jar and the form token of the last page, for every test of the portal.

use super::{client, Keygate};
use std::collections::BTreeMap;

/// The form token of the page `body` (its hidden `csrf` input), if it has a form.
pub fn form_token(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + 19;
    body[at..].split('"').next().map(str::to_string)
}

/// A browser without a browser: a cookie jar and the form token of the last page.
pub struct Visitor {
    base: String,
    http: reqwest::Client,
    /// The cookies the portal set, by name.
    pub cookies: BTreeMap<String, String>,
    /// The form token of the last page that had a form.
    pub csrf: String,
}

/// A response as a visitor sees it.
pub struct Page {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Visitor {
    pub fn new(kg: &Keygate) -> Self {
        Visitor {
            base: kg.base.clone(),
            http: client(),
            cookies: BTreeMap::new(),
            csrf: String::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn finish(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let body = resp.text().await.unwrap();
        if let Some(token) = form_token(&body) {
            self.csrf = token;
        }
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}/portal{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// Posts `fields` with the form token of the last page.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        form.push(("csrf", &csrf));
        self.post_raw(path, &form).await
    }

    /// Posts exactly `fields` (no form token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}/portal{path}", self.base))
            .header("Cookie", self.cookie_header())
            .form(fields)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    pub async fn sign_up(&mut self, email: &str) {
        self.get("/signup").await;
        let p = self
            .post(
                "/signup",
                &[
                    ("email", email),
                    ("name", "Test"),
                    ("password", "long enough pw"),
                ],
            )
            .await;
        assert_eq!(p.status, 303, "{}", p.body);
        assert_eq!(p.header("location"), "/portal/keys");
        self.get("/keys").await;
    }

    /// Signs in on the sign-in page; returns the answer to the form (303 when it
    /// worked).
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("email", email), ("password", password)])
            .await
    }

    /// Creates a key on the keys page; returns its id and the secret shown.
    pub async fn create_key(&mut self, name: &str) -> (String, String) {
        self.get("/keys").await;
        let p = self
            .post(
                "/keys",
                &[
                    ("name", name),
                    ("environment", "live"),
                    ("scopes", "search"),
                ],
            )
            .await;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.body.contains("will not be shown again"));
        let secret = between(&p.body, "id=\"new-key\" class=\"key\" value=\"", "\"");
        let id = between(&p.body, "href=\"/portal/keys/", "\"");
        (id, secret)
    }
}

/// The text of `text` between `start` and the next `end`.
pub fn between(text: &str, start: &str, end: &str) -> String {
    let i = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {text}"))
        + start.len();
    text[i..i + text[i..].find(end).unwrap()].to_string()
}
