//! How callers name paths: anything implementing [`PathArg`] (`&str`, `String`,
//! [`DfsPath`]) is accepted by [`Client`](crate::Client) methods; relative strings are
//! resolved against the client's working directory, as HDFS resolves them against the
//! user's home directory.

use proto::path::{DfsPath, PathError};

/// A path argument: an absolute or relative string, or an already resolved [`DfsPath`].
pub trait PathArg {
    /// The absolute path this names, relative ones resolved against `cwd`.
    ///
    /// # Errors
    /// A [`PathError`] if the path is not valid.
    fn resolve_against(&self, cwd: &DfsPath) -> Result<DfsPath, PathError>;
}

impl PathArg for DfsPath {
    fn resolve_against(&self, _cwd: &DfsPath) -> Result<DfsPath, PathError> {
        Ok(self.clone())
    }
}

impl PathArg for &DfsPath {
    fn resolve_against(&self, _cwd: &DfsPath) -> Result<DfsPath, PathError> {
        Ok((*self).clone())
    }
}

impl PathArg for str {
    fn resolve_against(&self, cwd: &DfsPath) -> Result<DfsPath, PathError> {
        DfsPath::resolve(cwd, self)
    }
}

impl PathArg for &str {
    fn resolve_against(&self, cwd: &DfsPath) -> Result<DfsPath, PathError> {
        DfsPath::resolve(cwd, self)
    }
}

impl PathArg for String {
    fn resolve_against(&self, cwd: &DfsPath) -> Result<DfsPath, PathError> {
        DfsPath::resolve(cwd, self)
    }
}

impl PathArg for &String {
    fn resolve_against(&self, cwd: &DfsPath) -> Result<DfsPath, PathError> {
        DfsPath::resolve(cwd, self)
    }
}

/// The default working directory for `user`: `/user/<user>`, or `/` when the name is not
/// a valid path component.
pub fn home_dir(user: &str) -> DfsPath {
    DfsPath::root().join("user").and_then(|u| u.join(user)).unwrap_or_else(|_| DfsPath::root())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("valid")
    }

    #[test]
    fn relative_paths_resolve_against_the_cwd() {
        let cwd = p("/user/alice");
        assert_eq!("x".resolve_against(&cwd), Ok(p("/user/alice/x")));
        assert_eq!("/y/".resolve_against(&cwd), Ok(p("/y")));
        assert_eq!(String::from("..").resolve_against(&cwd), Ok(p("/user")));
        assert_eq!(p("/z").resolve_against(&cwd), Ok(p("/z")));
        assert!("a:b".resolve_against(&cwd).is_err());
    }

    #[test]
    fn home_dirs() {
        assert_eq!(home_dir("alice"), p("/user/alice"));
        assert_eq!(home_dir("a/b"), DfsPath::root());
        assert_eq!(home_dir(""), DfsPath::root());
    }
}
