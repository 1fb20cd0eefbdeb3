//! Bounded edges on real mini clusters: listings in pages (`--ls-limit`), a cap on each
//! chunkserver's data streams (`--max-transfer-streams`) and an idle timeout on write
//! streams (`--stream-idle-timeout-secs`) that slow writers survive by keepalives.
//!
//! Raw streams get their write tokens the way a client does: `Create` and `AddChunk` on
//! the master, whose answer carries the chunk's token and pipeline.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proto::gfs as pb;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::reason::{self, ErrorReason};
use tests::data::random_bytes;
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

const MIB: usize = 1 << 20;

async fn cluster(options: ClusterOptions) -> MiniCluster {
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

/// `s` with every `YYYY-MM-DD HH:MM` replaced by `<time>`: listings are compared exactly
/// but for the modification times, which depend on when the test ran.
fn mask_times(s: &str) -> String {
    let pattern = b"dddd-dd-dd dd:dd";
    let b = s.as_bytes();
    let fits = |i: usize| {
        b.len() >= i + pattern.len()
            && pattern.iter().zip(&b[i..]).all(|(p, c)| match p {
                b'd' => c.is_ascii_digit(),
                p => p == c,
            })
    };
    let (mut out, mut i) = (String::new(), 0);
    while i < b.len() {
        if fits(i) {
            out.push_str("<time>");
            i += pattern.len();
        } else {
            let c = s[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// An `ls` line as `dfs` prints it (columns as wide as in a one-owner listing).
fn ls_line(user: &str, path: &str, len: Option<u64>, mode: &str) -> String {
    match len {
        Some(n) => format!("-{mode}   1 {user} supergroup {n:>10} <time> {path}"),
        None => format!("d{mode}   - {user} supergroup          0 <time> {path}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_come_in_pages_and_every_command_sees_them_whole() {
    let c = cluster(ClusterOptions {
        chunkservers: 1,
        replication: 1,
        master_args: vec!["--ls-limit".into(), "3".into()],
        ..ClusterOptions::for_tests()
    })
    .await;
    let client = c.client().await.expect("client");
    let user = client.config().user.clone();
    // /d: nine files and a directory of four (ten entries: pages of 3, 3, 3, 1);
    // /e: six files (exactly two pages).
    let put = |path: String, len: usize| {
        let client = client.clone();
        async move {
            let data = vec![b'x'; len];
            client
                .put_bytes(
                    path.as_str(),
                    &data,
                    dfs::CreateOptions { create_parents: true, ..Default::default() },
                )
                .await
                .expect("put");
        }
    };
    for i in 0..9 {
        put(format!("/d/f{i}"), i + 1).await;
    }
    for name in ["a", "b", "c", "d"] {
        put(format!("/d/s/{name}"), 10).await;
    }
    for i in 0..6 {
        put(format!("/e/g{i}"), 1).await;
    }

    // The master answers a page at a time.
    let mut m = c.master_client().await.expect("master");
    let page = m
        .list_dir(pb::ListDirRequest { path: "/d".into(), start_after: String::new() })
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = page.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!((names, page.remaining), (vec!["/d/f0", "/d/f1", "/d/f2"], 7));
    let last = m
        .list_dir(pb::ListDirRequest { path: "/d".into(), start_after: "f8".into() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!((last.entries.len(), last.entries[0].path.as_str(), last.remaining), (1, "/d/s", 0));

    let audit = c.data_dir("master").expect("master dir").join("audit.log");
    let listings = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("cmd=listStatus src=/d "))
            .count()
    };
    let audited = listings();

    let files: Vec<String> =
        (0..9).map(|i| ls_line(&user, &format!("/d/f{i}"), Some(i + 1), "rw-r--r--")).collect();
    let sub: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| ls_line(&user, &format!("/d/s/{n}"), Some(10), "rw-r--r--"))
        .collect();
    let dir_s = ls_line(&user, "/d/s", None, "rwxr-xr-x");

    let out = c.dfs(&["ls", "/d"]);
    out.assert_ok();
    let mut want = vec!["Found 10 items".to_owned()];
    want.extend(files.iter().cloned());
    want.push(dir_s.clone());
    assert_eq!(mask_times(&out.stdout_str()), want.join("\n") + "\n");
    // One audit line for the listing, not one per page.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listings() < audited + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listings(), audited + 1, "listStatus lines for /d in {}", audit.display());

    let out = c.dfs(&["ls", "-R", "/d"]);
    out.assert_ok();
    let mut want = files.clone();
    want.push(dir_s.clone());
    want.extend(sub.iter().cloned());
    assert_eq!(mask_times(&out.stdout_str()), want.join("\n") + "\n");

    let out = c.dfs(&["ls", "/e"]);
    out.assert_ok();
    let mut want = vec!["Found 6 items".to_owned()];
    want.extend((0..6).map(|i| ls_line(&user, &format!("/e/g{i}"), Some(1), "rw-r--r--")));
    assert_eq!(mask_times(&out.stdout_str()), want.join("\n") + "\n");

    // Globs expand through the same listing.
    let out = c.dfs(&["ls", "/d/f*"]);
    out.assert_ok();
    assert_eq!(mask_times(&out.stdout_str()), files.join("\n") + "\n");

    let out = c.dfs(&["du", "/d"]);
    out.assert_ok();
    let mut want: Vec<String> = (1..=9).map(|n| format!("{n:<2}  {n:<2}  /d/f{}", n - 1)).collect();
    want.push("40  40  /d/s".to_owned());
    assert_eq!(out.stdout_str(), want.join("\n") + "\n");
    let out = c.dfs(&["du", "-s", "/d"]);
    out.assert_ok();
    assert_eq!(out.stdout_str(), "85  85  /d\n");

    // A recursive change reaches entries on every page.
    c.dfs(&["chmod", "-R", "700", "/d"]).assert_ok();
    let out = c.dfs(&["ls", "-R", "/d"]);
    out.assert_ok();
    let text = out.stdout_str();
    assert_eq!(text.lines().count(), 14, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("-rwx------ ") || l.starts_with("drwx------ ")),
        "{text}"
    );
}

/// Creates `path` (the cluster's replication) as writer `holder` and allocates its first
/// chunk: the chunk with its pipeline and write token.
async fn allocate(c: &MiniCluster, path: &str) -> pb::LocatedChunk {
    let mut m = c.master_client().await.expect("master");
    m.create(pb::CreateRequest {
        path: path.into(),
        client_name: "holder".into(),
        create_parents: true,
        ..Default::default()
    })
    .await
    .expect("create");
    let added = m
        .add_chunk(pb::AddChunkRequest {
            path: path.into(),
            client_name: "holder".into(),
            ..Default::default()
        })
        .await
        .expect("add chunk")
        .into_inner();
    added.chunk.expect("a chunk")
}

/// A raw write stream held open by the test: its request side stays open while `tx`
/// lives, and nothing is sent but what the test sends.
struct Held {
    tx: mpsc::Sender<pb::WriteChunkRequest>,
    responses: Streaming<pb::WriteChunkResponse>,
}

impl Held {
    /// Opens a `WriteChunk` stream to `cs` for `chunk` (this node alone) and sends its
    /// header.
    async fn open(
        cs: &mut ChunkserverClient<Channel>,
        chunk: &pb::LocatedChunk,
    ) -> Result<Held, Status> {
        let (tx, rx) = mpsc::channel(16);
        let header = pb::WriteHeader {
            handle: chunk.handle,
            version: chunk.version,
            token: chunk.token.clone(),
            downstream: vec![],
            chunk_size: MIB as u64,
            client_name: "holder".into(),
            resume_offset: 0,
        };
        tx.send(pb::WriteChunkRequest { msg: Some(ReqMsg::Header(header)) }).await.expect("queue");
        let responses = cs.write_chunk(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Held { tx, responses })
    }

    async fn keepalive(&self) {
        let msg = pb::WriteChunkRequest { msg: Some(ReqMsg::Keepalive(pb::Keepalive {})) };
        self.tx.send(msg).await.expect("the request side is open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_at_its_stream_cap_refuses_more_and_clients_go_around_it() {
    let c = cluster(ClusterOptions {
        chunkservers: 3,
        replication: 3,
        chunkserver_args: vec!["--max-transfer-streams".into(), "2".into()],
        ..ClusterOptions::for_tests()
    })
    .await;
    let data = random_bytes(1, 3 * MIB + 1000);
    c.dfs_with_stdin(&["put", "-", "/before"], Some(&data)).assert_ok();
    let busy = c.chunkserver("cs-1").expect("cs-1").clone();
    let mut cs = c.chunkserver_client(&busy.addr).await.expect("chunkserver client");

    // Two streams held open on cs-1 fill it; a third is refused at once.
    let mut held = Vec::new();
    for i in 0..2 {
        let chunk = allocate(&c, &format!("/held/{i}")).await;
        held.push(Held::open(&mut cs, &chunk).await.expect("a stream within the cap"));
    }
    let chunk = allocate(&c, "/held/2").await;
    let started = Instant::now();
    let Err(s) = Held::open(&mut cs, &chunk).await else {
        panic!("a third stream was accepted over a cap of 2");
    };
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once: {:?}", started.elapsed());
    assert_eq!(
        (s.code(), reason::of(&s)),
        (Code::ResourceExhausted, ErrorReason::Exhausted),
        "{s}"
    );
    assert_eq!(
        s.message(),
        format!(
            "chunkserver {}: busy: all 2 data streams allowed (--max-transfer-streams) are open",
            busy.addr
        )
    );

    // A reader and a writer on cs-1's host get cs-1 first, are refused, and go around
    // it: the reader to the next replica, the writer by dropping it from the pipeline.
    let cfg = dfs::ClientConfig {
        client_host: Some(busy.host().to_owned()),
        master_retry_deadline: Duration::from_secs(30),
        ..dfs::ClientConfig::default()
    };
    let near = dfs::Client::connect(c.master_addr(), cfg).await.expect("client");
    let reader = near.open("/before").await.expect("open");
    assert_eq!(reader.chunks()[0].replicas[0].addr, busy.addr, "cs-1 is the nearest replica");
    assert!(near.read_all("/before").await.expect("read around the busy node") == data);
    let second = random_bytes(2, 2 * MIB + 10);
    near.put_bytes("/around", &second, dfs::CreateOptions::default())
        .await
        .expect("write around it");
    let around = c.locations("/around").await.expect("locations");
    for ch in &around {
        assert!(ch.replicas.iter().all(|r| r.addr != busy.addr), "{ch:?}");
    }
    // The first chunk's pipeline started at cs-1 and was recovered without it; the
    // later ones were placed without it (the writer excluded it).
    assert_eq!(around.len(), 3);
    assert_eq!(around.iter().map(|ch| ch.version).collect::<Vec<_>>(), [2, 1, 1], "{around:?}");
    c.assert_cat("/around", &second);

    // Once the held streams end, cs-1 serves again: a put whose pipelines all include
    // it needs no recovery, and cat reads it back.
    drop(held);
    let probe = c.chunkserver_client(&busy.addr).await.expect("chunkserver client");
    wait_until("cs-1 to have a free stream", Duration::from_secs(20), DEFAULT_POLL, || {
        let mut probe = probe.clone();
        async move {
            let req = pb::ReadChunkRequest {
                handle: u64::MAX,
                version: 1,
                offset: 0,
                length: 0,
                token: Default::default(),
            };
            let refused = probe.read_chunk(req).await.err();
            refused.is_some_and(|s| reason::of(&s) != ErrorReason::Exhausted)
        }
    })
    .await
    .expect("room on cs-1");
    let third = random_bytes(3, MIB + 7);
    c.dfs_with_stdin(&["put", "-", "/after"], Some(&third)).assert_ok();
    let after = c.locations("/after").await.expect("locations");
    assert!(after.iter().all(|ch| ch.version == 1 && ch.replicas.len() == 3), "{after:?}");
    c.assert_cat("/after", &third);
    c.assert_cat("/before", &data);
}

/// The next response, which must come within `within`.
async fn next_within(
    r: &mut Streaming<pb::WriteChunkResponse>,
    within: Duration,
) -> Result<Option<pb::WriteChunkResponse>, Status> {
    tokio::time::timeout(within, r.message()).await.expect("an answer in time")
}

/// What the cluster report says about `addr`: remaining bytes and writes under way, and
/// when its last heartbeat came (ms since the epoch).
async fn space_of(c: &MiniCluster, addr: &str) -> Option<((u64, u32), i64)> {
    let report = c.cluster_report().await.ok()?;
    report
        .chunkservers
        .iter()
        .find(|s| s.server.as_ref().is_some_and(|i| i.addr == addr))
        .map(|s| ((s.remaining, s.active_writes), s.last_contact_ms))
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_write_stream_is_closed_and_its_reserved_space_returns() {
    let c = cluster(ClusterOptions {
        chunkservers: 1,
        replication: 1,
        capacity: Some(64 << 20),
        chunkserver_args: vec!["--stream-idle-timeout-secs".into(), "1".into()],
        ..ClusterOptions::for_tests()
    })
    .await;
    let addr = c.chunkservers()[0].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let free = loop {
        if let Some(((remaining, 0), _)) = space_of(&c, &addr).await {
            break remaining;
        }
        assert!(Instant::now() < deadline, "no heartbeat with the space");
        tokio::time::sleep(DEFAULT_POLL).await;
    };
    let chunk = allocate(&c, "/idle").await;
    let mut cs = c.chunkserver_client(&addr).await.expect("chunkserver client");
    let mut held = Held::open(&mut cs, &chunk).await.expect("open");
    // Keepalives hold the stream open, past the timeout, until a heartbeat shows its
    // reservation (the chunk size), however slow this machine is. The master counts
    // the same right after AddChunk, until a heartbeat: only a heartbeat sent a while
    // after the stream opened is taken as the chunkserver's word.
    let opened = now_ms();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        held.keepalive().await;
        if let Some((space, at)) = space_of(&c, &addr).await
            && at > opened + 1000
        {
            assert_eq!(space, (free - MIB as u64, 1), "a reservation of one chunk");
            break;
        }
        assert!(Instant::now() < deadline, "the reservation never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then silence: the stream is closed with an error saying why.
    let started = Instant::now();
    let within = Duration::from_secs(15);
    match next_within(&mut held.responses, within).await {
        Ok(Some(pb::WriteChunkResponse { msg: Some(RespMsg::Error(e)) })) => {
            assert_eq!((e.node_index, e.addr.as_str()), (0, addr.as_str()));
        }
        other => panic!("expected a pipeline error, got {other:?}"),
    }
    let Err(s) = next_within(&mut held.responses, within).await else {
        panic!("the stream did not end with a status")
    };
    assert_eq!(
        (s.code(), reason::of(&s)),
        (Code::DeadlineExceeded, ErrorReason::Unreachable),
        "{s}"
    );
    assert_eq!(
        s.message(),
        format!(
            "chunkserver {addr}: write of chunk {:016x}: nothing from upstream for 1 s (--stream-idle-timeout-secs): stream closed",
            chunk.handle
        )
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // As when a writer dies: the replica stays for recovery, the reservation goes.
    let rbw = c.data_dir("cs-1").expect("data dir").join(format!("rbw/{:016x}.data", chunk.handle));
    assert!(rbw.exists(), "{}", rbw.display());
    wait_until("the reservation to be released", Duration::from_secs(20), DEFAULT_POLL, || async {
        space_of(&c, &addr).await.is_some_and(|(space, _)| space == (free, 0))
    })
    .await
    .expect("space back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_pausing_longer_than_the_idle_timeout_keeps_its_pipeline() {
    let c = cluster(ClusterOptions {
        chunkservers: 3,
        replication: 3,
        chunk_size: 4 << 20,
        chunkserver_args: vec!["--stream-idle-timeout-secs".into(), "1".into()],
        ..ClusterOptions::for_tests()
    })
    .await;
    // One and a half packets, a pause of three idle timeouts with the first packet's
    // pipeline open, then the rest.
    let data = random_bytes(4, 5 * MIB / 2);
    let (head, tail) = data.split_at(3 * MIB / 2);
    let mut cmd = c.dfs_cmd();
    cmd.args(["--keepalive-ms", "250", "put", "-", "/slow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn dfs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(head).expect("write");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_secs(3));
    stdin.write_all(tail).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("dfs put");
    assert!(out.status.success(), "dfs put failed: {}", String::from_utf8_lossy(&out.stderr));
    c.assert_cat("/slow", &data);
    // No pipeline recovery happened (it would have bumped the version): every node
    // kept its stream through the pause.
    let chunks = c.locations("/slow").await.expect("locations");
    assert!(chunks.iter().all(|ch| ch.version == 1 && ch.replicas.len() == 3), "{chunks:?}");
}
