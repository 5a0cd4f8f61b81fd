//! What errand writes to its logs about what clients send.
//!
//! [`field`] makes a client-supplied value safe to log: control characters
//! and escape sequences are escaped (no forged lines, nothing reaches a
//! terminal), and a long value is cut to [`MAX_FIELD_CHARS`] characters, so
//! one request cannot write a megabyte into the log. [`Throttle`] lets a line
//! that an attacker can trigger at will (a refused connection, a wrong
//! token) be written at most once per interval, with the count it stood for.
use std::{
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Characters of a client value kept in a log line; the rest is counted.
pub const MAX_FIELD_CHARS: usize = 128;

/// A client-supplied value as a log field: `tracing::info!(worker = %logs::field(name))`.
/// Displays escaped (`\n`, `\u{1b}`, ...) and cut after [`MAX_FIELD_CHARS`]
/// characters with `…(+N bytes)`.
pub fn field(value: &str) -> Field<'_> {
    Field(value)
}

/// Tool keys of one tenant (a registration's) as log fields: the tenant,
/// and the tool names comma-separated, each escaped and cut as [`field`]
/// does (never the internal key that joins tenant and name).
pub fn tools<'a>(keys: impl Iterator<Item = &'a str>) -> (String, String) {
    let mut tenant = String::new();
    let mut names = Vec::new();
    for key in keys {
        let (t, name) = crate::tenant::split(key);
        if names.is_empty() {
            tenant = field(t).to_string();
        }
        names.push(field(name).to_string());
    }
    (tenant, names.join(", "))
}

/// See [`field`].
pub struct Field<'a>(&'a str);

impl Field<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>, quoted: bool) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_FIELD_CHARS) {
            if c.is_control() || is_invisible(c) {
                write!(f, "{}", c.escape_default())?;
            } else if c == '\\' || quoted && c == '"' {
                write!(f, "\\{c}")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.0.len() - at)?;
        }
        Ok(())
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

/// Quoted, with `"` escaped too.
impl fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        self.write(f, true)?;
        f.write_str("\"")
    }
}

/// Characters that are not control characters but change how a line reads:
/// bidirectional overrides, line and paragraph separators, zero-width ones.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// At most one log line per interval: `if let Some(n) = throttle.ready() { warn!(times = n, ...) }`.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due, `n` being the
    /// occurrences since the last line (this one included).
    pub fn ready(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        let now = Instant::now();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        let n = state.1;
        *state = (Some(now), 0);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_escapes_are_escaped() {
        assert_eq!(field("w1").to_string(), "w1");
        assert_eq!(
            field("a\nINFO forged line\r\u{1b}[31mred\u{7}").to_string(),
            "a\\nINFO forged line\\r\\u{1b}[31mred\\u{7}"
        );
        assert_eq!(field("back\\slash").to_string(), "back\\\\slash");
        assert_eq!(field("rtl\u{202e}txt").to_string(), "rtl\\u{202e}txt");
        assert_eq!(format!("{:?}", field("x\"y")), "\"x\\\"y\"");
    }

    #[test]
    fn a_long_value_is_cut_and_counted() {
        let big = "é".repeat(1 << 20);
        let shown = field(&big).to_string();
        assert!(shown.len() < 400, "{}", shown.len());
        let kept = "é".repeat(MAX_FIELD_CHARS);
        assert_eq!(shown, format!("{kept}…(+{} bytes)", big.len() - kept.len()));
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.ready(), Some(1));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.ready(), Some(1));
        assert_eq!(t.ready(), Some(1));
    }
}
