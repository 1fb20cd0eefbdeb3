//! In-process chunkservers on 127.0.0.1 port 0, registered with a stand-in master that
//! hands them a chunk token key (`common`), driven with the real tonic client.

use std::path::Path;
use std::time::Duration;

use proto::checksum::{self, BLOCK_SIZE};
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::gfs::{
    ChunkserverInfo, Keepalive, Packet, PipelineError, ReadChunkRequest, WriteChunkRequest,
    WriteChunkResponse, WriteHeader,
};
use proto::reason::{self, ErrorReason};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

mod common;
use common::{FakeMaster, token};
use security::chunk_token::Modes;

struct Node {
    addr: String,
    dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<chunkserver::Result<()>>>,
}

impl Node {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    fn info(&self) -> ChunkserverInfo {
        ChunkserverInfo { id: String::new(), addr: self.addr.clone(), rack: "/r".into() }
    }
}

async fn unused_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

async fn start(master: &str) -> Node {
    start_with(master, |_| {}).await
}

/// Starts a chunkserver whose config `tweak` changes first.
async fn start_with(master: &str, tweak: impl FnOnce(&mut chunkserver::Config)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cfg = chunkserver::Config {
        master: master.to_owned(),
        dir: dir.path().to_owned(),
        heartbeat_ms: 100,
        ..chunkserver::Config::default()
    };
    tweak(&mut cfg);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(chunkserver::run(cfg, listener, async {
        let _ = stopped.await;
    }));
    Node { addr, dir, stop: Some(stop), task: Some(task) }
}

async fn client(addr: &str) -> ChunkserverClient<Channel> {
    ChunkserverClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1]).collect()
}

/// The header and packets of one chunk: `blocks_per_packet` whole blocks per packet.
fn requests(
    handle: u64,
    downstream: Vec<ChunkserverInfo>,
    bytes: &[u8],
    blocks_per_packet: usize,
) -> Vec<WriteChunkRequest> {
    let header = WriteHeader {
        handle,
        version: 1,
        downstream,
        chunk_size: 64 << 20,
        client_name: "test".into(),
        resume_offset: 0,
        token: token(handle, 1, Modes::WRITE),
    };
    let mut out = vec![WriteChunkRequest { msg: Some(ReqMsg::Header(header)) }];
    let pieces: Vec<&[u8]> = bytes.chunks(blocks_per_packet * BLOCK_SIZE).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let packet = Packet {
            seqno: i as u64,
            offset: (i * blocks_per_packet * BLOCK_SIZE) as u64,
            data: bytes::Bytes::copy_from_slice(piece),
            crcs: checksum::block_crcs(piece),
            last: i + 1 == pieces.len(),
        };
        out.push(WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) });
    }
    out
}

/// Sends the requests; returns the acks (seqno, acked length) and the error, if any.
async fn write(
    addr: &str,
    reqs: Vec<WriteChunkRequest>,
) -> (Vec<(u64, u64)>, Option<(PipelineError, Code)>) {
    let mut c = client(addr).await;
    let mut stream = match c.write_chunk(tokio_stream::iter(reqs)).await {
        Ok(r) => r.into_inner(),
        Err(status) => panic!("write_chunk refused: {status}"),
    };
    let mut acks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => match m.msg {
                Some(RespMsg::Ack(a)) => acks.push((a.seqno, a.acked_length)),
                Some(RespMsg::Error(e)) => {
                    let code = match stream.message().await {
                        Err(s) => s.code(),
                        Ok(other) => panic!("expected the stream to end with a status: {other:?}"),
                    };
                    return (acks, Some((e, code)));
                }
                None => panic!("empty response"),
            },
            Ok(None) => return (acks, None),
            Err(s) => panic!("stream failed without a pipeline error: {s}"),
        }
    }
}

async fn read(addr: &str, handle: u64, offset: u64, length: u64) -> Result<Vec<u8>, tonic::Status> {
    let mut c = client(addr).await;
    let req = ReadChunkRequest {
        handle,
        version: 1,
        offset,
        length,
        token: token(handle, 1, Modes::READ),
    };
    let mut stream = c.read_chunk(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        assert_eq!(m.offset, offset + out.len() as u64);
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

fn finalized_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("finalized")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_three_stores_the_chunk_on_every_node() {
    let fake = FakeMaster::start().await;
    let master = fake.addr.clone();
    let nodes = [start(&master).await, start(&master).await, start(&master).await];
    fake.wait_registered(3).await;
    let bytes = data(3 * (1 << 20) + 1000);
    let reqs = requests(0x42, vec![nodes[1].info(), nodes[2].info()], &bytes, 16);
    let (acks, err) = write(&nodes[0].addr, reqs).await;
    assert!(err.is_none(), "{err:?}");
    let n = bytes.len() as u64;
    assert_eq!(acks, vec![(0, 1 << 20), (1, 2 << 20), (2, 3 << 20), (3, n)]);

    for node in &nodes {
        assert_eq!(finalized_files(node.dir.path()), 2);
        assert_eq!(read(&node.addr, 0x42, 0, 0).await.unwrap(), bytes, "node {}", node.addr);
        let range = read(&node.addr, 0x42, 70_000, 2_000_000).await.unwrap();
        assert_eq!(range, &bytes[70_000..2_070_000]);
        assert_eq!(read(&node.addr, 0x42, n, 0).await.unwrap(), Vec::<u8>::new());
    }
    let a = &nodes[2].addr;
    let mut c = client(a).await;
    let stale = ReadChunkRequest {
        handle: 0x42,
        version: 2,
        offset: 0,
        length: 0,
        token: token(0x42, 2, Modes::READ),
    };
    let status = c.read_chunk(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");
    assert!(status.message().contains("stale"), "{status}");
    assert_eq!(reason::of(&status), ErrorReason::StaleVersion, "the reason crosses the wire");
    assert_eq!(read(a, 0x43, 0, 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(read(a, 0x42, n + 1, 0).await.unwrap_err().code(), Code::InvalidArgument);

    // A second write of the same version is refused.
    let (_, err) = write(a, requests(0x42, vec![], &bytes[..10], 1)).await;
    assert_eq!(err.map(|(e, c)| (e.node_index, c)), Some((0, Code::AlreadyExists)));

    // A flipped byte on disk fails the read with data_loss naming the block.
    let path = nodes[1].dir.path().join("finalized/0000000000000042.data");
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[5 * BLOCK_SIZE + 3] ^= 1;
    std::fs::write(&path, on_disk).unwrap();
    let status = read(&nodes[1].addr, 0x42, 0, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss);
    assert!(status.message().contains("checksum mismatch in block 5"), "{status}");
    assert!(status.message().contains(&nodes[1].addr), "{status}");
    assert_eq!(reason::of(&status), ErrorReason::Corrupt);

    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_with_a_bad_crc_is_refused_and_nothing_is_finalized() {
    let fake = FakeMaster::start().await;
    let master = fake.addr.clone();
    let nodes = [start(&master).await, start(&master).await];
    fake.wait_registered(2).await;
    let bytes = data(4 * BLOCK_SIZE + 10);
    let mut reqs = requests(7, vec![nodes[1].info()], &bytes, 2);
    let Some(ReqMsg::Packet(p)) = &mut reqs[2].msg else { panic!("expected a packet") };
    p.crcs[1] ^= 1;
    let (acks, err) = write(&nodes[0].addr, reqs).await;
    let (err, code) = err.expect("a pipeline error");
    assert_eq!(code, Code::DataLoss);
    assert_eq!((err.node_index, err.addr.as_str()), (0, nodes[0].addr.as_str()));
    assert!(err.message.contains("checksum mismatch in block 3"), "{}", err.message);
    assert!(acks.iter().all(|&(seq, _)| seq == 0), "{acks:?}");
    for node in &nodes {
        assert_eq!(finalized_files(node.dir.path()), 0);
    }
    assert_eq!(read(&nodes[0].addr, 7, 0, 0).await.unwrap_err().code(), Code::NotFound);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_downstream_is_named_with_its_index() {
    let fake = FakeMaster::start().await;
    let master = fake.addr.clone();
    let node = start(&master).await;
    fake.wait_registered(1).await;
    let dead = unused_addr().await;
    let down = vec![ChunkserverInfo { id: "x".into(), addr: dead.clone(), rack: "/r".into() }];
    let (acks, err) = write(&node.addr, requests(9, down, &data(100), 1)).await;
    assert!(acks.is_empty());
    let (err, code) = err.expect("a pipeline error");
    assert_eq!((err.node_index, err.addr), (1, dead));
    assert_eq!(code, Code::Unavailable);

    // A stream that does not start with a header is refused.
    let mut c = client(&node.addr).await;
    let mut reqs = requests(9, vec![], &data(100), 1);
    reqs.remove(0);
    let status = match c.write_chunk(tokio_stream::iter(reqs)).await {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(status.code(), Code::InvalidArgument);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_token_for_their_chunk_are_refused_and_change_nothing() {
    let fake = FakeMaster::start().await;
    let node = start(&fake.addr).await;
    fake.wait_registered(1).await;
    let bytes = data(1000);
    // No token, a token for another chunk, a read token: no replica is created.
    for (t, code, why) in [
        (bytes::Bytes::new(), Code::Unauthenticated, ErrorReason::BadToken),
        (token(0x51, 1, Modes::WRITE), Code::PermissionDenied, ErrorReason::BadToken),
        (token(0x50, 1, Modes::READ), Code::PermissionDenied, ErrorReason::BadToken),
        (token(0x50, 2, Modes::WRITE), Code::PermissionDenied, ErrorReason::BadToken),
    ] {
        let mut reqs = requests(0x50, vec![], &bytes, 1);
        if let Some(ReqMsg::Header(h)) = &mut reqs[0].msg {
            h.token = t;
        }
        let mut c = client(&node.addr).await;
        let status = c.write_chunk(tokio_stream::iter(reqs)).await.unwrap_err();
        assert_eq!((status.code(), reason::of(&status)), (code, why), "{status}");
        assert!(status.message().contains(&node.addr), "{status}");
    }
    assert_eq!(std::fs::read_dir(node.dir.path().join("rbw")).unwrap().count(), 0);
    assert_eq!(finalized_files(node.dir.path()), 0);
    // With the right token it is written, and reads need a read token of their own.
    let (_, err) = write(&node.addr, requests(0x50, vec![], &bytes, 1)).await;
    assert!(err.is_none(), "{err:?}");
    let mut c = client(&node.addr).await;
    let forged = ReadChunkRequest {
        handle: 0x50,
        version: 1,
        offset: 0,
        length: 0,
        token: token(0x50, 1, Modes::WRITE),
    };
    let status = c.read_chunk(forged).await.unwrap_err();
    assert_eq!(
        (status.code(), reason::of(&status)),
        (Code::PermissionDenied, ErrorReason::BadToken)
    );
    assert_eq!(read(&node.addr, 0x50, 0, 0).await.unwrap(), bytes);
    node.stop().await;
}

/// A write stream the test holds open: the request side stays open while `tx` lives.
struct Held {
    tx: mpsc::Sender<WriteChunkRequest>,
    responses: Streaming<WriteChunkResponse>,
}

impl Held {
    /// Opens a `WriteChunk` stream to `addr` and sends `first` (if any) and nothing more.
    async fn open(addr: &str, first: Option<WriteChunkRequest>) -> Result<Held, Status> {
        let (tx, rx) = mpsc::channel(64);
        if let Some(first) = first {
            tx.send(first).await.unwrap();
        }
        let responses = client(addr).await.write_chunk(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Held { tx, responses })
    }

    async fn keepalive(&self) {
        let msg = WriteChunkRequest { msg: Some(ReqMsg::Keepalive(Keepalive {})) };
        self.tx.send(msg).await.expect("the request side is open");
    }

    /// The pipeline error and the status that end the response stream, within `within`.
    async fn failure(&mut self, within: Duration) -> (PipelineError, Status) {
        let err = match next_within(&mut self.responses, within).await {
            Ok(Some(WriteChunkResponse { msg: Some(RespMsg::Error(e)) })) => e,
            other => panic!("expected a pipeline error, got {other:?}"),
        };
        match next_within(&mut self.responses, within).await {
            Err(status) => (err, status),
            other => panic!("expected the stream to end with a status, got {other:?}"),
        }
    }
}

/// The next response, which must come within `within`.
async fn next_within(
    r: &mut Streaming<WriteChunkResponse>,
    within: Duration,
) -> Result<Option<WriteChunkResponse>, Status> {
    tokio::time::timeout(within, r.message()).await.expect("an answer in time")
}

fn header_only(handle: u64, downstream: Vec<ChunkserverInfo>) -> Option<WriteChunkRequest> {
    requests(handle, downstream, &[], 1).into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_over_the_cap_are_refused_at_once_until_one_ends() {
    let fake = FakeMaster::start().await;
    let node = start_with(&fake.addr, |c| c.max_transfer_streams = 2).await;
    fake.wait_registered(1).await;
    let _a = Held::open(&node.addr, header_only(0x60, vec![])).await.expect("first stream");
    let b = Held::open(&node.addr, header_only(0x61, vec![])).await.expect("second stream");
    // A third write, and any read, is refused before anything is done for it.
    let Err(busy) = Held::open(&node.addr, header_only(0x62, vec![])).await else {
        panic!("a third stream was accepted over a cap of 2");
    };
    assert_eq!((busy.code(), reason::of(&busy)), (Code::ResourceExhausted, ErrorReason::Exhausted));
    let message = busy.message();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains(&node.addr) && message.contains("all 2 data streams"), "{message}");
    assert!(message.contains("--max-transfer-streams"), "{message}");
    let read_busy = read(&node.addr, 0x60, 0, 0).await.unwrap_err();
    assert_eq!(reason::of(&read_busy), ErrorReason::Exhausted, "{read_busy}");
    assert!(!node.dir.path().join("rbw/0000000000000062.data").exists());

    // Ending one stream makes room: a read gets as far as the store (the chunk is not
    // there) once the stream's pipeline is done, and then a whole write goes through.
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = read(&node.addr, 0x99, 0, 0).await.unwrap_err();
        if s.code() == Code::NotFound {
            break;
        }
        assert_eq!(reason::of(&s), ErrorReason::Exhausted, "{s}");
        assert!(std::time::Instant::now() < deadline, "no stream was freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bytes = data(100_000);
    let (_, err) = write(&node.addr, requests(0x63, vec![], &bytes, 1)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read(&node.addr, 0x63, 0, 0).await.unwrap(), bytes);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_a_quiet_pipeline_open_on_every_node() {
    let fake = FakeMaster::start().await;
    let idle = |c: &mut chunkserver::Config| c.stream_idle_timeout_secs = 1;
    let nodes = [start_with(&fake.addr, idle).await, start_with(&fake.addr, idle).await];
    fake.wait_registered(2).await;
    let bytes = data(3 * BLOCK_SIZE + 5);
    let mut reqs = requests(0x70, vec![nodes[1].info()], &bytes, 2).into_iter();
    let mut held = Held::open(&nodes[0].addr, reqs.next()).await.expect("open");
    // Two and a half idle timeouts with nothing but keepalives, sent to the first node
    // only: the second stays open only if the first passes them on.
    for _ in 0..10 {
        held.keepalive().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for r in reqs {
        held.tx.send(r).await.expect("still open");
        held.keepalive().await;
    }
    let mut acks = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), held.responses.message());
        match next.await.expect("an answer") {
            Ok(Some(WriteChunkResponse { msg: Some(RespMsg::Ack(a)) })) => acks.push(a.seqno),
            Ok(None) => break,
            other => panic!("the pipeline failed: {other:?}"),
        }
    }
    assert_eq!(acks, [0, 1]);
    for node in &nodes {
        assert_eq!(read(&node.addr, 0x70, 0, 0).await.unwrap(), bytes, "{}", node.addr);
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_write_stream_is_closed_its_replica_kept_and_its_space_released() {
    let fake = FakeMaster::start().await;
    let node = start_with(&fake.addr, |c| {
        c.stream_idle_timeout_secs = 1;
        c.capacity = Some(256 << 20);
    })
    .await;
    fake.wait_registered(1).await;
    let free = fake.fresh_remaining().await;
    // The header reserves the chunk size (64 MiB); keepalives hold the stream open until
    // a heartbeat shows the reservation, however slow this machine is.
    let mut held = Held::open(&node.addr, header_only(0x80, vec![])).await.expect("open");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        held.keepalive().await;
        if fake.fresh_remaining().await == free - (64 << 20) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reservation never showed");
    }
    // Then silence: the stream is closed with an error saying why.
    let (err, status) = held.failure(Duration::from_secs(10)).await;
    assert_eq!(
        (status.code(), reason::of(&status)),
        (Code::DeadlineExceeded, ErrorReason::Unreachable),
        "{status}"
    );
    assert_eq!((err.node_index, err.addr.as_str()), (0, node.addr.as_str()));
    assert!(status.message().contains(&node.addr), "{status}");
    assert!(status.message().contains("--stream-idle-timeout-secs"), "{status}");
    // As when a writer dies: the replica stays for recovery, the space comes back.
    assert!(node.dir.path().join("rbw/0000000000000080.data").exists());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.fresh_remaining().await != free {
        assert!(std::time::Instant::now() < deadline, "the reservation was never released");
    }
    drop(held);

    // A stream that never sends its header is refused once the timeout passes.
    let started = std::time::Instant::now();
    let Err(s) = Held::open(&node.addr, None).await else { panic!("a stream without a header") };
    assert_eq!((s.code(), reason::of(&s)), (Code::DeadlineExceeded, ErrorReason::Unreachable));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    node.stop().await;
}
