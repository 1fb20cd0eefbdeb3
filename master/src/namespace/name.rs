//! [`Name`]: one path component as the namespace stores it. Most names are short
//! (`part-r-00000`, `f123456`), so up to [`INLINE`] bytes are held inside the inode itself;
//! a heap string would cost a pointer, a length and a 32-byte allocation per inode.

use std::fmt;
use std::ops::Deref;

/// Longest name held inline.
pub const INLINE: usize = 22;

/// A path component: inline when short, boxed otherwise. Always valid UTF-8.
#[derive(Clone, PartialEq, Eq)]
pub struct Name(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Name {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a whole `&str`, so the prefix is valid UTF-8; "" never happens.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or("")
            }
            Repr::Heap(s) => s,
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Repr::Inline { len: 0, bytes: [0; INLINE] })
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Name(Repr::Inline { len: s.len() as u8, bytes })
        } else {
            Name(Repr::Heap(s.into()))
        }
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_round_trip() {
        for s in
            ["", "f1", "part-r-00000", "exactly-twenty-two-b!!", "a much longer name than fits"]
        {
            assert_eq!(Name::from(s).as_str(), s);
        }
        assert_eq!(Name::from("ünïcødé").as_str(), "ünïcødé");
        assert_eq!(std::mem::size_of::<Name>(), 24);
    }
}
