//! Commands that describe paths: `ls` (hdfs-style long listing), `stat` (a `key: value`
//! block per path) and `du`; and the time format they share (`2026-11-20 12:34`, UTC).

use std::fmt::Write as _;

use proto::path::DfsPath;
use proto::size::format_size;

use super::{Ctx, DuArgs, LsArgs, out};
use crate::client::Client;
use crate::error::Result;
use crate::status::FileStatus;

pub(super) async fn ls(ctx: &mut Ctx, args: &LsArgs) {
    let paths = if args.paths.is_empty() { vec![".".to_owned()] } else { args.paths.clone() };
    for p in &paths {
        let res = list_path(ctx, p, args).await;
        ctx.note(res);
        if ctx.stopped() {
            return;
        }
    }
}

async fn list_path(ctx: &mut Ctx, p: &str, args: &LsArgs) -> Result<()> {
    let status = ctx.client.stat(p).await?;
    if !status.is_dir() {
        return out(&format_listing(std::slice::from_ref(&status), args.human));
    }
    if args.recursive {
        return list_recursive(&ctx.client, &status.path, args.human).await;
    }
    let entries = ctx.client.list(&status.path).await?;
    let mut text = format!("Found {} items\n", entries.len());
    text.push_str(&format_listing(&entries, args.human));
    out(&text)
}

/// Depth first, each directory's contents right after its own line, as `hdfs dfs -ls -R`.
async fn list_recursive(client: &Client, dir: &DfsPath, human: bool) -> Result<()> {
    let entries = client.list(dir).await?;
    for e in &entries {
        out(&format_listing(std::slice::from_ref(e), human))?;
        if e.is_dir() {
            Box::pin(list_recursive(client, &e.path, human)).await?;
        }
    }
    Ok(())
}

/// hdfs `ls` lines; columns are as wide as the widest value of the listing.
pub(crate) fn format_listing(entries: &[FileStatus], human: bool) -> String {
    let repl = |e: &FileStatus| if e.is_dir() { "-".to_owned() } else { e.replication.to_string() };
    let size = |e: &FileStatus| if human { format_size(e.length) } else { e.length.to_string() };
    let w_repl = entries.iter().map(|e| repl(e).len()).max().unwrap_or(0).max(3);
    let w_owner = entries.iter().map(|e| e.owner.len()).max().unwrap_or(0);
    let w_group = entries.iter().map(|e| e.group.len()).max().unwrap_or(0);
    let w_size = entries.iter().map(|e| size(e).len()).max().unwrap_or(0).max(10);
    let mut s = String::new();
    for e in entries {
        let _ = writeln!(
            s,
            "{} {:>w_repl$} {:<w_owner$} {:<w_group$} {:>w_size$} {} {}",
            e.permission_string(),
            repl(e),
            e.owner,
            e.group,
            size(e),
            format_time(e.mtime_ms),
            e.path
        );
    }
    s
}

pub(super) async fn stat(ctx: &mut Ctx, paths: &[String]) {
    let mut first = true;
    for p in paths {
        match ctx.client.stat(p.as_str()).await {
            Ok(s) => {
                let sep = if first { "" } else { "\n" };
                first = false;
                let res = out(&format!("{sep}{}", format_stat(&s)));
                ctx.note(res);
            }
            Err(e) => ctx.fail(&e),
        }
        if ctx.stopped() {
            return;
        }
    }
}

/// The `stat` block of one path.
pub(crate) fn format_stat(s: &FileStatus) -> String {
    let kind = if s.is_dir() { "directory" } else { "file" };
    format!(
        "path: {}\ntype: {kind}\nlength: {}\nreplication: {}\nchunk size: {}\nchunks: {}\n\
         modified: {}\nowner: {}\ngroup: {}\npermission: {} ({:04o})\nopen for write: {}\n",
        s.path,
        s.length,
        s.replication,
        s.chunk_size,
        s.chunk_count,
        format_time(s.mtime_ms),
        s.owner,
        s.group,
        &s.permission_string()[1..],
        s.permission,
        s.under_construction
    )
}

pub(super) async fn du(ctx: &mut Ctx, args: &DuArgs) {
    let paths = if args.paths.is_empty() { vec![".".to_owned()] } else { args.paths.clone() };
    for p in &paths {
        let res = du_path(ctx, p, args).await;
        ctx.note(res);
        if ctx.stopped() {
            return;
        }
    }
}

async fn du_path(ctx: &mut Ctx, p: &str, args: &DuArgs) -> Result<()> {
    let status = ctx.client.stat(p).await?;
    let targets = if args.summary || !status.is_dir() {
        vec![status]
    } else {
        ctx.client.list(&status.path).await?
    };
    let mut rows = Vec::with_capacity(targets.len());
    for t in &targets {
        let c = ctx.client.content_summary(&t.path).await?;
        rows.push((c.length, c.space_consumed, t.path.to_string()));
    }
    out(&format_du(&rows, args.human))
}

/// `du` lines: length, space consumed with all replicas, path.
pub(crate) fn format_du(rows: &[(u64, u64, String)], human: bool) -> String {
    let fmt = |n: u64| if human { format_size(n) } else { n.to_string() };
    let w1 = rows.iter().map(|r| fmt(r.0).len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| fmt(r.1).len()).max().unwrap_or(0);
    let mut s = String::new();
    for (len, space, path) in rows {
        let _ = writeln!(s, "{:<w1$}  {:<w2$}  {path}", fmt(*len), fmt(*space));
    }
    s
}

/// `YYYY-MM-DD HH:MM` in UTC for milliseconds since the Unix epoch.
pub(crate) fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::FileType;

    fn entry(path: &str, dir: bool, len: u64) -> FileStatus {
        FileStatus {
            path: DfsPath::parse(path).expect("valid"),
            file_type: if dir { FileType::Directory } else { FileType::File },
            length: len,
            replication: if dir { 0 } else { 3 },
            chunk_size: 64 << 20,
            mtime_ms: 1_795_178_040_000, // 2026-11-20 12:34 UTC
            owner: "owner".into(),
            group: "supergroup".into(),
            permission: if dir { 0o755 } else { 0o644 },
            under_construction: false,
            chunk_count: 1,
        }
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_795_178_040_000), "2026-11-20 12:34");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn listing_matches_hdfs() {
        let text =
            format_listing(&[entry("/path", true, 0), entry("/path/f", false, 12345)], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "drwxr-xr-x   - owner supergroup          0 2026-11-20 12:34 /path");
        assert_eq!(lines[1], "-rw-r--r--   3 owner supergroup      12345 2026-11-20 12:34 /path/f");
    }

    #[test]
    fn human_sizes() {
        let text = format_listing(&[entry("/f", false, 64 << 20)], true);
        assert!(text.contains("  64.0 MiB 2026"), "{text}");
    }

    #[test]
    fn stat_block() {
        let s = format_stat(&entry("/path/f", false, 5));
        assert!(s.starts_with("path: /path/f\ntype: file\nlength: 5\nreplication: 3\n"), "{s}");
        assert!(s.contains("permission: rw-r--r-- (0644)\n"), "{s}");
        assert!(s.ends_with("open for write: false\n"), "{s}");
    }

    #[test]
    fn du_columns() {
        let rows = vec![(5, 15, "/a".to_owned()), (100, 300, "/b".to_owned())];
        assert_eq!(format_du(&rows, false), "5    15   /a\n100  300  /b\n");
    }
}
