//! Reproducible JSON documents for the scanners' tests: valid, nearly
//! valid, and byte-level mutations of both, each checked against serde.

/// xorshift64*: reproducible documents without a dependency.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn below(&mut self, bound: usize) -> usize {
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

    /// A document shaped like an answer (`usage` and the fields around
    /// it), with every kind of value, valid or nearly so.
    pub(crate) fn document(&mut self) -> String {
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
                "mod\\u0065l",
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

/// A generated document and four byte-level mutations of it: a byte
/// removed, replaced or inserted, or a bracket of one kind swapped for the
/// other (an array closed as an object).
pub(crate) fn mutations(random: &mut Random) -> Vec<Vec<u8>> {
    const ALPHABET: &[u8] = b"{}[],:\"\\ \n0123456789-+.eEnulltrfasu\x01\x1f\x7f\xc3\xa9\xff";
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
            2 if !brackets.is_empty() => {
                let at = brackets[random.below(brackets.len())];
                mutated[at] ^= b'[' ^ b'{';
            }
            _ => mutated.insert(at, byte),
        }
        variants.push(mutated);
    }
    variants
}
