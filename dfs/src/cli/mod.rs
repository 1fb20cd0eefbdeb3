//! The `dfs` command line, modelled on `hdfs dfs`: argument parsing (clap), one module
//! per group of commands, and the error convention: one line `dfs: CMD: MESSAGE` on
//! stderr per failure, exit status 1 if anything failed, 2 for usage errors (clap).
//!
//! Multi-path commands keep going after a failed path, as hdfs does. A closed stdout
//! (`dfs cat f | head`) ends the command quietly with status 0.

mod admin;
mod auth;
mod fsck;
mod get;
mod ls;
mod namespace;
mod perm;
mod progress;
mod put;
mod report;

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{Client, ClientConfig};
use crate::error::{Error, Result};
use crate::retry::WaitNotice;

/// `dfs [--master ADDR[,ADDR...]] COMMAND`.
#[derive(Debug, Parser)]
#[command(
    name = "dfs",
    version,
    about = "Command line client of the chunk store (like `hdfs dfs`)"
)]
pub struct Cli {
    /// Master address, host:port; for a replicated master group, its members'
    /// addresses separated by commas (calls find the leader among them).
    #[arg(long, env = "DFS_MASTER", default_value = "127.0.0.1:9000", global = true)]
    pub master: String,
    /// Let a follower of a master group answer lookups (ls, stat, cat, get, du, fsck,
    /// report) from its possibly stale state, so reads go on without a leader. Changes
    /// always go to the leader.
    #[arg(long, env = "DFS_STALE_OK", global = true)]
    pub stale_ok: bool,
    /// The user to act as (default: the OS user). The master makes it the owner of what
    /// it creates and checks permissions against it.
    #[arg(long, env = "DFS_USER", global = true)]
    pub user: Option<String>,
    /// Mode bits taken away from new files (0666) and directories (0777), in octal.
    #[arg(long, env = "DFS_UMASK", default_value = "022", value_parser = parse_umask_arg, global = true)]
    pub umask: u16,
    /// Keep retrying for this many seconds while the master is unreachable or in safe
    /// mode (0 = fail at once).
    #[arg(long, env = "DFS_RETRY_SECONDS", default_value_t = 60, global = true)]
    pub retry_seconds: u64,
    /// Send a keepalive on an open write pipeline every this many milliseconds, so a
    /// pause in the input (a slow producer piping into `put -`) does not trip the
    /// chunkservers' --stream-idle-timeout-secs; keep it well below that (0 = never).
    #[arg(long, env = "DFS_KEEPALIVE_MS", default_value_t = crate::client::DEFAULT_KEEPALIVE_INTERVAL.as_millis() as u64, global = true)]
    pub keepalive_ms: u64,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `dfs` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy local files or directories (or stdin, `-`) into the filesystem.
    Put(PutArgs),
    /// Copy files or directories out of the filesystem (LOCAL `-` = stdout).
    Get(GetArgs),
    /// Print files to stdout.
    Cat {
        /// Files to print.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List directories and files.
    #[command(disable_help_flag = true)]
    Ls(LsArgs),
    /// Create directories.
    Mkdir {
        /// Create missing parents; no error if the directory exists.
        #[arg(short = 'p')]
        parents: bool,
        /// Directories to create.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Delete files (and directories with -r).
    Rm {
        /// Delete directories and their contents.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// No error if a path does not exist.
        #[arg(short = 'f')]
        force: bool,
        /// Paths to delete.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move (rename) paths; several sources need DST to be a directory.
    Mv {
        /// Sources, then the destination.
        #[arg(required = true, num_args = 2.., value_name = "SRC... DST")]
        paths: Vec<String>,
    },
    /// Print the status of paths, one `key: value` block each.
    Stat {
        /// Paths to describe.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Show space used by files and directories.
    #[command(disable_help_flag = true)]
    Du(DuArgs),
    /// Set the replication factor of files (recursively for directories).
    Setrep {
        /// The new replication factor.
        replication: u32,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Change the permission bits of paths: octal (755, 1777) or symbolic (u+x,go-w,
    /// a=r,+t). Only the owner or a superuser may.
    Chmod {
        /// Also everything below directories.
        #[arg(short = 'R')]
        recursive: bool,
        /// The mode.
        #[arg(allow_hyphen_values = true)]
        mode: String,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Change the owner (and group: OWNER:GROUP) of paths. Only a superuser may.
    Chown {
        /// Also everything below directories.
        #[arg(short = 'R')]
        recursive: bool,
        /// OWNER, OWNER:GROUP or :GROUP.
        owner: String,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Change the group of paths: their owner, to a group it belongs to, or a superuser.
    Chgrp {
        /// Also everything below directories.
        #[arg(short = 'R')]
        recursive: bool,
        /// The group.
        group: String,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Check the health of files, chunks and replicas (exit 1 if corrupt or missing).
    Fsck(FsckArgs),
    /// Cluster capacity and chunkservers (like `hdfs dfsadmin -report`).
    Report {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Administer the master (like `hdfs dfsadmin`).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The cluster secret and tokens (token mode): `secret`, `token`, `renew`, `show`.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

/// `dfs admin` commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a checkpoint of the namespace now and print the txid it covers.
    Checkpoint,
    /// Get, enter, leave or wait out safe mode.
    Safemode {
        /// What to do.
        #[arg(value_enum)]
        action: SafeModeArg,
    },
    /// Dump the master's state (chunkservers, problem chunks, open files) for debugging.
    Metasave {
        /// Local file to write it to (default: stdout).
        file: Option<String>,
    },
    /// Drain a chunkserver: its chunks are copied elsewhere, then it may be stopped.
    Decommission {
        /// The chunkserver's host:port (or id).
        addr: String,
    },
    /// Put a decommissioned (or decommissioning) chunkserver back in service.
    Recommission {
        /// The chunkserver's host:port (or id).
        addr: String,
    },
    /// The master group's members (role, term, applied index, lag), or change them.
    Masters {
        /// Add or remove a member (default: list them).
        #[command(subcommand)]
        change: Option<MastersChange>,
    },
    /// Move replicas from full chunkservers to empty ones (in the background).
    Balance {
        /// Percentage points above the mean utilization a chunkserver may stay.
        #[arg(long, default_value_t = 10.0)]
        threshold: f64,
        /// Stop the balancer.
        #[arg(long, conflicts_with = "status")]
        stop: bool,
        /// Only print the balancer's progress.
        #[arg(long)]
        status: bool,
    },
}

/// `dfs admin masters add|remove`.
#[derive(Debug, Subcommand)]
pub enum MastersChange {
    /// Add a member: it joins as a learner, catches up, then votes.
    Add {
        /// The new member as ID=HOST:PORT.
        #[arg(value_parser = parse_member, value_name = "ID=HOST:PORT")]
        member: (u64, String),
    },
    /// Remove a member.
    Remove {
        /// The member's id.
        id: u64,
    },
}

/// `ID=HOST:PORT`, as `dfs admin masters add` takes it.
fn parse_member(s: &str) -> std::result::Result<(u64, String), String> {
    let (id, addr) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| format!("member id {id:?} is not a positive number"))?;
    let addr = addr.trim();
    if addr.is_empty() || addr.contains(',') || addr.contains("://") {
        return Err(format!("member address {addr:?} is not HOST:PORT"));
    }
    Ok((id, addr.to_owned()))
}

/// `dfs admin safemode ACTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SafeModeArg {
    /// Print whether safe mode is on, with the reported chunk counts.
    Get,
    /// Turn safe mode on until `leave`.
    Enter,
    /// Turn safe mode off.
    Leave,
    /// Return once safe mode is off.
    Wait,
}

/// Arguments of `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Overwrite existing files.
    #[arg(short = 'f')]
    pub force: bool,
    /// Create missing parent directories of the destination.
    #[arg(short = 'p')]
    pub parents: bool,
    /// Replication factor of new files (default: the cluster's).
    #[arg(long)]
    pub replication: Option<u32>,
    /// Chunk size of new files, e.g. 64m (default: the cluster's).
    #[arg(long, value_parser = parse_size_arg)]
    pub chunk_size: Option<u64>,
    /// Local sources (`-` = stdin), then the destination.
    #[arg(required = true, num_args = 2.., value_name = "LOCAL... REMOTE")]
    pub paths: Vec<String>,
}

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Overwrite existing local files.
    #[arg(short = 'f')]
    pub force: bool,
    /// Remote sources, then the local destination (`-` = stdout).
    #[arg(required = true, num_args = 2.., value_name = "REMOTE... LOCAL")]
    pub paths: Vec<String>,
}

/// Arguments of `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// List subdirectories recursively.
    #[arg(short = 'R')]
    pub recursive: bool,
    /// Human-readable sizes.
    #[arg(short = 'h')]
    pub human: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Paths (default: the working directory).
    pub paths: Vec<String>,
}

/// Arguments of `du`.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// One total per path instead of one line per child.
    #[arg(short = 's')]
    pub summary: bool,
    /// Human-readable sizes.
    #[arg(short = 'h')]
    pub human: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Paths (default: the working directory).
    pub paths: Vec<String>,
}

/// Arguments of `fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Path to check.
    #[arg(default_value = "/")]
    pub path: String,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Include files open for writing.
    #[arg(long)]
    pub openforwrite: bool,
}

fn parse_umask_arg(s: &str) -> std::result::Result<u16, String> {
    crate::client::parse_umask(s)
}

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    proto::size::parse_size(s).map_err(|e| e.to_string())
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::Get(_) => "get",
            Command::Cat { .. } => "cat",
            Command::Ls(_) => "ls",
            Command::Mkdir { .. } => "mkdir",
            Command::Rm { .. } => "rm",
            Command::Mv { .. } => "mv",
            Command::Stat { .. } => "stat",
            Command::Du(_) => "du",
            Command::Setrep { .. } => "setrep",
            Command::Chmod { .. } => "chmod",
            Command::Chown { .. } => "chown",
            Command::Chgrp { .. } => "chgrp",
            Command::Fsck(_) => "fsck",
            Command::Report { .. } => "report",
            Command::Admin(_) => "admin",
            Command::Auth(_) => "auth",
        }
    }

    /// The remote path arguments of commands that take several.
    fn paths(&self) -> Option<&[String]> {
        match self {
            Command::Cat { paths }
            | Command::Rm { paths, .. }
            | Command::Stat { paths }
            | Command::Setrep { paths, .. }
            | Command::Chmod { paths, .. }
            | Command::Chown { paths, .. }
            | Command::Chgrp { paths, .. } => Some(paths),
            Command::Ls(args) => Some(&args.paths),
            Command::Du(args) => Some(&args.paths),
            _ => None,
        }
    }
}

/// State shared by a command's steps: the client and whether anything failed.
pub(crate) struct Ctx {
    cmd: &'static str,
    client: Client,
    failed: bool,
    broken_pipe: bool,
}

impl Ctx {
    /// Records a failure and prints it as `dfs: CMD: MESSAGE`.
    fn fail(&mut self, err: &Error) {
        if err.is_broken_pipe() {
            self.broken_pipe = true;
            return;
        }
        self.fail_msg(err);
    }

    fn fail_msg(&mut self, msg: impl Display) {
        self.failed = true;
        print_error(self.cmd, msg);
    }

    /// Records the outcome of one step.
    fn note(&mut self, res: Result<()>) {
        if let Err(e) = res {
            self.fail(&e);
        }
    }

    /// Expands path patterns (`*`, `?`, `[...]`) among remote path arguments, as `hdfs dfs`
    /// does; a pattern that matches nothing is an error unless `missing_ok` (`rm -f`).
    async fn expand(&mut self, args: Vec<String>, missing_ok: bool) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            if !crate::glob::has_glob(&a) {
                out.push(a);
                continue;
            }
            match self.client.glob(&a).await {
                Ok(found) if found.is_empty() && !missing_ok => {
                    self.fail_msg(format!("{a}: no such file or directory"));
                }
                Ok(found) => out.extend(found.into_iter().map(|p| p.to_string())),
                Err(e) => self.fail(&e),
            }
        }
        out
    }

    /// Expands patterns in all but the last argument (the destination).
    async fn expand_sources(&mut self, mut args: Vec<String>) -> Vec<String> {
        let Some(dst) = args.pop() else { return args };
        let mut out = self.expand(args, false).await;
        out.push(dst);
        out
    }

    /// True once stdout is closed; commands stop early.
    fn stopped(&self) -> bool {
        self.broken_pipe
    }
}

fn print_error(cmd: &str, msg: impl Display) {
    let msg = msg.to_string().replace('\n', " ");
    let _ = writeln!(std::io::stderr(), "dfs: {cmd}: {msg}");
}

/// Writes text to stdout.
pub(crate) fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Output { source })
}

/// Runs a parsed command line; returns the process exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let cmd = cli.command.name();
    let notice: WaitNotice = WaitNotice(Arc::new(|line: &str| {
        let _ = writeln!(std::io::stderr(), "dfs: {line}");
    }));
    if let Command::Auth(a) = &cli.command
        && let Some(done) = auth::local(a, cli.user.as_deref())
    {
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(cmd, e);
                ExitCode::FAILURE
            }
        };
    }
    // `auth token --user U` names the token's user, not who asks: the caller is whoever
    // the token file names.
    let acting_user = if matches!(cli.command, Command::Auth(_)) { None } else { cli.user.clone() };
    let creds = match security::Credentials::from_env(acting_user) {
        Ok(c) => c,
        Err(e) => {
            print_error(cmd, e);
            return ExitCode::FAILURE;
        }
    };
    let cfg = ClientConfig {
        master_retry_deadline: Duration::from_secs(cli.retry_seconds),
        on_master_wait: Some(notice),
        cwd: crate::path::home_dir(&creds.user),
        user: creds.user,
        token: creds.token,
        umask: cli.umask,
        keepalive_interval: Duration::from_millis(cli.keepalive_ms),
        stale_ok: cli.stale_ok,
        ..ClientConfig::default()
    };
    let client = match Client::connect(&cli.master, cfg).await {
        Ok(c) => c,
        Err(e) => {
            print_error(cmd, e);
            return ExitCode::FAILURE;
        }
    };
    let mut ctx = Ctx { cmd, client, failed: false, broken_pipe: false };
    let mut code = ExitCode::SUCCESS;
    let command = match cli.command {
        Command::Cat { paths } => Command::Cat { paths: ctx.expand(paths, false).await },
        Command::Ls(mut args) => {
            args.paths = ctx.expand(args.paths, false).await;
            Command::Ls(args)
        }
        Command::Rm { recursive, force, paths } => {
            Command::Rm { recursive, force, paths: ctx.expand(paths, force).await }
        }
        Command::Mv { paths } => Command::Mv { paths: ctx.expand_sources(paths).await },
        Command::Stat { paths } => Command::Stat { paths: ctx.expand(paths, false).await },
        Command::Du(mut args) => {
            args.paths = ctx.expand(args.paths, false).await;
            Command::Du(args)
        }
        Command::Setrep { replication, paths } => {
            Command::Setrep { replication, paths: ctx.expand(paths, false).await }
        }
        Command::Chmod { recursive, mode, paths } => {
            Command::Chmod { recursive, mode, paths: ctx.expand(paths, false).await }
        }
        Command::Chown { recursive, owner, paths } => {
            Command::Chown { recursive, owner, paths: ctx.expand(paths, false).await }
        }
        Command::Chgrp { recursive, group, paths } => {
            Command::Chgrp { recursive, group, paths: ctx.expand(paths, false).await }
        }
        Command::Get(mut args) => {
            args.paths = ctx.expand_sources(args.paths).await;
            Command::Get(args)
        }
        other => other,
    };
    if command.paths().is_some_and(<[String]>::is_empty) && ctx.failed {
        // Every argument was a pattern that matched nothing (already reported): there is
        // nothing left to do, and `ls`/`du` must not fall back to the home directory.
        return ExitCode::FAILURE;
    }
    match command {
        Command::Put(args) => put::put(&mut ctx, args).await,
        Command::Get(args) => get::get(&mut ctx, args).await,
        Command::Cat { paths } => get::cat(&mut ctx, &paths).await,
        Command::Ls(args) => ls::ls(&mut ctx, &args).await,
        Command::Mkdir { parents, paths } => namespace::mkdir(&mut ctx, parents, &paths).await,
        Command::Rm { recursive, force, paths } => {
            namespace::rm(&mut ctx, recursive, force, &paths).await
        }
        Command::Mv { paths } => namespace::mv(&mut ctx, &paths).await,
        Command::Stat { paths } => ls::stat(&mut ctx, &paths).await,
        Command::Du(args) => ls::du(&mut ctx, &args).await,
        Command::Setrep { replication, paths } => {
            namespace::setrep(&mut ctx, replication, &paths).await
        }
        Command::Chmod { recursive, mode, paths } => {
            perm::chmod(&mut ctx, recursive, &mode, &paths).await
        }
        Command::Chown { recursive, owner, paths } => {
            perm::chown(&mut ctx, recursive, &owner, &paths).await
        }
        Command::Chgrp { recursive, group, paths } => {
            perm::chgrp(&mut ctx, recursive, &group, &paths).await
        }
        Command::Fsck(args) => code = fsck::fsck(&mut ctx, &args).await,
        Command::Report { json } => report::report(&mut ctx, json).await,
        Command::Admin(cmd) => admin::admin(&mut ctx, &cmd).await,
        Command::Auth(a) => auth::remote(&mut ctx, &a, cli.user.as_deref()).await,
    }
    if ctx.broken_pipe {
        return ExitCode::SUCCESS;
    }
    if ctx.failed { ExitCode::FAILURE } else { code }
}
