//! Glob patterns as Redis matches them (`stringmatchlen` in `util.c`), for
//! `SCAN ... MATCH` and `CONFIG GET`.
//!
//! - `*` matches any run of bytes (also none), `?` any one byte;
//! - `[abc]`, `[a-z]` match one byte of a set or a range (either order),
//!   `[^...]` one byte not in it; `\` inside brackets escapes;
//! - `\c` matches `c` literally; every other byte matches itself.
//!
//! Patterns and keys come from clients, so matching must be bounded in
//! time and in stack for *any* input. A recursive matcher that tries every
//! split at each `*` is neither: it recurses once per star (a pattern of
//! 5,000 stars overflowed a connection thread's stack, issue 16 B1) and
//! can take exponential time. This one is iterative, the classic
//! two-pointer glob match:
//!
//! - it walks pattern and text left to right, remembering only the *last*
//!   `*` seen and the text position it was tried at;
//! - on a mismatch it goes back to that star and lets it swallow one more
//!   byte; with no star to go back to, the match fails.
//!
//! Forgetting the earlier stars is safe because every other token (`?`,
//! a class, an escaped or plain byte) matches exactly one byte: if the
//! part after the last star cannot be placed anywhere to the right, moving
//! an earlier star cannot help. So the work is at most
//! `pattern.len() * (text.len() + 1)` steps, the stack is constant, and the
//! answer is exact (no step budget that would turn a long match into a
//! wrong "no match"). Keys are bounded by the engines' key limit and
//! patterns by the request limit, which bounds the work per key.

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Positions in `pattern` and `text`.
    let (mut p, mut t) = (0usize, 0usize);
    // After the last `*` seen: the pattern position just past it, and the
    // text position where what follows it is being tried.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let rest = pattern.get(p..).unwrap_or_default();
        if rest.first() == Some(&b'*') {
            star = Some((p + 1, t));
            p += 1;
            continue;
        }
        let Some(&c) = text.get(t) else {
            // Text used up: only stars may remain in the pattern.
            return rest.iter().all(|&b| b == b'*');
        };
        if let Some(len) = match_one(rest, c) {
            p += len;
            t += 1;
            continue;
        }
        // Mismatch (or pattern used up with text left): let the last star
        // take one more byte and retry what follows it.
        match star {
            Some((after_star, tried_at)) => {
                star = Some((after_star, tried_at + 1));
                p = after_star;
                t = tried_at + 1;
            }
            None => return false,
        }
    }
}

/// Matches the one-byte token that starts `pattern` (not a `*`) against
/// `c`: the pattern bytes the token takes if it matches, `None` if it does
/// not or if the pattern is empty.
fn match_one(pattern: &[u8], c: u8) -> Option<usize> {
    match pattern {
        [] => None,
        [b'?', ..] => Some(1),
        [b'[', class @ ..] => {
            let (matched, rest) = match_class(class, c);
            matched.then(|| pattern.len() - rest.len())
        }
        [b'\\', escaped, ..] => (*escaped == c).then_some(2),
        [literal, ..] => (*literal == c).then_some(1),
    }
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
    fn backtracking_to_the_last_star_finds_late_matches() {
        assert!(m("*ab", "aab"));
        assert!(m("*abc*abd", "abcabcabd"));
        assert!(m("a*b?d", "axxbxbcd"));
        assert!(!m("a*b?d", "axxbxbc"));
        assert!(m("*[0-9]", "key9"));
        assert!(m(r"*\*", "a*"));
        assert!(!m(r"*\*", "ab"));
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
        assert!(m("**", ""));
        assert!(!m("", "a"));
        assert!(m("", ""));
    }

    /// The reproduction of issue 16 B1: 5,000 stars against a 5,000-byte
    /// key overflowed the stack of the recursive matcher.
    #[test]
    fn many_stars_use_no_stack_and_answer_exactly() {
        let key = "a".repeat(5000);
        let pattern = "*a".repeat(5000) + "b";
        assert!(!matches(pattern.as_bytes(), key.as_bytes()));
        let pattern = "*a".repeat(5000);
        assert!(matches(pattern.as_bytes(), key.as_bytes()));
        // The old step budget said "no match" here; the answer is yes.
        let pattern = "a*".repeat(40) + "b";
        let text = "a".repeat(100) + "b";
        assert!(matches(pattern.as_bytes(), text.as_bytes()));
        assert!(!matches(pattern.as_bytes(), "a".repeat(100).as_bytes()));
    }

    /// Checks the matcher against a slow but obviously right one (every
    /// split tried recursively) on all short patterns and texts.
    #[test]
    fn agrees_with_a_naive_matcher_on_short_inputs() {
        fn naive(p: &[u8], t: &[u8]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(b'*') => (0..=t.len()).any(|i| naive(&p[1..], &t[i..])),
                Some(_) => match (t.first(), match_one(p, t.first().copied().unwrap_or(0))) {
                    (Some(_), Some(len)) => naive(&p[len..], &t[1..]),
                    _ => false,
                },
            }
        }
        let alphabet = [b'a', b'b', b'*', b'?'];
        let mut patterns = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |&c| [p.clone(), vec![c]].concat()))
                .collect();
            patterns.extend(longer);
        }
        patterns.sort();
        patterns.dedup();
        let texts: Vec<Vec<u8>> = (0..64u32)
            .flat_map(|bits| {
                (0..=5).map(move |len| {
                    (0..len)
                        .map(|i| if bits >> i & 1 == 1 { b'b' } else { b'a' })
                        .collect()
                })
            })
            .collect();
        for p in &patterns {
            for t in &texts {
                assert_eq!(
                    matches(p, t),
                    naive(p, t),
                    "{:?} {:?}",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(t)
                );
            }
        }
    }
}
