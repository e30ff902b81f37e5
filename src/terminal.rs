//! Text that reaches a terminal: the one escaping function for outside text (IdP names, API
//! error bodies, file contents) in human-readable output, the text log format's field
//! formatter that applies it, and whether stderr gets colour. A control character from an IdP
//! must never move the cursor, clear the screen, retitle the window or start a new line that
//! looks like dirsync's own. The lowest leaf: every module may use it, it imports nothing of
//! dirsync. Must not: be applied to JSON output, which stays exact (JSON escapes for itself).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;

/// `text` with every control character (C0, DEL, C1) and every bidirectional-override
/// character written as a visible escape (`\n`, `\r`, `\t`, `\0`, `\x1b`, `\u{202e}`); other
/// text unchanged. Borrowed when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        push_escaped(&mut out, ch);
    }
    Cow::Owned(out)
}

/// [`escape`] applied line by line, for text of several lines composed from outside text
/// (a multi-line error, a setup message): the line breaks stay, every other control
/// character is escaped. Where the outside part is known, escape it alone instead.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|ch| ch != '\n' && needs_escape(ch)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(escape).collect::<Vec<_>>().join("\n"))
}

/// [`escape`] as a `Display` adapter, for `format!("{}", Escaped(&name))`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

fn needs_escape(ch: char) -> bool {
    ch.is_control() || is_bidi_control(ch)
}

/// Characters that reorder the text around them on display (a name can look like another).
fn is_bidi_control(ch: char) -> bool {
    matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, ch: char) {
    match ch {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        ch if (ch as u32) < 0x80 && needs_escape(ch) => {
            let _ = write!(out, "\\x{:02x}", ch as u32);
        }
        ch if needs_escape(ch) => {
            let _ = write!(out, "\\u{{{:x}}}", ch as u32);
        }
        ch => out.push(ch),
    }
}

/// Whether logs on stderr get ANSI colour: only on a terminal, and never with `NO_COLOR` set
/// to a non-empty value (<https://no-color.org>).
pub fn stderr_colour() -> bool {
    colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The text log format's field formatter: the message and every field value go through
/// [`escape`], so one log record is always one line. Field names are dirsync's own.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'a, 'writer> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_, '_> {
    fn write(&mut self, field: &tracing::field::Field, value: &str) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{}", escape(value))
        } else {
            write!(self.writer, "{separator}{}={}", field.name(), escape(value))
        };
    }
}

impl tracing::field::Visit for EscapingVisitor<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            // Quoted like the default formatter, so an empty or spaced value stays readable.
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.write(field, &text);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            escape("Zoë O'Brien <zoe@example.com> \\ ok"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape("a\0b\r\nc\td\x1b[2J\x07\x7f\u{9b}e\u{202e}f"),
            "a\\0b\\r\\nc\\td\\x1b[2J\\x07\\x7f\\u{9b}e\\u{202e}f"
        );
        assert_eq!(Escaped("x\ny").to_string(), "x\\ny");
        assert_eq!(
            escape_lines("one\n\x1b]0;title\x07two\r"),
            "one\n\\x1b]0;title\\x07two\\r"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
