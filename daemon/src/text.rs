//! Text shown to people that quotes what they sent: error messages of the API, `hotspotctl`
//! and the configuration. Kept short (a request or a file can hold megabytes) and free of
//! control characters (an escape sequence would be obeyed by the operator's terminal). Pure.

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
}
