//! `dfs admin`: administration of the master, like `hdfs dfsadmin`: `checkpoint`
//! (`-saveNamespace`), `safemode get|enter|leave|wait`, `metasave [FILE]`,
//! `decommission ADDR`, `recommission ADDR`, `balance [--threshold PCT|--stop|--status]`
//! and `masters [add ID=HOST:PORT|remove ID]`.

use std::path::Path;

use super::{AdminCommand, Ctx, MastersChange, SafeModeArg, out};
use crate::admin::{SafeModeOp, format_balancer, format_masters, format_safe_mode};
use crate::error::Error;

pub(super) async fn admin(ctx: &mut Ctx, cmd: &AdminCommand) {
    match cmd {
        AdminCommand::Checkpoint => match ctx.client.checkpoint().await {
            Ok(txid) => ctx.note(out(&format!("Checkpoint written at txid {txid}\n"))),
            Err(e) => ctx.fail(&e),
        },
        AdminCommand::Safemode { action } => {
            let status = match action {
                SafeModeArg::Get => ctx.client.safe_mode(SafeModeOp::Get).await,
                SafeModeArg::Enter => ctx.client.safe_mode(SafeModeOp::Enter).await,
                SafeModeArg::Leave => ctx.client.safe_mode(SafeModeOp::Leave).await,
                SafeModeArg::Wait => ctx.client.wait_safe_mode_off().await,
            };
            match status {
                Ok(s) => ctx.note(out(&format_safe_mode(&s))),
                Err(e) => ctx.fail(&e),
            }
        }
        AdminCommand::Decommission { addr } | AdminCommand::Recommission { addr } => {
            let back = matches!(cmd, AdminCommand::Recommission { .. });
            match ctx.client.decommission(addr, back).await {
                Ok(s) => ctx.note(out(&format!(
                    "Chunkserver {}: {}; {} chunks still to copy elsewhere\n",
                    s.addr, s.state, s.chunks_to_copy
                ))),
                Err(e) => ctx.fail(&e),
            }
        }
        AdminCommand::Masters { change } => {
            let group = match change {
                None => ctx.client.masters().await,
                Some(MastersChange::Add { member: (id, addr) }) => {
                    ctx.client.change_masters(*id, Some(addr)).await
                }
                Some(MastersChange::Remove { id }) => ctx.client.change_masters(*id, None).await,
            };
            match group {
                Ok(g) => ctx.note(out(&format_masters(&g))),
                Err(e) => ctx.fail(&e),
            }
        }
        AdminCommand::Balance { threshold, stop, status } => {
            let threshold = (!*stop && !*status).then_some(*threshold);
            match ctx.client.balance(threshold, *stop).await {
                Ok(b) => ctx.note(out(&format_balancer(&b))),
                Err(e) => ctx.fail(&e),
            }
        }
        AdminCommand::Metasave { file } => {
            let text = match ctx.client.meta_save().await {
                Ok(t) => t,
                Err(e) => return ctx.fail(&e),
            };
            match file {
                None => ctx.note(out(&text)),
                Some(f) => match std::fs::write(Path::new(f), text) {
                    Ok(()) => ctx.note(out(&format!("Created metasave file {f}\n"))),
                    Err(source) => ctx.fail(&Error::Io { path: f.clone(), source }),
                },
            }
        }
    }
}
