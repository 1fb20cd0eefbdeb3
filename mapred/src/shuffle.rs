//! The shuffle transport: every worker serves its finished map outputs
//! ([`ShuffleService`], the `Shuffle` gRPC service) and reduce attempts fetch their
//! partition of every map output ([`fetch_partitions`]).
//!
//! A map attempt leaves `DIR/jobs/<job>/<attempt>/file.out` and `file.index` on its
//! worker ([`crate::mapside`]). A fetch names (job, map attempt, partition); the server
//! streams that segment in 4 MiB messages, the first carrying its length, record count and
//! CRC32. The fetcher keeps several fetches in flight (`mapred.reduce.parallel.copies`),
//! holds segments in memory while the attempt's budget (`mapred.reduce.memory.mb`) lasts
//! and streams the rest to local files, and checks every segment's CRC.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use proto::mapred as pb;
use proto::mapred::shuffle_client::ShuffleClient;
use proto::mapred::shuffle_server::Shuffle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::mapside::{OUTPUT_FILE, read_index};
use crate::run::{FileRun, MemRun, Run};
use crate::spec::MapOutputLoc;

/// Bytes per streamed message.
const CHUNK: usize = 4 << 20;
/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Directory of a job's attempts under a worker's root directory.
pub fn job_dir(root: &Path, job_id: &str) -> PathBuf {
    root.join("jobs").join(job_id)
}

/// Checks an id used as a path component.
fn safe_name(s: &str, what: &str) -> Result<()> {
    if s.is_empty() || s.contains('/') || s.contains("..") {
        return Err(Error::InvalidArgument(format!("bad {what} {s:?}")));
    }
    Ok(())
}

/// The `Shuffle` gRPC service of a worker.
#[derive(Debug, Clone)]
pub struct ShuffleService {
    root: PathBuf,
}

impl ShuffleService {
    /// Serves map outputs under `root/jobs/`.
    pub fn new(root: &Path) -> ShuffleService {
        ShuffleService { root: root.to_owned() }
    }
}

#[tonic::async_trait]
impl Shuffle for ShuffleService {
    type FetchPartitionStream = ReceiverStream<Result<pb::FetchPartitionChunk, Status>>;

    #[tracing::instrument(skip(self, req), fields(attempt = %req.get_ref().map_attempt, partition = req.get_ref().partition))]
    async fn fetch_partition(
        &self,
        req: Request<pb::FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        let req = req.into_inner();
        safe_name(&req.job_id, "job id")?;
        safe_name(&req.map_attempt, "attempt id")?;
        let dir = job_dir(&self.root, &req.job_id).join(&req.map_attempt);
        let segments = read_index(&dir).map_err(|e| match e {
            Error::Io { .. } => {
                Status::not_found(format!("no map output of {} on this worker", req.map_attempt))
            }
            other => other.into(),
        })?;
        let seg = *segments.get(req.partition as usize).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{} has {} partitions, not {}",
                req.map_attempt,
                segments.len(),
                req.partition + 1
            ))
        })?;
        let path = dir.join(OUTPUT_FILE);
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let send = |m| tx.blocking_send(m).is_ok();
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    send(Err(Status::not_found(format!("cannot open {}: {e}", path.display()))));
                    return;
                }
            };
            if let Err(e) = file.seek(SeekFrom::Start(seg.offset)) {
                send(Err(Status::internal(format!("cannot seek {}: {e}", path.display()))));
                return;
            }
            let mut left = seg.length;
            let mut first = true;
            loop {
                let n = (CHUNK as u64).min(left) as usize;
                let mut buf = vec![0u8; n];
                if let Err(e) = file.read_exact(&mut buf) {
                    send(Err(Status::data_loss(format!("cannot read {}: {e}", path.display()))));
                    return;
                }
                left -= n as u64;
                let msg = pb::FetchPartitionChunk {
                    total_length: if first { seg.length } else { 0 },
                    records: if first { seg.records } else { 0 },
                    crc32: if first { seg.crc32 } else { 0 },
                    data: Bytes::from(buf),
                };
                first = false;
                if !send(Ok(msg)) || left == 0 {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A fetched segment: in memory or in a local file.
#[derive(Debug)]
enum Fetched {
    Mem(Bytes),
    File(PathBuf, u64),
}

/// Fetches partition `partition` of every map output in `maps`, at most `parallel` at a
/// time, keeping up to `memory` bytes in memory and writing the rest under `spill_dir`.
/// Returns one run per map (in map order) and the bytes fetched.
///
/// # Errors
/// [`Error::Unavailable`]/[`Error::Rpc`] naming the worker, [`Error::Corrupt`] for a
/// CRC mismatch, [`Error::Io`] for local spill files.
pub async fn fetch_partitions(
    job_id: &str,
    maps: &[MapOutputLoc],
    partition: u32,
    parallel: usize,
    memory: u64,
    spill_dir: &Path,
) -> Result<(Vec<Run>, u64)> {
    let mut channels: HashMap<String, ShuffleClient<Channel>> = HashMap::new();
    for m in maps {
        if !channels.contains_key(&m.shuffle_addr) {
            channels.insert(m.shuffle_addr.clone(), connect(&m.shuffle_addr)?);
        }
    }
    let used = Arc::new(AtomicU64::new(0));
    let fetches = maps.iter().map(|m| {
        let client = channels.get(&m.shuffle_addr).cloned();
        let used = used.clone();
        async move {
            let client = client.ok_or_else(|| Error::Protocol("no channel".into()))?;
            let got = fetch_one(client, job_id, m, partition, &used, memory, spill_dir).await?;
            Ok::<_, Error>((m.map, got.0, got.1))
        }
    });
    let mut fetched: Vec<(u32, Fetched, u64)> =
        futures::stream::iter(fetches).buffer_unordered(parallel.max(1)).try_collect().await?;
    fetched.sort_by_key(|(map, _, _)| *map);
    let mut runs = Vec::with_capacity(fetched.len());
    let mut bytes = 0;
    for (_, f, len) in fetched {
        bytes += len;
        runs.push(match f {
            Fetched::Mem(b) => Run::Mem(MemRun::new(b)),
            Fetched::File(path, len) => Run::File(FileRun::open(&path, 0, len)?),
        });
    }
    Ok((runs, bytes))
}

fn connect(addr: &str) -> Result<ShuffleClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| Error::InvalidArgument(format!("bad worker address {addr}")))?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20);
    Ok(ShuffleClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

async fn fetch_one(
    mut client: ShuffleClient<Channel>,
    job_id: &str,
    m: &MapOutputLoc,
    partition: u32,
    used: &AtomicU64,
    memory: u64,
    spill_dir: &Path,
) -> Result<(Fetched, u64)> {
    let addr = m.shuffle_addr.as_str();
    let req = pb::FetchPartitionRequest {
        job_id: job_id.to_owned(),
        map_attempt: m.attempt_id.clone(),
        partition,
    };
    let mut stream = client
        .fetch_partition(req)
        .await
        .map_err(|s| Error::from_status("worker", addr, s))?
        .into_inner();
    let mut total = None;
    let mut crc = crc32fast::Hasher::new();
    let mut want_crc = 0;
    let mut got = 0u64;
    let mut mem: Option<BytesMut> = None;
    let mut file: Option<(std::fs::File, PathBuf)> = None;
    while let Some(msg) =
        stream.message().await.map_err(|s| Error::from_status("worker", addr, s))?
    {
        if total.is_none() {
            total = Some(msg.total_length);
            want_crc = msg.crc32;
            let reserved = used.fetch_add(msg.total_length, Ordering::SeqCst) + msg.total_length;
            if reserved <= memory {
                mem = Some(BytesMut::with_capacity(msg.total_length as usize));
            } else {
                used.fetch_sub(msg.total_length, Ordering::SeqCst);
                let path = spill_dir.join(format!("shuffle-{:05}", m.map));
                let f = std::fs::File::create(&path)
                    .map_err(Error::io(format!("cannot create {}", path.display())))?;
                debug!(map = m.map, bytes = msg.total_length, "fetching to disk");
                file = Some((f, path));
            }
        }
        crc.update(&msg.data);
        got += msg.data.len() as u64;
        if let Some(b) = mem.as_mut() {
            b.extend_from_slice(&msg.data);
        } else if let Some((f, path)) = file.as_mut() {
            f.write_all(&msg.data)
                .map_err(Error::io(format!("cannot write {}", path.display())))?;
        }
    }
    let total = total.unwrap_or(0);
    if got != total {
        return Err(Error::Corrupt(format!(
            "map output {} partition {partition} from {addr}: got {got} of {total} bytes",
            m.attempt_id
        )));
    }
    if total > 0 && crc.finalize() != want_crc {
        warn!(attempt = %m.attempt_id, partition, worker = addr, "map output failed its checksum");
        return Err(Error::Corrupt(format!(
            "map output {} partition {partition} from {addr} failed its checksum",
            m.attempt_id
        )));
    }
    match (mem, file) {
        (_, Some((f, path))) => {
            drop(f);
            Ok((Fetched::File(path, total), total))
        }
        (Some(b), None) => Ok((Fetched::Mem(b.freeze()), total)),
        (None, None) => Ok((Fetched::Mem(Bytes::new()), 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_the_directory() {
        assert!(safe_name("attempt_1_0001_m_000000_0", "attempt").is_ok());
        assert!(safe_name("../etc", "attempt").is_err());
        assert!(safe_name("a/b", "attempt").is_err());
        assert!(safe_name("", "attempt").is_err());
    }
}
