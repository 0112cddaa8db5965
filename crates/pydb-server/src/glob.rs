//! Glob patterns as Redis matches them (`stringmatchlen` in `util.c`), for
//! `SCAN ... MATCH` and `CONFIG GET`.
//!
//! - `*` matches any run of bytes (also none), `?` any one byte;
//! - `[abc]`, `[a-z]` match one byte of a set or a range (either order),
//!   `[^...]` one byte not in it; `\` inside brackets escapes;
//! - `\c` matches `c` literally; every other byte matches itself.
//!
//! Patterns come from clients, so matching is bounded: it works on byte
//! slices with `get` (no indexing that could panic), and the backtracking
//! over `*` is capped by an iteration budget, the way Redis caps
//! recursion, so that a pattern like `a*a*a*a*...b` cannot hang a
//! connection thread.

/// The most steps a match may take before it gives up (as "no match").
const MAX_STEPS: usize = 1 << 20;

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let mut budget = MAX_STEPS;
    match_at(pattern, text, &mut budget)
}

fn match_at(mut pattern: &[u8], mut text: &[u8], budget: &mut usize) -> bool {
    while let Some(&p) = pattern.first() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p {
            b'*' => {
                // Collapse a run of stars; a trailing star matches the rest.
                while pattern.first() == Some(&b'*') {
                    pattern = pattern.get(1..).unwrap_or_default();
                }
                if pattern.is_empty() {
                    return true;
                }
                for start in 0..=text.len() {
                    let rest = text.get(start..).unwrap_or_default();
                    if match_at(pattern, rest, budget) {
                        return true;
                    }
                    if *budget == 0 {
                        return false;
                    }
                }
                return false;
            }
            b'?' => {
                if text.is_empty() {
                    return false;
                }
                text = text.get(1..).unwrap_or_default();
                pattern = pattern.get(1..).unwrap_or_default();
            }
            b'[' => {
                let Some(&c) = text.first() else {
                    return false;
                };
                let (matched, rest) = match_class(pattern.get(1..).unwrap_or_default(), c);
                if !matched {
                    return false;
                }
                pattern = rest;
                text = text.get(1..).unwrap_or_default();
            }
            b'\\' if pattern.len() >= 2 => {
                if text.first() != pattern.get(1) {
                    return false;
                }
                text = text.get(1..).unwrap_or_default();
                pattern = pattern.get(2..).unwrap_or_default();
            }
            literal => {
                if text.first() != Some(&literal) {
                    return false;
                }
                text = text.get(1..).unwrap_or_default();
                pattern = pattern.get(1..).unwrap_or_default();
            }
        }
    }
    text.is_empty()
}

/// Matches `c` against the class that starts `pattern` (just after `[`).
/// Returns whether it matched and the pattern after the closing `]` (an
/// unclosed class runs to the end of the pattern, as in Redis).
fn match_class(mut pattern: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = pattern.first() == Some(&b'^');
    if negate {
        pattern = pattern.get(1..).unwrap_or_default();
    }
    let mut matched = false;
    loop {
        match pattern {
            [] => break,
            [b']', rest @ ..] => {
                pattern = rest;
                break;
            }
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == c;
                pattern = rest;
            }
            [lo, b'-', hi, rest @ ..] if *hi != b']' => {
                let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                matched |= (lo..=hi).contains(&c);
                pattern = rest;
            }
            [b, rest @ ..] => {
                matched |= *b == c;
                pattern = rest;
            }
        }
    }
    (matched != negate, pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:1"));
        assert!(!m("user:*", "use"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("a**b", "ab"));
    }

    #[test]
    fn classes_ranges_and_escapes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m(r"h\*llo", "h*llo"));
        assert!(!m(r"h\*llo", "hello"));
        assert!(m(r"[\]]", "]"));
        assert!(m("[abc", "b"));
    }

    #[test]
    fn pathological_patterns_give_up() {
        let pattern = "a*".repeat(40) + "b";
        let text = "a".repeat(100);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}
