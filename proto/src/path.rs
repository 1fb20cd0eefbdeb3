//! Path syntax of the namespace: what a valid path is, and its normal form.
//!
//! A path is absolute, `/`-separated, with no empty, `.` or `..` component once repeated
//! and trailing slashes are folded (as HDFS normalizes them). The master accepts only
//! normal paths; clients resolve relative ones against a working directory first.

use std::fmt;

use thiserror::Error;

/// Longest component accepted (HDFS: `dfs.namenode.fs-limits.max-component-length`).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 8000;

/// Why a string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct PathError {
    /// The string as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks that `name` can be one component of a path: not empty, `.` or `..`, no `/`,
/// NUL or `:`, at most [`MAX_COMPONENT_LEN`] bytes.
///
/// # Errors
/// What is wrong with it.
pub fn check_component(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains('/') {
        return Err("not a single path component");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if name.contains('\0') || name.contains(':') {
        return Err("NUL and ':' are not allowed");
    }
    if name.len() > MAX_COMPONENT_LEN {
        return Err("a component is longer than 255 bytes");
    }
    Ok(())
}

/// A normalized absolute path: `/` or `/a/b` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DfsPath(String);

impl DfsPath {
    /// The root directory.
    pub fn root() -> DfsPath {
        DfsPath("/".to_owned())
    }

    /// Parses an absolute path into its normal form.
    ///
    /// # Errors
    /// A [`PathError`] if the path is relative or empty, or has a `.`/`..` component, a NUL
    /// or `:` character, or a component or total length over the limits.
    pub fn parse(s: &str) -> Result<DfsPath, PathError> {
        let err = |reason| PathError { path: s.to_owned(), reason };
        if s.is_empty() {
            return Err(err("empty path"));
        }
        if !s.starts_with('/') {
            return Err(err("not absolute"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(err("longer than 8000 bytes"));
        }
        let mut out = String::with_capacity(s.len());
        for c in s.split('/').filter(|c| !c.is_empty()) {
            check_component(c).map_err(err)?;
            out.push('/');
            out.push_str(c);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(DfsPath(out))
    }

    /// Resolves `s` against `cwd` when it is relative (`.` and `..` are folded here, the
    /// way a shell would), then parses it.
    ///
    /// # Errors
    /// As [`DfsPath::parse`], or if `..` climbs above the root.
    pub fn resolve(cwd: &DfsPath, s: &str) -> Result<DfsPath, PathError> {
        if s.starts_with('/') {
            return DfsPath::parse(s);
        }
        let mut parts: Vec<&str> = cwd.components().collect();
        for c in s.split('/').filter(|c| !c.is_empty()) {
            match c {
                "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError {
                            path: s.to_owned(),
                            reason: "'..' climbs above the root",
                        });
                    }
                }
                c => parts.push(c),
            }
        }
        DfsPath::parse(&format!("/{}", parts.join("/")))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components below the root, in order (none for `/`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The last component (`""` for the root).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent directory (`None` for the root).
    pub fn parent(&self) -> Option<DfsPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) => Some(DfsPath::root()),
            Some(i) => Some(DfsPath(self.0[..i].to_owned())),
            None => None,
        }
    }

    /// The child `name` of this directory path.
    ///
    /// # Errors
    /// A [`PathError`] if `name` is not a valid single component.
    pub fn join(&self, name: &str) -> Result<DfsPath, PathError> {
        if name.is_empty() || name.contains('/') {
            return Err(PathError { path: name.to_owned(), reason: "not a single path component" });
        }
        let joined = if self.is_root() { format!("/{name}") } else { format!("{}/{name}", self.0) };
        DfsPath::parse(&joined)
    }

    /// True if `self` is `other` or one of its ancestors.
    pub fn is_ancestor_of(&self, other: &DfsPath) -> bool {
        self.is_root()
            || other.0 == self.0
            || (other.0.starts_with(&self.0) && other.0.as_bytes().get(self.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for DfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("valid path")
    }

    #[test]
    fn normalizes_slashes() {
        assert_eq!(p("/").as_str(), "/");
        assert_eq!(p("//").as_str(), "/");
        assert_eq!(p("/a//b/").as_str(), "/a/b");
        assert_eq!(p("/a/b c/d.txt").as_str(), "/a/b c/d.txt");
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "a/b", "/a/../b", "/a/./b", "/a:b", "/a\0b"] {
            assert!(DfsPath::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(DfsPath::parse(&format!("/{}", "x".repeat(256))).is_err());
        assert!(DfsPath::parse(&format!("/{}", "x".repeat(255))).is_ok());
    }

    #[test]
    fn parent_name_join() {
        assert_eq!(p("/a/b").parent(), Some(p("/a")));
        assert_eq!(p("/a").parent(), Some(p("/")));
        assert_eq!(p("/").parent(), None);
        assert_eq!(p("/a/b").name(), "b");
        assert_eq!(p("/").name(), "");
        assert_eq!(p("/").join("x").expect("join"), p("/x"));
        assert_eq!(p("/a").join("x").expect("join"), p("/a/x"));
        assert!(p("/a").join("x/y").is_err());
        assert!(p("/a").join("..").is_err());
    }

    #[test]
    fn resolves_relative_paths() {
        let cwd = p("/user/alice");
        assert_eq!(DfsPath::resolve(&cwd, "x/y").expect("ok"), p("/user/alice/x/y"));
        assert_eq!(DfsPath::resolve(&cwd, ".").expect("ok"), p("/user/alice"));
        assert_eq!(DfsPath::resolve(&cwd, "../bob").expect("ok"), p("/user/bob"));
        assert_eq!(DfsPath::resolve(&cwd, "/abs").expect("ok"), p("/abs"));
        assert!(DfsPath::resolve(&cwd, "../../..").is_err());
    }

    #[test]
    fn ancestry() {
        assert!(p("/").is_ancestor_of(&p("/a")));
        assert!(p("/a").is_ancestor_of(&p("/a")));
        assert!(p("/a").is_ancestor_of(&p("/a/b")));
        assert!(!p("/a").is_ancestor_of(&p("/ab")));
        assert!(!p("/a/b").is_ancestor_of(&p("/a")));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// A valid component: no `/`, NUL or `:`, not `.` or `..`, 1 to 255 bytes.
    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_.-]{1,12}",
            "[^/:\u{0}]{1,20}",
            Just("x".repeat(MAX_COMPONENT_LEN)),
        ]
        .prop_filter("not . or ..", |c| c != "." && c != "..")
    }

    /// Strings made mostly of the characters that matter to the parser.
    fn pathish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("/".to_owned()),
                Just("//".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just(":".to_owned()),
                Just("\0".to_owned()),
                Just("é".to_owned()),
                "[a-z]{1,3}",
                Just("y".repeat(200)),
            ],
            0..48,
        )
        .prop_map(|parts| parts.concat())
    }

    /// What every accepted path must look like.
    fn check_normal(p: &DfsPath) -> Result<(), TestCaseError> {
        let s = p.as_str();
        prop_assert!(s.starts_with('/'), "{:?}", s);
        prop_assert!(s.len() <= MAX_PATH_LEN);
        prop_assert!(p.is_root() || !s.ends_with('/'), "{:?}", s);
        prop_assert!(!s.contains("//") && !s.contains('\0') && !s.contains(':'), "{:?}", s);
        for c in p.components() {
            prop_assert!(c != "." && c != ".." && !c.is_empty() && c.len() <= MAX_COMPONENT_LEN);
        }
        // Display is the normal form, and the normal form parses to itself.
        prop_assert_eq!(&p.to_string(), s);
        prop_assert_eq!(&DfsPath::parse(&p.to_string()).expect("normal form parses"), p);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Paths arrive in every request: no string makes the parser panic, and whatever
        /// it accepts is in normal form and survives Display.
        #[test]
        fn parse_never_panics_and_accepted_paths_round_trip(s in prop_oneof![any::<String>(), pathish()]) {
            if let Ok(p) = DfsPath::parse(&s) {
                check_normal(&p)?;
                // Parsing folds only repeated and trailing slashes.
                let folded: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
                prop_assert_eq!(p.components().collect::<Vec<_>>(), folded);
            }
        }

        /// Paths built from valid components are accepted exactly, however many slashes
        /// separate them, until they pass the length limit.
        #[test]
        fn valid_components_are_accepted(parts in prop::collection::vec(component(), 0..40), slashes in 1..3usize) {
            let sep = "/".repeat(slashes);
            let s = format!("{sep}{}", parts.join(&sep));
            let normal = format!("/{}", parts.join("/"));
            match DfsPath::parse(&s) {
                Ok(p) => {
                    check_normal(&p)?;
                    prop_assert_eq!(p.as_str(), normal.as_str());
                    let rebuilt = parts.iter().try_fold(DfsPath::root(), |d, c| d.join(c));
                    prop_assert_eq!(rebuilt.as_ref(), Ok(&p));
                }
                Err(e) => prop_assert!(s.len() > MAX_PATH_LEN, "{} refused: {}", normal, e),
            }
        }

        /// A name the namespace stores (a checkpoint's inode names) is checked by
        /// `check_component`, which must accept exactly what parsing accepts as one.
        #[test]
        fn check_component_agrees_with_parse(c in prop_oneof![any::<String>(), pathish()]) {
            let parsed = DfsPath::parse(&format!("/{c}"));
            let one = parsed.as_ref().is_ok_and(|p| p.components().eq([c.as_str()]));
            prop_assert_eq!(check_component(&c).is_ok(), one, "{:?}", c);
        }

        /// Relative paths typed at a shell resolve without panicking, to a normal path.
        #[test]
        fn resolve_never_panics(cwd in prop::collection::vec(component(), 0..4), s in pathish()) {
            let cwd = DfsPath::parse(&format!("/{}", cwd.join("/"))).expect("valid cwd");
            if let Ok(p) = DfsPath::resolve(&cwd, &s) {
                check_normal(&p)?;
            }
        }
    }
}
