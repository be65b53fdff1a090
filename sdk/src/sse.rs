//! An incremental Server-Sent Events decoder for stream translators.
//!
//! Bytes may arrive split anywhere: inside a line, inside a `\r\n` pair or
//! inside a multi-byte UTF-8 character. Lines may end in `\n`, `\r\n` or
//! `\r`; `:` lines are comments; several `data:` lines form one event,
//! joined with `\n`, as the HTML standard's event-stream rules say. Lines
//! have no length limit, since tool-call arguments and base64 images make
//! very long ones.

/// One decoded event. `event` is empty when the stream named none (the
/// standard's default `message` type).
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a [u8],
}

#[derive(Default, Debug)]
pub struct SseDecoder {
    pending: Vec<u8>,
    data: Vec<u8>,
    event: String,
    has_data: bool,
    /// The last chunk ended in `\r`: a `\n` opening the next one belongs to it.
    skip_lf: bool,
}

/// Where the first line of `chunk` ends. A blank line, ending each event,
/// is seen without a search: a search costs more to set out than one byte
/// takes to check.
fn line_end(chunk: &[u8]) -> Option<usize> {
    match chunk.first() {
        Some(b'\n' | b'\r') => Some(0),
        _ => memchr::memchr2(b'\n', b'\r', chunk),
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        SseDecoder::default()
    }

    /// Feeds bytes and calls `on_event` for every event they complete. The
    /// first error from `on_event` stops decoding and is returned.
    pub fn push<E>(
        &mut self,
        mut chunk: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = line_end(chunk) {
            let terminator = chunk[end];
            if self.pending.is_empty() {
                self.line(&chunk[..end], &mut on_event)?;
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&chunk[..end]);
                let result = self.line(&line, &mut on_event);
                line.clear();
                self.pending = line;
                result?;
            }
            chunk = &chunk[end + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        self.pending.extend_from_slice(chunk);
        Ok(())
    }

    /// Feeds bytes and returns what `on_event` wrote for the events they
    /// complete: the shape of a stream translator's `push`.
    pub fn translate<E>(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = Vec::new();
        self.push(chunk, |event| on_event(event, &mut out))?;
        Ok(out)
    }

    /// Ends the input (see [`SseDecoder::finish`]) and returns what
    /// `on_event` wrote for a last, unterminated event.
    pub fn translate_rest<E>(
        &mut self,
        mut on_event: impl FnMut(SseEvent<'_>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = Vec::new();
        self.finish(|event| on_event(event, &mut out))?;
        Ok(out)
    }

    /// Ends the input. An event cut off before its closing blank line is
    /// still delivered: upstreams that close right after their last `data:`
    /// line are common, and dropping their final event would lose usage.
    pub fn finish<E>(
        &mut self,
        mut on_event: impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, &mut on_event)?;
        }
        self.line(b"", &mut on_event)
    }

    fn line<E>(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(());
        }
        // Nearly every line is a `data` line: known without a search.
        let (field, value) = match line.strip_prefix(b"data:") {
            Some(value) => (&b"data"[..], value),
            None => match memchr::memchr(b':', line) {
                Some(colon) => (&line[..colon], &line[colon + 1..]),
                None => (line, &b""[..]),
            },
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch<E>(
        &mut self,
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = if self.has_data {
            on_event(SseEvent {
                event: &self.event,
                data: &self.data,
            })
        } else {
            Ok(())
        };
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        result
    }
}

/// Appends one event: an optional `event:` line, one `data:` line, and the
/// blank line that ends it. `data` must be a single line (compact JSON).
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &[u8]) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<(String, Vec<u8>)> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        let mut collect = |e: SseEvent<'_>| -> Result<(), ()> {
            events.push((e.event.to_string(), e.data.to_vec()));
            Ok(())
        };
        for chunk in input.chunks(piece) {
            decoder.push(chunk, &mut collect).unwrap();
        }
        decoder.finish(&mut collect).unwrap();
        events
    }

    #[test]
    fn decodes_the_same_events_at_every_split() {
        let input = "event: message_start\r\ndata: {\"a\":\"é😀\"}\r\n\r\n: keep-alive\n\ndata: line one\ndata: line two\n\ndata:no-space\r\rdatax: not data\ndata\n\n\rdata:  two spaces\n\ndata: [DONE]\n\n".as_bytes();
        let expected = vec![
            (
                "message_start".to_string(),
                "{\"a\":\"é😀\"}".as_bytes().to_vec(),
            ),
            (String::new(), b"line one\nline two".to_vec()),
            (String::new(), b"no-space".to_vec()),
            (String::new(), b"".to_vec()),
            (String::new(), b" two spaces".to_vec()),
            (String::new(), b"[DONE]".to_vec()),
        ];
        for piece in 1..=input.len() {
            assert_eq!(
                decode_in_pieces(input, piece),
                expected,
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn delivers_an_event_cut_off_at_the_end() {
        assert_eq!(
            decode_in_pieces(b"data: last", 3),
            vec![(String::new(), b"last".to_vec())]
        );
    }

    #[test]
    fn ignores_blank_lines_without_data_and_unknown_fields() {
        assert_eq!(decode_in_pieces(b"\n\nid: 7\nretry: 10\n\n", 2), vec![]);
    }

    #[test]
    fn keeps_very_long_lines_whole() {
        let long = "x".repeat(1 << 20);
        let input = format!("data: {long}\n\n");
        let events = decode_in_pieces(input.as_bytes(), 4096);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.len(), 1 << 20);
    }
}
