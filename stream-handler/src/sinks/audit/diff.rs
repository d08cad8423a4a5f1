//! The unified diff of a body, bounded in size.

use std::fmt::Write;
use std::time::Duration;

use similar::TextDiff;

/// The largest body diff an audit entry keeps: 64 KiB. A body may be 128 KiB, so a
/// rewrite's diff (every old line removed, every new one added) could reach twice that;
/// the entry must stay well inside a DynamoDB item (400 KB, with the titles and
/// collaborator changes beside it) and be cheap to page through in the history API.
/// A reviewer needs the start of a huge diff, not all of it; the cut is marked.
pub const MAX_BODY_DIFF_BYTES: usize = 64 * 1024;

/// How long the diff algorithm may search for a minimal diff before settling for a
/// coarser one (a pathological pair of bodies must not stall the stream).
const DIFF_DEADLINE: Duration = Duration::from_millis(200);

/// The unified diff (3 lines of context) from `old` to `new`, cut at a line boundary to
/// at most `max_bytes` plus a closing marker line.
pub fn body_diff(old: &str, new: &str, version: u64, max_bytes: usize) -> String {
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(old, new);
    let from = format!("v{}", version.saturating_sub(1));
    let to = format!("v{version}");
    let full = diff
        .unified_diff()
        .context_radius(3)
        .header(&from, &to)
        .to_string();
    if full.len() <= max_bytes {
        return full;
    }
    let mut cut = full[..floor_char_boundary(&full, max_bytes)]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    if cut == 0 {
        cut = floor_char_boundary(&full, max_bytes);
    }
    let mut out = full[..cut].to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(out, "... diff truncated: {} more bytes", full.len() - cut);
    out
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_show_the_changed_lines() {
        let diff = body_diff("a\nb\nc\n", "a\nB\nc\n", 2, MAX_BODY_DIFF_BYTES);
        assert!(diff.starts_with("--- v1\n+++ v2\n"), "{diff}");
        assert!(diff.contains("\n-b\n+B\n"), "{diff}");
    }

    #[test]
    fn huge_diffs_are_cut_at_a_line_and_marked() {
        let old: String = (0..5000).map(|i| format!("old line {i} é\n")).collect();
        let new: String = (0..5000).map(|i| format!("new line {i} é\n")).collect();
        let diff = body_diff(&old, &new, 7, 4096);
        let marker = diff.lines().last().unwrap();
        assert!(marker.starts_with("... diff truncated: "), "{marker}");
        let kept = diff.len() - marker.len() - 1;
        assert!(kept <= 4096);
        assert!(diff[..kept].ends_with('\n'));
    }
}
