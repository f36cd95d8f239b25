//! `portal.branding`: the API's own name, logo and accent colour on every portal
//! page (docs/portal.md, Branding). Compiled once with the config: a logo file
//! is read then (and served from memory), an accent becomes a small stylesheet
//! with a lighter variant for dark mode and a readable text colour on it, and a
//! logo URL widens the Content-Security-Policy to that one origin for images.

use crate::config::{PortalConfig, Problem};
use std::sync::Arc;

/// Largest logo file served, in bytes.
pub const MAX_LOGO_BYTES: u64 = 256 * 1024;

/// The portal's Content-Security-Policy without a logo from elsewhere.
pub const DEFAULT_CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// Where the logo comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logo {
    /// An image on another origin, linked as given.
    Url(String),
    /// A file read at load, served at `{prefix}/static/logo`.
    File {
        /// Its media type, from its extension.
        content_type: &'static str,
        /// Its bytes.
        bytes: Arc<[u8]>,
    },
}

/// The branding every page carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branding {
    /// The product name: `branding.name`, else `portal.title`.
    pub name: String,
    /// The logo, if any.
    pub logo: Option<Logo>,
    /// The accent's stylesheet, served at `{prefix}/static/brand.css` (`None`: the
    /// portal's own colours).
    pub stylesheet: Option<String>,
    /// The Content-Security-Policy of every portal response.
    pub csp: String,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            name: "keygate".into(),
            logo: None,
            stylesheet: None,
            csp: DEFAULT_CSP.into(),
        }
    }
}

impl Branding {
    /// `portal.branding` (and `portal.title`) compiled; every problem is listed,
    /// located by its path.
    pub fn compile(portal: &PortalConfig) -> Result<Branding, Vec<Problem>> {
        let b = &portal.branding;
        let mut problems = Vec::new();
        let name = match &b.name {
            Some(n) if n.trim().is_empty() || n.chars().count() > 100 => {
                problems.push(Problem::new(
                    "portal.branding.name",
                    "must be 1-100 characters",
                ));
                String::new()
            }
            Some(n) => n.clone(),
            None => portal.title.clone(),
        };
        let mut csp = DEFAULT_CSP.to_string();
        let logo = match b.logo.as_deref() {
            None => None,
            Some(l) if l.starts_with("https://") || l.starts_with("http://") => {
                match image_origin(l) {
                    Ok(origin) => {
                        csp = format!(
                            "default-src 'self'; img-src 'self' {origin}; frame-ancestors 'none'"
                        );
                        Some(Logo::Url(l.to_string()))
                    }
                    Err(e) => {
                        problems.push(Problem::new("portal.branding.logo", e));
                        None
                    }
                }
            }
            Some(path) => match read_logo(path) {
                Ok(logo) => Some(logo),
                Err(e) => {
                    problems.push(Problem::new("portal.branding.logo", e));
                    None
                }
            },
        };
        let stylesheet = match b.accent.as_deref() {
            None => None,
            Some(a) => match Rgb::parse(a) {
                Some(rgb) => Some(accent_stylesheet(rgb)),
                None => {
                    problems.push(Problem::new(
                        "portal.branding.accent",
                        format!(
                            "`{a}` is not a colour: write it as #rrggbb or #rgb (e.g. #0f766e)"
                        ),
                    ));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Branding {
            name,
            logo,
            stylesheet,
            csp,
        })
    }

    /// The logo's address as pages link it, below `prefix` for a file.
    pub fn logo_href(&self, prefix: &str) -> Option<String> {
        match &self.logo {
            None => None,
            Some(Logo::Url(u)) => Some(u.clone()),
            Some(Logo::File { .. }) => Some(format!("{prefix}/static/logo")),
        }
    }
}

/// The origin (`https://host[:port]`) of a logo URL, for the CSP; a URL the
/// policy could not name exactly (credentials, odd characters) is refused.
fn image_origin(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a logo URL must not carry credentials".into());
    }
    if url.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | ';' | ',' | '<' | '>')
    }) {
        return Err(format!(
            "`{url}` has a character a page or the Content-Security-Policy cannot carry (quote, `;`, `,`, `<`, `>`, space)"
        ));
    }
    match parsed.origin() {
        url::Origin::Tuple(..) => Ok(parsed.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(format!("`{url}` has no origin")),
    }
}

/// A logo file: an image by its extension, at most [`MAX_LOGO_BYTES`].
fn read_logo(path: &str) -> Result<Logo, String> {
    let ext = std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let content_type = match ext.as_deref() {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => {
            return Err(format!(
                "`{path}`: a logo is an .svg, .png, .jpg, .webp or .gif file, or an https:// URL"
            ))
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    if meta.len() > MAX_LOGO_BYTES {
        return Err(format!(
            "`{path}` is {} KiB; a logo may be at most {} KiB",
            meta.len().div_ceil(1024),
            MAX_LOGO_BYTES / 1024
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    Ok(Logo::File {
        content_type,
        bytes: bytes.into(),
    })
}

/// A colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    /// `#rrggbb` or `#rgb`.
    fn parse(s: &str) -> Option<Rgb> {
        let hex = s.trim().strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let digit = |i: usize, n: usize| u8::from_str_radix(&hex[i..i + n], 16).ok();
        match hex.len() {
            6 => Some(Rgb(digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
            3 => Some(Rgb(digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
            _ => None,
        }
    }

    fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG relative luminance, 0 (black) to 1 (white).
    fn luminance(self) -> f64 {
        let lin = |c: u8| {
            let c = c as f64 / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// `self` mixed with white, `share` of white (0 to 1).
    fn lighter(self, share: f64) -> Rgb {
        let mix = |c: u8| (c as f64 + (255.0 - c as f64) * share).round() as u8;
        Rgb(mix(self.0), mix(self.1), mix(self.2))
    }

    /// Black or white, whichever reads better on `self`.
    fn text_on(self) -> Rgb {
        // Contrast against white: 1.05 / (L + 0.05); against black: (L + 0.05) / 0.05.
        let l = self.luminance();
        if (l + 0.05) / 0.05 > 1.05 / (l + 0.05) {
            Rgb(0x0d, 0x11, 0x17)
        } else {
            Rgb(0xff, 0xff, 0xff)
        }
    }
}

/// The stylesheet of an accent: the colour itself on light pages; on dark
/// pages, lightened until links in it are readable on the dark background.
fn accent_stylesheet(accent: Rgb) -> String {
    let mut dark = accent;
    let mut share = 0.0;
    while dark.luminance() < 0.25 && share < 0.9 {
        share += 0.1;
        dark = accent.lighter(share);
    }
    format!(
        ":root {{ --accent: {}; --on-accent: {}; }}\n\
         @media (prefers-color-scheme: dark) {{ :root {{ --accent: {}; --on-accent: {}; }} }}\n",
        accent.css(),
        accent.text_on().css(),
        dark.css(),
        dark.text_on().css()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrandingConfig;

    fn portal(branding: BrandingConfig) -> PortalConfig {
        PortalConfig {
            title: "Acme API".into(),
            branding,
            ..PortalConfig::default()
        }
    }

    #[test]
    fn without_branding_the_title_names_the_product_and_the_policy_stays_strict() {
        let b = Branding::compile(&portal(BrandingConfig::default())).unwrap();
        assert_eq!(b.name, "Acme API");
        assert_eq!(
            (b.logo, b.stylesheet, b.csp.as_str()),
            (None, None, DEFAULT_CSP)
        );
    }

    #[test]
    fn an_accent_gets_a_readable_text_colour_and_a_dark_mode_variant() {
        let b = Branding::compile(&portal(BrandingConfig {
            accent: Some("#0F766E".into()),
            ..BrandingConfig::default()
        }))
        .unwrap();
        let css = b.stylesheet.unwrap();
        assert!(
            css.starts_with(":root { --accent: #0f766e; --on-accent: #ffffff; }"),
            "{css}"
        );
        let dark = css.split("dark)").nth(1).unwrap();
        let dark_accent = Rgb::parse(&dark[dark.find('#').unwrap()..][..7]).unwrap();
        assert!(dark_accent.luminance() >= 0.25, "{css}");
        assert_eq!(Rgb::parse("#fc0"), Some(Rgb(255, 204, 0)));
        assert_eq!(
            Rgb(255, 204, 0).text_on(),
            Rgb(0x0d, 0x11, 0x17),
            "dark text on yellow"
        );
    }

    #[test]
    fn every_bad_setting_is_listed_at_once() {
        let e = Branding::compile(&portal(BrandingConfig {
            name: Some(" ".into()),
            logo: Some("conf/missing-logo.png".into()),
            accent: Some("teal".into()),
        }))
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "portal.branding.name",
                "portal.branding.logo",
                "portal.branding.accent"
            ]
        );
        assert!(e[2].message.contains("#rrggbb"), "{}", e[2].message);
        for (logo, why) in [
            ("https://cdn.example.com/a logo.svg", "character"),
            ("https://user:pw@cdn.example.com/l.svg", "credentials"),
            ("https://cdn.example.com/l.svg;script-src", "character"),
            ("conf/logo.exe", ".svg, .png"),
        ] {
            let e = Branding::compile(&portal(BrandingConfig {
                logo: Some(logo.into()),
                ..BrandingConfig::default()
            }))
            .unwrap_err();
            assert!(e[0].message.contains(why), "{logo}: {}", e[0].message);
        }
    }

    #[test]
    fn a_logo_url_opens_images_to_its_origin_only() {
        let b = Branding::compile(&portal(BrandingConfig {
            logo: Some("https://cdn.example.com:8443/brand/logo.svg?v=2".into()),
            ..BrandingConfig::default()
        }))
        .unwrap();
        assert_eq!(
            b.csp,
            "default-src 'self'; img-src 'self' https://cdn.example.com:8443; frame-ancestors 'none'"
        );
        assert_eq!(
            b.logo_href("/portal").as_deref(),
            Some("https://cdn.example.com:8443/brand/logo.svg?v=2")
        );
    }

    #[test]
    fn a_logo_file_is_read_once_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("logo.svg");
        std::fs::write(&small, "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").unwrap();
        let b = Branding::compile(&portal(BrandingConfig {
            logo: Some(small.display().to_string()),
            ..BrandingConfig::default()
        }))
        .unwrap();
        assert!(matches!(
            &b.logo,
            Some(Logo::File {
                content_type: "image/svg+xml",
                ..
            })
        ));
        assert_eq!(
            b.logo_href("/portal").as_deref(),
            Some("/portal/static/logo")
        );
        let big = dir.path().join("logo.png");
        std::fs::write(&big, vec![0u8; MAX_LOGO_BYTES as usize + 1]).unwrap();
        let e = Branding::compile(&portal(BrandingConfig {
            logo: Some(big.display().to_string()),
            ..BrandingConfig::default()
        }))
        .unwrap_err();
        assert!(e[0].message.contains("at most 256 KiB"), "{}", e[0].message);
    }
}
