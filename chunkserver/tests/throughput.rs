//! A rough throughput check of the write pipeline and reads, run by hand:
//! `cargo test --release -p chunkserver --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use bytes::Bytes;
use proto::checksum;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::gfs::{ChunkserverInfo, Packet, ReadChunkRequest, WriteChunkRequest, WriteHeader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

mod common;
use common::{FakeMaster, token};
use security::chunk_token::Modes;

const CHUNK: usize = 64 << 20;
const PACKET: usize = 1 << 20;
const CHUNKS: u64 = 4;

async fn start(master: &str) -> (String, tempfile::TempDir, oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = chunkserver::Config {
        master: master.to_owned(),
        dir: dir.path().to_owned(),
        ..chunkserver::Config::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(chunkserver::run(cfg, listener, async {
        let _ = rx.await;
    }));
    (addr, dir, tx)
}

async fn client(addr: &str) -> ChunkserverClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20)
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    ChunkserverClient::new(ch)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run by hand in release mode"]
async fn pipeline_and_read_throughput() {
    let fake = FakeMaster::start().await;
    let master = fake.addr.clone();
    let nodes = [start(&master).await, start(&master).await, start(&master).await];
    fake.wait_registered(3).await;
    let data = Bytes::from((0..CHUNK).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let crcs: Vec<Vec<u32>> = data.chunks(PACKET).map(checksum::block_crcs).collect();
    let info = |i: usize| ChunkserverInfo {
        id: String::new(),
        addr: nodes[i].0.clone(),
        rack: "/r".into(),
    };
    let mut c = client(&nodes[0].0).await;
    let t = Instant::now();
    for handle in 1..=CHUNKS {
        let (tx, rx) = mpsc::channel(64);
        let header = WriteHeader {
            handle,
            version: 1,
            downstream: vec![info(1), info(2)],
            chunk_size: CHUNK as u64,
            client_name: "bench".into(),
            resume_offset: 0,
            token: token(handle, 1, Modes::WRITE),
        };
        let (d, cr) = (data.clone(), crcs.clone());
        tokio::spawn(async move {
            tx.send(WriteChunkRequest { msg: Some(ReqMsg::Header(header)) }).await.unwrap();
            for (i, crcs) in cr.into_iter().enumerate() {
                let packet = Packet {
                    seqno: i as u64,
                    offset: (i * PACKET) as u64,
                    data: d.slice(i * PACKET..(i + 1) * PACKET),
                    crcs,
                    last: (i + 1) * PACKET == CHUNK,
                };
                if tx.send(WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) }).await.is_err() {
                    return;
                }
            }
        });
        let mut s = c
            .write_chunk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut last = 0;
        while let Some(m) = s.message().await.unwrap() {
            match m.msg {
                Some(RespMsg::Ack(a)) => last = a.acked_length,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(last, CHUNK as u64);
    }
    let secs = t.elapsed().as_secs_f64();
    let mb = (CHUNKS as f64) * CHUNK as f64 / 1e6;
    println!("put x3: {:.0} MB/s ({mb:.0} MB in {secs:.2} s)", mb / secs);

    for (node, (addr, _, _)) in nodes.iter().enumerate() {
        let mut c = client(addr).await;
        let t = Instant::now();
        let mut total = 0usize;
        for handle in 1..=CHUNKS {
            let token = token(handle, 1, Modes::READ);
            let req = ReadChunkRequest { handle, version: 1, offset: 0, length: 0, token };
            let mut s = c.read_chunk(req).await.unwrap().into_inner();
            while let Some(m) = s.message().await.unwrap() {
                total += m.data.len();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!("get from node {node}: {:.0} MB/s", total as f64 / 1e6 / secs);
        assert_eq!(total, CHUNKS as usize * CHUNK);
    }
}
