//! The line tokenizer shared by `sockd.conf` and `socks.conf`, and a token [`Cursor`].
//!
//! A rule file is a sequence of lines; `#` starts a comment (whole line or trailing), blank and
//! comment-only lines are skipped, and fields are separated by blanks or tabs (any ASCII
//! whitespace). Line numbers are 1-based and count every line, skipped or not.
//!
//! This is not a parser: it knows nothing about actions, addresses or options. It also does not
//! treat `:` specially (the CSTC `: shell command` is detected by the file parser, token by token,
//! because IPv6 addresses contain colons).

/// One non-empty line of a rule file, split into tokens, comment removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number in the file.
    pub number: usize,
    /// The fields of the line, in order; never empty.
    pub tokens: Vec<&'a str>,
}

/// Splits `text` into [`Line`]s, skipping blank and comment-only lines.
pub fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let code = match raw.find('#') {
            Some(at) => &raw[..at],
            None => raw,
        };
        let tokens: Vec<&str> = code.split_ascii_whitespace().collect();
        if tokens.is_empty() {
            None
        } else {
            Some(Line { number: i + 1, tokens })
        }
    })
}

/// A read position in the tokens of one line. The building blocks consume tokens through it.
#[derive(Debug, Clone)]
pub struct Cursor<'l, 'a> {
    tokens: &'l [&'a str],
    pos: usize,
}

impl<'l, 'a> Cursor<'l, 'a> {
    /// A cursor at the first token.
    pub fn new(tokens: &'l [&'a str]) -> Self {
        Cursor { tokens, pos: 0 }
    }

    /// The next token without consuming it.
    pub fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.pos).copied()
    }

    /// The token after the next one, without consuming anything.
    pub fn peek2(&self) -> Option<&'a str> {
        self.tokens.get(self.pos + 1).copied()
    }

    /// Consumes and returns the next token.
    #[allow(clippy::should_implement_trait)] // not an Iterator on purpose: callers peek a lot
    pub fn next(&mut self) -> Option<&'a str> {
        let t = self.peek()?;
        self.pos += 1;
        Some(t)
    }

    /// Whether all tokens are consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// The tokens not yet consumed.
    pub fn rest(&self) -> &'l [&'a str] {
        self.tokens.get(self.pos..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_numbers() {
        let text = "# head\n\npermit 1.2.3.4 0.0.0.0 # tail\n  \t \ndeny\t10.0.0.0/8\r\n#x";
        let got: Vec<Line<'_>> = lines(text).collect();
        assert_eq!(
            got,
            vec![
                Line { number: 3, tokens: vec!["permit", "1.2.3.4", "0.0.0.0"] },
                Line { number: 5, tokens: vec!["deny", "10.0.0.0/8"] },
            ]
        );
    }

    #[test]
    fn comment_glued_to_token() {
        let got: Vec<Line<'_>> = lines("permit 1.2.3.4/32#no space").collect();
        assert_eq!(got[0].tokens, vec!["permit", "1.2.3.4/32"]);
    }

    #[test]
    fn cursor_walks() {
        let toks = ["a", "b", "c"];
        let mut c = Cursor::new(&toks);
        assert_eq!(c.peek(), Some("a"));
        assert_eq!(c.peek2(), Some("b"));
        assert_eq!(c.next(), Some("a"));
        assert_eq!(c.rest(), &["b", "c"]);
        assert_eq!(c.next(), Some("b"));
        assert_eq!(c.next(), Some("c"));
        assert!(c.is_empty());
        assert_eq!(c.next(), None);
        assert_eq!(c.peek2(), None);
        assert!(c.rest().is_empty());
    }
}
