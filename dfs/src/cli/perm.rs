//! Commands that change who may do what: `chmod`, `chown`, `chgrp` (each with `-R`), as
//! `hdfs dfs -chmod/-chown/-chgrp`. The master decides whether the caller may (the owner
//! or a superuser for chmod, a superuser for a new owner, the owner in the new group for
//! chgrp); `-R` walks the tree from the client, one call per path, and goes on past a
//! refused path as hdfs does.

use super::Ctx;
use crate::error::Result;
use crate::mode::ModeSpec;
use crate::status::FileStatus;

/// What to change on each path.
enum Change<'a> {
    Mode(&'a ModeSpec),
    Owner(Option<&'a str>, Option<&'a str>),
}

pub(super) async fn chmod(ctx: &mut Ctx, recursive: bool, mode: &str, paths: &[String]) {
    let spec = match ModeSpec::parse(mode) {
        Ok(s) => s,
        Err(e) => return ctx.fail_msg(e),
    };
    change_all(ctx, recursive, &Change::Mode(&spec), paths).await;
}

pub(super) async fn chown(ctx: &mut Ctx, recursive: bool, spec: &str, paths: &[String]) {
    // OWNER, OWNER:GROUP or :GROUP.
    let (owner, group) = match spec.split_once(':') {
        Some((o, g)) => ((!o.is_empty()).then_some(o), (!g.is_empty()).then_some(g)),
        None => (Some(spec), None),
    };
    if owner.is_none() && group.is_none() {
        return ctx.fail_msg(format!("{spec:?}: expected OWNER[:GROUP]"));
    }
    change_all(ctx, recursive, &Change::Owner(owner, group), paths).await;
}

pub(super) async fn chgrp(ctx: &mut Ctx, recursive: bool, group: &str, paths: &[String]) {
    change_all(ctx, recursive, &Change::Owner(None, Some(group)), paths).await;
}

async fn change_all(ctx: &mut Ctx, recursive: bool, change: &Change<'_>, paths: &[String]) {
    for p in paths {
        let res = async {
            let status = ctx.client.stat(p.as_str()).await?;
            change_one(ctx, &status, change).await?;
            Ok(status)
        }
        .await;
        match res {
            Ok(status) if recursive && status.is_dir() => {
                Box::pin(change_below(ctx, &status, change)).await;
            }
            Ok(_) => {}
            Err(e) => ctx.fail(&e),
        }
        if ctx.stopped() {
            return;
        }
    }
}

/// Changes everything below directory `dir`, depth first; failures are reported and
/// skipped.
async fn change_below(ctx: &mut Ctx, dir: &FileStatus, change: &Change<'_>) {
    let entries = match ctx.client.list(&dir.path).await {
        Ok(e) => e,
        Err(e) => return ctx.fail(&e),
    };
    for e in entries {
        let res = change_one(ctx, &e, change).await;
        match res {
            Ok(()) if e.is_dir() => Box::pin(change_below(ctx, &e, change)).await,
            Ok(()) => {}
            Err(err) => ctx.fail(&err),
        }
    }
}

async fn change_one(ctx: &Ctx, status: &FileStatus, change: &Change<'_>) -> Result<()> {
    match change {
        Change::Mode(spec) => {
            // Bits are at most 0o1777: the cast keeps them.
            let mode = spec.apply(status.permission as u16, status.is_dir());
            ctx.client.set_permission(&status.path, mode).await?;
        }
        Change::Owner(owner, group) => {
            ctx.client.set_owner(&status.path, *owner, *group).await?;
        }
    }
    Ok(())
}
