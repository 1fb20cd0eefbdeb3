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
//!
//! **Lost map output.** A fetch that fails (worker gone, file missing, CRC mismatch, or
//! nothing received for `mapred.reduce.fetch.timeout.ms`: a frozen worker) is tried again
//! `mapred.reduce.fetch.retries` times with doubling back-off, then reported to the
//! coordinator, which runs the map again; the fetcher polls the coordinator for the new
//! location and fetches from there. It gives up, failing the attempt, after
//! `mapred.reduce.fetch.wait.ms`, or at once when the coordinator says the job or the
//! attempt is over: a reducer never waits forever. See [`FetchRecovery`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use proto::mapred as pb;
use proto::mapred::coordinator_client::CoordinatorClient;
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

/// How a reducer recovers from map outputs it cannot fetch (see the module documentation).
#[derive(Debug, Clone)]
pub struct FetchRecovery {
    /// The coordinator (`host:port`), to report to and poll.
    pub coordinator: String,
    /// The fetching reduce attempt.
    pub attempt_id: String,
    /// Number of maps of the job.
    pub maps: u32,
    /// Tries per location before reporting it.
    pub retries: u32,
    /// First back-off between tries (doubled each time).
    pub backoff: Duration,
    /// A fetch receiving nothing for this long fails.
    pub stall: Duration,
    /// Longest wait for a lost output's new location.
    pub wait: Duration,
}

/// How often a reducer asks where a lost map output went.
const POLL: Duration = Duration::from_millis(300);

/// Shared by the fetches of one reduce attempt.
struct Fetcher<'a> {
    job_id: &'a str,
    partition: u32,
    memory: u64,
    spill_dir: &'a Path,
    used: AtomicU64,
    channels: Mutex<HashMap<String, ShuffleClient<Channel>>>,
    coordinator: CoordinatorClient<Channel>,
    recovery: &'a FetchRecovery,
}

/// Fetches partition `partition` of every map output in `maps`, at most `parallel` at a
/// time, keeping up to `memory` bytes in memory and writing the rest under `spill_dir`,
/// recovering lost outputs as `recovery` says. Returns one run per map (in map order)
/// and the bytes fetched.
///
/// # Errors
/// [`Error::Unavailable`] naming the map whose output could not be had in time or the
/// coordinator's refusal (job or attempt over), [`Error::Io`] for local spill files.
pub async fn fetch_partitions(
    job_id: &str,
    maps: &[MapOutputLoc],
    partition: u32,
    parallel: usize,
    memory: u64,
    spill_dir: &Path,
    recovery: &FetchRecovery,
) -> Result<(Vec<Run>, u64)> {
    let coordinator = Endpoint::from_shared(format!("http://{}", recovery.coordinator))
        .map_err(|_| {
            Error::InvalidArgument(format!("bad coordinator address {}", recovery.coordinator))
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let fetcher = Fetcher {
        job_id,
        partition,
        memory,
        spill_dir,
        used: AtomicU64::new(0),
        channels: Mutex::new(HashMap::new()),
        coordinator: CoordinatorClient::new(coordinator),
        recovery,
    };
    let fetches = maps.iter().map(|m| fetcher.fetch_recovering(m.clone()));
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

impl Fetcher<'_> {
    fn client(&self, addr: &str) -> Result<ShuffleClient<Channel>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = connect(addr)?;
        channels.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Fetches one map's segment, trying again, reporting and following the map to its
    /// new location as needed.
    async fn fetch_recovering(&self, mut loc: MapOutputLoc) -> Result<(u32, Fetched, u64)> {
        let r = self.recovery;
        loop {
            let mut last = None;
            for n in 0..r.retries {
                if n > 0 {
                    tokio::time::sleep(r.backoff * 2u32.saturating_pow(n - 1)).await;
                }
                match self.fetch_once(&loc).await {
                    Ok((f, len)) => return Ok((loc.map, f, len)),
                    // A local disk problem is this attempt's, not the map's.
                    Err(e @ Error::Io { .. }) => return Err(e),
                    Err(e) => {
                        debug!(map = loc.map, attempt = %loc.attempt_id, error = %e, "fetch failed");
                        self.channels
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&loc.shuffle_addr);
                        last = Some(e);
                    }
                }
            }
            let error = last.map(|e| e.to_string()).unwrap_or_default();
            warn!(map = loc.map, attempt = %loc.attempt_id, worker = %loc.shuffle_addr, %error, "map output lost: reporting it");
            loc = self.relocate(loc, &error).await?;
        }
    }

    /// Reports `loc` lost and waits for the map's next location.
    async fn relocate(&self, loc: MapOutputLoc, error: &str) -> Result<MapOutputLoc> {
        let r = self.recovery;
        let mut coord = self.coordinator.clone();
        let report = pb::ReportFetchFailureRequest {
            job_id: self.job_id.to_owned(),
            reduce_attempt: r.attempt_id.clone(),
            map: loc.map,
            map_attempt: loc.attempt_id.clone(),
            error: error.lines().next().unwrap_or_default().to_owned(),
        };
        let give_up = tokio::time::Instant::now() + r.wait;
        let mut reported = false;
        let mut polls = 0u32;
        while tokio::time::Instant::now() < give_up {
            if !reported {
                reported = coord.report_fetch_failure(report.clone()).await.is_ok();
            }
            let req = pb::GetMapOutputsRequest {
                job_id: self.job_id.to_owned(),
                reduce_attempt: r.attempt_id.clone(),
            };
            match coord.get_map_outputs(req).await {
                Ok(resp) => {
                    let now = resp.into_inner().outputs.into_iter().find(|o| o.map == loc.map);
                    match now {
                        Some(o) if o.attempt_id != loc.attempt_id => {
                            debug!(map = loc.map, attempt = %o.attempt_id, "map output moved");
                            return Ok(MapOutputLoc {
                                map: o.map,
                                attempt_id: o.attempt_id,
                                shuffle_addr: o.shuffle_addr,
                            });
                        }
                        // Still the same output after a while: the coordinator did not take
                        // the report (or it was transient); try that location again.
                        Some(_) if reported && polls >= 10 => return Ok(loc),
                        _ => {}
                    }
                }
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::FailedPrecondition | tonic::Code::NotFound
                    ) =>
                {
                    return Err(Error::from_status("coordinator", &r.coordinator, s));
                }
                Err(_) => {} // the coordinator may be restarting: keep trying until the deadline
            }
            polls += 1;
            tokio::time::sleep(POLL).await;
        }
        Err(Error::Unavailable {
            what: "worker",
            addr: loc.shuffle_addr,
            cause: format!(
                "the output of map {} ({}) could not be fetched and was not produced again within {:.0} s: {error}",
                loc.map,
                loc.attempt_id,
                r.wait.as_secs_f64()
            ),
        })
    }

    /// One try at one location; a memory reservation is released on failure.
    async fn fetch_once(&self, loc: &MapOutputLoc) -> Result<(Fetched, u64)> {
        let client = self.client(&loc.shuffle_addr)?;
        let mut reserved = 0;
        let res = fetch_one(
            client,
            self.job_id,
            loc,
            self.partition,
            (&self.used, &mut reserved),
            self.memory,
            self.spill_dir,
            self.recovery.stall,
        )
        .await;
        if res.is_err() && reserved > 0 {
            self.used.fetch_sub(reserved, Ordering::SeqCst);
        }
        res
    }
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

#[allow(clippy::too_many_arguments)]
async fn fetch_one(
    mut client: ShuffleClient<Channel>,
    job_id: &str,
    m: &MapOutputLoc,
    partition: u32,
    (used, reserved): (&AtomicU64, &mut u64),
    memory: u64,
    spill_dir: &Path,
    stall: Duration,
) -> Result<(Fetched, u64)> {
    let addr = m.shuffle_addr.as_str();
    let stalled = || Error::Unavailable {
        what: "worker",
        addr: addr.to_owned(),
        cause: format!("nothing received for {:.1} s", stall.as_secs_f64()),
    };
    let req = pb::FetchPartitionRequest {
        job_id: job_id.to_owned(),
        map_attempt: m.attempt_id.clone(),
        partition,
    };
    let mut stream = tokio::time::timeout(stall, client.fetch_partition(req))
        .await
        .map_err(|_| stalled())?
        .map_err(|s| Error::from_status("worker", addr, s))?
        .into_inner();
    let mut total = None;
    let mut crc = crc32fast::Hasher::new();
    let mut want_crc = 0;
    let mut got = 0u64;
    let mut mem: Option<BytesMut> = None;
    let mut file: Option<(std::fs::File, PathBuf)> = None;
    while let Some(msg) = tokio::time::timeout(stall, stream.message())
        .await
        .map_err(|_| stalled())?
        .map_err(|s| Error::from_status("worker", addr, s))?
    {
        if total.is_none() {
            total = Some(msg.total_length);
            want_crc = msg.crc32;
            let after = used.fetch_add(msg.total_length, Ordering::SeqCst) + msg.total_length;
            if after <= memory {
                *reserved = msg.total_length;
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
