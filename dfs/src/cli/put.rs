//! `dfs put`: copies local files, directories (recursively) or stdin into the filesystem.
//!
//! As `hdfs dfs -put` does, each file is written to `TARGET._COPYING_` and renamed into
//! place only once it is complete and durable; on any failure the temporary is deleted,
//! so nothing half-written ever appears under the real name.

use std::path::Path;

use proto::path::DfsPath;

use super::progress::transfer_bar;
use super::{Ctx, PutArgs};
use crate::error::{Error, Result};
use crate::writer::CreateOptions;

/// Suffix of files being copied, as hdfs names them.
pub(crate) const COPYING_SUFFIX: &str = "._COPYING_";

struct Put {
    force: bool,
    parents: bool,
    opts: CreateOptions,
}

pub(super) async fn put(ctx: &mut Ctx, args: PutArgs) {
    let Some((dst, sources)) = args.paths.split_last() else { return };
    let put = Put {
        force: args.force,
        parents: args.parents,
        opts: CreateOptions {
            replication: args.replication.unwrap_or(0),
            chunk_size: args.chunk_size.unwrap_or(0),
            // The temporary may be left over from an interrupted put.
            overwrite: true,
            create_parents: args.parents,
        },
    };
    let dst_path = match ctx.client.resolve(dst.as_str()) {
        Ok(p) => p,
        Err(e) => return ctx.fail(&e),
    };
    let dst_is_dir = match ctx.client.try_stat(&dst_path).await {
        Ok(s) => s.is_some_and(|s| s.is_dir()),
        Err(e) => return ctx.fail(&e),
    };
    if sources.len() > 1 && !dst_is_dir {
        return ctx.fail_msg(format!(
            "{dst_path}: not a directory (several sources need an existing directory)"
        ));
    }
    for src in sources {
        let res = put_source(ctx, &put, src, &dst_path, dst_is_dir).await;
        ctx.note(res);
    }
}

async fn put_source(
    ctx: &mut Ctx,
    put: &Put,
    src: &str,
    dst: &DfsPath,
    dst_is_dir: bool,
) -> Result<()> {
    if src == "-" {
        if dst_is_dir {
            return Err(Error::IsADirectory {
                path: dst.to_string(),
                message: format!("{dst}: is a directory; name a file to put stdin into"),
            });
        }
        return put_file(ctx, put, Input::Stdin, "stdin", None, dst).await;
    }
    let meta = tokio::fs::metadata(src).await.map_err(|e| io_err(src, e))?;
    let target = if dst_is_dir { dst.join(&local_name(src)?)? } else { dst.clone() };
    if meta.is_dir() {
        put_dir(ctx, put, Path::new(src), &target).await;
        Ok(())
    } else {
        let file = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
        put_file(ctx, put, Input::File(file), src, Some(meta.len()), &target).await
    }
}

/// Copies a local directory tree; failures of single files are reported and skipped.
async fn put_dir(ctx: &mut Ctx, put: &Put, src: &Path, target: &DfsPath) {
    let res = async {
        match ctx.client.try_stat(target).await? {
            None => ctx.client.mkdir(target, put.parents).await,
            Some(s) if s.is_dir() => Ok(()),
            Some(_) => Err(Error::AlreadyExists {
                path: target.to_string(),
                message: format!("{target}: file exists and is not a directory"),
            }),
        }
    }
    .await;
    if let Err(e) = res {
        return ctx.fail(&e);
    }
    let mut entries = Vec::new();
    match std::fs::read_dir(src) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => entries.push(e.path()),
                    Err(e) => ctx.fail(&io_err(&src.display().to_string(), e)),
                }
            }
        }
        Err(e) => return ctx.fail(&io_err(&src.display().to_string(), e)),
    }
    entries.sort();
    for path in entries {
        let shown = path.display().to_string();
        let res = async {
            let child = target.join(&local_name(&shown)?)?;
            let meta = tokio::fs::metadata(&path).await.map_err(|e| io_err(&shown, e))?;
            if meta.is_dir() {
                Box::pin(put_dir(ctx, put, &path, &child)).await;
                Ok(())
            } else {
                let file = std::fs::File::open(&path).map_err(|e| io_err(&shown, e))?;
                put_file(ctx, put, Input::File(file), &shown, Some(meta.len()), &child).await
            }
        }
        .await;
        ctx.note(res);
    }
}

/// What `put` copies from.
enum Input {
    /// Standard input, read asynchronously.
    Stdin,
    /// A local file, read by a thread of its own in whole packets (no extra copies).
    File(std::fs::File),
}

/// Writes one file through `TARGET._COPYING_` and renames it into place.
async fn put_file(
    ctx: &mut Ctx,
    put: &Put,
    input: Input,
    source: &str,
    len: Option<u64>,
    target: &DfsPath,
) -> Result<()> {
    let existing = ctx.client.try_stat(target).await?;
    match &existing {
        Some(s) if s.is_dir() => {
            return Err(Error::IsADirectory {
                path: target.to_string(),
                message: format!("{target}: is a directory"),
            });
        }
        Some(_) if !put.force => {
            return Err(Error::AlreadyExists {
                path: target.to_string(),
                message: format!("{target}: file exists"),
            });
        }
        _ => {}
    }
    let tmp = temporary(target)?;
    let bar = transfer_bar(target.name(), len);
    let res = async {
        let progress = |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        };
        match input {
            Input::Stdin => {
                ctx.client.put_stream(tokio::io::stdin(), source, &tmp, put.opts, progress).await?
            }
            Input::File(f) => ctx.client.put_blocking(f, source, &tmp, put.opts, progress).await?,
        };
        if existing.is_some() {
            ctx.client.delete(target, false).await?;
        }
        ctx.client.rename(&tmp, target).await?;
        Ok(())
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if res.is_err()
        && let Err(e) = ctx.client.delete(&tmp, false).await
        && !e.is_not_found()
    {
        tracing::warn!(path = %tmp, error = %e, "cannot delete the temporary file");
    }
    res
}

/// `TARGET._COPYING_`.
pub(crate) fn temporary(target: &DfsPath) -> Result<DfsPath> {
    let parent = target.parent().unwrap_or_else(DfsPath::root);
    Ok(parent.join(&format!("{}{COPYING_SUFFIX}", target.name()))?)
}

/// The last component of a local path (`.` and `..` resolved through the filesystem).
fn local_name(src: &str) -> Result<String> {
    let path = Path::new(src);
    if let Some(name) = path.file_name() {
        return Ok(name.to_string_lossy().into_owned());
    }
    let abs = std::fs::canonicalize(path).map_err(|e| io_err(src, e))?;
    abs.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
        Error::InvalidArgument { message: format!("{src}: cannot tell the name to copy it under") }
    })
}

fn io_err(path: &str, source: std::io::Error) -> Error {
    Error::Io { path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_sit_beside_their_target() {
        let t = DfsPath::parse("/a/b.txt").expect("valid");
        assert_eq!(temporary(&t).expect("tmp").as_str(), "/a/b.txt._COPYING_");
        let t = DfsPath::parse("/x").expect("valid");
        assert_eq!(temporary(&t).expect("tmp").as_str(), "/x._COPYING_");
    }

    #[test]
    fn local_names() {
        assert_eq!(local_name("dir/file.txt").expect("name"), "file.txt");
        assert_eq!(local_name("dir/sub/").expect("name"), "sub");
    }
}
