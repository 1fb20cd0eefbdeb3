//! Commands that change the namespace only: `mkdir`, `rm`, `mv`, `setrep`.

use super::{Ctx, out};
use crate::error::{Error, Result};

pub(super) async fn mkdir(ctx: &mut Ctx, parents: bool, paths: &[String]) {
    for p in paths {
        let res = ctx.client.mkdir(p.as_str(), parents).await;
        ctx.note(res);
    }
}

pub(super) async fn rm(ctx: &mut Ctx, recursive: bool, force: bool, paths: &[String]) {
    for p in paths {
        let res = rm_one(ctx, p, recursive, force).await;
        ctx.note(res);
        if ctx.stopped() {
            return;
        }
    }
}

async fn rm_one(ctx: &mut Ctx, p: &str, recursive: bool, force: bool) -> Result<()> {
    let Some(status) = ctx.client.try_stat(p).await? else {
        if force {
            return Ok(());
        }
        let path = ctx.client.resolve(p)?.to_string();
        return Err(Error::NotFound {
            message: format!("{path}: no such file or directory"),
            path,
        });
    };
    if status.is_dir() && !recursive {
        let path = status.path.to_string();
        return Err(Error::IsADirectory { message: format!("{path}: is a directory"), path });
    }
    match ctx.client.delete(&status.path, recursive).await {
        Err(e) if force && e.is_not_found() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => out(&format!("Deleted {}\n", status.path)),
    }
}

pub(super) async fn mv(ctx: &mut Ctx, paths: &[String]) {
    let Some((dst, srcs)) = paths.split_last() else { return };
    if srcs.len() > 1 {
        match ctx.client.try_stat(dst.as_str()).await {
            Ok(Some(s)) if s.is_dir() => {}
            Ok(_) => {
                ctx.fail_msg(format!("{dst}: not a directory (several sources need a directory)"));
                return;
            }
            Err(e) => {
                ctx.fail(&e);
                return;
            }
        }
    }
    for src in srcs {
        let res = ctx.client.rename(src.as_str(), dst.as_str()).await.map(|_| ());
        ctx.note(res);
    }
}

pub(super) async fn setrep(ctx: &mut Ctx, replication: u32, paths: &[String]) {
    for p in paths {
        let res = async {
            let path = ctx.client.resolve(p.as_str())?;
            ctx.client.set_replication(&path, replication).await?;
            out(&format!("Replication {replication} set: {path}\n"))
        }
        .await;
        ctx.note(res);
        if ctx.stopped() {
            return;
        }
    }
}
