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
//! **Who may fetch.** Every fetch carries an HMAC under the job's secret of what it asks
//! for ([`crate::job_token`]); in token mode it must also carry a valid token, a cluster
//! service's or the job's own user's (what a reduce attempt holds), so a fetch is
//! refused to anyone the cluster has not authenticated even if a job's secret leaked.
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
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use crate::client::CallerChannel;
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId};
use crate::job_token::{self, JobToken, check_fetch};
use crate::mapside::{OUTPUT_FILE, read_index};
use crate::run::{FileRun, MemRun, Run};
use crate::spec::{MapOutputLoc, TaskKind};

/// Bytes per streamed message.
const CHUNK: usize = 4 << 20;
/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Directory of a job's attempts under a worker's root directory (named by the parsed
/// id, so by nothing a peer chose).
pub fn job_dir(root: &Path, job: JobId) -> PathBuf {
    root.join("jobs").join(job.to_string())
}

/// Directory of one attempt (its map output, its files).
pub fn attempt_dir(root: &Path, attempt: AttemptId) -> PathBuf {
    job_dir(root, attempt.job).join(attempt.to_string())
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
        let claims = req.extensions().get::<security::token::Claims>().cloned();
        let req = req.into_inner();
        let job = JobId::parse(&req.job_id)?;
        let attempt = AttemptId::parse(&req.map_attempt)?;
        if attempt.job != job || attempt.kind != TaskKind::Map {
            return Err(Status::invalid_argument(format!(
                "{} is not a map attempt of {}",
                req.map_attempt, req.job_id
            )));
        }
        // Token mode: a user's token must be the job's own user's.
        if let Some(c) = claims
            && c.kind == security::token::Kind::User
            && job_token::owner(&job_dir(&self.root, job)).as_deref() != Some(c.user.as_str())
        {
            return Err(Error::PermissionDenied(format!(
                "user={} may not fetch map outputs of {job}: not its owner",
                c.user
            ))
            .into());
        }
        check_fetch(&job_dir(&self.root, job), job, attempt, req.partition, &req.proof)?;
        let dir = attempt_dir(&self.root, attempt);
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
    /// The job's token, to prove each fetch is the job's.
    pub token: JobToken,
    /// The credentials sent with every fetch and every call to the coordinator (the
    /// job user's token in token mode).
    pub credentials: security::Attach,
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
    channels: Mutex<HashMap<String, ShuffleClient<CallerChannel>>>,
    coordinator: CoordinatorClient<CallerChannel>,
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
    let coordinator = security::tls::endpoint(&recovery.coordinator)
        .map_err(|e| Error::InvalidArgument(format!("coordinator: {e}")))?
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let fetcher = Fetcher {
        job_id,
        partition,
        memory,
        spill_dir,
        used: AtomicU64::new(0),
        channels: Mutex::new(HashMap::new()),
        coordinator: CoordinatorClient::with_interceptor(coordinator, recovery.credentials.clone()),
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
    fn client(&self, addr: &str) -> Result<ShuffleClient<CallerChannel>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = connect(addr, self.recovery.credentials.clone())?;
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
        let attempt = AttemptId::parse(&loc.attempt_id)?;
        let req = pb::FetchPartitionRequest {
            job_id: self.job_id.to_owned(),
            map_attempt: loc.attempt_id.clone(),
            partition: self.partition,
            proof: self.recovery.token.prove(attempt, self.partition).into(),
        };
        let mut reserved = 0;
        let res = fetch_one(
            client,
            req,
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

fn connect(addr: &str, credentials: security::Attach) -> Result<ShuffleClient<CallerChannel>> {
    let endpoint = security::tls::endpoint(addr)
        .map_err(|e| Error::InvalidArgument(format!("worker: {e}")))?
        .tcp_nodelay(true)
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(64 << 20);
    Ok(ShuffleClient::with_interceptor(endpoint.connect_lazy(), credentials)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

#[allow(clippy::too_many_arguments)]
async fn fetch_one(
    mut client: ShuffleClient<CallerChannel>,
    req: pb::FetchPartitionRequest,
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
    let mut stream = tokio::time::timeout(stall, client.fetch_partition(req))
        .await
        .map_err(|_| stalled())?
        .map_err(|s| Error::from_status("worker", addr, s))?
        .into_inner();
    let what = format!("map output {} partition {partition} from {addr}", m.attempt_id);
    let mut framing: Option<Framing> = None;
    let mut mem: Option<BytesMut> = None;
    let mut file: Option<(std::fs::File, PathBuf)> = None;
    while let Some(msg) = tokio::time::timeout(stall, stream.message())
        .await
        .map_err(|_| stalled())?
        .map_err(|s| Error::from_status("worker", addr, s))?
    {
        let f = match framing.as_mut() {
            Some(f) => f,
            None => {
                let total = msg.total_length;
                if reserve(used, total, memory) {
                    *reserved = total;
                    mem = Some(BytesMut::with_capacity(total as usize));
                } else {
                    let path = spill_dir.join(format!("shuffle-{:05}", m.map));
                    let f = std::fs::File::create(&path)
                        .map_err(Error::io(format!("cannot create {}", path.display())))?;
                    debug!(map = m.map, bytes = total, "fetching to disk");
                    file = Some((f, path));
                }
                framing.insert(Framing::new(&msg))
            }
        };
        f.take(&msg.data, &what)?;
        if let Some(b) = mem.as_mut() {
            b.extend_from_slice(&msg.data);
        } else if let Some((f, path)) = file.as_mut() {
            f.write_all(&msg.data)
                .map_err(Error::io(format!("cannot write {}", path.display())))?;
        }
    }
    let total = match framing {
        Some(f) => f.finish(&what).inspect_err(|_| {
            warn!(attempt = %m.attempt_id, partition, worker = addr, "map output failed its checks");
        })?,
        None => 0,
    };
    match (mem, file) {
        (_, Some((f, path))) => {
            drop(f);
            Ok((Fetched::File(path, total), total))
        }
        (Some(b), None) => Ok((Fetched::Mem(b.freeze()), total)),
        (None, None) => Ok((Fetched::Mem(Bytes::new()), 0)),
    }
}

/// Reserves `total` bytes of the attempt's in-memory budget `memory`, of which `used`
/// are taken; false (nothing reserved) when they do not fit. The length comes from the
/// serving worker, so the sum is checked rather than trusted not to wrap.
fn reserve(used: &AtomicU64, total: u64, memory: u64) -> bool {
    used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
        u.checked_add(total).filter(|&after| after <= memory)
    })
    .is_ok()
}

/// The framing of one fetched segment: the first message announces its length and CRC32,
/// every message carries some of its bytes. Bytes are counted in before they are kept, so
/// a worker streaming past the length it announced is refused then, not after its bytes
/// filled the reducer's memory.
#[derive(Debug)]
struct Framing {
    total: u64,
    want_crc: u32,
    crc: crc32fast::Hasher,
    got: u64,
}

impl Framing {
    /// The framing `first` (the stream's first message) announces.
    fn new(first: &pb::FetchPartitionChunk) -> Framing {
        Framing {
            total: first.total_length,
            want_crc: first.crc32,
            crc: crc32fast::Hasher::new(),
            got: 0,
        }
    }

    /// Counts in the bytes of one message.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if they run past the announced length.
    fn take(&mut self, data: &[u8], what: &str) -> Result<()> {
        let got = self.got.saturating_add(data.len() as u64);
        if got > self.total {
            return Err(Error::Corrupt(format!(
                "{what}: {got} bytes sent of the {} announced",
                self.total
            )));
        }
        self.got = got;
        self.crc.update(data);
        Ok(())
    }

    /// Checks the whole segment arrived intact; returns its length.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if bytes are missing or fail the checksum.
    fn finish(self, what: &str) -> Result<u64> {
        if self.got != self.total {
            return Err(Error::Corrupt(format!(
                "{what}: got {} of {} bytes",
                self.got, self.total
            )));
        }
        if self.total > 0 && self.crc.finalize() != self.want_crc {
            return Err(Error::Corrupt(format!("{what} failed its checksum")));
        }
        Ok(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker announcing 2^64 - 3 bytes while 5 were taken overflowed the budget's sum
    /// (a panic in debug builds; in release it wrapped, "fit", and sized the buffer).
    #[test]
    fn a_huge_announced_length_reserves_nothing() {
        let used = AtomicU64::new(5);
        assert!(!reserve(&used, u64::MAX - 2, 10));
        assert_eq!(used.load(Ordering::SeqCst), 5);
        assert!(reserve(&used, 5, 10));
        assert!(!reserve(&used, 1, 10));
    }

    /// Bytes past the announced length were kept in memory until the stream ended.
    #[test]
    fn bytes_past_the_announced_length_are_refused_at_once() {
        let first = pb::FetchPartitionChunk { total_length: 3, ..Default::default() };
        let mut f = Framing::new(&first);
        f.take(b"abc", "segment").unwrap();
        assert!(matches!(f.take(b"d", "segment"), Err(Error::Corrupt(_))));
    }

    #[test]
    fn fetches_naming_paths_or_other_jobs_are_refused() {
        use proto::mapred::shuffle_server::Shuffle;
        let root = tempfile::tempdir().expect("tempdir");
        let svc = ShuffleService::new(root.path());
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        for (job, attempt) in [
            ("../../etc", "attempt_1_0001_m_000000_0"),
            ("job_1_0001", "../../../etc/passwd"),
            ("job_1_0002", "attempt_1_0001_m_000000_0"),
            ("job_1_0001", "attempt_1_0001_r_000000_0"),
        ] {
            let req = pb::FetchPartitionRequest {
                job_id: job.into(),
                map_attempt: attempt.into(),
                partition: 0,
                proof: Vec::new().into(),
            };
            let got = rt.block_on(svc.fetch_partition(Request::new(req)));
            let code = got.err().map(|s| s.code());
            assert_eq!(code, Some(tonic::Code::InvalidArgument), "{job} {attempt}");
        }
        // Well-formed ids: the job's token decides.
        let job = JobId::parse("job_1_0001").expect("job");
        let attempt = AttemptId::parse("attempt_1_0001_m_000000_0").expect("attempt");
        let token = JobToken::generate();
        let fetch = |proof: Vec<u8>| {
            let req = pb::FetchPartitionRequest {
                job_id: job.to_string(),
                map_attempt: attempt.to_string(),
                partition: 0,
                proof: proof.into(),
            };
            rt.block_on(svc.fetch_partition(Request::new(req))).err().map(|s| s.code())
        };
        assert_eq!(fetch(token.prove(attempt, 0)), Some(tonic::Code::PermissionDenied), "no token");
        token.store(&job_dir(root.path(), job)).expect("store");
        assert_eq!(fetch(b"forged".to_vec()), Some(tonic::Code::PermissionDenied));
        let other_job = JobToken::generate().prove(attempt, 0);
        assert_eq!(fetch(other_job), Some(tonic::Code::PermissionDenied));
        assert_eq!(fetch(token.prove(attempt, 1)), Some(tonic::Code::PermissionDenied));
        assert_eq!(
            fetch(token.prove(attempt, 0)),
            Some(tonic::Code::NotFound),
            "let in: no output"
        );
    }

    #[test]
    fn attempt_directories_are_named_by_parsed_ids_only() {
        let a = AttemptId::parse("attempt_1_0001_m_000000_0").expect("parse");
        let root = Path::new("/w");
        assert_eq!(attempt_dir(root, a), Path::new("/w/jobs/job_1_0001/attempt_1_0001_m_000000_0"));
        for bad in ["../etc", "a/b", "", "attempt_1_0001_m_000000_0/../../x"] {
            assert!(AttemptId::parse(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// A segment as a worker streams it: the first message announces it.
    fn messages(
        data: &[u8],
        cuts: &[Index],
        total: u64,
        crc32: u32,
    ) -> Vec<pb::FetchPartitionChunk> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        at.extend([0, data.len()]);
        at.sort_unstable();
        at.dedup();
        let mut out: Vec<pb::FetchPartitionChunk> = at
            .windows(2)
            .map(|w| pb::FetchPartitionChunk {
                data: Bytes::copy_from_slice(&data[w[0]..w[1]]),
                ..Default::default()
            })
            .collect();
        if out.is_empty() {
            out.push(pb::FetchPartitionChunk::default());
        }
        out[0].total_length = total;
        out[0].crc32 = crc32;
        out
    }

    /// What the fetcher concludes from a stream: the bytes it would keep, or an error.
    fn receive(msgs: &[pb::FetchPartitionChunk]) -> Result<Vec<u8>> {
        let mut framing = Framing::new(&msgs[0]);
        let mut kept = Vec::new();
        for m in msgs {
            framing.take(&m.data, "segment")?;
            kept.extend_from_slice(&m.data);
        }
        let total = framing.finish("segment")?;
        assert_eq!(total, kept.len() as u64);
        Ok(kept)
    }

    /// How a stream can go wrong on the wire or at a faulty worker.
    #[derive(Debug, Clone)]
    enum Damage {
        None,
        Total(u64),
        Crc(u32),
        Flip(Index, u8),
        Drop(Index),
        Extra(Vec<u8>),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            Just(Damage::None),
            prop_oneof![Just(u64::MAX), Just(1 << 40), 0..600u64].prop_map(Damage::Total),
            any::<u32>().prop_map(Damage::Crc),
            (any::<Index>(), 0..8u8).prop_map(|(i, b)| Damage::Flip(i, b)),
            any::<Index>().prop_map(Damage::Drop),
            prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Extra),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// However the segment is cut into messages and however it is damaged, the
        /// fetcher keeps exactly the bytes the worker's file held or refuses it as
        /// `Corrupt`, and never takes in more bytes than were announced.
        #[test]
        fn a_fetched_segment_is_whole_or_refused(
            data in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(any::<Index>(), 0..5),
            damage in damage(),
        ) {
            let (total, crc) = (data.len() as u64, crc32fast::hash(&data));
            let mut msgs = messages(&data, &cuts, total, crc);
            match &damage {
                Damage::None => {}
                Damage::Total(t) => msgs[0].total_length = *t,
                Damage::Crc(c) => msgs[0].crc32 = *c,
                Damage::Flip(at, bit) => {
                    if !data.is_empty() {
                        let i = at.index(msgs.len());
                        let mut d = msgs[i].data.to_vec();
                        if !d.is_empty() {
                            d[0] ^= 1 << bit;
                        }
                        msgs[i].data = d.into();
                    }
                }
                Damage::Drop(at) => {
                    let i = at.index(msgs.len());
                    msgs[i].data = Bytes::new();
                }
                Damage::Extra(tail) => msgs.push(pb::FetchPartitionChunk { data: Bytes::copy_from_slice(tail), ..Default::default() }),
            }
            let mut framing = Framing::new(&msgs[0]);
            let mut taken = 0u64;
            for m in &msgs {
                if framing.take(&m.data, "segment").is_err() {
                    break;
                }
                taken += m.data.len() as u64;
            }
            prop_assert!(taken <= msgs[0].total_length);
            match receive(&msgs) {
                Ok(kept) => prop_assert_eq!(kept, data),
                Err(e) => prop_assert!(matches!(e, Error::Corrupt(_)), "{}", e),
            }
        }

        /// Reservations never wrap the budget, whatever lengths workers announce.
        #[test]
        fn reservations_stay_within_the_budget(
            memory in prop_oneof![Just(u64::MAX), any::<u64>(), 0..1000u64],
            totals in prop::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), 0..400u64], 0..8),
        ) {
            let used = AtomicU64::new(0);
            let mut sum = 0u128;
            for t in totals {
                if reserve(&used, t, memory) {
                    sum += u128::from(t);
                }
                prop_assert_eq!(u128::from(used.load(Ordering::SeqCst)), sum);
                prop_assert!(sum <= u128::from(memory));
            }
        }
    }
}
