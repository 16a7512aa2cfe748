//! One escaping function per output sink for text that any local user controls (process and
//! thread names, exe paths, command lines, kernel-log lines, files from an incident directory).
//!
//! - Terminal ([`terminal`]): control bytes, C1 controls and invisible/bidirectional format
//!   characters become `\xNN` / `\u{NNNN}`, so a process named `\e]0;pwned\a` or `\e[2J` cannot set
//!   the window title, clear the screen or reorder what the operator reads.
//! - Markdown ([`md_code`], [`md_cell`], [`md_block`]): data only ever appears inside a code span
//!   or an indented code block, after the terminal escaping. Code is the one markdown context in
//!   which CommonMark, GitLab and GitHub render nothing (no link, image, HTML, heading, list,
//!   mention, autolink or reference), and every data line is indented or follows our own prefix,
//!   so no line can begin a GitLab quick action (`/close`). A code span's fence is one backtick
//!   longer than the longest backtick run inside it, so a name cannot close it.
//! - JSON: serde_json escapes control characters itself; nothing to do here.
use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters a terminal or a renderer could act on instead of showing.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Zero-width and bidirectional controls ("Trojan Source"), line/paragraph separators, BOM.
        | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
        // Interlinear annotation and object replacement controls.
        | '\u{fff9}'..='\u{fffb}')
}

/// Text safe to print on a terminal: control and invisible characters shown as escapes.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            o.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(o, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(o, "\\u{{{:04x}}}", c as u32);
        }
    }
    Cow::Owned(o)
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn code_span(content: &str) -> String {
    if content.is_empty() {
        // Still a code span: the document's shape must not depend on the data.
        return "` (empty) `".into();
    }
    let fence = "`".repeat(longest_backtick_run(content) + 1);
    // CommonMark strips exactly one space on each side when both are present, so the padding
    // keeps a leading/trailing backtick or space in the data from touching the fence.
    format!("{fence} {content} {fence}")
}

/// `s` as an inline code span (outside tables).
pub fn md_code(s: &str) -> String {
    code_span(&terminal(s))
}

/// `s` as an inline code span inside a GFM table cell: `|` is escaped because table rows are
/// split on unescaped pipes before inline parsing, even inside code spans.
pub fn md_cell(s: &str) -> String {
    code_span(&terminal(s).replace('|', "\\|"))
}

/// Lines as an indented code block (4 spaces each), preceded and followed by a blank line.
/// Indented rather than fenced: there is no closing fence a line could forge, and no line of
/// the block starts at column 0 (GitLab only runs quick actions that start a line).
pub fn md_block<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut o = String::from("\n");
    let mut any = false;
    for l in lines {
        // A multi-line item (a file's contents) keeps its lines.
        for part in l.split('\n') {
            let part = part.strip_suffix('\r').unwrap_or(part);
            any |= !part.trim().is_empty();
            let _ = writeln!(o, "    {}", terminal(part));
        }
    }
    if !any {
        // Blank lines alone make no code block at all: the shape must not depend on data.
        o = String::from("\n    (empty)\n");
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_shows_control_sequences_instead_of_running_them() {
        let osc = "\u{1b}]0;pwned\u{7}x";
        assert_eq!(terminal(osc), "\\x1b]0;pwned\\x07x");
        assert_eq!(terminal("a\u{1b}[2Jb\nc\td"), "a\\x1b[2Jb\\x0ac\\x09d");
        assert_eq!(terminal("\u{9b}31m"), "\\u{009b}31m");
        assert_eq!(terminal("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert!(matches!(terminal("Xwayland:cs0 ünï"), Cow::Borrowed(_)));
    }

    #[test]
    fn code_span_fence_outgrows_the_data() {
        assert_eq!(md_code("zed"), "` zed `");
        assert_eq!(md_code("a`b"), "`` a`b ``");
        assert_eq!(md_code("```x"), "```` ```x ````");
        assert_eq!(md_code("`"), "`` ` ``");
        assert_eq!(md_code(""), "` (empty) `");
        assert_eq!(md_code("a\nb"), "` a\\x0ab `");
        assert_eq!(md_cell("a|b"), "` a\\|b `");
    }

    #[test]
    fn block_indents_every_line() {
        let b = md_block(["/close", "```", "x\ny"]);
        assert_eq!(b, "\n    /close\n    ```\n    x\n    y\n\n");
        assert_eq!(md_block(std::iter::empty()), "\n    (empty)\n\n");
    }
}
