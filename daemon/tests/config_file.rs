//! The shipped `config.toml` is the documented default: it loads, validates, says exactly what
//! the built-in defaults say, and writes out every key.

use std::path::{Path, PathBuf};

use hotspotd::config::Config;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml")
}

#[test]
fn shipped_config_toml_is_the_default() -> TestResult {
    // No environment: the process's HOTSPOTD__* variables must not change what is tested.
    let config = Config::load_from(Some(&shipped()), Vec::new())?;
    config.validate()?;
    assert_eq!(config, Config::default());
    Ok(())
}

#[test]
fn shipped_config_toml_documents_every_key() -> TestResult {
    let file = config::Config::builder()
        .add_source(config::File::from(shipped()).format(config::FileFormat::Toml))
        .build()?;
    let defaults = serde_json::to_value(Config::default())?;
    let sections = defaults.as_object().ok_or("Config serialises to a map")?;
    for (section, keys) in sections {
        for key in keys
            .as_object()
            .ok_or("a section serialises to a map")?
            .keys()
        {
            let path = format!("{section}.{key}");
            assert!(
                file.get::<config::Value>(&path).is_ok(),
                "config.toml lacks {path}"
            );
        }
    }
    Ok(())
}
