//! Results too large to deliver inline: the preview that stands in for them
//! on a completion, and the pages `ReadResult` cuts them into. Every cut
//! falls on a UTF-8 character boundary.
use crate::error::Error;

/// Marks the cut between a preview's head and tail.
pub const CUT_MARK: &str = "\n[...]\n";

/// The largest prefix of `s` of at most `max` bytes.
pub fn head(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The largest suffix of `s` of at most `max` bytes.
pub fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A preview of `result` within `budget` bytes: the whole text when it
/// fits, else its head and tail (two thirds head) around [`CUT_MARK`];
/// with a budget too small for the mark, the head alone.
pub fn preview(result: &str, budget: usize) -> String {
    if result.len() <= budget {
        return result.to_string();
    }
    if budget < 4 * CUT_MARK.len() {
        return head(result, budget).to_string();
    }
    let room = budget - CUT_MARK.len();
    let first = head(result, room * 2 / 3);
    let last = tail(result, room - first.len());
    format!("{first}{CUT_MARK}{last}")
}

/// Default page of [`page`], in bytes.
pub const DEFAULT_PAGE: usize = 64 * 1024;
/// The longest character (UTF-8), in bytes: a page this long always holds
/// one.
pub const MIN_PAGE: usize = 4;

/// The byte range `[offset, end)` of `text` that one `ReadResult` returns:
/// at most `max` bytes (0: [`DEFAULT_PAGE`]), ending on a character
/// boundary; when the character at `offset` is itself longer than `max`,
/// that one character (at most [`MIN_PAGE`] bytes), so every page before
/// the end moves on. Errors: OUT_OF_RANGE past the end; INVALID_ARGUMENT
/// for an offset inside a character.
pub fn page(text: &str, offset: u64, max: usize) -> Result<(usize, usize), Error> {
    let total = text.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if start > total {
        return Err(Error::OutOfRange(format!(
            "offset {offset} is past the end of the result, which is {total} bytes: read from \
             0 to {total}"
        )));
    }
    if !text.is_char_boundary(start) {
        return Err(Error::invalid(format!(
            "offset {offset} falls inside a character: continue from a previous chunk's offset \
             plus the byte length of its data"
        )));
    }
    let max = if max == 0 { DEFAULT_PAGE } else { max };
    let mut end = start.saturating_add(max).min(total);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == start && start < total {
        // The next character alone is over `max`: it is the page.
        end = start + text[start..].chars().next().map_or(0, char::len_utf8);
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_keep_head_and_tail_within_the_budget() {
        let text = "é".repeat(10_000) + "END";
        for budget in [64, 100, 1001, 16_384] {
            let p = preview(&text, budget);
            assert!(p.len() <= budget, "{budget}: {}", p.len());
            assert!(p.starts_with('é') && p.ends_with("END") && p.contains(CUT_MARK));
        }
        assert_eq!(preview("short", 64), "short");
        assert_eq!(preview(&text, 5), "éé");
    }

    #[test]
    fn pages_rebuild_the_text_on_character_boundaries() {
        let text = "aé€😀".repeat(1000);
        for max in [1, 3, 5, 7, 1000] {
            let (mut offset, mut out) = (0u64, String::new());
            loop {
                let (start, end) = page(&text, offset, max).unwrap();
                assert!(end > start || end == text.len());
                out.push_str(&text[start..end]);
                offset = end as u64;
                if end == text.len() {
                    break;
                }
            }
            assert_eq!(out, text);
        }
        assert_eq!(
            page(&text, text.len() as u64, 10).unwrap(),
            (text.len(), text.len())
        );
        assert!(matches!(
            page(&text, text.len() as u64 + 1, 10),
            Err(Error::OutOfRange(_))
        ));
        assert!(matches!(page(&text, 2, 10), Err(Error::InvalidArgument(_))));
        assert_eq!(
            page(&text, 0, 0).unwrap().1,
            text.len(),
            "0 is the default page"
        );
        let long = "😀".repeat(DEFAULT_PAGE);
        assert_eq!(page(&long, 0, 0).unwrap().1, DEFAULT_PAGE);
    }

    #[test]
    fn a_page_is_at_most_max_bytes_unless_one_character_is_longer() {
        let ascii = "{\"t\":1}";
        for max in 1..=3 {
            assert_eq!(page(ascii, 0, max).unwrap(), (0, max), "max {max}");
        }
        // "€" is 3 bytes: asked for 1 or 2, the page is that one character.
        let euro = "€a";
        assert_eq!(page(euro, 0, 1).unwrap(), (0, 3));
        assert_eq!(page(euro, 0, 2).unwrap(), (0, 3));
        assert_eq!(page(euro, 0, 3).unwrap(), (0, 3));
        assert_eq!(page(euro, 3, 1).unwrap(), (3, 4));
    }
}
