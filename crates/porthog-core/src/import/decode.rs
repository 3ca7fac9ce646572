//! Bytes to text: the encodings Windows and Linux captures arrive in. A BOM decides; otherwise
//! valid UTF-8 is UTF-8, and anything else is an OEM code page (what cmd.exe redirects write):
//! Shift-JIS (932) when it decodes cleanly as such, else 850 (437 and 850 agree on the letters
//! netstat's German output uses). `--encoding` overrides the guess.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cursor::Release;

/// A text encoding porthog reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "utf-8-bom")]
    Utf8Bom,
    #[serde(rename = "utf-16le")]
    Utf16Le,
    #[serde(rename = "utf-16be")]
    Utf16Be,
    #[serde(rename = "cp437")]
    Cp437,
    #[serde(rename = "cp850")]
    Cp850,
    #[serde(rename = "cp932")]
    Cp932,
}

impl Encoding {
    pub const ALL: [Encoding; 7] = [
        Encoding::Utf8,
        Encoding::Utf8Bom,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
        Encoding::Cp437,
        Encoding::Cp850,
        Encoding::Cp932,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Bom => "utf-8-bom",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Cp437 => "cp437",
            Encoding::Cp850 => "cp850",
            Encoding::Cp932 => "cp932",
        }
    }

    /// Other names accepted for it (after lowercasing), e.g. what `chcp` or an editor calls it.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Encoding::Utf8 => &["utf8"],
            Encoding::Utf16Le => &["utf16", "utf-16", "unicode", "utf16le", "utf_16le"],
            Encoding::Utf16Be => &["utf16be", "utf_16be"],
            Encoding::Utf8Bom => &["utf8-bom", "utf_8_bom"],
            Encoding::Cp437 => &["437", "ibm437"],
            Encoding::Cp850 => &["850", "ibm850"],
            Encoding::Cp932 => &["932", "shift-jis", "shift_jis", "sjis", "shift-jis2004"],
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Encoding, String> {
        let name = s.to_ascii_lowercase();
        Encoding::ALL
            .into_iter()
            .find(|e| e.as_str() == name || e.aliases().contains(&name.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = Encoding::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown encoding {s:?}; known: {}", names.join(", "))
            })
    }
}

/// `--encoding NAME` on the command line: the names and aliases above, listed in `--help`.
#[cfg(feature = "clap")]
impl clap::ValueEnum for Encoding {
    fn value_variants<'a>() -> &'a [Self] {
        &Encoding::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new(self.as_str())
                .aliases(self.aliases().iter().copied()),
        )
    }
}

/// Decodes `bytes` with `forced`, or with the encoding they look like. Never fails: bytes that
/// do not fit become U+FFFD, which later shows up in the line that cannot be parsed.
pub fn decode(bytes: &[u8], forced: Option<Encoding>) -> (Cow<'_, str>, Encoding) {
    decode_paged(bytes, forced, Release::NONE)
}

/// [`decode`], releasing the bytes it has validated as it goes (see [`Release`]).
pub fn decode_paged<'a>(
    bytes: &'a [u8],
    forced: Option<Encoding>,
    release: Release<'_>,
) -> (Cow<'a, str>, Encoding) {
    // The common case, BOM-less UTF-8 (and ASCII), is validated once and borrowed.
    if forced.is_none()
        && !bytes.starts_with(b"\xEF\xBB\xBF")
        && !looks_utf16(bytes)
        && let Some(text) = utf8_paged(bytes, release)
    {
        return (Cow::Borrowed(text), Encoding::Utf8);
    }
    let enc = forced.unwrap_or_else(|| sniff(bytes));
    let text = match enc {
        Encoding::Utf8 | Encoding::Utf8Bom => {
            let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            // Valid UTF-8 (nearly always) borrows after one fast check; only bad bytes pay for lossy.
            match std::str::from_utf8(body) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(body),
            }
        }
        Encoding::Utf16Le => {
            Cow::Owned(encoding_rs::UTF_16LE.decode_with_bom_removal(bytes).0.into_owned())
        }
        Encoding::Utf16Be => {
            Cow::Owned(encoding_rs::UTF_16BE.decode_with_bom_removal(bytes).0.into_owned())
        }
        Encoding::Cp932 => {
            Cow::Owned(encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes).0.into_owned())
        }
        Encoding::Cp437 => Cow::Owned(oem_cp::decode_string_complete_table(
            bytes,
            &oem_cp::code_table::DECODING_TABLE_CP437,
        )),
        Encoding::Cp850 => Cow::Owned(oem_cp::decode_string_complete_table(
            bytes,
            &oem_cp::code_table::DECODING_TABLE_CP850,
        )),
    };
    (text, enc)
}

/// `bytes` as UTF-8 if they are, validated a few MiB at a time with each piece released after.
fn utf8_paged<'a>(bytes: &'a [u8], release: Release<'_>) -> Option<&'a str> {
    let mut start = 0;
    while start < bytes.len() {
        let from = start;
        let end = (start + Release::EVERY).min(bytes.len());
        match std::str::from_utf8(&bytes[start..end]) {
            Ok(_) => start = end,
            // A character split by the piece's end: the next piece starts with it.
            Err(e) if e.error_len().is_none() && end < bytes.len() && e.valid_up_to() > 0 => {
                start += e.valid_up_to();
            }
            Err(_) => return None,
        }
        (release.0)(&bytes[from..start]);
    }
    // SAFETY: every byte of `bytes` was checked above, in pieces that end on character
    // boundaries (a piece ends either at the end or where its last whole character does), so
    // the whole is valid UTF-8, provided the bytes do not change after they were checked: a
    // released page of a mapped file is read back from the file, which the caller must not
    // let be written meanwhile (`Release`).
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Whether `text`, decoded from `bytes` as `enc`, is a binary file rather than captured text:
/// a NUL outside UTF-16 (where every ASCII character carries one), or control characters that
/// no capture prints (text keeps tab, line feed, carriage return, form feed and ESC of coloured
/// output). Judged on the first 8 KiB, which a binary's header fills with both; 1 % of control
/// characters is already no text.
pub fn is_binary(bytes: &[u8], text: &str, enc: Encoding) -> bool {
    const HEAD: usize = 8 * 1024;
    let (sample, controls) = if matches!(enc, Encoding::Utf16Le | Encoding::Utf16Be) {
        let head = &text[..text.floor_char_boundary(HEAD)];
        (head.chars().count(), head.chars().filter(|&c| is_stray_control(c)).count())
    } else {
        // Every encoding read here keeps ASCII control bytes as they are: count bytes.
        let head = &bytes[..bytes.len().min(HEAD)];
        if memchr::memchr(0, head).is_some() {
            return true;
        }
        (head.len(), head.iter().filter(|&&b| b < 0x80 && is_stray_control(char::from(b))).count())
    };
    controls > 0 && controls * 100 >= sample
}

/// A control character no capture prints, NUL included (UTF-16 text decodes without it).
pub(crate) fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b')
}

fn sniff(bytes: &[u8]) -> Encoding {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Encoding::Utf8Bom;
    }
    if bytes.starts_with(b"\xFF\xFE") {
        return Encoding::Utf16Le;
    }
    if bytes.starts_with(b"\xFE\xFF") {
        return Encoding::Utf16Be;
    }
    if let Some(enc) = utf16_without_bom(bytes) {
        return enc;
    }
    if std::str::from_utf8(bytes).is_ok() {
        return Encoding::Utf8;
    }
    // Invalid UTF-8 only in a cut last character (a truncated paste) is still UTF-8.
    if let Err(e) = std::str::from_utf8(bytes)
        && e.error_len().is_none()
        && bytes.len() - e.valid_up_to() < 4
        && bytes[..e.valid_up_to()].iter().any(|&b| b >= 0x80)
    {
        return Encoding::Utf8;
    }
    let (text, sjis_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    if !sjis_errors && is_japanese(&text) { Encoding::Cp932 } else { Encoding::Cp850 }
}

/// UTF-16 without a BOM: ASCII text has a NUL in every other byte.
fn utf16_without_bom(bytes: &[u8]) -> Option<Encoding> {
    let head = &bytes[..bytes.len().min(512)];
    let odd_nuls = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    let even_nuls = head.iter().step_by(2).filter(|&&b| b == 0).count();
    if head.len() >= 4 && odd_nuls * 10 >= head.len() * 4 {
        Some(Encoding::Utf16Le)
    } else if head.len() >= 4 && even_nuls * 10 >= head.len() * 4 {
        Some(Encoding::Utf16Be)
    } else {
        None
    }
}

fn looks_utf16(bytes: &[u8]) -> bool {
    utf16_without_bom(bytes).is_some()
}

/// Shift-JIS-decoded text that reads as Japanese: kana make up a good share of its non-ASCII
/// characters. OEM Latin text (cp850's Ö is 0x99, a valid Shift-JIS lead byte) decodes into
/// scattered kanji, almost never into kana.
fn is_japanese(text: &str) -> bool {
    let (mut kana, mut other) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_ascii()) {
        if ('\u{3040}'..='\u{30FF}').contains(&c) { kana += 1 } else { other += 1 }
    }
    kana >= 3 && kana * 3 >= other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_validated_in_released_pieces() {
        // A three-byte character straddles the end of the first piece.
        let mut text = "a".repeat(Release::EVERY - 1) + "€";
        text += &"b".repeat(Release::EVERY);
        let seen = std::sync::Mutex::new(Vec::new());
        let base = text.as_ptr() as usize;
        let record = |b: &[u8]| seen.lock().unwrap().push(b.as_ptr() as usize - base + b.len());
        let (out, enc) = decode_paged(text.as_bytes(), None, Release(&record));
        assert_eq!((out, enc), (Cow::Borrowed(text.as_str()), Encoding::Utf8));
        // Each span ends where the last whole character of its piece does.
        assert_eq!(*seen.lock().unwrap(), [Release::EVERY - 1, 2 * Release::EVERY - 1, text.len()]);
        // A bad byte anywhere is not UTF-8, however far in.
        let mut bad = text.into_bytes();
        bad.push(0x99);
        assert_eq!(decode(&bad, None).1, Encoding::Cp850);
    }

    #[test]
    fn boms_decide() {
        assert_eq!(decode(b"\xEF\xBB\xBFProto", None), (Cow::Borrowed("Proto"), Encoding::Utf8Bom));
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("Proto\r\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let (text, enc) = decode(&utf16, None);
        assert_eq!((text.as_ref(), enc), ("Proto\r\n", Encoding::Utf16Le));
    }

    #[test]
    fn bomless_utf16_is_recognised() {
        let utf16: Vec<u8> =
            "  TCP    0.0.0.0:135".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode(&utf16, None).1, Encoding::Utf16Le);
    }

    #[test]
    fn german_oem_text() {
        // "ABHÖREN" and "Lokale Adresse" as cmd.exe writes them in code page 850.
        let bytes = b"  TCP    0.0.0.0:135    0.0.0.0:0    ABH\x99REN    1000\r\n";
        let (text, enc) = decode(bytes, None);
        assert_eq!(enc, Encoding::Cp850);
        assert!(text.contains("ABHÖREN"), "{text}");
        assert_eq!(decode(bytes, Some(Encoding::Cp437)).0, text, "437 and 850 agree on umlauts");
    }

    #[test]
    fn german_cp850_is_not_mistaken_for_shift_jis() {
        // "ABHÖREN" and "SCHLIESSEN_WARTEN" in cp850: 0x99 0x52 is also a Shift-JIS kanji.
        let bytes = b"  TCP    0.0.0.0:135    0.0.0.0:0    ABH\x99REN    960\r\n  TCP    0.0.0.0:445    0.0.0.0:0    ABH\x99REN    4\r\n\
                      \x20 TCP    0.0.0.0:446    0.0.0.0:0    ABH\x99REN    4\r\n  TCP    0.0.0.0:447    0.0.0.0:0    ABH\x99REN    4\r\n";
        assert_eq!(decode(bytes, None).1, Encoding::Cp850);
    }

    #[test]
    fn japanese_shift_jis() {
        let (bytes, _, _) = encoding_rs::SHIFT_JIS
            .encode("アクティブな接続\r\n  プロトコル  ローカル アドレス\r\n");
        let (text, enc) = decode(&bytes, None);
        assert_eq!(enc, Encoding::Cp932);
        assert!(text.contains("アクティブな接続"));
    }

    #[test]
    fn binaries_are_not_text() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0";
        let (text, enc) = decode(elf, None);
        assert!(is_binary(elf, &text, enc));
        // Control characters without a NUL (a compressed or encrypted blob).
        let blob: Vec<u8> = (1u8..=255).cycle().take(2000).collect();
        let (text, enc) = decode(&blob, None);
        assert!(is_binary(&blob, &text, enc));
        // UTF-16 has a NUL in every other byte and is text.
        let utf16: Vec<u8> =
            "  TCP    0.0.0.0:135\r\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let (text, enc) = decode(&utf16, None);
        assert!(!is_binary(&utf16, &text, enc));
        // OEM letters in 0x80-0x9F (cp850's ü is 0x81) are text, not C1 controls.
        let german = b"Portausschlussbereiche f\x81r Protokoll tcp\r\n\x81\x81\x81\x81\r\n";
        let (text, enc) = decode(german, None);
        assert!(!is_binary(german, &text, enc));
        // Tabs, CRLF, a form feed and colour escapes are text.
        let plain = b"State\tRecv-Q\r\n\x1b[32mESTAB\x1b[0m 0 0\x0c\n";
        let (text, enc) = decode(plain, None);
        assert!(!is_binary(plain, &text, enc));
    }

    #[test]
    fn names_parse() {
        assert_eq!("850".parse::<Encoding>(), Ok(Encoding::Cp850));
        assert_eq!("Shift_JIS".parse::<Encoding>(), Ok(Encoding::Cp932));
        assert_eq!("UTF-16".parse::<Encoding>(), Ok(Encoding::Utf16Le));
        assert!("ebcdic".parse::<Encoding>().unwrap_err().contains("known: utf-8"));
    }
}
