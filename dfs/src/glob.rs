//! Path patterns, as `hdfs dfs` expands them: `*` (any run of characters), `?` (one
//! character) and `[...]` (one of a set or range, `[!...]` for none of them) within a
//! path component; a pattern never matches across `/`.
//!
//! Expansion walks the pattern one component at a time, listing only the directories
//! that earlier components matched, so `/logs/2026-*/part-*` costs one listing of
//! `/logs` and one per matching day, not a walk of the tree.

use proto::path::DfsPath;

use crate::client::Client;
use crate::error::Result;

/// True if `s` holds a pattern character.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// True if the whole of `name` matches the component pattern `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the latest `*`: linear in practice
    // and never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('[') => {
                if let Some((hit, next)) = class(&p, pi, n[ni])
                    && hit
                {
                    pi = next;
                    ni += 1;
                    continue;
                }
            }
            Some(&c) if c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            // Let the last `*` swallow one more character and retry.
            Some((sp, sn)) => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; returns whether it
/// matched and the index after the class, or `None` for an unterminated class (which
/// then matches a literal `[`).
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&lo) = p.get(i) {
        if lo == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = p[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    if c == '[' { Some((true, start + 1)) } else { None }
}

impl Client {
    /// The existing paths matching `pattern`, sorted; a pattern without pattern
    /// characters is returned as it is (existing or not), so callers report a missing
    /// path in their own words.
    ///
    /// # Errors
    /// An invalid path, or a listing that fails for another reason than a missing path.
    pub async fn glob(&self, pattern: &str) -> Result<Vec<DfsPath>> {
        let path = self.resolve(pattern)?;
        if !has_glob(path.as_str()) {
            return Ok(vec![path]);
        }
        let mut found = vec![DfsPath::root()];
        for component in path.components() {
            let mut next = Vec::new();
            for dir in &found {
                if has_glob(component) {
                    let entries = match self.list(dir).await {
                        Ok(e) => e,
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e),
                    };
                    // Listing a file returns the file itself: it has no children to match.
                    for e in entries.into_iter().filter(|e| e.path != *dir) {
                        if matches(component, e.path.name()) {
                            next.push(e.path);
                        }
                    }
                } else {
                    next.push(dir.join(component)?);
                }
            }
            found = next;
        }
        // Literal components after the last pattern were not checked while walking.
        let mut out = Vec::with_capacity(found.len());
        for p in found {
            if self.try_stat(&p).await?.is_some() {
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_questions() {
        assert!(matches("part-*", "part-r-00000"));
        assert!(matches("*", ""));
        assert!(matches("*.txt", "a.b.txt"));
        assert!(!matches("*.txt", "a.txt.gz"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("f?le", "file"));
        assert!(!matches("f?le", "fle"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn classes() {
        assert!(matches("part-r-0000[0-3]", "part-r-00002"));
        assert!(!matches("part-r-0000[0-3]", "part-r-00004"));
        assert!(matches("[!a]x", "bx"));
        assert!(!matches("[!a]x", "ax"));
        assert!(matches("[]]", "]"));
        assert!(matches("[ab-]", "-"));
        // An unterminated class is a literal bracket.
        assert!(matches("a[b", "a[b"));
    }

    #[test]
    fn detects_patterns() {
        assert!(has_glob("/out/part-*"));
        assert!(has_glob("/a/[0-9]"));
        assert!(!has_glob("/plain/path"));
    }
}
