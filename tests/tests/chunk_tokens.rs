//! Chunk access tokens and the replica rules that do not depend on them, attacked the
//! way a rogue client on the network would: raw gRPC calls to chunkservers and to the
//! master's chunkserver service, on real mini clusters (1 MiB chunks, 200 ms heartbeats,
//! 3 chunkservers, replication 3). Every attack must be refused with the status and
//! reason the contract names, and afterwards every file must read back byte for byte
//! through `dfs cat`.
//!
//! Also: tokens that expire or that a restarted master no longer honours send the
//! `dfs` client back to the master for fresh ones instead of failing its read.

use std::time::Duration;

use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::{
    ChunkserverInfo, FinalizeReplicaRequest, LocatedChunk, Packet, ReadChunkRequest,
    RecoverReplicaRequest, RegisterRequest, ReportChunksRequest, ReportedChunk, WriteChunkRequest,
    WriteHeader,
};
use proto::reason::{self, ErrorReason};
use tests::data::random_bytes;
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};
use tonic::{Code, Status};

const MIB: usize = 1 << 20;

async fn cluster(options: ClusterOptions) -> MiniCluster {
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn options() -> ClusterOptions {
    ClusterOptions { chunkservers: 3, replication: 3, ..ClusterOptions::for_tests() }
}

fn token_options() -> ClusterOptions {
    ClusterOptions { token_auth: true, ..options() }
}

fn put(c: &MiniCluster, remote: &str, data: &[u8]) {
    c.dfs_with_stdin(&["put", "-p", "-", remote], Some(data)).assert_ok();
}

async fn locations(c: &MiniCluster, path: &str) -> Vec<LocatedChunk> {
    c.locations(path).await.expect("locations")
}

/// A chunkserver's data service as mallory, a user of the cluster (in token mode with a
/// valid token of hers: what is tested is what a token lets her do).
async fn cs(c: &MiniCluster, addr: &str) -> ChunkserverClient<Authed> {
    c.chunkserver_client_as(addr, "mallory").await.expect("chunkserver client")
}

type Authed = dfs::client::MasterChannel;

/// The status and reason of a refusal, for exact assertions.
fn refusal(s: &Status) -> (Code, ErrorReason) {
    (s.code(), reason::of(s))
}

/// A `WriteChunk` of one small packet with `header`; returns the refusal, whether it
/// comes as the call's status or inside the response stream.
async fn write_with(cs: &mut ChunkserverClient<Authed>, header: WriteHeader) -> Option<Status> {
    let data = bytes::Bytes::from_static(b"attacker's bytes");
    let packet = Packet {
        seqno: 0,
        offset: header.resume_offset,
        crcs: proto::checksum::block_crcs(&data),
        data,
        last: true,
    };
    let reqs = vec![
        WriteChunkRequest { msg: Some(ReqMsg::Header(header)) },
        WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) },
    ];
    match cs.write_chunk(tokio_stream::iter(reqs)).await {
        Err(s) => Some(s),
        Ok(r) => {
            let mut stream = r.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(s) => return Some(s),
                }
            }
        }
    }
}

fn header(handle: u64, version: u64, token: bytes::Bytes) -> WriteHeader {
    WriteHeader {
        handle,
        version,
        downstream: vec![],
        chunk_size: MIB as u64,
        client_name: "mallory".into(),
        resume_offset: 0,
        token,
    }
}

fn read_req(handle: u64, version: u64, token: bytes::Bytes) -> ReadChunkRequest {
    ReadChunkRequest { handle, version, offset: 0, length: 0, token }
}

/// Reads a whole replica with a raw request.
async fn raw_read(
    cs: &mut ChunkserverClient<Authed>,
    req: ReadChunkRequest,
) -> Result<Vec<u8>, Status> {
    let mut stream = cs.read_chunk(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

/// Reads with `req` and returns the refusal; panics (without dumping bytes) if it was
/// served.
async fn refused_read(cs: &mut ChunkserverClient<Authed>, req: ReadChunkRequest) -> Status {
    match raw_read(cs, req).await {
        Err(s) => s,
        Ok(got) => panic!("a read that must be refused returned {} bytes", got.len()),
    }
}

/// Whether any chunkserver holds a file (finalized or being written) of `handle`.
fn on_any_disk(c: &MiniCluster, handle: u64) -> bool {
    c.chunkservers().iter().any(|s| {
        let dir = c.data_dir(&s.name).expect("data dir");
        ["finalized", "rbw"]
            .iter()
            .any(|d| dir.join(d).join(format!("{handle:016x}.data")).exists())
    })
}

#[tokio::test]
async fn rogue_writes_finalizes_and_reads_are_refused_and_every_file_reads_back() {
    rogue_chunk_calls(options()).await;
}

#[tokio::test]
async fn in_token_mode_a_users_token_grants_no_chunk_access_by_itself() {
    rogue_chunk_calls(token_options()).await;
}

async fn rogue_chunk_calls(options: ClusterOptions) {
    let c = cluster(options).await;
    let a = random_bytes(1, MIB + MIB / 2);
    let b = random_bytes(2, 300_000);
    put(&c, "/t/a", &a);
    put(&c, "/t/b", &b);
    let la = locations(&c, "/t/a").await;
    let lb = locations(&c, "/t/b").await;
    let (a0, b0) = (&la[0], &lb[0]);
    assert_eq!((a0.version, a0.replicas.len()), (1, 3), "{a0:?}");
    assert!(!a0.token.is_empty(), "locations carry a read token");
    let target = a0.replicas[0].addr.clone();
    let mut t = cs(&c, &target).await;
    let unauth_bad = (Code::Unauthenticated, ErrorReason::BadToken);
    let denied_bad = (Code::PermissionDenied, ErrorReason::BadToken);

    // WriteChunk with a higher version than the master's: without a token, and with the
    // chunk's own read token.
    let s = write_with(&mut t, header(a0.handle, 2, bytes::Bytes::new())).await.expect("refused");
    assert_eq!(refusal(&s), unauth_bad, "{s}");
    let s = write_with(&mut t, header(a0.handle, 2, a0.token.clone())).await.expect("refused");
    assert_eq!(refusal(&s), denied_bad, "{s}");
    // Same version, read token: a read token never writes.
    let s = write_with(&mut t, header(a0.handle, 1, a0.token.clone())).await.expect("refused");
    assert_eq!(refusal(&s), denied_bad, "{s}");

    // WriteChunk for handles never allocated, u64::MAX among them.
    let fresh = la.iter().chain(&lb).map(|l| l.handle).max().unwrap_or(0) + 10;
    for h in [u64::MAX, fresh] {
        let s = write_with(&mut t, header(h, 1, bytes::Bytes::new())).await.expect("refused");
        assert_eq!(refusal(&s), unauth_bad, "{s}");
        // A valid token of another chunk does not stretch to this one.
        let s = write_with(&mut t, header(h, 1, b0.token.clone())).await.expect("refused");
        assert_eq!(refusal(&s), denied_bad, "{s}");
        assert!(!on_any_disk(&c, h), "a replica of {h:016x} was created");
    }

    // WriteHeader.resume_offset on a finalized replica (a truncation through a write
    // stream), with no token and with the chunk's read token.
    let mut resume = header(a0.handle, 1, bytes::Bytes::new());
    resume.resume_offset = 0;
    let s = write_with(&mut t, WriteHeader { resume_offset: 65536, ..resume.clone() }).await;
    assert_eq!(s.as_ref().map(refusal), Some(unauth_bad), "{s:?}");
    let s =
        write_with(&mut t, WriteHeader { token: a0.token.clone(), resume_offset: 65536, ..resume })
            .await;
    assert_eq!(s.as_ref().map(refusal), Some(denied_bad), "{s:?}");

    // FinalizeReplica{length: 0} and RecoverReplica on a finalized replica: only the
    // master's recover orders are taken.
    for token in [bytes::Bytes::new(), a0.token.clone()] {
        let fin = FinalizeReplicaRequest {
            handle: a0.handle,
            version: 1,
            length: 0,
            token: token.clone(),
            term: 0,
        };
        let s = t.finalize_replica(fin).await.expect_err("refused");
        // In token mode a user's token on these master-only calls is refused before the
        // order is even looked at.
        let expected = if c.spec().options.token_auth {
            (Code::PermissionDenied, ErrorReason::PermissionDenied)
        } else if token.is_empty() {
            unauth_bad
        } else {
            denied_bad
        };
        assert_eq!(refusal(&s), expected, "{s}");
        let rec = RecoverReplicaRequest { handle: a0.handle, new_version: 2, token, term: 0 };
        let s = t.recover_replica(rec).await.expect_err("refused");
        assert_eq!(s.code(), expected.0, "{s}");
    }

    // ReadChunk without a token, with a forged one, and with chunk B's token on chunk A.
    let s = refused_read(&mut t, read_req(a0.handle, 1, bytes::Bytes::new())).await;
    assert_eq!(refusal(&s), unauth_bad, "{s}");
    let mut forged = a0.token.to_vec();
    // Claim chunk B's handle inside A's token, keeping A's signature.
    forged[5..13].copy_from_slice(&b0.handle.to_be_bytes());
    let s = refused_read(&mut t, read_req(b0.handle, 1, forged.into())).await;
    assert_eq!(refusal(&s), unauth_bad, "{s}");
    let junk = bytes::Bytes::from(vec![1u8; 62]);
    let s = refused_read(&mut t, read_req(a0.handle, 1, junk)).await;
    assert_eq!(refusal(&s), unauth_bad, "{s}");
    let b_addr = b0.replicas[0].addr.clone();
    let mut tb = cs(&c, &b_addr).await;
    let s = refused_read(&mut tb, read_req(b0.handle, 1, a0.token.clone())).await;
    assert_eq!(refusal(&s), denied_bad, "{s}");
    // The chunk's own token reads it.
    let got = raw_read(&mut t, read_req(a0.handle, 1, a0.token.clone())).await.expect("read");
    assert_eq!(got, &a[..MIB]);

    // Nothing changed: every replica is whole, every file reads back, and new chunks get
    // handles no live chunk has.
    for l in la.iter().chain(&lb) {
        for r in &l.replicas {
            let name = c.name_of(&r.addr).expect("a known chunkserver");
            let len = std::fs::metadata(c.replica_path(&name, l.handle).expect("path"))
                .expect("replica on disk")
                .len();
            assert_eq!(len, l.length, "{name}: chunk {:016x}", l.handle);
        }
    }
    c.assert_cat("/t/a", &a);
    c.assert_cat("/t/b", &b);
    let n = random_bytes(3, MIB + 10);
    put(&c, "/t/new", &n);
    let ln = locations(&c, "/t/new").await;
    let live: Vec<u64> = la.iter().chain(&lb).map(|l| l.handle).collect();
    for l in &ln {
        assert!(
            !live.contains(&l.handle) && l.handle < fresh + 100,
            "new handle {:016x}",
            l.handle
        );
    }
    c.assert_cat("/t/new", &n);
    c.assert_cat("/t/a", &a);
}

#[tokio::test]
async fn a_spoofed_report_of_a_newer_version_deletes_nothing_and_is_marked_corrupt() {
    let c = cluster(options()).await;
    let data = random_bytes(4, MIB + 4096);
    put(&c, "/s/f", &data);
    let l = locations(&c, "/s/f").await;
    let chunk = &l[0];
    let mut master = c.chunkserver_protocol_client().await.expect("master");
    let claim = ReportedChunk {
        handle: chunk.handle,
        version: chunk.version + 1,
        length: chunk.length,
        finalized: true,
    };
    let spoof =
        ChunkserverInfo { id: "mallory".into(), addr: "127.0.0.99:9".into(), rack: String::new() };
    master
        .register(RegisterRequest {
            server: Some(spoof.clone()),
            capacity: 1 << 40,
            used: 0,
            remaining: 1 << 40,
            chunks: vec![claim],
            id_secret: Default::default(),
        })
        .await
        .expect("register");
    master
        .report_chunks(ReportChunksRequest {
            id: spoof.id.clone(),
            received: vec![claim],
            deleted: vec![],
            corrupt: vec![],
        })
        .await
        .expect("report");
    // The claim is recorded as a corrupt replica of the version it names; the chunk
    // keeps its own version.
    let fsck = c.fsck("/s").await.expect("fsck");
    let f = &fsck.files[0].chunks[0];
    assert_eq!(f.version, chunk.version, "the claimed version was never adopted");
    let claimed: Vec<(String, i32, u64)> = f
        .replicas
        .iter()
        .filter_map(|r| r.server.as_ref().map(|s| (s.id.clone(), r.state, r.version)))
        .filter(|(id, _, _)| id == "mallory")
        .collect();
    assert_eq!(
        claimed,
        vec![("mallory".to_owned(), proto::gfs::ReplicaState::Corrupt as i32, chunk.version + 1)]
    );
    // Many heartbeats later every real replica is still on disk, and the chunk kept its
    // version.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in &chunk.replicas {
        let name = c.name_of(&r.addr).expect("a known chunkserver");
        assert!(c.replica_path(&name, chunk.handle).expect("path").exists(), "{name} lost it");
    }
    let after = locations(&c, "/s/f").await;
    assert_eq!(after[0].version, chunk.version);
    assert_eq!(after[0].replicas.len(), 3, "{:?}", after[0]);
    c.assert_cat("/s/f", &data);
}

#[tokio::test]
async fn expired_tokens_are_refused_and_the_client_fetches_new_ones() {
    let options = ClusterOptions {
        master_args: vec!["--chunk-token-lifetime-ms".into(), "1500".into()],
        ..options()
    };
    let c = cluster(options).await;
    let data = random_bytes(5, 2 * MIB + 77);
    put(&c, "/e/f", &data);
    let client = c.client().await.expect("client");
    let reader = client.open("/e/f").await.expect("open");
    let l = locations(&c, "/e/f").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut t = cs(&c, &l[0].replicas[0].addr).await;
    let s = refused_read(&mut t, read_req(l[0].handle, 1, l[0].token.clone())).await;
    assert_eq!(refusal(&s), (Code::Unauthenticated, ErrorReason::TokenExpired), "{s}");
    // The reader opened before expiry asks the master again and reads everything.
    let got = reader.read_range(0, data.len() as u64).await.expect("read after expiry");
    assert!(got[..] == data[..], "different bytes");
    c.assert_cat("/e/f", &data);
}

#[tokio::test]
async fn after_a_master_restart_old_tokens_fail_and_readers_fetch_new_ones() {
    let mut c = cluster(options()).await;
    let data = random_bytes(6, 2 * MIB + 5);
    put(&c, "/r/f", &data);
    let client = c.client().await.expect("client");
    let reader = client.open("/r/f").await.expect("open");
    let old = locations(&c, "/r/f").await;
    c.restart("master").await.expect("restart");
    c.wait_for_live_chunkservers(3, Duration::from_secs(60)).await.expect("re-registered");
    // Every chunkserver now holds only the new master's keys.
    let addr = old[0].replicas[0].addr.clone();
    let what = "the old token to be refused";
    let done = wait_until(what, Duration::from_secs(30), DEFAULT_POLL, || {
        let (c, addr, req) = (&c, addr.clone(), read_req(old[0].handle, 1, old[0].token.clone()));
        async move {
            let mut t = cs(c, &addr).await;
            matches!(raw_read(&mut t, req).await, Err(s) if refusal(&s) == (Code::Unauthenticated, ErrorReason::BadToken))
        }
    })
    .await;
    assert!(done.is_ok(), "{done:?}");
    let got = reader.read_range(0, data.len() as u64).await.expect("read after restart");
    assert!(got[..] == data[..], "different bytes");
    c.assert_cat("/r/f", &data);
}
