//! Writing a file: [`Client::create`] opens it on the master and returns a [`FileWriter`],
//! which buffers bytes, allocates chunks with `AddChunk` only when it has a byte for them,
//! streams packets through each chunk's pipeline ([`pipeline`](crate::pipeline)) and
//! completes the file on [`FileWriter::close`]. The file is durable only once `close`
//! returns `Ok`.
//!
//! While a writer is open it renews its lease on the master in the background (every
//! soft limit / 2, as the master says). A chunkserver failing mid-chunk is survived by
//! pipeline recovery ([`pipeline`](crate::pipeline)). A failed write leaves the file open
//! on the master (its lease expires and the master recovers it); callers that want
//! all-or-nothing write to a temporary name and rename, as `dfs put` does.

use bytes::{Bytes, BytesMut};
use proto::gfs;
use proto::path::DfsPath;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::debug;

use crate::chunk::{ChunkHandle, LocatedChunk};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::packet::{NextPacket, next_packet};
use crate::path::PathArg;
use crate::pipeline::ChunkPipeline;
use crate::retry::CallKind;
use crate::status::FileStatus;

/// How to create a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Replication factor; 0 = the cluster default.
    pub replication: u32,
    /// Chunk size in bytes; 0 = the cluster default.
    pub chunk_size: u64,
    /// Replace an existing file (never a directory).
    pub overwrite: bool,
    /// Create missing parent directories.
    pub create_parents: bool,
}

/// A file being written by this client.
#[derive(Debug)]
pub struct FileWriter {
    client: Client,
    path: DfsPath,
    chunk_size: u64,
    packet_size: usize,
    buf: BytesMut,
    pipeline: Option<ChunkPipeline>,
    /// The last finished chunk and its length (reported with the next `AddChunk`).
    previous: Option<(ChunkHandle, u64)>,
    written: u64,
    /// The first error; a failed writer refuses further use.
    failed: Option<String>,
    /// Chunkservers this writer saw fail: excluded from its next chunks' pipelines.
    excluded: Vec<String>,
    /// Renews the lease while the writer lives.
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// How long to wait before retrying a failed renewal.
const RENEW_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Renews `client`'s lease forever, at the interval the master asks for (on the leader
/// of a master group, found as every call finds it).
async fn renew_lease(client: Client) {
    let name = client.config().client_name.clone();
    loop {
        let req = gfs::RenewLeaseRequest { client_name: name.clone() };
        let renewed = client
            .call_master(CallKind::Idempotent, &DfsPath::root(), |mut m| {
                let req = req.clone();
                async move { m.renew_lease(req).await }
            })
            .await;
        let wait = match renewed {
            Ok(r) => std::time::Duration::from_millis(r.renew_interval_ms.max(100)),
            Err(e) => {
                debug!(error = %e, "lease renewal failed; retrying");
                RENEW_RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

impl Client {
    /// Creates `path` for writing.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] (without `overwrite`), [`Error::NotFound`] (missing parent
    /// without `create_parents`), [`Error::IsADirectory`], or a transport error.
    pub async fn create(&self, path: impl PathArg, opts: CreateOptions) -> Result<FileWriter> {
        let path = self.resolve(path)?;
        let (client_id, call_id) = self.call_id();
        let req = gfs::CreateRequest {
            path: path.to_string(),
            replication: opts.replication,
            chunk_size: opts.chunk_size,
            overwrite: opts.overwrite,
            client_name: self.config().client_name.clone(),
            owner: self.config().user.clone(),
            create_parents: opts.create_parents,
            client_id,
            call_id,
            umask: Some(u32::from(self.config().umask)),
        };
        let resp = self
            .call_master(CallKind::Mutation, &path, |mut m| {
                let req = req.clone();
                async move { m.create(req).await }
            })
            .await?;
        let status = resp.status.map(FileStatus::try_from).transpose()?;
        let chunk_size = status
            .map(|s| s.chunk_size)
            .filter(|&c| c > 0)
            .or((opts.chunk_size > 0).then_some(opts.chunk_size))
            .ok_or_else(|| Error::Protocol {
                addr: self.master_addr(),
                message: format!("no chunk size for new file {path}"),
            })?;
        let packet_size = self.config().packet_size;
        let renewer = tokio::spawn(renew_lease(self.clone()));
        Ok(FileWriter {
            renewer,
            client: self.clone(),
            path,
            chunk_size,
            packet_size,
            buf: BytesMut::with_capacity(packet_size),
            pipeline: None,
            previous: None,
            written: 0,
            failed: None,
            excluded: Vec::new(),
        })
    }

    /// Writes everything `reader` yields to a new file `path` and closes it; `progress` is
    /// called with the bytes written so far. Returns the file's length.
    ///
    /// # Errors
    /// As [`Client::create`] and [`FileWriter::write_all`]; [`Error::Io`] (named `source`)
    /// if reading fails.
    pub async fn put_stream<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        source: &str,
        path: impl PathArg,
        opts: CreateOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let mut w = self.create(path, opts).await?;
        loop {
            let n = w.fill_from(&mut reader, source).await?;
            if n == 0 {
                break;
            }
            progress(w.bytes_written());
        }
        w.close().await
    }

    /// Writes everything a blocking `reader` (a local file) yields to a new file `path`
    /// and closes it; `progress` is called with the bytes written so far. Returns the
    /// file's length.
    ///
    /// A thread of its own reads the input in whole packets, which are sent as they are:
    /// unlike [`Client::put_stream`], no copy through an async file's buffer and none into
    /// the writer's packet buffer.
    ///
    /// # Errors
    /// As [`Client::put_stream`].
    pub async fn put_blocking<R: std::io::Read + Send + 'static>(
        &self,
        reader: R,
        source: &str,
        path: impl PathArg,
        opts: CreateOptions,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let mut w = self.create(path, opts).await?;
        let packet = w.packet_size;
        // A few packets read ahead keep the pipeline fed while the reader waits on the disk.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let reading = tokio::task::spawn_blocking(move || read_packets(reader, packet, &tx));
        let mut res = Ok(());
        while let Some(piece) = rx.recv().await {
            let step = match piece {
                Ok(data) => w.write_bytes(data).await,
                Err(e) => Err(Error::Io { path: source.to_owned(), source: e }),
            };
            if let Err(e) = step {
                res = Err(e);
                break;
            }
            progress(w.bytes_written());
        }
        // Stops the reader (its sends fail) if the write failed part way.
        drop(rx);
        let _ = reading.await;
        res?;
        w.close().await
    }

    /// Writes `data` to a new file `path` and closes it.
    ///
    /// # Errors
    /// As [`Client::create`] and [`FileWriter::write_all`].
    pub async fn put_bytes(
        &self,
        path: impl PathArg,
        data: &[u8],
        opts: CreateOptions,
    ) -> Result<()> {
        let mut w = self.create(path, opts).await?;
        w.write_all(data).await?;
        w.close().await?;
        Ok(())
    }
}

impl FileWriter {
    /// The file's path.
    pub fn path(&self) -> &DfsPath {
        &self.path
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The file's chunk size.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Appends `data` to the file, sending full packets as they form.
    ///
    /// # Errors
    /// [`Error::Pipeline`] (naming the chunkserver), [`Error::ChunkserverUnreachable`],
    /// a master error from `AddChunk`, or [`Error::WriterFailed`] after an earlier error.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.check_usable()?;
        let mut rest = data;
        while !rest.is_empty() {
            // Copy at most a packet at a time so the buffer stays small.
            let room = self.packet_size.saturating_sub(self.buf.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            self.written += now.len() as u64;
            rest = later;
            let res = self.drain(false).await;
            self.note(res)?;
        }
        Ok(())
    }

    /// Appends `data` to the file. Whole packets are cut from `data` without copying when
    /// nothing is buffered; only a tail shorter than a packet is copied into the buffer.
    ///
    /// # Errors
    /// As [`FileWriter::write_all`].
    pub async fn write_bytes(&mut self, mut data: Bytes) -> Result<()> {
        self.check_usable()?;
        if !self.buf.is_empty() {
            return self.write_all(&data).await;
        }
        self.written += data.len() as u64;
        while let Some(next) = self.plan(data.len(), false) {
            let packet = data.split_to(next.len);
            let res = self.send_packet(packet, next.last).await;
            self.note(res)?;
        }
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    /// Reads once from `reader` straight into the packet buffer and sends what is ready;
    /// returns the bytes read (0 at the end of the input).
    async fn fill_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        source: &str,
    ) -> Result<usize> {
        self.check_usable()?;
        if self.buf.capacity() - self.buf.len() < self.packet_size / 2 {
            self.buf.reserve(self.packet_size);
        }
        let n = reader
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| Error::Io { path: source.to_owned(), source: e })?;
        self.written += n as u64;
        let res = self.drain(false).await;
        self.note(res)?;
        Ok(n)
    }

    /// Sends the buffered tail, waits for every chunk to be durable on all its replicas
    /// and completes the file on the master. Returns the file's length.
    ///
    /// # Errors
    /// As [`FileWriter::write_all`], or the master's error from `Complete`.
    pub async fn close(mut self) -> Result<u64> {
        self.check_usable()?;
        let res = self.drain(true).await;
        self.note(res)?;
        if let Some(mut p) = self.pipeline.take() {
            // The data ended exactly on a packet boundary inside a chunk: end it with an
            // empty `last` packet.
            if !p.last_sent() {
                p.send(bytes::Bytes::new(), true).await?;
            }
            self.finish_chunk(p).await?;
        }
        let (last_handle, last_length) = self.previous.map(|(h, l)| (h.0, l)).unwrap_or((0, 0));
        let (client_id, call_id) = self.client.call_id();
        let req = gfs::CompleteRequest {
            path: self.path.to_string(),
            client_name: self.client.config().client_name.clone(),
            last_handle,
            last_length,
            client_id,
            call_id,
        };
        self.client
            .call_master(CallKind::Mutation, &self.path, |mut m| {
                let req = req.clone();
                async move { m.complete(req).await }
            })
            .await?;
        debug!(path = %self.path, length = self.written, "file closed");
        Ok(self.written)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failed {
            Some(message) => {
                Err(Error::WriterFailed { path: self.path.to_string(), message: message.clone() })
            }
            None => Ok(()),
        }
    }

    /// Remembers a step's error so the writer is not used after a failure.
    fn note(&mut self, res: Result<()>) -> Result<()> {
        if let Err(e) = &res {
            self.failed = Some(e.to_string());
            self.pipeline = None;
        }
        res
    }

    /// Sends every packet the buffer can form (with `flush`, the tail too).
    async fn drain(&mut self, flush: bool) -> Result<()> {
        while let Some(next) = self.plan(self.buf.len(), flush) {
            let data = self.buf.split_to(next.len).freeze();
            self.send_packet(data, next.last).await?;
        }
        Ok(())
    }

    /// The next packet to cut from `available` bytes, if one is due.
    fn plan(&self, available: usize, flush: bool) -> Option<NextPacket> {
        let in_chunk = self.pipeline.as_ref().map_or(0, ChunkPipeline::sent);
        next_packet(available, in_chunk, self.chunk_size, self.packet_size, flush)
    }

    /// Sends one packet, allocating its chunk first if needed and finishing the chunk
    /// after its last packet.
    async fn send_packet(&mut self, data: Bytes, last: bool) -> Result<()> {
        let p = match self.pipeline.take() {
            Some(p) => p,
            None => self.start_chunk().await?,
        };
        let p = self.pipeline.insert(p);
        let sent = p.send(data, last).await;
        let failed = p.failed_nodes().to_vec();
        self.exclude(failed);
        sent?;
        if last && let Some(p) = self.pipeline.take() {
            self.finish_chunk(p).await?;
        }
        Ok(())
    }

    /// Waits for a chunk's last acks and remembers it as the previous chunk.
    async fn finish_chunk(&mut self, mut p: ChunkPipeline) -> Result<()> {
        let handle = p.handle();
        let finished = p.finish().await;
        self.exclude(p.failed_nodes().to_vec());
        self.previous = Some((handle, finished?));
        Ok(())
    }

    /// Adds chunkservers to the excluded set (once each).
    fn exclude(&mut self, ids: Vec<String>) {
        for id in ids {
            if !self.excluded.contains(&id) {
                debug!(path = %self.path, chunkserver = %id, "excluded from further chunks");
                self.excluded.push(id);
            }
        }
    }

    /// Asks the master for the next chunk (reporting the previous one's final length)
    /// and opens its pipeline.
    async fn start_chunk(&mut self) -> Result<ChunkPipeline> {
        let (previous_handle, previous_length) =
            self.previous.map(|(h, l)| (h.0, l)).unwrap_or((0, 0));
        let (client_id, call_id) = self.client.call_id();
        let req = gfs::AddChunkRequest {
            path: self.path.to_string(),
            client_name: self.client.config().client_name.clone(),
            previous_handle,
            previous_length,
            client_host: self.client.client_host(),
            excluded: self.excluded.clone(),
            client_id,
            call_id,
        };
        // The same call id on every attempt: a retry whose original allocated the chunk
        // (its answer lost with a crashed master) gets that chunk, not a second one.
        let resp = self
            .client
            .call_master(CallKind::Mutation, &self.path, |mut m| {
                let req = req.clone();
                async move { m.add_chunk(req).await }
            })
            .await?;
        let chunk: LocatedChunk = resp
            .chunk
            .ok_or_else(|| Error::Protocol {
                addr: self.client.master_addr(),
                message: format!("no chunk in the AddChunk answer for {}", self.path),
            })?
            .into();
        debug!(path = %self.path, chunk = %chunk.handle, replicas = chunk.replicas.len(), "chunk allocated");
        ChunkPipeline::open(&self.client, &self.path, &chunk, self.chunk_size)
    }
}

/// Reads `reader` in pieces of `packet` bytes (the last may be shorter) and sends them on
/// `tx` until the end of the input, an error (sent too), or a closed channel.
fn read_packets(
    mut reader: impl std::io::Read,
    packet: usize,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    loop {
        let mut buf = BytesMut::zeroed(packet);
        let mut filled = 0;
        while filled < packet {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        buf.truncate(filled);
        if filled > 0 && tx.blocking_send(Ok(buf.freeze())).is_err() {
            return;
        }
        if filled < packet {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(len: usize, packet: usize) -> Vec<usize> {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel(len / packet + 2);
        read_packets(&data[..], packet, &tx);
        drop(tx);
        let mut out = Vec::new();
        let mut joined = Vec::new();
        while let Ok(Ok(b)) = rx.try_recv() {
            out.push(b.len());
            joined.extend_from_slice(&b);
        }
        assert_eq!(joined, data);
        out
    }

    #[test]
    fn input_is_read_in_whole_packets() {
        assert_eq!(pieces(0, 4), Vec::<usize>::new());
        assert_eq!(pieces(3, 4), vec![3]);
        assert_eq!(pieces(8, 4), vec![4, 4]);
        assert_eq!(pieces(9, 4), vec![4, 4, 1]);
    }
}
