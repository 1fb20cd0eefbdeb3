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

use bytes::BytesMut;
use proto::gfs;
use proto::path::DfsPath;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::debug;

use crate::chunk::{ChunkHandle, LocatedChunk};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::packet::next_packet;
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

/// Renews `client`'s lease forever, at the interval the master asks for.
async fn renew_lease(client: Client) {
    let name = client.config().client_name.clone();
    loop {
        let req = gfs::RenewLeaseRequest { client_name: name.clone() };
        let wait = match client.master().renew_lease(req).await {
            Ok(r) => std::time::Duration::from_millis(r.into_inner().renew_interval_ms.max(100)),
            Err(status) => {
                debug!(error = %status.message(), "lease renewal failed; retrying");
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
                addr: self.master_addr().to_owned(),
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
            let handle = p.handle();
            self.previous = Some((handle, p.finish().await?));
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
        loop {
            let in_chunk = self.pipeline.as_ref().map_or(0, ChunkPipeline::sent);
            let Some(next) =
                next_packet(self.buf.len(), in_chunk, self.chunk_size, self.packet_size, flush)
            else {
                return Ok(());
            };
            let p = match self.pipeline.take() {
                Some(p) => p,
                None => self.start_chunk().await?,
            };
            let p = self.pipeline.insert(p);
            let data = self.buf.split_to(next.len).freeze();
            p.send(data, next.last).await?;
            if next.last
                && let Some(p) = self.pipeline.take()
            {
                let handle = p.handle();
                self.previous = Some((handle, p.finish().await?));
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
            excluded: Vec::new(),
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
                addr: self.client.master_addr().to_owned(),
                message: format!("no chunk in the AddChunk answer for {}", self.path),
            })?
            .into();
        debug!(path = %self.path, chunk = %chunk.handle, replicas = chunk.replicas.len(), "chunk allocated");
        ChunkPipeline::open(&self.client, &self.path, &chunk, self.chunk_size)
    }
}
