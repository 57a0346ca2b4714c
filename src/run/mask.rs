//! Streaming masking of injected values in a command's output
//! (docs/design.md §13, docs/run.md "Masking").
//!
//! A safety net, not a boundary: a command that wants to leak a value can
//! always transform it first. What it catches is the common accident: a
//! value printed as it is, as its base64, or inside JSON.
//!
//! The output is a byte stream (not necessarily UTF-8) that arrives in
//! arbitrary pieces. One Aho-Corasick automaton (leftmost-longest, so of a
//! value and a longer value it starts, the longer wins) finds every form
//! of every value. Only the shortest tail that could still grow into a
//! match is held back between writes: a progress line without a newline
//! goes out at once unless its last bytes begin a value. The held tail is
//! shorter than the longest pattern, so memory stays bounded whatever the
//! output's size.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use zeroize::Zeroizing;

/// Values shorter than this are not masked: replacing every occurrence of
/// a two-letter string would garble the output and hide nothing (docs/run.md).
pub const MIN_MASKED_LEN: usize = 4;

/// The compiled forms of every value, shared by the stdout and stderr
/// pumps.
pub struct Patterns {
    ac: AhoCorasick,
    /// Per pattern: its bytes (for the held-tail check) and its
    /// replacement. The automaton keeps its own copy, which cannot be
    /// wiped; ours is.
    patterns: Vec<Zeroizing<Vec<u8>>>,
    labels: Vec<Vec<u8>>,
    /// Bytes that begin some pattern: a tail starting with any other byte
    /// cannot begin a match.
    first: [bool; 256],
    max_len: usize,
}

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patterns")
            .field("count", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

/// The forms a value is searched in: as it is, JSON-escaped (serde's and
/// Python's `ensure_ascii` escaping), and base64 (standard and URL-safe,
/// padded and not). Duplicates are dropped.
fn forms(value: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(value.as_bytes().to_vec())];
    let json = Zeroizing::new(serde_json::to_string(value).expect("a string serialises"));
    out.push(Zeroizing::new(json[1..json.len() - 1].as_bytes().to_vec()));
    out.push(Zeroizing::new(ascii_json_escape(value).into_bytes()));
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        out.push(Zeroizing::new(engine.encode(value.as_bytes()).into_bytes()));
    }
    let mut uniq: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(out.len());
    for f in out {
        if !uniq.iter().any(|u| **u == *f) {
            uniq.push(f);
        }
    }
    uniq
}

/// JSON string escaping as Python's `json.dumps` does by default: every
/// non-ASCII character as `\uXXXX` (surrogate pairs above the BMP).
fn ascii_json_escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    s.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => s.push(c),
        }
    }
    s
}

impl Patterns {
    /// Patterns for `(binding name, value)` pairs. Returns the patterns
    /// (`None` when nothing is long enough to mask) and the names of the
    /// values too short to mask, for the caller to warn about.
    pub fn new<'a>(
        values: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (Option<Arc<Self>>, Vec<String>) {
        let mut patterns = Vec::new();
        let mut labels = Vec::new();
        let mut short = Vec::new();
        for (name, value) in values {
            if value.len() < MIN_MASKED_LEN {
                if !value.is_empty() {
                    short.push(name.to_string());
                }
                continue;
            }
            let label = format!("[MASKED:{name}]").into_bytes();
            for f in forms(value) {
                if !patterns.iter().any(|p: &Zeroizing<Vec<u8>>| **p == *f) {
                    patterns.push(f);
                    labels.push(label.clone());
                }
            }
        }
        if patterns.is_empty() {
            return (None, short);
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_slice()))
            .expect("patterns of bounded size build");
        let mut first = [false; 256];
        for p in &patterns {
            first[p[0] as usize] = true;
        }
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let p = Self {
            ac,
            patterns,
            labels,
            first,
            max_len,
        };
        (Some(Arc::new(p)), short)
    }

    /// The longest pattern: no more than this minus one byte is ever held.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Where the longest suffix of `buf` that is a proper prefix of some
    /// pattern begins (`buf.len()` when there is none): the bytes from
    /// there on may still become a match and must wait for more input.
    fn hold_start(&self, buf: &[u8]) -> usize {
        let from = buf.len().saturating_sub(self.max_len.saturating_sub(1));
        for i in from..buf.len() {
            if !self.first[buf[i] as usize] {
                continue;
            }
            let tail = &buf[i..];
            if self
                .patterns
                .iter()
                .any(|p| p.len() > tail.len() && p.starts_with(tail))
            {
                return i;
            }
        }
        buf.len()
    }
}

/// One output stream's masker: feed it what the command wrote, write out
/// what it returns.
pub struct Masker {
    p: Arc<Patterns>,
    /// The held tail (always shorter than the longest pattern), then the
    /// newly fed bytes while a feed runs.
    buf: Zeroizing<Vec<u8>>,
}

impl Masker {
    pub fn new(p: Arc<Patterns>) -> Self {
        let cap = p.max_len + 64 * 1024;
        Self {
            p,
            buf: Zeroizing::new(Vec::with_capacity(cap)),
        }
    }

    /// Mask `input` (the next bytes of the stream) into `out`. Everything
    /// that can no longer be part of a match is written; a tail that could
    /// is kept for the next call.
    ///
    /// A match that starts before the held tail is final: any match still
    /// to come starts inside the tail, and leftmost-longest prefers the
    /// earlier start; and a longer pattern from the same start would make
    /// that start part of the tail.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.buf.extend_from_slice(input);
        loop {
            let hold = self.p.hold_start(&self.buf);
            let mut last = 0;
            for m in self.p.ac.find_iter(self.buf.as_slice()) {
                if m.start() >= hold {
                    break;
                }
                out.extend_from_slice(&self.buf[last..m.start()]);
                out.extend_from_slice(&self.p.labels[m.pattern().as_usize()]);
                last = m.end();
            }
            if last < hold {
                out.extend_from_slice(&self.buf[last..hold]);
                last = hold;
            }
            self.buf.drain(..last);
            // A match that ran into the tail consumed part of it: what is
            // left may no longer begin a match, so look again.
            if last <= hold || self.buf.is_empty() {
                break;
            }
        }
    }

    /// The stream ended: mask and write out the held tail.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let mut last = 0;
        for m in self.p.ac.find_iter(self.buf.as_slice()) {
            out.extend_from_slice(&self.buf[last..m.start()]);
            out.extend_from_slice(&self.p.labels[m.pattern().as_usize()]);
            last = m.end();
        }
        out.extend_from_slice(&self.buf[last..]);
        self.buf.clear();
    }

    /// Bytes held back right now (for tests and the memory bound).
    pub fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(v: &[(&str, &str)]) -> Arc<Patterns> {
        Patterns::new(v.iter().copied()).0.expect("patterns")
    }

    /// Mask `input` fed in pieces split at `cuts`.
    fn mask_split(p: &Arc<Patterns>, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut m = Masker::new(p.clone());
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            m.feed(&input[at..c], &mut out);
            assert!(m.held() < p.max_len(), "held {} bytes", m.held());
            at = c;
        }
        m.feed(&input[at..], &mut out);
        m.finish(&mut out);
        out
    }

    fn mask(p: &Arc<Patterns>, input: &[u8]) -> Vec<u8> {
        mask_split(p, input, &[])
    }

    const KEY: &str = "sk-live-0123456789abcdef";

    #[test]
    fn a_value_split_across_writes_at_every_offset_is_masked() {
        let p = patterns(&[("OPENAI_API_KEY", KEY)]);
        let input = format!("token={KEY}; again {KEY}!\n");
        let want = b"token=[MASKED:OPENAI_API_KEY]; again [MASKED:OPENAI_API_KEY]!\n".to_vec();
        for a in 0..=input.len() {
            assert_eq!(mask_split(&p, input.as_bytes(), &[a]), want, "cut at {a}");
            for b in a..=input.len() {
                assert_eq!(
                    mask_split(&p, input.as_bytes(), &[a, b]),
                    want,
                    "cuts at {a}, {b}"
                );
            }
        }
        // One byte per write.
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(mask_split(&p, input.as_bytes(), &every), want);
    }

    #[test]
    fn base64_and_json_escaped_forms_are_masked() {
        let v = "p\"ss\\wörd/€𝄞\n";
        let p = patterns(&[("PW", v)]);
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let serde = serde_json::to_string(v).unwrap();
        let python = ascii_json_escape(v);
        assert!(python.contains("\\u00f6") && python.contains("\\ud834\\udd1e"));
        for form in [
            STANDARD.encode(v),
            URL_SAFE_NO_PAD.encode(v),
            serde[1..serde.len() - 1].to_string(),
            python,
        ] {
            let input = format!("x {form} y");
            assert_eq!(mask(&p, input.as_bytes()), b"x [MASKED:PW] y", "{form}");
        }
        let json = serde_json::json!({"key": v}).to_string();
        assert_eq!(
            String::from_utf8(mask(&p, json.as_bytes())).unwrap(),
            r#"{"key":"[MASKED:PW]"}"#
        );
    }

    #[test]
    fn of_a_value_and_a_longer_one_it_begins_the_longer_wins() {
        let p = patterns(&[("SHORT", "abcd1234"), ("LONG", "abcd1234-extended")]);
        let input = b"1 abcd1234-extended 2 abcd1234 3 abcd1234-ext";
        let want = b"1 [MASKED:LONG] 2 [MASKED:SHORT] 3 [MASKED:SHORT]-ext".to_vec();
        for a in 0..=input.len() {
            assert_eq!(mask_split(&p, input, &[a]), want, "cut at {a}");
        }
    }

    #[test]
    fn output_is_held_only_while_it_may_still_become_a_value() {
        let p = patterns(&[("K", KEY)]);
        let mut m = Masker::new(p.clone());
        let mut out = Vec::new();
        // A progress line without a newline goes out whole, at once.
        m.feed(b"progress 42%", &mut out);
        assert_eq!(out, b"progress 42%");
        assert_eq!(m.held(), 0);
        // A tail that begins the value waits, and only that tail.
        out.clear();
        m.feed(b" then sk-li", &mut out);
        assert_eq!(out, b" then ");
        assert_eq!(m.held(), 5);
        // ...until it turns out not to be the value.
        out.clear();
        m.feed(b"ly", &mut out);
        assert_eq!(out, b"sk-lily");
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn non_utf8_output_passes_through_byte_for_byte() {
        let p = patterns(&[("K", KEY)]);
        let mut input = vec![0xff, 0xfe, 0x00, 0x80];
        input.extend_from_slice(KEY.as_bytes());
        input.extend_from_slice(&[0xc3, 0x28, 0xa0]);
        let mut want = vec![0xff, 0xfe, 0x00, 0x80];
        want.extend_from_slice(b"[MASKED:K]");
        want.extend_from_slice(&[0xc3, 0x28, 0xa0]);
        for a in 0..=input.len() {
            assert_eq!(mask_split(&p, &input, &[a]), want, "cut at {a}");
        }
    }

    #[test]
    fn a_hundred_megabytes_stream_through_bounded_memory() {
        let p = patterns(&[("K", KEY), ("B", "another-secret-value")]);
        let mut m = Masker::new(p.clone());
        let mut chunk = Vec::with_capacity(64 * 1024);
        while chunk.len() < 64 * 1024 - 100 {
            chunk.extend_from_slice(b"log line with nothing secret in it, 0123456789\n");
        }
        // A value split over the chunk boundary every time.
        chunk.extend_from_slice(&KEY.as_bytes()[..7]);
        let mut head = KEY.as_bytes()[7..].to_vec();
        head.extend_from_slice(b" tail\n");
        let (mut total, mut masked) = (0usize, 0usize);
        let mut out = Vec::with_capacity(128 * 1024);
        let mut first = true;
        while total < 100 * 1024 * 1024 {
            out.clear();
            if !first {
                m.feed(&head, &mut out);
                total += head.len();
            }
            first = false;
            m.feed(&chunk, &mut out);
            total += chunk.len();
            masked += out.windows(10).filter(|w| w == b"[MASKED:K]").count();
            assert!(out.capacity() <= 128 * 1024, "output buffer grew");
            assert!(m.held() < p.max_len());
        }
        assert!(
            m.buf.capacity() <= p.max_len() + 128 * 1024,
            "held buffer grew"
        );
        assert!(masked > 1500, "{masked}");
    }

    #[test]
    fn short_and_empty_values_are_not_masked_and_reported() {
        let (p, short) = Patterns::new([("A", "abc"), ("B", ""), ("C", KEY)]);
        assert_eq!(short, ["A"]);
        let p = p.unwrap();
        assert_eq!(mask(&p, b"abc"), b"abc");
        let (none, short) = Patterns::new([("A", "x")]);
        assert!(none.is_none());
        assert_eq!(short, ["A"]);
    }
}
