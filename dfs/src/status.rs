//! What the namespace says about a path: [`FileStatus`] (one file or directory) and
//! [`ContentSummary`] (totals below a path), converted from the master's messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::gfs;
use proto::path::DfsPath;

/// Whether a path is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file made of chunks.
    File,
    /// A directory.
    Directory,
}

/// Metadata of one file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// Absolute path.
    pub path: DfsPath,
    /// File or directory.
    pub file_type: FileType,
    /// Bytes in the file (0 for a directory).
    pub length: u64,
    /// Replication factor (0 for a directory).
    pub replication: u32,
    /// Chunk size of the file (0 for a directory).
    pub chunk_size: u64,
    /// Modification time, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Owner name.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Permission bits (`0o644`; `0o1000` is the sticky bit).
    pub permission: u32,
    /// True while a writer holds the file open.
    pub under_construction: bool,
    /// Number of chunks of the file.
    pub chunk_count: u64,
}

impl FileStatus {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// True for a file.
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::File
    }

    /// The modification time.
    pub fn modified(&self) -> SystemTime {
        let ms = u64::try_from(self.mtime_ms).unwrap_or(0);
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Permission string as `ls -l` shows it, with the type letter: `drwxr-xr-x`; the
    /// sticky bit is `t` in place of others' `x` (`T` without it): `drwxrwxrwt`.
    pub fn permission_string(&self) -> String {
        let mut s = String::with_capacity(10);
        s.push(if self.is_dir() { 'd' } else { '-' });
        for shift in [6, 3, 0] {
            let bits = (self.permission >> shift) & 0o7;
            s.push(if bits & 4 != 0 { 'r' } else { '-' });
            s.push(if bits & 2 != 0 { 'w' } else { '-' });
            s.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        if self.permission & 0o1000 != 0 {
            s.pop();
            s.push(if self.permission & 1 != 0 { 't' } else { 'T' });
        }
        s
    }
}

impl TryFrom<gfs::FileStatus> for FileStatus {
    type Error = proto::path::PathError;

    fn try_from(s: gfs::FileStatus) -> Result<FileStatus, Self::Error> {
        Ok(FileStatus {
            path: DfsPath::parse(&s.path)?,
            file_type: if s.is_dir { FileType::Directory } else { FileType::File },
            length: s.length,
            replication: s.replication,
            chunk_size: s.chunk_size,
            mtime_ms: s.mtime_ms,
            owner: s.owner,
            group: s.group,
            permission: s.permission,
            under_construction: s.under_construction,
            chunk_count: s.chunk_count,
        })
    }
}

/// Totals below a path (`hdfs dfs -count`, `-du -s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentSummary {
    /// Bytes in all files.
    pub length: u64,
    /// Number of files.
    pub file_count: u64,
    /// Number of directories, the path itself included when it is one.
    pub directory_count: u64,
    /// Bytes stored counting every replica the files ask for.
    pub space_consumed: u64,
}

impl From<gfs::GetContentSummaryResponse> for ContentSummary {
    fn from(r: gfs::GetContentSummaryResponse) -> ContentSummary {
        ContentSummary {
            length: r.length,
            file_count: r.file_count,
            directory_count: r.directory_count,
            space_consumed: r.space_consumed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_status(is_dir: bool, permission: u32) -> gfs::FileStatus {
        gfs::FileStatus {
            path: "/a/b".into(),
            is_dir,
            length: 5,
            replication: 3,
            chunk_size: 1 << 26,
            mtime_ms: 1_000,
            owner: "alice".into(),
            group: "staff".into(),
            permission,
            under_construction: false,
            chunk_count: 1,
        }
    }

    #[test]
    fn converts_and_formats_permissions() {
        let f = FileStatus::try_from(proto_status(false, 0o644)).expect("valid");
        assert!(f.is_file());
        assert_eq!(f.permission_string(), "-rw-r--r--");
        assert_eq!(f.modified(), UNIX_EPOCH + Duration::from_secs(1));
        let d = FileStatus::try_from(proto_status(true, 0o755)).expect("valid");
        assert_eq!(d.permission_string(), "drwxr-xr-x");
        let t = FileStatus::try_from(proto_status(true, 0o1777)).expect("valid");
        assert_eq!(t.permission_string(), "drwxrwxrwt");
        let t = FileStatus::try_from(proto_status(true, 0o1770)).expect("valid");
        assert_eq!(t.permission_string(), "drwxrwx--T");
    }

    #[test]
    fn a_bad_path_from_the_master_is_refused() {
        let mut s = proto_status(false, 0o644);
        s.path = "relative".into();
        assert!(FileStatus::try_from(s).is_err());
    }
}
