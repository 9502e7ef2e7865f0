//! Text for the terminal: model output cleaned of control characters (an escape sequence in
//! an answer must not reach the terminal), word wrapping that measures display columns
//! (wide CJK characters take two and are never split), and fenced code blocks marked so
//! the view can draw them apart from prose.

use unicode_width::UnicodeWidthChar;

/// What a display row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// Prose.
    Text,
    /// A line inside a fenced code block (drawn after [`CODE_BAR`]).
    Code,
    /// A ```` ``` ```` fence line.
    Fence,
}

/// Prefix of code rows.
pub const CODE_BAR: &str = "│ ";

/// `text` with tabs expanded, carriage returns and other control characters dropped.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `s` without blank lines at its start and whitespace at its end (models often open or
/// close an answer with empty lines; indentation of the first line is kept).
pub fn trim_blank_lines(s: &str) -> &str {
    let s = s.trim_end();
    let first_text = s
        .find(|c: char| !c.is_whitespace())
        .map_or(s.len(), |i| s[..i].rfind('\n').map_or(0, |j| j + 1));
    &s[first_text..]
}

/// Display width of `s` in columns.
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// One line (no `\n`) broken into rows of at most `width` columns, at spaces where it can,
/// inside words where it must. Always at least one row.
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut row_w = 0;
    // Byte offset just after the row's last space, and the width up to there.
    let mut brk: Option<(usize, usize)> = None;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        while row_w + w > width && !row.is_empty() {
            if c == ' ' {
                rows.push(std::mem::take(&mut row).trim_end().to_string());
                row_w = 0;
            } else if let Some((b, bw)) = brk.take() {
                let rest = row.split_off(b);
                rows.push(row.trim_end().to_string());
                row = rest;
                row_w -= bw;
            } else {
                rows.push(std::mem::take(&mut row));
                row_w = 0;
            }
            brk = None;
        }
        if c == ' ' && row.is_empty() && !rows.is_empty() {
            continue; // a space that caused a break is not carried to the next row
        }
        row.push(c);
        row_w += w;
        if c == ' ' {
            brk = Some((row.len(), row_w));
        }
    }
    rows.push(row);
    rows
}

/// Rows of `text` (any number of lines) at `width`: prose word-wrapped, fenced code blocks
/// wrapped inside a [`CODE_BAR`] prefix and marked as such.
pub fn rows(text: &str, width: usize) -> Vec<(RowKind, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in clean(text).split('\n') {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            out.extend(wrap(line, width).into_iter().map(|r| (RowKind::Fence, r)));
        } else if in_code {
            let inner = width.saturating_sub(width_of_bar()).max(1);
            out.extend(
                wrap_chars(line, inner)
                    .into_iter()
                    .map(|r| (RowKind::Code, format!("{CODE_BAR}{r}"))),
            );
        } else {
            out.extend(wrap(line, width).into_iter().map(|r| (RowKind::Text, r)));
        }
    }
    out
}

fn width_of_bar() -> usize {
    width(CODE_BAR)
}

/// One line broken into rows of at most `width` columns at any character (for code, whose
/// spaces matter).
pub fn wrap_chars(line: &str, width: usize) -> Vec<String> {
    let width = width.max(2);
    let mut rows = vec![String::new()];
    let mut col = 0;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        if col + w > width {
            rows.push(String::new());
            col = 0;
        }
        if let Some(r) = rows.last_mut() {
            r.push(c);
        }
        col += w;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(wrap("the quick brown fox", 10), ["the quick", "brown fox"]);
        assert_eq!(wrap("abcdefghij klm", 4), ["abcd", "efgh", "ij", "klm"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("a b", 1), ["a", "b"]);
    }

    #[test]
    fn wrap_measures_wide_characters_and_never_splits_them() {
        let rows = wrap("日本語のテキスト", 5);
        assert_eq!(rows, ["日本", "語の", "テキ", "スト"]);
        assert!(rows.iter().all(|r| width(r) <= 5));
        assert_eq!(wrap("ab 日本", 4), ["ab", "日本"]);
    }

    #[test]
    fn blank_lines_around_an_answer_are_trimmed() {
        assert_eq!(
            trim_blank_lines("\n\n  indented\nmore\n\n"),
            "  indented\nmore"
        );
        assert_eq!(trim_blank_lines(" \n\n"), "");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("a\x1b[2Jb\r\n\tc\u{7}"), "a[2Jb\n    c");
    }

    #[test]
    fn code_blocks_are_marked_and_keep_their_indentation() {
        let text = "Try:\n```rust\n    let x = 1;\n```\nDone.";
        let rows = rows(text, 40);
        let kinds: Vec<RowKind> = rows.iter().map(|r| r.0).collect();
        use RowKind::*;
        assert_eq!(kinds, [Text, Fence, Code, Fence, Text]);
        assert_eq!(rows[2].1, "│     let x = 1;");
    }
}
