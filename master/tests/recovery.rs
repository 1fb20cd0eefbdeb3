//! Crash recovery with the real `master` binary: every acknowledged change survives a
//! SIGKILL, a torn record at the end of the log is cut off, a damaged record (in the
//! middle, or a complete last one) stops start-up with the file and offset, and a damaged
//! newest checkpoint is replaced by the previous one plus the log.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proto::gfs::admin_protocol_client::AdminProtocolClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::gfs::{self as pb};
use tonic::transport::Channel;

/// A master process, killed (SIGKILL) when dropped.
struct Master {
    child: Child,
    addr: String,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn master_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_master"));
    cmd.args(["--addr", "127.0.0.1:0", "--safemode-extension-ms", "0", "--dir"])
        .arg(dir.join("meta"))
        .arg("--addr-file")
        .arg(dir.join("addr"));
    cmd
}

async fn start(dir: &Path) -> Master {
    let addr_file = dir.join("addr");
    let _ = fs::remove_file(&addr_file);
    let stderr = fs::File::create(dir.join("stderr.log")).expect("stderr file");
    let mut child = master_cmd(dir).stderr(Stdio::from(stderr)).spawn().expect("spawn master");
    for _ in 0..600 {
        if let Ok(addr) = fs::read_to_string(&addr_file) {
            return Master { child, addr };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            panic!("master exited with {status}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("master did not write its address");
}

/// Runs the master on `dir` expecting it to refuse to start; returns its stderr.
///
/// # Panics
/// If it exits with another status than 1, or is still running after 30 s (it started).
fn refused_start(dir: &Path) -> String {
    let stderr = dir.join("refused.log");
    let file = fs::File::create(&stderr).expect("stderr file");
    let mut child = master_cmd(dir).stderr(Stdio::from(file)).spawn().expect("spawn master");
    for _ in 0..600 {
        if let Some(status) = child.try_wait().expect("wait") {
            let err = fs::read_to_string(&stderr).unwrap_or_default();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let err = fs::read_to_string(&stderr).unwrap_or_default();
    panic!("the master started instead of refusing: {err}");
}

/// A channel whose every request names the OS user, the master's superuser.
type Ch = tonic::service::interceptor::InterceptedService<Channel, security::Attach>;

async fn channel(m: &Master) -> Channel {
    Channel::from_shared(format!("http://{}", m.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn superuser() -> security::Attach {
    security::Credentials::simple(security::os_user()).attach().expect("the OS user")
}

async fn client(m: &Master) -> ClientProtocolClient<Ch> {
    ClientProtocolClient::with_interceptor(channel(m).await, superuser())
}

/// A client of the master's admin service (checkpoints, safe mode), on the same port.
async fn admin(m: &Master) -> AdminProtocolClient<Ch> {
    AdminProtocolClient::with_interceptor(channel(m).await, superuser())
}

/// Kills the master with SIGKILL, as a crash would.
fn crash(mut m: Master) {
    m.child.kill().expect("kill");
    m.child.wait().expect("wait");
}

async fn mkdir(c: &mut ClientProtocolClient<Ch>, path: &str) {
    c.mkdir(pb::MkdirRequest {
        path: path.into(),
        parents: true,
        owner: "u".into(),
        ..Default::default()
    })
    .await
    .expect("mkdir");
}

async fn create_complete(c: &mut ClientProtocolClient<Ch>, path: &str, client: &str) {
    c.create(pb::CreateRequest {
        path: path.into(),
        client_name: client.into(),
        owner: "u".into(),
        create_parents: true,
        ..Default::default()
    })
    .await
    .expect("create");
    c.complete(pb::CompleteRequest {
        path: path.into(),
        client_name: client.into(),
        ..Default::default()
    })
    .await
    .expect("complete");
}

/// Every path below `/` with a marker for directories and files still open.
async fn tree(c: &mut ClientProtocolClient<Ch>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        let entries = c
            .list_dir(pb::ListDirRequest { path: dir, start_after: String::new() })
            .await
            .expect("list")
            .into_inner()
            .entries;
        for e in entries {
            if e.is_dir {
                out.insert(format!("{}/", e.path));
                stack.push(e.path);
            } else {
                let open = if e.under_construction { " (open)" } else { "" };
                out.insert(format!("{}{open}", e.path));
            }
        }
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("meta/log"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    segs.sort();
    segs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    mkdir(&mut c, "/d/sub").await;
    // Concurrent writers: every acknowledged change must come back.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                create_complete(&mut c, &format!("/d/w{w}-{i}"), &format!("writer-{w}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let mut a = admin(&m).await;
    let txid = a.checkpoint(pb::CheckpointRequest {}).await.expect("checkpoint").into_inner().txid;
    assert!(txid > 100, "checkpoint at txid {txid}");
    for i in 0..10 {
        c.rename(pb::RenameRequest {
            src: format!("/d/w0-{i}"),
            dst: "/d/sub".into(),
            ..Default::default()
        })
        .await
        .expect("rename");
        c.delete(pb::DeleteRequest {
            path: format!("/d/w1-{i}"),
            recursive: false,
            ..Default::default()
        })
        .await
        .expect("delete");
    }
    // A file left open survives as open.
    c.create(pb::CreateRequest {
        path: "/d/open".into(),
        client_name: "writer-x".into(),
        ..Default::default()
    })
    .await
    .expect("create");
    let before = tree(&mut c).await;
    assert!(before.contains("/d/sub/w0-3") && !before.contains("/d/w1-3"));
    assert!(before.contains("/d/open (open)"));
    crash(m);

    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    assert_eq!(tree(&mut c).await, before);
    // It keeps working after the restart, and that survives a second crash too.
    mkdir(&mut c, "/after").await;
    let before = tree(&mut c).await;
    crash(m);
    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    assert_eq!(tree(&mut c).await, before);
    let sm = admin(&m)
        .await
        .safe_mode(pb::SafeModeRequest { action: pb::SafeModeAction::Get as i32 })
        .await
        .expect("safe mode")
        .into_inner();
    assert!(!sm.on, "no chunks: no safe mode ({})", sm.message);
}

/// Starts a master in `dir`, makes `/a`, `/b` and `/c` (three log records), SIGKILLs it
/// and returns its newest log segment, for the tests that damage the log's tail.
async fn three_dirs_then_crash(dir: &Path) -> PathBuf {
    let m = start(dir).await;
    let mut c = client(&m).await;
    for d in ["/a", "/b", "/c"] {
        mkdir(&mut c, d).await;
    }
    crash(m);
    segments(dir).pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_start_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = three_dirs_then_crash(dir.path()).await;
    let len = fs::metadata(&last).expect("meta").len();
    fs::OpenOptions::new().write(true).open(&last).expect("open").set_len(len - 3).expect("cut");

    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    let names = tree(&mut c).await;
    assert_eq!(names, ["/a/", "/b/"].iter().map(|s| s.to_string()).collect());
    let log = fs::read_to_string(dir.path().join("stderr.log")).expect("stderr");
    assert!(log.contains("torn") && log.contains(&last.display().to_string()), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_mid_log_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = three_dirs_then_crash(dir.path()).await;
    let mut bytes = fs::read(&seg).expect("read");
    // A byte inside the first record's payload (after its 8-byte header).
    bytes[10] ^= 0x20;
    fs::write(&seg, bytes).expect("write");

    // The address file says "serving": a master that refuses to start never writes it.
    let _ = fs::remove_file(dir.path().join("addr"));
    let err = refused_start(dir.path());
    let line = err.lines().find(|l| l.starts_with("master: error:")).expect("error line");
    assert!(line.contains(&seg.display().to_string()) && line.contains("offset 0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.path().join("addr").exists(), "address file written by a master that failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_last_record_with_a_bad_checksum_stops_start_up_and_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = three_dirs_then_crash(dir.path()).await;
    let mut bytes = fs::read(&last).expect("read");
    // The last byte of the last record: the record is all there, its data has changed.
    let end = bytes.len() - 1;
    bytes[end] ^= 0x20;
    fs::write(&last, &bytes).expect("write");

    let err = refused_start(dir.path());
    let line = err.lines().find(|l| l.starts_with("master: error:")).expect("error line");
    assert!(line.contains(&last.display().to_string()), "{err}");
    assert!(line.contains("checksum mismatch on a complete record"), "{err}");
    assert_eq!(fs::read(&last).expect("read"), bytes, "nothing was cut");
}

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("meta"))
        .expect("meta dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    let mut a = admin(&m).await;
    for round in 0..3 {
        for i in 0..5 {
            create_complete(&mut c, &format!("/r{round}/f{i}"), "w").await;
        }
        if round < 2 {
            a.checkpoint(pb::CheckpointRequest {}).await.expect("checkpoint");
        }
    }
    let before = tree(&mut c).await;
    crash(m);
    let ckpts = checkpoints(dir.path());
    assert_eq!(ckpts.len(), 2, "the newest and the previous checkpoint are kept");
    let newest = ckpts.last().expect("newest");
    let mut bytes = fs::read(newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x08;
    fs::write(newest, &bytes).expect("write");

    let m = start(dir.path()).await;
    let mut c = client(&m).await;
    assert_eq!(tree(&mut c).await, before, "nothing lost");
    let log = fs::read_to_string(dir.path().join("stderr.log")).expect("stderr");
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&newest.display().to_string()))
        .unwrap_or_else(|| panic!("a warning naming the damaged checkpoint: {log}"));
    assert!(warning.contains("damaged") && warning.contains("checksum"), "{warning}");
}
