//! The configuration file, fuzzed: thousands of seeded variations of the shipped
//! `config.toml` — every key set to values of every TOML type (huge, negative, non-finite,
//! overlong, control characters), unknown keys and sections, truncated and bit-flipped
//! files, bytes that are not UTF-8, deep nesting, a file of megabytes — go through the
//! loader in-process and a sample through `hotspotd --check-config`. The loader never panics;
//! a refusal is one line that starts with the file's path and, when one key is at fault,
//! names it. No root needed.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};
use hotspotd::config::Config;
use hotspotd_tests::frames::XorShift;
use hotspotd_tests::{hotspotd_bin, workspace_root};

const SEED: u64 = 0xc0f1_6000_0000_0001;
const FILES: usize = 3_000;
/// Every this many files also goes through `hotspotd --check-config`.
const BINARY_EVERY: usize = 30;
/// Longest refusal allowed, in characters: a sentence, not an echo of the file.
const MAX_MESSAGE_CHARS: usize = 600;

/// Every key of the configuration, by section.
const KEYS: &[(&str, &[&str])] = &[
    (
        "network",
        &["lan_interface", "ifb_interface", "walled_garden"],
    ),
    ("speed", &["global_down_mbits", "global_up_mbits"]),
    ("accounting", &["poll_interval_ms", "bytes_per_mb"]),
    ("sessions", &["queue_order", "idle_pause_secs"]),
    ("store", &["sqlite_path", "save_interval_secs"]),
    (
        "api",
        &["socket", "tcp_listen", "token_file", "allow_non_loopback"],
    ),
    ("kernel", &["pin_dir"]),
    ("events", &["exec", "exec_timeout_ms"]),
];

/// A TOML value of any type, often an extreme one.
fn random_value(rng: &mut XorShift) -> String {
    match rng.below(14) {
        0 => (*pick(rng, &["0", "-1", "1", "-0", "+5", "60000", "86400", "100"])).to_owned(),
        1 => (*pick(
            rng,
            &[
                "9223372036854775807",
                "-9223372036854775808",
                "18446744073709551615",
                "99999999999999999999999",
                "0xffffffff",
                "0o777",
                "0b101",
                "1_000_000",
            ],
        ))
        .to_owned(),
        2 => (*pick(
            rng,
            &[
                "nan", "inf", "-inf", "+nan", "1e308", "1.5", "-0.0", "5e-324",
            ],
        ))
        .to_owned(),
        3 => (*pick(rng, &["true", "false", "True", "yes"])).to_owned(),
        4 => format!(
            "\"{}\"",
            pick(
                rng,
                &[
                    "",
                    "br-lan",
                    "eth0",
                    "oldest_first",
                    "x/y",
                    "a b",
                    "..",
                    "1234"
                ]
            )
        ),
        5 => format!("\"{}\"", "x".repeat(rng.below(1 << 16))),
        6 => (*pick(
            rng,
            &[
                "\"\\u0000\"",
                "\"\\u001b[2J\"",
                "\"\\n\"",
                "'literal'",
                "'''multi\nline'''",
            ],
        ))
        .to_owned(),
        7 => (*pick(
            rng,
            &[
                "[]",
                "[1, 2]",
                "[\"10.0.0.0/8\"]",
                "[\"nonsense\"]",
                "[[1], [2]]",
                "[\"192.0.2.1:99999\"]",
            ],
        ))
        .to_owned(),
        8 => (*pick(rng, &["{}", "{ a = 1 }", "{ lan_interface = \"x\" }"])).to_owned(),
        9 => (*pick(rng, &["1979-05-27T07:32:00Z", "07:32:00", "1979-05-27"])).to_owned(),
        10 => format!(
            "{}{}",
            "[".repeat(1 + rng.below(2_000)),
            "]".repeat(1 + rng.below(2_000))
        ),
        11 => (*pick(rng, &["", "=", "\"unterminated", "[1, 2", "{ a = ", "1 2"])).to_owned(),
        12 => format!("\"{}\"", "é".repeat(rng.below(4_096))),
        _ => {
            let mut bytes = vec![0u8; rng.below(40)];
            rng.fill(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

fn pick<'a, T>(rng: &mut XorShift, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// A file to load, and the key (`section.key` or `section`) a refusal must name, if one.
struct Variant {
    what: String,
    bytes: Vec<u8>,
    names: Option<String>,
}

fn variant(rng: &mut XorShift, shipped: &str) -> Variant {
    let (section, keys) = *pick(rng, KEYS);
    let key = *pick(rng, keys);
    match rng.below(10) {
        0..=3 => {
            // One key of the file, or one the file leaves out, set to a random value.
            let value = random_value(rng);
            let line = format!("{key} = {value}");
            let text = replace_key(shipped, section, key, &line);
            Variant {
                what: format!(
                    "{section}.{key} = {}",
                    value.chars().take(60).collect::<String>()
                ),
                bytes: text.into_bytes(),
                names: Some(format!("{section}.{key}")),
            }
        }
        4 => {
            let unknown = pick(
                rng,
                &["colour", "lan_interfaces", "Speed", "x.y", "\"\\u001b[2J\""],
            );
            let text = replace_key(shipped, section, key, &format!("{key} = 1\n{unknown} = 1"));
            Variant {
                what: format!("unknown key {unknown} in [{section}]"),
                bytes: text.into_bytes(),
                // A bad value of `key` may be reported first; either names a key.
                names: Some(section.to_owned()),
            }
        }
        5 => {
            let name = pick(rng, &["netwrok", "speeds", "\"\"", "network.extra", "a\"b"]);
            Variant {
                what: format!("unknown section [{name}]"),
                bytes: format!("{shipped}\n[{name}]\nkey = 1\n").into_bytes(),
                names: None,
            }
        }
        6 => {
            let mut bytes = shipped.as_bytes().to_vec();
            let keep = rng.below(bytes.len());
            bytes.truncate(keep);
            Variant {
                what: format!("truncated at byte {keep}"),
                bytes,
                names: None,
            }
        }
        7 => {
            let mut bytes = shipped.as_bytes().to_vec();
            for _ in 0..=rng.below(8) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            Variant {
                what: "bits flipped".to_owned(),
                bytes,
                names: None,
            }
        }
        8 => {
            // The same key twice, or a section twice.
            let text = if rng.one_in(2) {
                replace_key(shipped, section, key, &format!("{key} = 1\n{key} = 2"))
            } else {
                format!("{shipped}\n[{section}]\n")
            };
            Variant {
                what: format!("{section}.{key} or [{section}] twice"),
                bytes: text.into_bytes(),
                names: None,
            }
        }
        _ => {
            let mut bytes = vec![0u8; 1 + rng.below(4_096)];
            rng.fill(&mut bytes);
            Variant {
                what: "random bytes".to_owned(),
                bytes,
                names: None,
            }
        }
    }
}

/// `shipped` with the line of `key` in `[section]` replaced by `line` (added to the section
/// when the file does not set the key).
fn replace_key(shipped: &str, section: &str, key: &str, line: &str) -> String {
    let mut out = Vec::new();
    let mut in_section = false;
    let mut done = false;
    for text in shipped.lines() {
        let trimmed = text.trim();
        if trimmed.starts_with('[') {
            if in_section && !done {
                out.push(line.to_owned());
                done = true;
            }
            in_section = trimmed == format!("[{section}]");
        }
        let is_key = trimmed
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key);
        if in_section && is_key && !done {
            out.push(line.to_owned());
            done = true;
        } else {
            out.push(text.to_owned());
        }
    }
    if !done {
        if !in_section {
            out.push(format!("[{section}]"));
        }
        out.push(line.to_owned());
    }
    out.join("\n")
}

/// Loads `bytes` as the file at `path`: the refusal's text, `None` if valid. A panic fails.
fn load(path: &Path, bytes: &[u8], what: &str) -> Result<Option<String>> {
    fs::write(path, bytes)?;
    // Only the message is kept: the error itself is large.
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        Config::load_from(Some(path), Vec::new()).map_err(|error| error.to_string())
    }));
    let Ok(loaded) = loaded else {
        anyhow::bail!("{what}: the loader panicked");
    };
    Ok(loaded.err())
}

fn check_refusal(message: &str, path: &Path, variant: &Variant) -> Result<()> {
    let what = &variant.what;
    let file = path.display().to_string();
    ensure!(
        message.starts_with(&file),
        "{what}: the refusal should start with the file: {message:?}"
    );
    ensure!(
        !message.contains('\n') && message.chars().count() <= MAX_MESSAGE_CHARS,
        "{what}: not one line of reasonable length ({} chars): {:?}",
        message.chars().count(),
        message.chars().take(300).collect::<String>()
    );
    ensure!(
        !message.chars().any(char::is_control),
        "{what}: control characters in the refusal: {message:?}"
    );
    // A file that parses as TOML and is refused for one key names it.
    if let Some(key) = &variant.names
        && !message.contains("invalid TOML")
    {
        ensure!(
            message.contains(key.as_str()),
            "{what}: the refusal should name {key}: {message:?}"
        );
    }
    Ok(())
}

#[test]
fn the_loader_refuses_every_bad_file_by_name_and_never_panics() -> Result<()> {
    let shipped = fs::read_to_string(workspace_root().join("config.toml"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    let mut rng = XorShift::new(SEED);
    let (mut valid, mut refused, mut via_binary) = (0, 0, 0);
    let started = Instant::now();
    for n in 0..FILES {
        let variant = variant(&mut rng, &shipped);
        let refusal = load(&path, &variant.bytes, &variant.what)?;
        match &refusal {
            None => valid += 1,
            Some(message) => {
                check_refusal(message, &path, &variant)?;
                refused += 1;
            }
        }
        if n % BINARY_EVERY == 0 {
            let output = Command::new(hotspotd_bin())
                .args(["--check-config", "--config"])
                .arg(&path)
                .output()?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            ensure!(
                output.status.success() == refusal.is_none() && stderr.lines().count() == 1,
                "{}: --check-config says {} {stderr:?}, the loader {refusal:?}",
                variant.what,
                output.status
            );
            via_binary += 1;
        }
    }
    eprintln!(
        "{FILES} files in {:.1?}: {valid} valid, {refused} refused; {via_binary} also through --check-config",
        started.elapsed()
    );
    ensure!(
        refused > FILES / 2 && valid > 0,
        "the mix reached both outcomes"
    );
    Ok(())
}

#[test]
fn extreme_files_are_refused_or_loaded_without_a_crash() -> Result<()> {
    let shipped = fs::read_to_string(workspace_root().join("config.toml"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    let huge_comment = format!("{shipped}\n{}", "# padding\n".repeat(1_000_000));
    let huge_garden = replace_key(
        &shipped,
        "network",
        "walled_garden",
        &format!(
            "walled_garden = [{}]",
            vec!["\"10.0.0.0/8\""; 100_000].join(", ")
        ),
    );
    let deep = format!(
        "[network]\nwalled_garden = {}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ten megabytes of comments", huge_comment.into_bytes()),
        ("100,000 walled-garden entries", huge_garden.into_bytes()),
        ("arrays 100,000 deep", deep.into_bytes()),
        (
            "not UTF-8",
            [shipped.as_bytes(), &[0xff, 0xfe, b'\n']].concat(),
        ),
        ("empty", Vec::new()),
        ("a NUL byte", b"[speed]\nglobal_down_mbits = 1\0\n".to_vec()),
        (
            "a byte-order mark",
            [&[0xef, 0xbb, 0xbf][..], shipped.as_bytes()].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let started = Instant::now();
        let refusal = load(&path, &bytes, what)?;
        let variant = Variant {
            what: what.to_owned(),
            bytes: Vec::new(),
            names: None,
        };
        if let Some(message) = &refusal {
            check_refusal(message, &path, &variant)?;
        }
        eprintln!("{what}: {:.1?}, {refusal:?}", started.elapsed());
    }
    Ok(())
}
