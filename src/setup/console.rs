//! The terminal side of setup: what it says, and (interactive only) what it asks. Reading and
//! writing go through trait objects so the question-and-answer logic is tested with byte
//! buffers; the binary passes stdin and stdout.

use std::io::{BufRead, Write};

use super::SetupError;

pub struct Console<'a> {
    /// `None`: non-interactive, every question is a usage error naming the flag.
    input: Option<&'a mut dyn BufRead>,
    output: &'a mut dyn Write,
}

impl<'a> Console<'a> {
    pub fn interactive(input: &'a mut dyn BufRead, output: &'a mut dyn Write) -> Self {
        Self {
            input: Some(input),
            output,
        }
    }

    pub fn non_interactive(output: &'a mut dyn Write) -> Self {
        Self {
            input: None,
            output,
        }
    }

    pub fn is_interactive(&self) -> bool {
        self.input.is_some()
    }

    /// Prints a line (or several), control characters from the IdP escaped. A closed stdout
    /// is not worth failing setup for.
    pub fn say(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(
            self.output,
            "{}",
            crate::terminal::escape_lines(text.as_ref())
        );
        let _ = self.output.flush();
    }

    /// The value of `flag` when given, else (interactive) the answer to `question`, else a
    /// usage error. An empty answer takes `default`; without one, the question is asked again.
    pub fn value(
        &mut self,
        given: Option<String>,
        flag: &str,
        question: &str,
        default: Option<&str>,
    ) -> Result<String, SetupError> {
        if let Some(value) = given.filter(|v| !v.trim().is_empty()) {
            return Ok(value.trim().to_owned());
        }
        if self.input.is_none() {
            return match default {
                Some(default) => Ok(default.to_owned()),
                None => Err(SetupError::Usage(format!(
                    "{flag} is required with --non-interactive"
                ))),
            };
        }
        loop {
            let answer = self.ask(question, default)?;
            match (answer.is_empty(), default) {
                (false, _) => return Ok(answer),
                (true, Some(default)) => return Ok(default.to_owned()),
                (true, None) => self.say(format!("  (required: or pass {flag})")),
            }
        }
    }

    /// Like `value`, then `check`s it: in a terminal a rejected answer is asked again, otherwise
    /// it is a usage error.
    pub fn valid<T>(
        &mut self,
        mut given: Option<String>,
        flag: &str,
        question: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SetupError> {
        loop {
            let text = self.value(given.take(), flag, question, default)?;
            match check(&text) {
                Ok(value) => return Ok(value),
                Err(message) if self.is_interactive() => self.say(format!("  {message}")),
                Err(message) => return Err(SetupError::Usage(format!("{flag}: {message}"))),
            }
        }
    }

    /// Asks a yes/no question (interactive only; non-interactive answers `default`).
    pub fn confirm(&mut self, question: &str, default: bool) -> Result<bool, SetupError> {
        if self.input.is_none() {
            return Ok(default);
        }
        let hint = if default { "Y/n" } else { "y/N" };
        loop {
            let answer = self.ask(&format!("{question} [{hint}]"), None)?;
            match answer.to_ascii_lowercase().as_str() {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" | "q" | "quit" => return Ok(false),
                _ => self.say("  (answer y or n)"),
            }
        }
    }

    /// Waits for Enter (interactive only).
    pub fn pause(&mut self, text: &str) -> Result<(), SetupError> {
        if self.input.is_some() {
            self.ask(text, None)?;
        }
        Ok(())
    }

    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, SetupError> {
        let prompt = match default {
            Some(default) => format!("{question} [{default}]: "),
            None if question.ends_with(']') || question.ends_with(')') => format!("{question} "),
            None => format!("{question}: "),
        };
        let _ = write!(self.output, "{prompt}");
        let _ = self.output.flush();
        let Some(input) = self.input.as_mut() else {
            return Err(SetupError::Usage(format!(
                "cannot ask {question:?} with --non-interactive"
            )));
        };
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) => Err(SetupError::Usage(
                "standard input closed while setup was asking a question: answer in a terminal, \
                 or pass every value as a flag with --non-interactive"
                    .into(),
            )),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(err) => Err(SetupError::Usage(format!(
                "cannot read standard input: {err}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_answers_fill_in_and_defaults_apply() {
        let mut input: &[u8] = b"\nkey.json\n\n";
        let mut output = Vec::new();
        let mut console = Console::interactive(&mut input, &mut output);
        assert_eq!(
            console.value(Some("given".into()), "--x", "X?", None).ok(),
            Some("given".to_owned())
        );
        // An empty answer to a required question asks again.
        assert_eq!(
            console.value(None, "--key-file", "Key file", None).ok(),
            Some("key.json".to_owned())
        );
        assert_eq!(
            console
                .value(None, "--schedule", "Schedule", Some("0 * * * * *"))
                .ok(),
            Some("0 * * * * *".to_owned())
        );
        let shown = String::from_utf8(output).unwrap_or_default();
        assert!(shown.contains("(required: or pass --key-file)"), "{shown}");
        assert!(shown.contains("Schedule [0 * * * * *]: "), "{shown}");
    }

    #[test]
    fn non_interactive_names_the_missing_flag() {
        let mut output = Vec::new();
        let mut console = Console::non_interactive(&mut output);
        match console.value(None, "--subject", "Admin", None) {
            Err(SetupError::Usage(message)) => assert!(message.contains("--subject")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            console.value(None, "--schedule", "S", Some("d")).ok(),
            Some("d".into())
        );
        assert_eq!(console.confirm("again?", false).ok(), Some(false));
    }

    #[test]
    fn end_of_input_is_a_usage_error_not_a_loop() {
        let mut input: &[u8] = b"";
        let mut output = Vec::new();
        let mut console = Console::interactive(&mut input, &mut output);
        assert!(matches!(
            console.value(None, "--subject", "Admin", None),
            Err(SetupError::Usage(_))
        ));
        assert!(matches!(
            console.confirm("again?", true),
            Err(SetupError::Usage(_))
        ));
    }
}
