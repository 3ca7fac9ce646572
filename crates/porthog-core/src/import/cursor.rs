//! A cursor over the lines of one input, with 1-based line numbers and one line of lookahead
//! past the current one (a table header is recognised by the rule line under it). As it moves
//! on it tells the caller's `Release` which prefix of the text is read, every few MiB.

/// One line, without its line ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based.
    pub no: usize,
    pub text: &'a str,
}

/// Told each span of an input the reader is done with, in turn (it may still look back at a line
/// or two, so the caller may drop those bytes from memory but must be able to bring them back: a
/// mapped file's pages, not a buffer it frees). A million-row capture then never sits in memory
/// whole (issue 11: under 200 bytes per row). Bytes that are not the caller's (a decoded copy)
/// are simply not its to release. A large section is read on two threads at once (split.rs),
/// each telling its own spans: hence `Sync`.
#[derive(Clone, Copy)]
pub struct Release<'a>(pub &'a (dyn Fn(&[u8]) + Sync));

impl Release<'_> {
    /// Releases nothing: the input stays in memory (a buffer read whole).
    pub const NONE: Release<'static> = Release(&|_| {});

    /// Bytes read between two calls.
    pub(crate) const EVERY: usize = 4 << 20;
}

impl std::fmt::Debug for Release<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Release")
    }
}

#[derive(Debug)]
pub struct Cursor<'a> {
    name: &'a str,
    text: &'a str,
    rest: &'a str,
    no: usize,
    release: Release<'a>,
    /// Where the last release ended, in bytes of `text`.
    released: usize,
    /// A jump in the walk (split.rs): on reaching byte `at` of `text`, go on at byte `to`,
    /// `lines` lines further on.
    jump: Option<Jump>,
}

#[derive(Debug, Clone, Copy)]
struct Jump {
    at: usize,
    to: usize,
    lines: usize,
}

/// A copy looks ahead; only the cursor that owns the walk releases what it passed.
impl Clone for Cursor<'_> {
    fn clone(&self) -> Self {
        Cursor { release: Release::NONE, released: usize::MAX, jump: self.jump, ..*self }
    }
}

impl<'a> Cursor<'a> {
    pub fn new(name: &'a str, text: &'a str) -> Cursor<'a> {
        Cursor::paged(name, text, Release::NONE)
    }

    /// A cursor that releases the text behind it as it goes.
    pub fn paged(name: &'a str, text: &'a str, release: Release<'a>) -> Cursor<'a> {
        Cursor { name, text, rest: text, no: 0, release, released: 0, jump: None }
    }

    /// Moves on to `rest`, releasing what lies behind once enough has been read.
    fn go(&mut self, rest: &'a str) {
        self.rest = rest;
        let mut done = self.text.len() - rest.len();
        if let Some(j) = self.jump
            && done >= j.at
        {
            self.jump = None;
            self.rest = &self.text[j.to..];
            self.no += j.lines;
            done = j.to;
            // What lies before the jump is the other reader's to release.
            self.released = j.to;
        }
        if done.saturating_sub(self.released) >= Release::EVERY {
            (self.release.0)(&self.text.as_bytes()[self.released..done]);
            self.released = done;
        }
    }

    /// Where the next line starts, in bytes of the whole text.
    pub(crate) fn offset(&self) -> usize {
        self.text.len() - self.rest.len()
    }

    /// Two cursors over the section that starts at the next line, for two threads (split.rs):
    /// the first reads up to byte `mid` of `remaining()` and stops there, as at the end of the
    /// input; the second reads the section's first `head` bytes (its header), then goes on at
    /// `mid`, numbering lines as if it had read what lies between (once `add_skipped_lines`
    /// has told it how many there are).
    pub(crate) fn halves(&self, head: usize, mid: usize) -> (Cursor<'a>, Cursor<'a>) {
        let at = self.offset();
        let first =
            Cursor { text: &self.text[..at + mid], rest: &self.rest[..mid], jump: None, ..*self };
        let mut second = Cursor {
            released: usize::MAX,
            jump: Some(Jump { at: at + head, to: at + mid, lines: 0 }),
            ..*self
        };
        // A section with no header goes on at `mid` at once.
        second.go(second.rest);
        (first, second)
    }

    /// Counts `n` more lines jumped over (see `halves`), before or after the jump.
    pub(crate) fn add_skipped_lines(&mut self, n: usize) {
        match &mut self.jump {
            Some(j) => j.lines += n,
            None => self.no += n,
        }
    }

    /// Lines consumed so far (the number of the last one).
    pub(crate) fn line_no(&self) -> usize {
        self.no
    }

    /// Takes up where `other`, a cursor `halves` made of this one, stopped.
    pub(crate) fn resume(&mut self, other: &Cursor<'a>) {
        let done = other.offset();
        self.rest = &self.text[done..];
        self.no = other.no;
        self.released = other.released.min(done);
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
        self.go(rest);
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
        self.go(&self.rest[n..]);
        self.no += 1;
    }

    /// The rest of the input from the next line on, and the number that line will have.
    pub fn remaining(&self) -> (&'a str, usize) {
        (self.rest, self.no + 1)
    }

    /// Skips to the end of `consumed`, a prefix of `remaining()` that a parser read itself.
    pub fn advance(&mut self, consumed: &str) {
        let n = consumed.len().min(self.rest.len());
        self.no += memchr::memchr_iter(b'\n', &consumed.as_bytes()[..n]).count();
        self.go(&self.rest[n..]);
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
    fn releases_what_it_passed_and_copies_release_nothing() {
        let line = "x".repeat(1023) + "\n";
        let text = line.repeat(3 * Release::EVERY / 1024);
        let seen = std::sync::Mutex::new(Vec::new());
        let record = |b: &[u8]| seen.lock().unwrap().push(b.len());
        let mut c = Cursor::paged("f", &text, Release(&record));
        let mut ahead = c.clone();
        while ahead.next().is_some() {}
        assert!(seen.lock().unwrap().is_empty(), "a lookahead copy released something");
        while let Some(l) = c.peek() {
            c.consume(l);
        }
        assert_eq!(*seen.lock().unwrap(), [Release::EVERY; 3]);
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
