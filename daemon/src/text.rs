//! Text shown to people that quotes what they sent: error messages of the API, `hotspotctl`
//! and the configuration. Kept short (a request or a file can hold megabytes) and free of
//! control characters (an escape sequence would be obeyed by the operator's terminal). Also
//! an error with its causes on one line ([`chain`]), for logs and answers. Pure.

use std::{error::Error, fmt};

/// Longest message, in characters.
const MAX_MESSAGE_CHARS: usize = 400;
/// Longest word of an overlong message kept whole: longer ones are echoed input.
const MAX_WORD_CHARS: usize = 64;

/// `message`, or if it is too long, the same with every overlong word (an echoed input)
/// shortened to its ends, and if that is still too long, its middle replaced by " … ": the
/// head says what was wrong, the tail where (serde ends with "at line 1 column 41").
#[must_use]
pub fn bounded(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let shortened: Vec<String> = message
        .split(' ')
        .map(|word| {
            let chars = word.chars().count();
            if chars <= MAX_WORD_CHARS {
                return word.to_owned();
            }
            let head: String = word.chars().take(24).collect();
            let tail: String = word.chars().skip(chars - 8).collect();
            format!("{head}…{tail}")
        })
        .collect();
    let message = shortened.join(" ");
    let chars = message.chars().count();
    if chars <= MAX_MESSAGE_CHARS {
        return message;
    }
    let head: String = message.chars().take(MAX_MESSAGE_CHARS / 2).collect();
    let tail: String = message
        .chars()
        .skip(chars - MAX_MESSAGE_CHARS / 4)
        .collect();
    format!("{head} … {tail}")
}

/// `message` with every control character escaped (`\u{1b}`), then [`bounded`].
#[must_use]
pub fn tidy(message: &str) -> String {
    let escaped: String = message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    bounded(escaped)
}

/// `error` and its causes (`source()`, then its source, ...) on one line, joined by ": ", as
/// `anyhow` shows them with `{:#}`. hotspotd's errors name what failed and keep the cause only
/// as their source, so a message that printed only `error` would lose it: wherever an error
/// reaches a person (a log line, an API answer, the command line), show its chain.
///
/// A cause whose text the line already holds is left out: some errors of other crates write
/// their source into their own message too, and the chain says each cause once.
#[must_use]
pub fn chain<'a>(error: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(error)
}

/// What [`chain`] returns: shows the error and its causes when formatted.
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `error` with its causes, as a `String` ([`chain`]).
#[must_use]
pub fn chain_string(error: &(dyn Error + 'static)) -> String {
    chain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_message_keeps_its_head_and_tail() {
        let short = "a short sentence".to_owned();
        assert_eq!(bounded(short.clone()), short);
        let echoed = format!(
            "'{}' is not a MAC address at line 1 column 9",
            "a".repeat(5_000)
        );
        let shown = bounded(echoed);
        assert!(shown.chars().count() < MAX_MESSAGE_CHARS, "{shown}");
        assert!(
            shown.contains("is not a MAC address at line 1 column 9"),
            "{shown}"
        );
        assert!(shown.starts_with("'aaa") && shown.contains('…'), "{shown}");
        let many_words = "word ".repeat(1_000);
        let shown = bounded(many_words);
        assert!(shown.chars().count() < MAX_MESSAGE_CHARS && shown.contains(" … "));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(tidy("key 'a\u{1b}[2J'"), "key 'a\\u{1b}[2J'");
        assert_eq!(tidy("plain"), "plain");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot do the thing")]
    struct Outer {
        source: Middle,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the middle step failed: {source}")]
    struct Middle {
        source: std::io::Error,
    }

    #[test]
    fn a_chain_says_every_cause_once() {
        let error = Outer {
            source: Middle {
                source: std::io::Error::other("disk on fire"),
            },
        };
        // The middle error writes its cause into its own message; the chain does not repeat it.
        assert_eq!(
            chain(&error).to_string(),
            "cannot do the thing: the middle step failed: disk on fire"
        );
        let plain = std::io::Error::other("just this");
        assert_eq!(chain_string(&plain), "just this");
    }
}
