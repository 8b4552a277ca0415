//! What every domain's JSON parser needs in front of simd-json. simd-json builds its value tree
//! recursively with no depth limit, so a 40 KB body of `[[[[…` overflows a worker's stack and
//! aborts the whole process — and nginx would replay that POST on the next replica. No body
//! this service accepts nests deeper than two levels, so a cheap scan refuses deeper ones
//! before any parsing.

/// Deepest nesting of arrays and objects a body may have. Far above what any endpoint needs
/// (people: 2), far below what overflows a stack.
pub const MAX_DEPTH: usize = 32;

/// True when no array or object in `body` is nested deeper than `max` levels. Brackets inside
/// strings do not count. It does not validate the JSON: the parser that follows does.
pub fn depth_within(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_documents_pass() {
        assert!(depth_within(br#"{"stack":["a","b"]}"#, 2));
        assert!(depth_within(b"1", 0));
        assert!(depth_within(b"", 0));
    }

    #[test]
    fn one_level_too_deep_fails() {
        assert!(!depth_within(br#"{"stack":[["a"]]}"#, 2));
        assert!(!depth_within(&[b'['; 20_000], MAX_DEPTH));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert!(depth_within(br#"{"nome":"[[[[{{{{"}"#, 1));
        assert!(depth_within(br#"{"nome":"a\"[[[["}"#, 1));
        assert!(depth_within(br#"{"nome":"a\\"}"#, 1));
        assert!(!depth_within(br#"{"nome":"a\\",[[]]}"#, 2));
    }
}
