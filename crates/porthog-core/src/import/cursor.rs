//! A cursor over the lines of one input, with 1-based line numbers and one line of lookahead
//! past the current one (a table header is recognised by the rule line under it).

/// One line, without its line ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based.
    pub no: usize,
    pub text: &'a str,
}

#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    name: &'a str,
    rest: &'a str,
    no: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(name: &'a str, text: &'a str) -> Cursor<'a> {
        Cursor { name, rest: text, no: 0 }
    }

    /// The input's name, for errors.
    pub fn name(&self) -> &'a str {
        self.name
    }

    fn split(rest: &'a str) -> Option<(&'a str, &'a str)> {
        if rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        Some((line.strip_suffix('\r').unwrap_or(line), rest))
    }

    /// The next line, without consuming it.
    pub fn peek(&self) -> Option<Line<'a>> {
        Cursor::split(self.rest).map(|(text, _)| Line { no: self.no + 1, text })
    }

    /// The line after the next one.
    pub fn peek2(&self) -> Option<Line<'a>> {
        self.peek_nth(1)
    }

    /// The line `n` lines after the next one (0 is the next one).
    pub fn peek_nth(&self, n: usize) -> Option<Line<'a>> {
        let mut rest = self.rest;
        for _ in 0..n {
            rest = Cursor::split(rest)?.1;
        }
        Cursor::split(rest).map(|(text, _)| Line { no: self.no + n + 1, text })
    }

    /// Consumes and returns the next line.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Line<'a>> {
        let (text, rest) = Cursor::split(self.rest)?;
        self.rest = rest;
        self.no += 1;
        Some(Line { no: self.no, text })
    }

    /// Consumes `line`, which `peek()` just returned, without scanning for its end again.
    pub fn consume(&mut self, line: Line<'a>) {
        debug_assert_eq!(line.no, self.no + 1);
        let mut n = line.text.len();
        let bytes = self.rest.as_bytes();
        if bytes.get(n) == Some(&b'\r') {
            n += 1;
        }
        if bytes.get(n) == Some(&b'\n') {
            n += 1;
        }
        self.rest = &self.rest[n..];
        self.no += 1;
    }

    /// The rest of the input from the next line on, and the number that line will have.
    pub fn remaining(&self) -> (&'a str, usize) {
        (self.rest, self.no + 1)
    }

    /// Skips to the end of `consumed`, a prefix of `remaining()` that a parser read itself.
    pub fn advance(&mut self, consumed: &str) {
        let n = consumed.len().min(self.rest.len());
        self.no += consumed[..n].bytes().filter(|&b| b == b'\n').count();
        self.rest = &self.rest[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_and_strips_crlf() {
        let mut c = Cursor::new("f", "a\r\nb\n\nc");
        assert_eq!(c.peek2().map(|l| l.text), Some("b"));
        assert_eq!(c.next(), Some(Line { no: 1, text: "a" }));
        assert_eq!(c.next(), Some(Line { no: 2, text: "b" }));
        assert_eq!(c.next(), Some(Line { no: 3, text: "" }));
        assert_eq!(c.peek(), Some(Line { no: 4, text: "c" }));
        assert_eq!(c.next(), Some(Line { no: 4, text: "c" }));
        assert_eq!(c.next(), None);
    }

    #[test]
    fn consume_matches_next() {
        let text = "a\r\nbb\n\nc\r\n";
        let (mut a, mut b) = (Cursor::new("f", text), Cursor::new("f", text));
        while let Some(line) = a.peek() {
            a.consume(line);
            assert_eq!(b.next(), Some(line));
            assert_eq!(a.remaining(), b.remaining());
        }
        assert_eq!(b.next(), None);
    }

    #[test]
    fn advance_keeps_line_numbers() {
        let mut c = Cursor::new("f", "a\nb\nc\n");
        c.next();
        let (rest, no) = c.remaining();
        assert_eq!(no, 2);
        c.advance(&rest[..2]);
        assert_eq!(c.next(), Some(Line { no: 3, text: "c" }));
        assert_eq!(c.next(), None);
    }
}
