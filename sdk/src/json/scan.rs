//! A one-pass JSON scanner as strict as serde_json: it checks a whole
//! document without building anything, and gives up (`None`) on whatever
//! it does not handle itself, so its callers fall back to serde and every
//! answer, or error, is serde's. What reads `usage` from answers, what
//! tells a stream's usage-only chunk and what edits a request's top-level
//! field are built on it.

/// Nesting deeper than this is left to serde; the frames fit in a `u128`.
const MAX_DEPTH: u32 = 128;

pub(crate) struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(json: &'a [u8]) -> Self {
        Cursor { json, at: 0 }
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// How far the scan has come, in bytes.
    pub(crate) fn position(&self) -> usize {
        self.at
    }
    /// The next byte after whitespace (JSON's four), not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
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
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
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
    pub(crate) fn nullable<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// Any value; whether it was an empty array.
    pub(crate) fn empty_array(&mut self) -> Option<bool> {
        if self.peek()? == b'[' {
            let open = self.at;
            self.at += 1;
            if self.peek()? == b']' {
                self.at += 1;
                return Some(true);
            }
            self.at = open;
        }
        self.skip_value()?;
        Some(false)
    }

    /// A count: digits only, no leading zero, within `u64`. serde refuses
    /// anything else for a `u64` (`-0` and `7.0` too) and says why, so
    /// anything else is left to it.
    pub(crate) fn count(&mut self) -> Option<u64> {
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
    pub(crate) fn skip_value(&mut self) -> Option<()> {
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
pub(crate) fn plain_run<const ASCII_ONLY: bool>(bytes: &[u8]) -> usize {
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
}
