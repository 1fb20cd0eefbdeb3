//! `dfs get` and `dfs cat`: copy files (directories recursively) out of the filesystem,
//! to local files or stdout.
//!
//! `get` writes `LOCAL._COPYING_` and renames it into place once complete, deleting it on
//! failure, so a local file never appears half-written under its real name.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use proto::path::DfsPath;

use super::progress::transfer_bar;
use super::put::COPYING_SUFFIX;
use super::{Ctx, GetArgs};
use crate::error::{Error, Result};
use crate::status::FileStatus;

pub(super) async fn cat(ctx: &mut Ctx, paths: &[String]) {
    for p in paths {
        let res = to_stdout(ctx, p).await;
        ctx.note(res);
        if ctx.stopped() {
            return;
        }
    }
}

async fn to_stdout(ctx: &mut Ctx, p: &str) -> Result<()> {
    let status = ctx.client.stat(p).await?;
    if status.is_dir() {
        return Err(is_a_directory(&status.path));
    }
    let reader = ctx.client.open(&status.path).await?;
    // A file on a duplicate of the stdout descriptor: large writes go straight to the
    // kernel instead of through std's line buffer.
    let out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|source| Error::Output { source })?;
    reader.copy_to_blocking(out, |_| {}).await?;
    Ok(())
}

pub(super) async fn get(ctx: &mut Ctx, args: GetArgs) {
    let Some((dst, sources)) = args.paths.split_last() else { return };
    if dst == "-" {
        return cat(ctx, sources).await;
    }
    let dst = PathBuf::from(dst);
    let dst_is_dir = dst.is_dir();
    if sources.len() > 1 && !dst_is_dir {
        return ctx.fail_msg(format!(
            "{}: not a directory (several sources need an existing directory)",
            dst.display()
        ));
    }
    for src in sources {
        let res = async {
            let status = ctx.client.stat(src.as_str()).await?;
            let target = if dst_is_dir { dst.join(name_of(&status.path)) } else { dst.clone() };
            if status.is_dir() {
                get_dir(ctx, args.force, &status, &target).await;
                Ok(())
            } else {
                get_file(ctx, args.force, &status, &target).await
            }
        }
        .await;
        ctx.note(res);
    }
}

/// Copies a directory tree; failures of single files are reported and skipped.
async fn get_dir(ctx: &mut Ctx, force: bool, dir: &FileStatus, target: &Path) {
    if let Err(e) = std::fs::create_dir_all(target) {
        return ctx.fail(&io_err(target, e));
    }
    let entries = match ctx.client.list(&dir.path).await {
        Ok(e) => e,
        Err(e) => return ctx.fail(&e),
    };
    for e in entries {
        let child = target.join(name_of(&e.path));
        if e.is_dir() {
            Box::pin(get_dir(ctx, force, &e, &child)).await;
        } else {
            let res = get_file(ctx, force, &e, &child).await;
            ctx.note(res);
        }
    }
}

async fn get_file(ctx: &mut Ctx, force: bool, file: &FileStatus, target: &Path) -> Result<()> {
    if target.is_dir() {
        return Err(Error::IsADirectory {
            path: target.display().to_string(),
            message: format!("{}: is a directory", target.display()),
        });
    }
    if !force && target.exists() {
        return Err(Error::AlreadyExists {
            path: target.display().to_string(),
            message: format!("{}: file exists", target.display()),
        });
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(COPYING_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let bar = transfer_bar(file.path.name(), Some(file.length));
    let res = async {
        let reader = ctx.client.open(&file.path).await?;
        let out = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        reader
            .copy_to_blocking(out, |n| {
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            })
            .await
            .map_err(|e| match e {
                Error::Output { source } => io_err(&tmp, source),
                other => other,
            })?;
        tokio::fs::rename(&tmp, target).await.map_err(|e| io_err(target, e))
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn name_of(path: &DfsPath) -> &str {
    if path.is_root() { "root" } else { path.name() }
}

fn is_a_directory(path: &DfsPath) -> Error {
    Error::IsADirectory { path: path.to_string(), message: format!("{path}: is a directory") }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}
