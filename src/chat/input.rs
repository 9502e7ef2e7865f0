//! The message editor: multi-line text with a cursor, word moves, paste, and a history of
//! sent messages on Up/Down (as in a shell). The text holds only printable characters and
//! `\n`: pasted tabs become spaces and other control characters are dropped on the way in.

use unicode_width::UnicodeWidthChar;

/// Editable text, a cursor (a byte offset on a character boundary) and the sent history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input {
    text: String,
    cursor: usize,
    history: Vec<String>,
    browsing: Option<usize>,
    draft: String,
}

/// Text made safe to insert: line endings normalised, tabs expanded, controls dropped.
pub fn normalize(text: &str) -> String {
    super::text::clean(&text.replace("\r\n", "\n").replace('\r', "\n"))
}

impl Input {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Insert text (typed or pasted) at the cursor.
    pub fn insert(&mut self, text: &str) {
        let text = normalize(text);
        self.text.insert_str(self.cursor, &text);
        self.cursor += text.len();
        self.browsing = None;
    }

    /// Take the text for sending and remember it in the history.
    pub fn submit(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        text
    }

    /// Empty the editor (history kept).
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    fn prev_boundary(&self, i: usize) -> usize {
        self.text[..i]
            .char_indices()
            .next_back()
            .map_or(0, |(j, _)| j)
    }

    fn next_boundary(&self, i: usize) -> usize {
        self.text[i..]
            .chars()
            .next()
            .map_or(self.text.len(), |c| i + c.len_utf8())
    }

    /// Delete the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            let start = self.prev_boundary(self.cursor);
            self.text.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
    }

    /// Delete the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            let end = self.next_boundary(self.cursor);
            self.text.replace_range(self.cursor..end, "");
        }
    }

    /// Move one character left.
    pub fn left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
    }

    /// Move one character right.
    pub fn right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
    }

    /// Start of the word before the cursor.
    fn word_start(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(j, c)| j + c.len_utf8())
    }

    /// Move to the start of the previous word.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    /// Move past the end of the next word.
    pub fn word_right(&mut self) {
        let after = &self.text[self.cursor..];
        let skip_ws = after.len() - after.trim_start().len();
        let rest = &after[skip_ws..];
        let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.cursor += skip_ws + word;
    }

    /// Delete the word before the cursor.
    pub fn delete_word(&mut self) {
        let start = self.word_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |j| j + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |j| self.cursor + j)
    }

    /// Move to the start of the line.
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    /// Move to the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Delete from the start of the line to the cursor.
    pub fn delete_to_line_start(&mut self) {
        let start = self.line_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Delete from the cursor to the end of the line.
    pub fn delete_to_line_end(&mut self) {
        let end = self.line_end();
        self.text.replace_range(self.cursor..end, "");
    }

    /// Column (in characters) of the cursor on its line.
    fn column(&self) -> usize {
        self.text[self.line_start()..self.cursor].chars().count()
    }

    /// Byte offset of column `col` (clamped) on the line starting at `start`.
    fn at_column(&self, start: usize, col: usize) -> usize {
        let line = &self.text[start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        line.char_indices()
            .nth(col)
            .map_or(start + line.len(), |(j, _)| start + j)
    }

    /// Up: the previous line, or the previous sent message on the first line.
    pub fn up(&mut self) {
        let start = self.line_start();
        if start == 0 {
            self.history_prev();
            return;
        }
        let col = self.column();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |j| j + 1);
        self.cursor = self.at_column(prev_start, col);
    }

    /// Down: the next line, or the next sent message (then the draft) on the last line.
    pub fn down(&mut self) {
        let end = self.line_end();
        if end == self.text.len() {
            self.history_next();
            return;
        }
        let col = self.column();
        self.cursor = self.at_column(end + 1, col);
    }

    fn history_prev(&mut self) {
        let i = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(i) => i.saturating_sub(1),
        };
        self.browsing = Some(i);
        self.text = self.history[i].clone();
        self.cursor = self.text.len();
    }

    fn history_next(&mut self) {
        let Some(i) = self.browsing else { return };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.text = self.history[i + 1].clone();
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
        }
        self.cursor = self.text.len();
    }

    /// The text broken into rows of at most `width` columns (characters never split, wide
    /// ones moved whole to the next row) and the cursor's (row, column).
    pub fn rows(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(2);
        let mut rows = vec![String::new()];
        let mut col = 0;
        let mut cursor = (0, 0);
        for (i, c) in self.text.char_indices() {
            if i == self.cursor {
                cursor = (rows.len() - 1, col);
            }
            if c == '\n' {
                rows.push(String::new());
                col = 0;
                continue;
            }
            let w = c.width().unwrap_or(0);
            if col + w > width {
                rows.push(String::new());
                col = 0;
                if i == self.cursor {
                    cursor = (rows.len() - 1, 0);
                }
            }
            if let Some(row) = rows.last_mut() {
                row.push(c);
            }
            col += w;
        }
        if self.cursor >= self.text.len() {
            if col >= width {
                rows.push(String::new());
                col = 0;
            }
            cursor = (rows.len() - 1, col);
        }
        (rows, cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut i = Input::default();
        i.insert(s);
        i
    }

    #[test]
    fn editing_moves_by_characters_words_and_lines() {
        let mut i = typed("héllo wörld");
        i.left();
        i.backspace();
        assert_eq!(i.text(), "héllo wörd");
        i.word_left();
        i.word_left();
        i.delete();
        assert_eq!(i.text(), "éllo wörd");
        i.word_right();
        i.insert("\n二行目");
        i.up();
        assert_eq!(i.cursor(), "éll".len());
        i.down();
        i.end();
        i.delete_word();
        assert_eq!(i.text(), "éllo\n二行目 ");
    }

    #[test]
    fn paste_normalises_line_endings_tabs_and_controls() {
        let i = typed("a\r\nb\rc\td\x1b[31me\x07");
        assert_eq!(i.text(), "a\nb\nc    d[31me");
    }

    #[test]
    fn up_and_down_browse_history_and_restore_the_draft() {
        let mut i = typed("first");
        assert_eq!(i.submit(), "first");
        i.insert("second");
        i.submit();
        i.insert("draft");
        i.up();
        assert_eq!(i.text(), "second");
        i.up();
        i.up();
        assert_eq!(i.text(), "first");
        i.down();
        assert_eq!(i.text(), "second");
        i.down();
        assert_eq!(i.text(), "draft");
    }

    #[test]
    fn rows_wrap_wide_characters_whole_and_place_the_cursor() {
        let mut i = typed("ab漢字cd\nx");
        assert_eq!(
            i.rows(5),
            (vec!["ab漢".into(), "字cd".into(), "x".into()], (2, 1))
        );
        i.up();
        i.home();
        i.right();
        i.right();
        i.right();
        // Before '字', which starts the second row.
        assert_eq!(i.rows(5).1, (1, 0));
        let full = typed("abcde");
        assert_eq!(full.rows(5), (vec!["abcde".into(), String::new()], (1, 0)));
    }

    #[test]
    fn a_large_paste_is_kept_whole() {
        let big = "lorem ipsum dolor sit amet\n".repeat(4000); // ~108 KB
        let i = typed(&big);
        assert_eq!(i.text().len(), big.len());
        let (rows, cursor) = i.rows(80);
        assert_eq!(rows.len(), 4001);
        assert_eq!(cursor, (4000, 0));
    }
}
