//! `usage` read from a canonical answer in one pass, without building
//! anything for the rest of it.
//!
//! The host reads usage from every non-stream answer and from the usage
//! chunk of every stream. serde's derive spent about 16 instructions per
//! byte doing it, most of them walking `choices` only to drop them. This
//! scanner checks the whole document as strictly as serde does, but it
//! answers only for the shape upstreams send: a top-level object with plain
//! ASCII keys, `usage` at most once, counts as plain unsigned integers. For
//! anything else (escaped or non-ASCII keys, an array where an object
//! belongs, `1.0` or `-0` as a count, a repeated field, nesting beyond 128)
//! it answers `None` and the caller asks serde, so every usage Sluice
//! charges is the one serde reads.

use super::chat::{CompletionDetails, PromptDetails, UsageJson};

/// `Some(usage)` when the document is valid and of the common shape,
/// `None` when serde must decide.
pub(super) fn usage(json: &[u8]) -> Option<Option<UsageJson>> {
    let mut cursor = Cursor { json, at: 0 };
    let mut usage = None;
    let mut seen = false;
    cursor.object(|cursor, key| match key {
        b"usage" if !seen => {
            seen = true;
            usage = cursor.nullable(Cursor::usage)?;
            Some(())
        }
        b"usage" => None,
        _ => cursor.skip_value(),
    })?;
    cursor.peek().is_none().then_some(usage)
}

/// Nesting deeper than this is left to serde; the frames fit in a `u128`.
const MAX_DEPTH: u32 = 128;

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte after whitespace (JSON's four), not consumed.
    fn peek(&mut self) -> Option<u8> {
        // Most tokens follow one another without spaces.
        match self.json.get(self.at) {
            Some(&byte) if byte > b' ' => return Some(byte),
            None => return None,
            _ => {}
        }
        while let Some(&byte) = self.json.get(self.at) {
            match byte {
                b' ' | b'\n' | b'\t' | b'\r' => self.at += 1,
                _ => return Some(byte),
            }
        }
        None
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// An object whose keys are compared: `member` gets each key with the
    /// cursor on its value, and must consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.plain_key()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A key of ASCII without control characters or escapes, the only
    /// kind compared here: serde would unescape (`"us\u0061ge"` is `usage`
    /// to it) and check non-ASCII keys as UTF-8.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.json[self.at..];
        let length = plain_run::<true>(rest);
        if rest.get(length) != Some(&b'"') {
            return None;
        }
        self.at += length + 1;
        Some(&rest[..length])
    }

    /// `null` as `None`, anything else read by `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    fn usage(&mut self) -> Option<UsageJson> {
        let mut usage = UsageJson::default();
        let mut seen = [false; 5];
        self.object(|cursor, key| {
            let field = match key {
                b"prompt_tokens" => 0,
                b"completion_tokens" => 1,
                b"total_tokens" => 2,
                b"prompt_tokens_details" => 3,
                b"completion_tokens_details" => 4,
                _ => return cursor.skip_value(),
            };
            if std::mem::replace(&mut seen[field], true) {
                return None;
            }
            match field {
                0 => usage.prompt_tokens = cursor.count()?,
                1 => usage.completion_tokens = cursor.count()?,
                2 => usage.total_tokens = cursor.count()?,
                3 => {
                    usage.prompt_tokens_details = cursor.nullable(|cursor| {
                        let cached_tokens = cursor.detail(b"cached_tokens")?;
                        Some(PromptDetails { cached_tokens })
                    })?;
                }
                _ => {
                    usage.completion_tokens_details = cursor.nullable(|cursor| {
                        let reasoning_tokens = cursor.detail(b"reasoning_tokens")?;
                        Some(CompletionDetails { reasoning_tokens })
                    })?;
                }
            }
            Some(())
        })?;
        Some(usage)
    }

    /// A details object's one known field, a nullable count.
    fn detail(&mut self, name: &[u8]) -> Option<Option<u64>> {
        let mut value = None;
        let mut seen = false;
        self.object(|cursor, key| {
            if key != name {
                return cursor.skip_value();
            }
            if std::mem::replace(&mut seen, true) {
                return None;
            }
            value = cursor.nullable(Cursor::count)?;
            Some(())
        })?;
        Some(value)
    }

    /// A count: digits only, no leading zero, within `u64`. serde refuses
    /// anything else for a `u64` (`-0` and `7.0` too) and says why, so
    /// anything else is left to it.
    fn count(&mut self) -> Option<u64> {
        self.peek()?;
        let start = self.at;
        let mut value = 0u64;
        while let Some(digit) = self.json.get(self.at).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || digits > 1 && self.json[start] == b'0' {
            return None;
        }
        match self.json.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.json[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Any value, checked as serde checks a value it ignores: strings'
    /// escapes and control characters, numbers' grammar, brackets, commas.
    fn skip_value(&mut self) -> Option<()> {
        // Bit i is set when frame i (innermost at bit 0) is an object.
        let mut frames = 0u128;
        let mut depth = 0u32;
        loop {
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.at += 1;
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? != close {
                        frames = frames << 1 | u128::from(object);
                        depth += 1;
                        if object {
                            self.skip_key()?;
                        }
                        continue;
                    }
                    self.at += 1;
                }
                b'"' => {
                    self.at += 1;
                    self.skip_string()?;
                }
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return None,
            }
            // A value ended: close what it ended, or go on after a comma.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = frames & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        if object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.at += 1;
                frames >>= 1;
                depth -= 1;
            }
        }
    }

    fn skip_key(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.skip_string()?;
        self.eat(b':')
    }

    /// The rest of a string whose opening quote is consumed.
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.at += plain_run::<false>(&self.json[self.at..]);
            match *self.json.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    let escape = *self.json.get(self.at + 1)?;
                    self.at += 2;
                    match escape {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.json.get(self.at..self.at + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 4;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        let digits = |cursor: &mut Self| {
            let count = cursor.json[cursor.at..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            cursor.at += count;
            (count > 0).then_some(count)
        };
        if self.json[self.at] == b'-' {
            self.at += 1;
        }
        let leading_zero = self.json.get(self.at) == Some(&b'0');
        if digits(self)? > 1 && leading_zero {
            return None;
        }
        if self.json.get(self.at) == Some(&b'.') {
            self.at += 1;
            digits(self)?;
        }
        if let Some(b'e' | b'E') = self.json.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.json.get(self.at) {
                self.at += 1;
            }
            digits(self)?;
        }
        Some(())
    }
}

/// How many bytes at the start of `bytes` need no attention inside a
/// string: neither a quote, a backslash nor a control character, nor, with
/// `ASCII_ONLY`, a byte above 0x7f. Eight bytes at a time, as answer text
/// makes up most of a body.
fn plain_run<const ASCII_ONLY: bool>(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Flags the bytes below `n` (n <= 0x80). Only the lowest flag is sure
    // to be exact (a borrow can flag a byte above it), and only it is read.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let stops = |word: u64| {
        let stops = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if ASCII_ONLY {
            stops | word & HIGHS
        } else {
            stops
        }
    };
    let mut run = 0;
    while let Some(chunk) = bytes.get(run..run + 8) {
        let found = stops(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if found != 0 {
            return run + found.trailing_zeros() as usize / 8;
        }
        run += 8;
    }
    // The last few bytes, padded with a byte that is no stop.
    let mut tail = [b'a'; 8];
    tail[..bytes.len() - run].copy_from_slice(&bytes[run..]);
    match stops(u64::from_le_bytes(tail)) {
        0 => bytes.len(),
        found => run + found.trailing_zeros() as usize / 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<UsageJson>,
    }

    /// serde's reading, the reference: `None` where it refuses the document.
    fn serde_usage(json: &[u8]) -> Option<Option<UsageJson>> {
        serde_json::from_slice::<WithUsage>(json)
            .ok()
            .map(|body| body.usage)
    }

    fn debug(usage: &Option<UsageJson>) -> String {
        format!("{usage:?}")
    }

    /// The scanner either leaves `json` to serde or agrees with it; returns
    /// whether it answered.
    fn agrees(json: &[u8]) -> bool {
        let Some(scanned) = usage(json) else {
            return false;
        };
        let expected = serde_usage(json).unwrap_or_else(|| {
            panic!(
                "scanner answered for a document serde refuses: {}",
                String::from_utf8_lossy(json)
            )
        });
        assert_eq!(
            debug(&scanned),
            debug(&expected),
            "on {}",
            String::from_utf8_lossy(json)
        );
        true
    }

    #[test]
    fn answers_for_the_shapes_upstreams_send() {
        let documents: [&[u8]; 7] = [
            r#"{"id":"chatcmpl-demo","object":"chat.completion","created":1764000000,"model":"demo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\" \\ caf\u00e9 Café ☕ 😀\n","refusal":null},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":6,"completion_tokens":18,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#.as_bytes(),
            b"{\n  \"id\": \"x\",\n  \"choices\": [],\n  \"usage\": {\n    \"prompt_tokens\": 19,\n    \"completion_tokens\": 10,\n    \"total_tokens\": 29,\n    \"prompt_tokens_details\": {\"cached_tokens\": 7, \"audio_tokens\": 0},\n    \"completion_tokens_details\": {\"reasoning_tokens\": 3, \"accepted_prediction_tokens\": 0}\n  },\n  \"service_tier\": \"default\"\n}\n",
            br#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            br#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#,
            br#"{"choices":[{"message":{"usage":{"prompt_tokens":999}}}],"usage":null}"#,
            br#"{"id":"x","choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615,"extra":[1,-2.5e-3,true,{"a":[]}]}}"#,
        ];
        for json in documents {
            assert!(
                agrees(json),
                "left to serde: {}",
                String::from_utf8_lossy(json)
            );
        }
        let first = usage(documents[0]).unwrap().unwrap();
        assert_eq!((first.prompt_tokens, first.completion_tokens), (6, 18));
        // A `usage` inside `choices` is not the answer's.
        assert!(usage(documents[4]).unwrap().is_none());
    }

    #[test]
    fn leaves_unusual_shapes_to_serde() {
        let documents: [&[u8]; 12] = [
            br#"{"us\u0061ge":{"prompt_tokens":1}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":null}"#,
            br#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":1.0}}"#,
            br#"{"usage":{"prompt_tokens":-0}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            br#"{"usage":[1,2,3]}"#,
            br#"{"usage":{"prompt_tokens_details":[4]}}"#,
            br#"[{"prompt_tokens":1}]"#,
            br#"{"usage":{"prompt_tokens":1}} x"#,
            br#"{"choices":[1,],"usage":null}"#,
            "{\"caf\u{e9}\":1,\"usage\":null}".as_bytes(),
        ];
        for json in documents {
            assert!(
                usage(json).is_none(),
                "answered: {}",
                String::from_utf8_lossy(json)
            );
        }
        // What serde makes of some of them, through the public function.
        let read = |json: &[u8]| crate::canonical::usage(json).ok().flatten();
        assert_eq!(read(documents[0]).unwrap().prompt_tokens, 1);
        assert!(read(documents[1]).is_none());
        assert!(read(documents[4]).is_none());
        assert_eq!(read(documents[8]).unwrap().prompt_tokens, 1);
    }

    #[test]
    fn nesting_beyond_the_limit_goes_to_serde() {
        let deep = format!(
            r#"{{"choices":{}{},"usage":{{"prompt_tokens":5}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(usage(deep.as_bytes()).is_none());
        let read = crate::canonical::usage(deep.as_bytes()).unwrap().unwrap();
        assert_eq!(read.prompt_tokens, 5);
        let shallow = deep
            .replace(&"[".repeat(200), "[[")
            .replace(&"]".repeat(200), "]]");
        assert!(agrees(shallow.as_bytes()));
    }

    #[test]
    fn finds_every_stop_in_a_string() {
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes.extend_from_slice("é ~\x7f".as_bytes());
                bytes[at] = stop;
                assert_eq!(plain_run::<false>(&bytes), at, "stop {stop:#x} at {at}");
                assert_eq!(plain_run::<true>(&bytes), at, "stop {stop:#x} at {at}");
            }
            let mut bytes = vec![b'a'; 20];
            bytes.extend_from_slice("é".as_bytes());
            assert_eq!(plain_run::<true>(&bytes), 20);
            assert_eq!(plain_run::<false>(&bytes), 22);
        }
        assert_eq!(plain_run::<false>("ab\u{7f}é😀 ~".as_bytes()), 11);
        assert_eq!(plain_run::<true>("ab\u{7f}é😀 ~".as_bytes()), 3);
    }

    /// xorshift64*: reproducible documents without a dependency.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
        }

        fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
            choices[self.below(choices.len())]
        }

        fn space(&mut self, out: &mut String) {
            if self.below(4) == 0 {
                out.push_str(self.pick(&[" ", "\n", "\t", "\r\n  ", " ", "\n", "\t", "\u{c}"]));
            }
        }

        fn number(&mut self) -> &'static str {
            match self.below(4) {
                0 => self.pick(&[
                    "-0",
                    "-12",
                    "01",
                    "1.5",
                    "1.",
                    "1e3",
                    "1E+2",
                    "2e-",
                    "-",
                    "-12.5e-3",
                    "18446744073709551616",
                    "00",
                ]),
                _ => self.pick(&["0", "7", "1234", "18446744073709551615"]),
            }
        }

        fn string(&mut self, out: &mut String) {
            out.push('"');
            for _ in 0..self.below(5) {
                out.push_str(match self.below(8) {
                    0 => self.pick(&[r"\u12g4", r"\x", r"\u00", "\u{1}", "\u{1f}"]),
                    _ => self.pick(&[
                        "plain text longer than eight bytes",
                        "ab",
                        r#"\""#,
                        r"\\",
                        r"\/\b\f\n\r\t",
                        r"\u00e9",
                        r"\uD83D",
                        "\u{7f}",
                        "é😀",
                    ]),
                });
            }
            out.push('"');
        }

        fn key(&mut self, out: &mut String, keys: &[&str]) {
            out.push('"');
            out.push_str(self.pick(keys));
            out.push('"');
            self.space(out);
            out.push(':');
            self.space(out);
        }

        fn value(&mut self, out: &mut String, depth: usize) {
            self.space(out);
            match self.below(if depth > 4 { 4 } else { 7 }) {
                0 => out.push_str(self.pick(&["null", "true", "false", "null", "nul", "tru"])),
                1 => out.push_str(self.number()),
                2 | 3 => self.string(out),
                4 => {
                    out.push('[');
                    for index in 0..self.below(4) {
                        if index > 0 {
                            out.push(',');
                        }
                        self.value(out, depth + 1);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for index in 0..self.below(4) {
                        if index > 0 {
                            out.push(',');
                        }
                        self.key(out, &["usage", "a", "prompt_tokens", "k\\u0065y"]);
                        self.value(out, depth + 1);
                    }
                    out.push('}');
                }
            }
            self.space(out);
        }

        fn count(&mut self, out: &mut String) {
            match self.below(8) {
                0 => out.push_str("null"),
                1 => self.value(out, 3),
                _ => out.push_str(self.number()),
            }
        }

        fn details(&mut self, out: &mut String, field: &str) {
            match self.below(6) {
                0 => out.push_str("null"),
                1 => self.value(out, 3),
                _ => {
                    out.push('{');
                    for index in 0..self.below(3) {
                        if index > 0 {
                            out.push(',');
                        }
                        self.key(out, &[field, field, "audio_tokens"]);
                        self.count(out);
                    }
                    out.push('}');
                }
            }
        }

        fn usage(&mut self, out: &mut String) {
            if self.below(6) == 0 {
                return out.push_str(self.pick(&["null", "[1,2]", "7", "\"x\""]));
            }
            out.push('{');
            for index in 0..self.below(6) {
                if index > 0 {
                    out.push(',');
                }
                let field = self.pick(&[
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                    "prompt_tokens_details",
                    "completion_tokens_details",
                    "other",
                    "prompt_t\\u006fkens",
                ]);
                self.key(out, &[field]);
                match field {
                    "prompt_tokens_details" => self.details(out, "cached_tokens"),
                    "completion_tokens_details" => self.details(out, "reasoning_tokens"),
                    "other" => self.value(out, 2),
                    _ => self.count(out),
                }
                self.space(out);
            }
            out.push('}');
        }

        fn document(&mut self) -> String {
            let mut out = String::new();
            self.space(&mut out);
            if self.below(10) == 0 {
                self.value(&mut out, 0);
                return out;
            }
            out.push('{');
            for index in 0..self.below(6) {
                if index > 0 {
                    out.push(',');
                }
                self.space(&mut out);
                let key = self.pick(&[
                    "usage",
                    "usage",
                    "id",
                    "choices",
                    "model",
                    "us\\u0061ge",
                    "Usage",
                    "caf\u{e9}",
                ]);
                self.key(&mut out, &[key]);
                if key == "usage" {
                    self.usage(&mut out);
                } else {
                    self.value(&mut out, 0);
                }
                self.space(&mut out);
            }
            out.push('}');
            self.space(&mut out);
            out
        }
    }

    /// Generated documents, valid and not, and byte-level mutations of
    /// each: wherever the scanner answers, serde reads the same usage.
    #[test]
    fn agrees_with_serde_on_generated_documents() {
        const ALPHABET: &[u8] = b"{}[],:\"\\ \n0123456789-+.eEnulltrfasu\x01\x1f\x7f\xc3\xa9\xff";
        let mut random = Random(0x05ee_d0f5_a1ce);
        let (mut documents, mut answered, mut valid) = (0, 0, 0);
        for _ in 0..20_000 {
            let document = random.document().into_bytes();
            let mut variants = vec![document.clone()];
            for _ in 0..4 {
                let mut mutated = document.clone();
                let at = random.below(mutated.len() + 1);
                let byte = ALPHABET[random.below(ALPHABET.len())];
                let brackets: Vec<usize> = (0..mutated.len())
                    .filter(|&i| b"[]{}".contains(&mutated[i]))
                    .collect();
                match random.below(4) {
                    0 if at < mutated.len() => {
                        mutated.remove(at);
                    }
                    1 if at < mutated.len() => mutated[at] = byte,
                    // An array closed as an object or the other way round.
                    2 if !brackets.is_empty() => {
                        let at = brackets[random.below(brackets.len())];
                        mutated[at] ^= b'[' ^ b'{';
                    }
                    _ => mutated.insert(at, byte),
                }
                variants.push(mutated);
            }
            for json in &variants {
                documents += 1;
                valid += usize::from(serde_usage(json).is_some());
                answered += usize::from(agrees(json));
            }
        }
        // The fast path must carry most of what serde accepts, or it is
        // not worth having.
        assert!(
            answered * 2 > valid,
            "answered {answered} of {valid} valid documents ({documents} in all)"
        );
    }
}
