//! The portal's look and words: the built-in theme compiled in, and what a theme folder
//! (`portal.theme_dir`) replaces of it — `style.css`, `logo.svg` or `logo.png`, and
//! `strings.toml` (every text the pages show, by key, so a translation is one file). A file
//! the folder lacks stays the built-in one. Side effects: reads the folder once, at start.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// The built-in texts, which also name every key a theme may set.
const BUILTIN_STRINGS: &str = include_str!("theme/strings.toml");
const BUILTIN_STYLE: &[u8] = include_bytes!("theme/style.css");
const BUILTIN_LOGO: &[u8] = include_bytes!("theme/logo.svg");
/// The live updates of the status page; not themed, as the pages' markup is not.
pub(crate) const SCRIPT: &[u8] = include_bytes!("theme/portal.js");

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error(
        "cannot read the portal theme's {path}: fix portal.theme_dir or the file's permissions"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "portal.theme_dir {path} is not a folder: set it to a folder or to \"\" for the built-in theme"
    )]
    NotAFolder { path: PathBuf },
    #[error("the portal theme's {path} is not a TOML file of texts (key = \"text\"): {message}")]
    Strings { path: PathBuf, message: String },
    #[error(
        "the portal theme's {path} sets {key:?}, which the portal does not show: use the keys listed in docs/portal.md"
    )]
    UnknownKey { path: PathBuf, key: String },
}

/// The portal's look and words.
#[derive(Clone, Debug)]
pub struct Theme {
    pub(crate) style: Vec<u8>,
    pub(crate) logo: Vec<u8>,
    /// `image/svg+xml` or `image/png`.
    pub(crate) logo_type: &'static str,
    strings: BTreeMap<String, String>,
}

impl Theme {
    /// The built-in theme.
    #[must_use]
    pub fn builtin() -> Self {
        Self {
            style: BUILTIN_STYLE.to_vec(),
            logo: BUILTIN_LOGO.to_vec(),
            logo_type: "image/svg+xml",
            strings: builtin_strings(),
        }
    }

    /// The theme in folder `dir` over the built-in one; `""`: the built-in one.
    pub fn load(dir: &Path) -> Result<Self, ThemeError> {
        let mut theme = Self::builtin();
        if dir.as_os_str().is_empty() {
            return Ok(theme);
        }
        if !dir.is_dir() {
            return Err(ThemeError::NotAFolder {
                path: dir.to_owned(),
            });
        }
        if let Some(style) = read_if_there(&dir.join("style.css"))? {
            theme.style = style;
        }
        if let Some(logo) = read_if_there(&dir.join("logo.svg"))? {
            theme.logo = logo;
        } else if let Some(logo) = read_if_there(&dir.join("logo.png"))? {
            theme.logo = logo;
            theme.logo_type = "image/png";
        }
        let path = dir.join("strings.toml");
        if let Some(bytes) = read_if_there(&path)? {
            let text = String::from_utf8(bytes).map_err(|_| ThemeError::Strings {
                path: path.clone(),
                message: "it is not UTF-8 text".to_owned(),
            })?;
            let strings: BTreeMap<String, String> =
                toml::from_str(&text).map_err(|error| ThemeError::Strings {
                    path: path.clone(),
                    message: error.to_string().trim_end().replace('\n', " "),
                })?;
            for (key, text) in strings {
                let Some(slot) = theme.strings.get_mut(&key) else {
                    return Err(ThemeError::UnknownKey { path, key });
                };
                *slot = text;
            }
        }
        Ok(theme)
    }

    /// The text for `key`; the key itself if the built-in strings lack it (a unit test
    /// checks that every key the pages use is there).
    pub(crate) fn text<'a>(&'a self, key: &'a str) -> &'a str {
        self.strings.get(key).map_or(key, String::as_str)
    }
}

fn builtin_strings() -> BTreeMap<String, String> {
    // Compiled in and read by a unit test: it parses.
    toml::from_str(BUILTIN_STRINGS).unwrap_or_default()
}

/// The file's bytes; `None` if it does not exist.
fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>, ThemeError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ThemeError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_strings_parse() {
        let strings: Result<BTreeMap<String, String>, _> = toml::from_str(BUILTIN_STRINGS);
        assert!(strings.is_ok_and(|strings| strings.len() > 20));
    }

    #[test]
    fn docs_portal_md_lists_every_key() {
        let docs = include_str!("../../docs/portal.md");
        for key in builtin_strings().keys() {
            assert!(
                docs.contains(&format!("| `{key}` |")),
                "docs/portal.md does not list {key}"
            );
        }
    }

    #[test]
    fn a_folder_replaces_what_it_holds_and_keeps_the_rest() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("strings.toml"),
            "title = \"Café Wi-Fi\"\nlang = \"fr\"\n",
        )?;
        std::fs::write(dir.path().join("logo.png"), b"\x89PNG")?;
        let theme = Theme::load(dir.path())?;
        assert_eq!(theme.text("title"), "Café Wi-Fi");
        assert_eq!(theme.text("lang"), "fr");
        assert_eq!(theme.text("redeem_button"), "Connect");
        assert_eq!(
            (theme.logo.as_slice(), theme.logo_type),
            (&b"\x89PNG"[..], "image/png")
        );
        assert_eq!(theme.style, BUILTIN_STYLE);
        Ok(())
    }

    #[test]
    fn a_broken_strings_file_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("strings.toml");
        std::fs::write(&path, "title = \"unclosed\n")?;
        let error = Theme::load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "the portal theme's {} is not a TOML file of texts",
                path.display()
            )),
            "{error}"
        );
        std::fs::write(&path, "title = 3\n")?;
        assert!(matches!(
            Theme::load(dir.path()),
            Err(ThemeError::Strings { .. })
        ));
        std::fs::write(&path, "titel = \"typo\"\n")?;
        let error = Theme::load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("sets \"titel\", which the portal does not show"),
            "{error}"
        );
        assert!(matches!(
            Theme::load(&dir.path().join("missing")),
            Err(ThemeError::NotAFolder { .. })
        ));
        Ok(())
    }
}
