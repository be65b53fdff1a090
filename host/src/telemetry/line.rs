//! How an event becomes a log line, as text or as JSON.
//!
//! tracing-subscriber's own formats cost ~25,000 instructions for the
//! access line (each field goes through `Debug`, and the text format wraps
//! every name in an ANSI style even with colours off): a seventh of the
//! gateway's CPU per request. These write each value once, straight into
//! the line. The shapes are tracing-subscriber's, so readers of either keep
//! working: text `TIME LEVEL target: message key=value …` with strings
//! quoted and escaped, JSON `{"timestamp", "level", "fields": {"message",
//! …}, "target"}`. Spans are not written: Sluice opens none.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Text,
    Json,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own target, not the bridge's.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = metadata.level();
        let mut fields = Fields {
            line: *self,
            writer,
            first: true,
            result: Ok(()),
        };
        match self {
            Line::Text => {
                timestamp(&mut fields.writer)?;
                if fields.writer.has_ansi_escapes() {
                    write!(fields.writer, " \x1b[{}m{level:>5}\x1b[0m ", colour(level))?;
                } else {
                    write!(fields.writer, " {level:>5} ")?;
                }
                fields.writer.write_str(metadata.target())?;
                fields.writer.write_char(':')?;
                event.record(&mut fields);
                fields.result?;
                fields.writer.write_char('\n')
            }
            Line::Json => {
                fields.writer.write_str("{\"timestamp\":\"")?;
                timestamp(&mut fields.writer)?;
                write!(fields.writer, "\",\"level\":\"{level}\",\"fields\":{{")?;
                event.record(&mut fields);
                fields.result?;
                fields.writer.write_str("},\"target\":")?;
                json_string(&mut fields.writer, metadata.target())?;
                fields.writer.write_str("}\n")
            }
        }
    }
}

fn colour(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

/// Now, in RFC 3339 UTC with microseconds: `2026-11-28T17:33:28.259580Z`.
fn timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (days, second_of_day) = (now.as_secs() / 86_400, now.as_secs() % 86_400);
    let (year, month, day) = civil_date(days);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut digits = |at: usize, width: usize, mut value: u64| {
        for slot in text[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, second_of_day / 3600);
    digits(14, 2, second_of_day / 60 % 60);
    digits(17, 2, second_of_day % 60);
    digits(20, 6, u64::from(now.subsec_micros()));
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// The proleptic Gregorian (year, month, day) of a day counted from
/// 1970-01-01, for years 1970 to 9999 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A text that may be written as it is inside quotes, in either format:
/// printable ASCII but the quote and the backslash.
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn json_string(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    if plain(text) {
        writer.write_char('"')?;
        writer.write_str(text)?;
        writer.write_char('"')
    } else {
        let quoted = serde_json::to_string(text).map_err(|_| fmt::Error)?;
        writer.write_str(&quoted)
    }
}

/// A field the `log` bridge adds: its content is in the normalized
/// metadata.
fn bridged(field: &Field) -> bool {
    field.name().starts_with("log.")
}

/// An event's fields: ` message key=value …` as text, strings quoted with
/// Rust's escapes so that no value can break the line or carry terminal
/// escapes; `"key":value,…` as JSON.
struct Fields<'w> {
    line: Line,
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    /// Writes the field's name and `value`, a number or a boolean.
    fn literal(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() && !bridged(field) {
            self.result = self.name(field).and_then(|()| self.writer.write_str(value));
        }
    }

    fn name(&mut self, field: &Field) -> fmt::Result {
        let first = std::mem::take(&mut self.first);
        match self.line {
            Line::Text => {
                self.writer.write_char(' ')?;
                self.writer.write_str(field.name())?;
                self.writer.write_char('=')
            }
            Line::Json => {
                if !first {
                    self.writer.write_char(',')?;
                }
                self.writer.write_char('"')?;
                self.writer.write_str(field.name())?;
                self.writer.write_str("\":")
            }
        }
    }

    fn string(&mut self, field: &Field, text: &str) {
        if self.result.is_ok() && !bridged(field) {
            self.result = self.write_string(field, text);
        }
    }

    fn write_string(&mut self, field: &Field, text: &str) -> fmt::Result {
        match self.line {
            Line::Text if field.name() == "message" => {
                if !text.chars().any(char::is_control) {
                    self.writer.write_char(' ')?;
                    self.writer.write_str(text)
                } else {
                    write!(self.writer, " {}", text.escape_debug())
                }
            }
            Line::Text => self.name(field).and_then(|()| {
                if plain(text) {
                    self.writer.write_char('"')?;
                    self.writer.write_str(text)?;
                    self.writer.write_char('"')
                } else {
                    write!(self.writer, "{text:?}")
                }
            }),
            Line::Json => self
                .name(field)
                .and_then(|()| json_string(&mut self.writer, text)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        match (value.is_finite(), self.line) {
            (true, _) => self.literal(field, ryu::Buffer::new().format_finite(value)),
            (false, Line::Json) => self.literal(field, "null"),
            (false, Line::Text) => self.literal(field, &value.to_string()),
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.literal(field, itoa::Buffer::new().format(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.literal(field, itoa::Buffer::new().format(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.literal(field, if value { "true" } else { "false" });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }
    /// `Debug` values, and `Display` ones through `%`.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.string(field, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::Line;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes in `line`'s format.
    fn lines(line: Line, ansi: bool, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_writer(move || writer.clone())
            .event_format(line)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    fn access(tricky: &str) {
        tracing::info!(
            target: "sluice::access",
            request_id = %"req_1",
            tenant = tricky,
            stream = true,
            status = 200u16,
            delta = -3i64,
            latency_ms = 9.5f64,
            ttfb_ms = None::<f64>,
            failure = ?Some("gone"),
            "request"
        );
    }

    #[test]
    fn text_lines_quote_and_escape_every_string() {
        let text = lines(Line::Text, false, || access("a \"b\"\n\x1b[31mc ☕"));
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(
            rest,
            " INFO sluice::access: request request_id=\"req_1\" \
             tenant=\"a \\\"b\\\"\\n\\u{1b}[31mc ☕\" stream=true status=200 delta=-3 \
             latency_ms=9.5 failure=\"Some(\\\"gone\\\")\"\n"
        );
        assert_eq!(text.lines().count(), 1, "a value cannot break the line");
        let text = lines(Line::Text, false, || tracing::warn!("a\nb \u{9b}31m ☕"));
        assert!(text.ends_with(": a\\nb \\u{9b}31m ☕\n"), "{text:?}");
    }

    #[test]
    fn text_lines_colour_the_level_only_on_a_terminal() {
        let text = lines(Line::Text, true, || tracing::warn!("careful"));
        assert!(text.contains(" \x1b[33m WARN\x1b[0m "), "{text:?}");
        assert!(text.ends_with(": careful\n"), "{text:?}");
    }

    #[test]
    fn dates_follow_the_gregorian_calendar() {
        let known = [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (10_957, (2000, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (20_818, (2026, 12, 31)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
            (2_932_896, (9999, 12, 31)),
        ];
        for (days, date) in known {
            assert_eq!(super::civil_date(days), date, "day {days}");
        }
    }

    #[test]
    fn json_lines_are_tracing_subscribers_shape() {
        let tricky = "a \"b\"\n\x1b[31mc ☕ \\";
        let text = lines(Line::Json, false, || {
            access(tricky);
            tracing::error!(count = 2u64, "two\nlines");
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let access = &lines[0];
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["target"], "sluice::access");
        assert!(access["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            access["fields"],
            serde_json::json!({
                "message": "request", "request_id": "req_1", "tenant": tricky,
                "stream": true, "status": 200, "delta": -3, "latency_ms": 9.5,
                "failure": "Some(\"gone\")",
            })
        );
        let keys: Vec<_> = access["fields"].as_object().unwrap().keys().collect();
        assert_eq!(keys[..2], ["message", "request_id"], "in the order logged");
        assert_eq!(lines[1]["fields"]["message"], "two\nlines");
        assert_eq!(lines[1]["level"], "ERROR");
    }
}
