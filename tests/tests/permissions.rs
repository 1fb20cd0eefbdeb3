//! Permissions on a real mini cluster, through the `dfs` CLI as different users
//! (`DFS_USER`, simple mode): the HDFS permission matrix, the sticky bit, superusers and
//! the supergroup, umasks, owners/groups/modes across a master restart, the audit log,
//! and MapReduce jobs acting as their submitter. Groups come from a static mapping
//! (`--group-mapping`): alice and carol are in `staff`, bob only in `bob`, dave in
//! `admins`, the supergroup (`--supergroup admins`, which is also the group of `/` and so
//! of everything made below it until a chgrp). The test runs as the OS user, which runs
//! the master and so is its superuser.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proto::gfs as pb;
use proto::reason::{self, ErrorReason};
use tempfile::TempDir;
use tests::{ClusterOptions, MiniCluster};

const MAPPING: &str = "alice: staff\nbob: bob\ncarol: staff\ndave: admins\n";

/// A cluster whose master maps groups from [`MAPPING`], with `admins` as supergroup.
async fn cluster(mapreduce: bool) -> (MiniCluster, TempDir) {
    cluster_in(mapreduce, false).await
}

/// As [`cluster`], in token mode if `token_auth` (`dfs_as` then carries a token the
/// harness mints for the user instead of naming it).
async fn cluster_in(mapreduce: bool, token_auth: bool) -> (MiniCluster, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("groups");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let base =
        if mapreduce { ClusterOptions::for_mapreduce_tests() } else { ClusterOptions::for_tests() };
    let options = ClusterOptions {
        chunkservers: 2,
        master_args: vec![
            "--group-mapping".into(),
            mapping.display().to_string(),
            "--supergroup".into(),
            "admins".into(),
        ],
        token_auth,
        ..base
    };
    match MiniCluster::start(options).await {
        Ok(c) => (c, dir),
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn local_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write local file");
    p.display().to_string()
}

/// `/user/alice` (alice:staff), `/user/bob` (bob:bob), `/tmp` (1777), made by the
/// superuser as an HDFS administrator would.
fn homes(c: &MiniCluster) {
    c.dfs(&["mkdir", "-p", "/user/alice", "/user/bob", "/tmp"]).assert_ok();
    c.dfs(&["chown", "alice:staff", "/user/alice"]).assert_ok();
    c.dfs(&["chown", "bob:bob", "/user/bob"]).assert_ok();
    c.dfs(&["chmod", "1777", "/tmp"]).assert_ok();
}

/// The `stat` block's owner, group and permission lines.
fn attrs(c: &MiniCluster, path: &str) -> String {
    let out = c.dfs(&["stat", path]);
    out.assert_ok();
    out.stdout_str()
        .lines()
        .filter(|l| {
            l.starts_with("owner: ") || l.starts_with("group: ") || l.starts_with("permission: ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[track_caller]
fn denied(out: &tests::CmdOutput, want: &str) {
    let line = out.assert_fails(1, "dfs: ");
    assert_eq!(line, want, "{}", out.describe());
}

#[tokio::test]
async fn the_permission_matrix_of_hdfs() {
    permission_matrix(false).await;
}

#[tokio::test]
async fn the_permission_matrix_of_hdfs_in_token_mode() {
    permission_matrix(true).await;
}

async fn permission_matrix(token_auth: bool) {
    let (c, _groups) = cluster_in(false, token_auth).await;
    let local = tempfile::tempdir().expect("tempdir");
    let data = local_file(local.path(), "f", b"alice's data\n");
    homes(&c);

    // New files and directories: the caller owns them, the parent gives the group, the
    // umask (022) the mode.
    c.dfs_as("alice", &["put", &data, "/user/alice/f"]).assert_ok();
    c.dfs_as("alice", &["put", &data, "/user/alice/secret"]).assert_ok();
    c.dfs_as("alice", &["mkdir", "/user/alice/d"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/f"),
        "owner: alice, group: staff, permission: rw-r--r-- (0644)"
    );
    assert_eq!(
        attrs(&c, "/user/alice/d"),
        "owner: alice, group: staff, permission: rwxr-xr-x (0755)"
    );
    c.dfs_as("alice", &["chmod", "600", "/user/alice/secret"]).assert_ok();

    // Reading: r on the file.
    assert_eq!(c.dfs_as("bob", &["cat", "/user/alice/f"]).assert_ok().stdout, b"alice's data\n");
    denied(
        &c.dfs_as("bob", &["cat", "/user/alice/secret"]),
        "dfs: cat: /user/alice/secret: permission denied: user=bob, access=READ, inode=/user/alice/secret (alice:staff:-rw-------)",
    );
    c.dfs_as("alice", &["cat", "/user/alice/secret"]).assert_ok();
    // Creating, deleting, renaming: w on the parent.
    denied(
        &c.dfs_as("bob", &["rm", "/user/alice/f"]),
        "dfs: rm: /user/alice/f: permission denied: user=bob, access=WRITE, inode=/user/alice (alice:staff:drwxr-xr-x)",
    );
    denied(
        &c.dfs_as("bob", &["mkdir", "/user/alice/x"]),
        "dfs: mkdir: /user/alice/x: permission denied: user=bob, access=WRITE, inode=/user/alice (alice:staff:drwxr-xr-x)",
    );
    denied(
        &c.dfs_as("bob", &["mkdir", "-p", "/user/alice/x/y/z"]),
        "dfs: mkdir: /user/alice/x/y/z: permission denied: user=bob, access=WRITE, inode=/user/alice (alice:staff:drwxr-xr-x)",
    );
    // Rename needs w on the source's parent and on the destination's.
    denied(
        &c.dfs_as("bob", &["mv", "/user/alice/f", "/user/bob/f"]),
        "dfs: mv: /user/alice/f: permission denied: user=bob, access=WRITE, inode=/user/alice (alice:staff:drwxr-xr-x)",
    );
    let out = c.dfs_as("alice", &["mv", "/user/alice/f", "/user/bob"]);
    let line = out.assert_fails(1, "dfs: mv: ");
    assert!(
        line.ends_with(
            "permission denied: user=alice, access=WRITE, inode=/user/bob (bob:bob:drwxr-xr-x)"
        ),
        "{line}"
    );
    c.dfs_as("alice", &["mv", "/user/alice/f", "/user/alice/d/g"]).assert_ok();
    // setrep: w on the file.
    denied(
        &c.dfs_as("bob", &["setrep", "1", "/user/alice/d/g"]),
        "dfs: setrep: /user/alice/d/g: permission denied: user=bob, access=WRITE, inode=/user/alice/d/g (alice:staff:-rw-r--r--)",
    );
    c.dfs_as("alice", &["setrep", "1", "/user/alice/d/g"]).assert_ok();
    // Listing: r-x on the directory; traversing: x on every directory above.
    c.dfs_as("alice", &["chmod", "750", "/user/alice"]).assert_ok();
    c.dfs_as("carol", &["ls", "/user/alice"]).assert_ok();
    denied(
        &c.dfs_as("bob", &["ls", "/user/alice"]),
        "dfs: ls: /user/alice: permission denied: user=bob, access=READ_EXECUTE, inode=/user/alice (alice:staff:drwxr-x---)",
    );
    denied(
        &c.dfs_as("bob", &["cat", "/user/alice/d/g"]),
        "dfs: cat: /user/alice/d/g: permission denied: user=bob, access=EXECUTE, inode=/user/alice (alice:staff:drwxr-x---)",
    );
    // The group's bits: carol (staff) may write where the group may.
    denied(
        &c.dfs_as("carol", &["mkdir", "/user/alice/c"]),
        "dfs: mkdir: /user/alice/c: permission denied: user=carol, access=WRITE, inode=/user/alice (alice:staff:drwxr-x---)",
    );
    c.dfs_as("alice", &["chmod", "g+w", "/user/alice"]).assert_ok();
    c.dfs_as("carol", &["mkdir", "/user/alice/c"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice"),
        "owner: alice, group: staff, permission: rwxrwx--- (0770)"
    );

    // chmod: the owner or a superuser; chown: a superuser; chgrp: the owner, to its groups.
    denied(
        &c.dfs_as("bob", &["chmod", "777", "/user/alice/d/g"]),
        "dfs: chmod: /user/alice/d/g: permission denied: user=bob, access=EXECUTE, inode=/user/alice (alice:staff:drwxrwx---)",
    );
    denied(
        &c.dfs_as("carol", &["chmod", "777", "/user/alice/d/g"]),
        "dfs: chmod: /user/alice/d/g: permission denied: user=carol is not the owner of inode=/user/alice/d/g (alice:staff:-rw-r--r--)",
    );
    denied(
        &c.dfs_as("alice", &["chown", "bob", "/user/alice/d/g"]),
        "dfs: chown: /user/alice/d/g: permission denied: user=alice is not a superuser: only a superuser changes owners",
    );
    denied(
        &c.dfs_as("alice", &["chgrp", "admins", "/user/alice/d/g"]),
        "dfs: chgrp: /user/alice/d/g: permission denied: user=alice does not belong to group admins",
    );
    c.dfs_as("alice", &["chgrp", "staff", "/user/alice/d/g"]).assert_ok();
    c.dfs(&["chown", "bob:bob", "/user/alice/d/g"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/d/g"),
        "owner: bob, group: bob, permission: rw-r--r-- (0644)"
    );
    // -R changes everything below, and stops at nothing it may change.
    c.dfs(&["chmod", "-R", "go-rwx", "/user/alice"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/d"),
        "owner: alice, group: staff, permission: rwx------ (0700)"
    );
    assert_eq!(
        attrs(&c, "/user/alice/d/g"),
        "owner: bob, group: bob, permission: rw------- (0600)"
    );

    // ls shows owner, group and mode like hdfs dfs -ls.
    let ls = c.dfs(&["ls", "/"]).assert_ok().stdout_str();
    let tmp = ls.lines().find(|l| l.ends_with(" /tmp")).expect("/tmp listed");
    assert!(tmp.starts_with("drwxrwxrwt   - "), "{tmp}");
    let ls = c.dfs(&["ls", "/user"]).assert_ok().stdout_str();
    let alice = ls.lines().find(|l| l.ends_with(" /user/alice")).expect("listed");
    assert!(alice.starts_with("drwx------   - alice staff "), "{alice}");

    // Superusers: the OS user running the master, and members of the supergroup.
    assert_eq!(c.dfs(&["cat", "/user/alice/secret"]).assert_ok().stdout, b"alice's data\n");
    c.dfs_as("dave", &["rm", "/user/alice/secret"]).assert_ok();
    denied(
        &c.dfs_as("bob", &["admin", "safemode", "enter"]),
        "dfs: admin: safemode: permission denied: user=bob is not a superuser",
    );
}

#[tokio::test]
async fn the_sticky_bit_umasks_and_unnamed_callers() {
    let (c, _groups) = cluster(false).await;
    let local = tempfile::tempdir().expect("tempdir");
    let data = local_file(local.path(), "f", b"x");
    homes(&c);
    c.dfs_as("alice", &["put", &data, "/tmp/a"]).assert_ok();
    c.dfs_as("alice", &["mkdir", "/tmp/ad"]).assert_ok();
    // /tmp is 1777: anyone creates, only an entry's owner (or /tmp's, or a superuser)
    // deletes or renames it.
    c.dfs_as("bob", &["put", &data, "/tmp/b"]).assert_ok();
    denied(
        &c.dfs_as("bob", &["rm", "/tmp/a"]),
        "dfs: rm: /tmp/a: permission denied: user=bob is not the owner of inode=/tmp/a (alice:admins:-rw-r--r--) in the sticky directory /tmp (root:admins:drwxrwxrwt)".replace("root", &security::os_user()).as_str(),
    );
    assert!(
        c.dfs_as("bob", &["mv", "/tmp/a", "/tmp/stolen"])
            .assert_fails(1, "dfs: mv: ")
            .contains("sticky directory /tmp")
    );
    assert!(
        c.dfs_as("bob", &["rm", "-r", "/tmp/ad"])
            .assert_fails(1, "dfs: rm: ")
            .contains("sticky directory /tmp")
    );
    c.dfs_as("bob", &["rm", "/tmp/b"]).assert_ok();
    c.dfs_as("alice", &["mv", "/tmp/a", "/tmp/a2"]).assert_ok();
    c.dfs(&["rm", "/tmp/a2"]).assert_ok();
    // Without the sticky bit, w on the directory is enough.
    c.dfs(&["chmod", "-t", "/tmp"]).assert_ok();
    c.dfs_as("bob", &["rm", "-r", "/tmp/ad"]).assert_ok();

    // The umask: per command (--umask), or from DFS_UMASK.
    c.dfs_as("alice", &["--umask", "077", "mkdir", "-p", "/user/alice/p/q"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/p/q"),
        "owner: alice, group: staff, permission: rwx------ (0700)"
    );
    c.dfs_as("alice", &["--umask", "077", "put", &data, "/user/alice/p/f"]).assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/p/f"),
        "owner: alice, group: staff, permission: rw------- (0600)"
    );
    let mut cmd = c.dfs_cmd();
    cmd.env("DFS_USER", "alice").env("DFS_UMASK", "027");
    tests::command::run(cmd, &["mkdir", "/user/alice/e"], None).expect("run").assert_ok();
    assert_eq!(
        attrs(&c, "/user/alice/e"),
        "owner: alice, group: staff, permission: rwxr-x--- (0750)"
    );
    // Recursive delete needs rwx on every non-empty directory below.
    c.dfs_as("alice", &["chmod", "500", "/user/alice/p"]).assert_ok();
    let line = c.dfs_as("alice", &["rm", "-r", "/user/alice/p"]).assert_fails(1, "dfs: rm: ");
    assert!(line.ends_with("access=ALL, inode=/user/alice/p (alice:staff:dr-x------)"), "{line}");

    // A request naming no user is unauthenticated; the owner a request claims is not
    // believed: the caller owns what it creates.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.master_addr()))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut anonymous = pb::client_protocol_client::ClientProtocolClient::new(channel);
    let req = pb::MkdirRequest { path: "/anon".into(), ..Default::default() };
    let status = anonymous.mkdir(req).await.expect_err("no user");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(reason::of(&status), ErrorReason::Unauthenticated);
    let mut bob = c.master_client_as("bob").await.expect("client");
    let req = pb::MkdirRequest {
        path: "/tmp/claimed".into(),
        owner: "alice".into(),
        ..Default::default()
    };
    bob.mkdir(req).await.expect("mkdir");
    assert_eq!(
        attrs(&c, "/tmp/claimed"),
        "owner: bob, group: admins, permission: rwxr-xr-x (0755)"
    );
    let status = bob
        .delete(pb::DeleteRequest { path: "/user".into(), recursive: true, ..Default::default() })
        .await
        .expect_err("not bob's");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason::of(&status), ErrorReason::PermissionDenied);
}

/// Every path below `/` with its owner, group and mode, as `ls -R` prints them.
fn tree(c: &MiniCluster) -> Vec<String> {
    let out = c.dfs(&["ls", "-R", "/"]).assert_ok().stdout_str();
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[2], f[3], f[f.len() - 1])
        })
        .collect()
}

#[tokio::test]
async fn owners_groups_and_modes_survive_a_restart() {
    let (mut c, _groups) = cluster(false).await;
    let local = tempfile::tempdir().expect("tempdir");
    let data = local_file(local.path(), "f", b"x");
    homes(&c);
    c.dfs_as("alice", &["put", &data, "/user/alice/f"]).assert_ok();
    c.dfs_as("alice", &["chgrp", "staff", "/user/alice/f"]).assert_ok();
    // Half in a checkpoint, half in the log after it.
    c.dfs(&["admin", "checkpoint"]).assert_ok();
    c.dfs_as("alice", &["--umask", "007", "mkdir", "/user/alice/d"]).assert_ok();
    c.dfs_as("alice", &["chmod", "1750", "/user/alice/d"]).assert_ok();
    c.dfs(&["chown", "bob:staff", "/user/alice/f"]).assert_ok();
    let before = tree(&c);
    assert!(before.contains(&"drwxr-x--T alice staff /user/alice/d".to_owned()), "{before:?}");
    assert!(before.contains(&"-rw-r--r-- bob staff /user/alice/f".to_owned()), "{before:?}");
    c.restart("master").await.expect("restart");
    c.dfs(&["admin", "safemode", "wait"]).assert_ok();
    assert_eq!(tree(&c), before);
    // And the checks still hold after it.
    denied(
        &c.dfs_as("carol", &["rm", "/user/alice/f"]),
        "dfs: rm: /user/alice/f: permission denied: user=carol, access=WRITE, inode=/user/alice (alice:staff:drwxr-xr-x)",
    );
}

/// The audit log's lines without their timestamps, once there are `n`.
fn audit_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_audit_log_has_one_escaped_line_per_call() {
    let (c, _groups) = cluster(false).await;
    let audit: PathBuf = c.data_dir("master").expect("master dir").join("audit.log");
    let mut su = c.master_client().await.expect("client");
    let mut bob = c.master_client_as("bob").await.expect("client");
    let mkdir =
        |path: &str| pb::MkdirRequest { path: path.into(), parents: true, ..Default::default() };
    su.mkdir(mkdir("/pub")).await.expect("mkdir");
    su.set_permission(pb::SetPermissionRequest { path: "/pub".into(), permission: 0o777 })
        .await
        .expect("chmod");
    // A name with a space, an `=`, a newline that would forge a line, and a `%`.
    let odd = "/pub/a b=c\nINFO allowed=true%";
    bob.mkdir(mkdir(odd)).await.expect("odd mkdir");
    bob.rename(pb::RenameRequest {
        src: odd.into(),
        dst: "/pub/plain".into(),
        ..Default::default()
    })
    .await
    .expect("rename");
    bob.delete(pb::DeleteRequest { path: "/pub".into(), recursive: true, ..Default::default() })
        .await
        .expect_err("denied");
    bob.get_file_info(pb::GetFileInfoRequest { path: "/pub/plain".into() }).await.expect("stat");
    bob.list_dir(pb::ListDirRequest { path: "/pub".into(), start_after: String::new() })
        .await
        .expect("list");
    bob.get_file_info(pb::GetFileInfoRequest { path: "/nope".into() }).await.expect_err("missing");
    let su_name = security::os_user();
    let want = [
        format!("allowed=true ugi={su_name} ip=127.0.0.1 cmd=mkdirs src=/pub dst=null perm={su_name}:admins:rwxr-xr-x"),
        format!("allowed=true ugi={su_name} ip=127.0.0.1 cmd=setPermission src=/pub dst=null perm={su_name}:admins:rwxrwxrwx"),
        "allowed=true ugi=bob ip=127.0.0.1 cmd=mkdirs src=/pub/a%20b%3Dc%0AINFO%20allowed%3Dtrue%25 dst=null perm=bob:admins:rwxr-xr-x".to_owned(),
        "allowed=true ugi=bob ip=127.0.0.1 cmd=rename src=/pub/a%20b%3Dc%0AINFO%20allowed%3Dtrue%25 dst=/pub/plain perm=bob:admins:rwxr-xr-x".to_owned(),
        "allowed=false ugi=bob ip=127.0.0.1 cmd=delete src=/pub dst=null perm=null".to_owned(),
        "allowed=true ugi=bob ip=127.0.0.1 cmd=getfileinfo src=/pub/plain dst=null perm=null".to_owned(),
        "allowed=true ugi=bob ip=127.0.0.1 cmd=listStatus src=/pub dst=null perm=null".to_owned(),
    ];
    // The lookup of a missing path is not audited (refused, but not by a permission).
    assert_eq!(audit_lines(&audit, want.len() + 1), want);
    let text = std::fs::read_to_string(&audit).expect("audit log");
    let stamp = text.split(' ').next().expect("a timestamp");
    assert!(stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
}

#[tokio::test]
async fn a_job_acts_as_its_submitter() {
    let (c, _groups) = cluster(true).await;
    let local = tempfile::tempdir().expect("tempdir");
    homes(&c);
    let input = local_file(local.path(), "in", b"a b a\n");
    c.dfs_as("bob", &["put", &input, "/user/bob/secret"]).assert_ok();
    c.dfs_as("bob", &["chmod", "600", "/user/bob/secret"]).assert_ok();
    c.dfs_as("alice", &["put", &input, "/user/alice/in"]).assert_ok();
    let submit = |user: &str, input: &str, output: &str| {
        let mut cmd = c.mr_cmd("mapred-examples");
        cmd.env("DFS_USER", user);
        let args = ["submit", "wordcount", "--input", input, "--output", output];
        tests::command::run(cmd, &args, None).expect("run")
    };
    // bob's 0600 input is not alice's to read: the job is refused, saying why.
    let out = submit("alice", "/user/bob/secret", "/user/alice/out1");
    let err = out.assert_fails(1, "mapred-examples: error: ");
    assert!(
        err.contains("permission denied: user=alice, access=READ, inode=/user/bob/secret (bob:bob:-rw-------)"),
        "{err}"
    );
    // Her own input: the output is hers, to the last file.
    submit("alice", "/user/alice/in", "/user/alice/out").assert_ok();
    let out = c.dfs(&["cat", "/user/alice/out/part-*"]).assert_ok().stdout_str();
    let mut counts: Vec<&str> = out.lines().collect();
    counts.sort_unstable();
    assert_eq!(counts, ["a\t2", "b\t1"]);
    for line in tree(&c).iter().filter(|l| l.contains("/user/alice/out")) {
        assert!(line.contains(" alice staff "), "{line}");
    }
    // Nor may she write into bob's home.
    let out = submit("alice", "/user/alice/in", "/user/bob/out");
    let err = out.assert_fails(1, "mapred-examples: error: ");
    assert!(
        err.contains(
            "permission denied: user=alice, access=WRITE, inode=/user/bob (bob:bob:drwxr-xr-x)"
        ),
        "{err}"
    );
}
