//! Reading a file: [`Client::open`] fetches the file's chunk locations once and returns a
//! [`FileReader`], which reads byte ranges from replicas, nearest first, failing over to
//! the next replica on any error and reporting corrupt replicas to the master.
//!
//! Every location carries the master's read token for its chunk, which the chunkservers
//! check. A replica that refuses it as expired or unknown (the token outlived its
//! lifetime, or the master restarted and made new keys) sends the reader back to the
//! master for that chunk's locations, at most [`TOKEN_REFRESHES`] times per piece; the
//! fresh location is kept for the file's later pieces.
//!
//! Whole-file reads ([`FileReader::copy_to`]) cut the file into ranges of
//! [`ClientConfig::read_range`](crate::ClientConfig::read_range) bytes that never cross a
//! chunk and keep [`ClientConfig::read_prefetch`](crate::ClientConfig::read_prefetch) of
//! them in flight, so memory stays bounded and the reader is never stop-and-wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use proto::gfs;
use proto::path::DfsPath;
use proto::reason::ErrorReason;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::warn;

use crate::chunk::{LocatedChunk, Replica};
use crate::client::Client;
use crate::error::{Error, ReplicaFailure, Result};
use crate::path::PathArg;
use crate::retry::CallKind;

/// Times one piece's chunk locations are fetched again because its token was refused.
pub const TOKEN_REFRESHES: usize = 2;

/// An open file: its length and where each chunk's replicas are.
#[derive(Debug, Clone)]
pub struct FileReader {
    client: Client,
    path: DfsPath,
    length: u64,
    under_construction: bool,
    chunks: Vec<LocatedChunk>,
    /// Chunks whose locations were fetched again (a refused token), by index.
    refreshed: Arc<Mutex<HashMap<usize, LocatedChunk>>>,
}

/// Whether a chunkserver refused the token (rather than failed otherwise).
fn token_refused(err: &Error) -> bool {
    matches!(err.reason(), ErrorReason::TokenExpired | ErrorReason::BadToken)
}

/// A piece of one chunk to fetch: chunk index, offset within the chunk, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub chunk: usize,
    pub offset: u64,
    pub len: u64,
}

/// Cuts the file range `[start, end)` into pieces of at most `max` bytes that never cross
/// a chunk boundary.
pub(crate) fn plan_pieces(chunks: &[LocatedChunk], start: u64, end: u64, max: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let lo = start.max(c.offset);
        let hi = end.min(c.end());
        let mut at = lo;
        while at < hi {
            let len = (hi - at).min(max.max(1));
            out.push(Piece { chunk: i, offset: at - c.offset, len });
            at += len;
        }
    }
    out
}

impl Client {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::IsADirectory`], or a transport error.
    pub async fn open(&self, path: impl PathArg) -> Result<FileReader> {
        let path = self.resolve(path)?;
        let req = gfs::GetChunkLocationsRequest {
            path: path.to_string(),
            offset: 0,
            length: 0,
            client_host: self.client_host(),
        };
        let resp = self
            .call_master(CallKind::Read, &path, |mut m| {
                let req = req.clone();
                async move { m.get_chunk_locations(req).await }
            })
            .await?;
        let mut chunks: Vec<LocatedChunk> = resp.chunks.into_iter().map(Into::into).collect();
        chunks.sort_by_key(|c| c.offset);
        Ok(FileReader {
            client: self.clone(),
            path,
            length: resp.file_length,
            under_construction: resp.under_construction,
            chunks,
            refreshed: Arc::default(),
        })
    }

    /// Reads the whole file `path` into memory.
    ///
    /// # Errors
    /// As [`Client::open`] and [`FileReader::copy_to`].
    pub async fn read_all(&self, path: impl PathArg) -> Result<Vec<u8>> {
        let reader = self.open(path).await?;
        let mut out = Vec::with_capacity(usize::try_from(reader.len()).unwrap_or(0));
        reader.copy_to(&mut out, |_| {}).await?;
        Ok(out)
    }
}

impl FileReader {
    /// The file's path.
    pub fn path(&self) -> &DfsPath {
        &self.path
    }

    /// The file's length in bytes when it was opened.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// True for a 0-byte file.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// True if a writer held the file open when it was opened.
    pub fn is_under_construction(&self) -> bool {
        self.under_construction
    }

    /// The file's chunks with their replicas, nearest first.
    pub fn chunks(&self) -> &[LocatedChunk] {
        &self.chunks
    }

    /// Reads up to `len` bytes at `offset` (fewer past the end of the file).
    ///
    /// # Errors
    /// [`Error::AllReplicasCorrupt`] when every replica of a chunk is corrupt,
    /// [`Error::NoLiveReplica`] naming every replica tried when no replica can serve a
    /// piece for another reason, or [`Error::Protocol`] if the chunks do not cover the
    /// range.
    pub async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes> {
        let end = offset.saturating_add(len).min(self.length);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let range = self.client.config().read_range as u64;
        let pieces = self.checked_pieces(offset, end, range)?;
        let parts: Vec<Vec<Bytes>> = stream::iter(pieces.into_iter().map(|p| self.fetch(p)))
            .buffered(self.client.config().read_prefetch)
            .try_collect()
            .await?;
        let mut flat = parts.into_iter().flatten();
        let Some(first) = flat.next() else { return Ok(Bytes::new()) };
        let mut out = BytesMut::from(first);
        out.reserve((end - offset) as usize);
        for b in flat {
            out.extend_from_slice(&b);
        }
        Ok(out.freeze())
    }

    /// Streams the whole file into `out`, calling `progress` with the bytes copied so far;
    /// returns the bytes copied. `out` is flushed at the end.
    ///
    /// # Errors
    /// As [`FileReader::read_range`]; [`Error::Output`] if writing to `out` fails.
    pub async fn copy_to<W: AsyncWrite + Unpin>(
        &self,
        mut out: W,
        progress: impl FnMut(u64),
    ) -> Result<u64> {
        let copied = self
            .drain(
                async |b: Bytes| out.write_all(&b).await.map_err(|source| Error::Output { source }),
                progress,
            )
            .await?;
        out.flush().await.map_err(|source| Error::Output { source })?;
        Ok(copied)
    }

    /// Streams the whole file into a blocking writer (a local file, stdout) running on a
    /// thread of its own, which is handed the received buffers as they are: no copy into an
    /// async writer's buffer and no runtime hop per write, which is what made `dfs cat` and
    /// `dfs get` slower than the chunkservers serve. Returns the bytes copied.
    ///
    /// # Errors
    /// As [`FileReader::read_range`]; [`Error::Output`] if writing to `out` fails.
    pub async fn copy_to_blocking<W: std::io::Write + Send + 'static>(
        &self,
        out: W,
        progress: impl FnMut(u64),
    ) -> Result<u64> {
        let depth = self.client.config().read_prefetch.max(1) * 8;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(depth);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut out = out;
            while let Some(b) = rx.blocking_recv() {
                out.write_all(&b)?;
            }
            out.flush()
        });
        // A send fails only once the writer has stopped, and then its own error says why.
        let stopped = || Error::Output { source: std::io::Error::other("the writer stopped") };
        let drained =
            self.drain(async |b: Bytes| tx.send(b).await.map_err(|_| stopped()), progress).await;
        drop(tx);
        let written = match writer.await {
            Ok(r) => r.map_err(|source| Error::Output { source }),
            Err(e) => Err(Error::Output { source: std::io::Error::other(e) }),
        };
        match (drained, written) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Ok(n), Ok(())) => Ok(n),
        }
    }

    /// Fetches the whole file in order, prefetching, and hands each buffer to `sink`.
    async fn drain(
        &self,
        mut sink: impl AsyncFnMut(Bytes) -> Result<()>,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let range = self.client.config().read_range as u64;
        let pieces = self.checked_pieces(0, self.length, range)?;
        let mut fetched = stream::iter(pieces.into_iter().map(|p| self.fetch(p)))
            .buffered(self.client.config().read_prefetch);
        let mut copied = 0u64;
        while let Some(parts) = fetched.next().await {
            for b in parts? {
                copied += b.len() as u64;
                sink(b).await?;
            }
            progress(copied);
        }
        Ok(copied)
    }

    /// Pieces covering `[start, end)`, checking that the chunks cover it without gaps.
    fn checked_pieces(&self, start: u64, end: u64, max: u64) -> Result<Vec<Piece>> {
        let pieces = plan_pieces(&self.chunks, start, end, max);
        let covered: u64 = pieces.iter().map(|p| p.len).sum();
        if covered != end - start {
            return Err(Error::Protocol {
                addr: self.client.master_addr(),
                message: format!("chunks of {} cover {covered} of bytes {start}..{end}", self.path),
            });
        }
        Ok(pieces)
    }

    /// The latest known location of chunk `i`.
    fn chunk(&self, i: usize) -> LocatedChunk {
        let refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        refreshed.get(&i).unwrap_or(&self.chunks[i]).clone()
    }

    /// Asks the master again for chunk `i`'s locations (and a fresh token).
    async fn refresh(&self, i: usize) -> Result<Option<LocatedChunk>> {
        let old = &self.chunks[i];
        let req = gfs::GetChunkLocationsRequest {
            path: self.path.to_string(),
            offset: old.offset,
            length: old.length.max(1),
            client_host: self.client.client_host(),
        };
        let resp = self
            .client
            .call_master(CallKind::Read, &self.path, |mut m| {
                let req = req.clone();
                async move { m.get_chunk_locations(req).await }
            })
            .await?;
        let fresh = resp
            .chunks
            .into_iter()
            .map(LocatedChunk::from)
            .find(|c| c.handle == old.handle && c.offset == old.offset);
        if let Some(c) = &fresh {
            let mut refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
            refreshed.insert(i, c.clone());
        }
        Ok(fresh)
    }

    /// Fetches one piece, trying each replica in order, and asking the master for fresh
    /// locations when the replicas refuse the token.
    async fn fetch(&self, piece: Piece) -> Result<Vec<Bytes>> {
        let mut chunk = self.chunk(piece.chunk);
        let mut refreshes = 0;
        loop {
            match self.fetch_from_replicas(&chunk, piece).await {
                Err((err, true)) if refreshes < TOKEN_REFRESHES => {
                    refreshes += 1;
                    warn!(path = %self.path, chunk = %chunk.handle, error = %err, "chunk token refused: asking the master again");
                    match self.refresh(piece.chunk).await? {
                        Some(c) => chunk = c,
                        None => return Err(err),
                    }
                }
                Err((err, _)) => return Err(err),
                Ok(data) => return Ok(data),
            }
        }
    }

    /// Fetches one piece of `chunk`, trying each replica in order; on failure, also says
    /// whether any replica refused the token.
    async fn fetch_from_replicas(
        &self,
        chunk: &LocatedChunk,
        piece: Piece,
    ) -> std::result::Result<Vec<Bytes>, (Error, bool)> {
        let mut tried = Vec::new();
        let mut refused = false;
        let mut found_corrupt = 0u32;
        for replica in &chunk.replicas {
            match self.fetch_from(chunk, replica, piece).await {
                Ok(data) => return Ok(data),
                Err(err) => {
                    warn!(path = %self.path, chunk = %chunk.handle, replica = %replica.addr, error = %err, "read failed, trying the next replica");
                    refused |= token_refused(&err);
                    if let Error::Corrupt { message, .. } = &err {
                        found_corrupt += 1;
                        if let Err(e) =
                            self.client.report_bad_replica(chunk.handle, &replica.id, message).await
                        {
                            warn!(chunk = %chunk.handle, error = %e, "cannot report a corrupt replica");
                        }
                    }
                    tried.push(ReplicaFailure {
                        addr: replica.addr.clone(),
                        error: err.to_string(),
                    });
                }
            }
        }
        // Corrupt everywhere is data loss, not an outage: say so rather than list
        // chunkservers (or none, when the master has only corrupt replicas left to give).
        let corrupt = chunk.corrupt_replicas.saturating_add(found_corrupt);
        if corrupt > 0 && found_corrupt as usize == tried.len() {
            let err = Error::AllReplicasCorrupt {
                path: self.path.to_string(),
                handle: chunk.handle,
                replicas: corrupt,
            };
            return Err((err, refused));
        }
        let err = Error::NoLiveReplica { path: self.path.to_string(), handle: chunk.handle, tried };
        Err((err, refused))
    }

    /// Streams one piece from one replica, checking offsets and the byte count.
    async fn fetch_from(
        &self,
        chunk: &LocatedChunk,
        replica: &Replica,
        piece: Piece,
    ) -> Result<Vec<Bytes>> {
        let addr = replica.addr.as_str();
        let timeout = self.client.config().io_timeout;
        let timed_out = || Error::ChunkserverUnreachable {
            addr: addr.to_owned(),
            cause: format!("no data within {}s", timeout.as_secs()),
        };
        let mut cs = self.client.chunkserver(addr)?;
        let req = gfs::ReadChunkRequest {
            handle: chunk.handle.0,
            version: chunk.version,
            token: chunk.token.clone(),
            offset: piece.offset,
            length: piece.len,
        };
        let mut stream = tokio::time::timeout(timeout, cs.read_chunk(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|s| Error::from_chunkserver_status(s, addr))?
            .into_inner();
        let mut parts = Vec::new();
        let mut got = 0u64;
        loop {
            let msg = tokio::time::timeout(timeout, stream.message())
                .await
                .map_err(|_| timed_out())?
                .map_err(|s| Error::from_chunkserver_status(s, addr))?;
            let Some(msg) = msg else { break };
            if msg.offset != piece.offset + got {
                return Err(Error::Protocol {
                    addr: addr.to_owned(),
                    message: format!(
                        "chunk {} data at offset {} where {} was expected",
                        chunk.handle,
                        msg.offset,
                        piece.offset + got
                    ),
                });
            }
            got += msg.data.len() as u64;
            if got > piece.len {
                break;
            }
            if !msg.data.is_empty() {
                parts.push(msg.data);
            }
        }
        if got != piece.len {
            return Err(Error::Protocol {
                addr: addr.to_owned(),
                message: format!(
                    "chunk {} gave {got} bytes at offset {} where {} were asked",
                    chunk.handle, piece.offset, piece.len
                ),
            });
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkHandle;

    fn chunks(lens: &[u64]) -> Vec<LocatedChunk> {
        let mut off = 0;
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let c = LocatedChunk {
                    handle: ChunkHandle(i as u64 + 1),
                    version: 1,
                    offset: off,
                    length: len,
                    replicas: Vec::new(),
                    corrupt_replicas: 0,
                    token: bytes::Bytes::new(),
                };
                off += len;
                c
            })
            .collect()
    }

    #[test]
    fn pieces_never_cross_chunks() {
        let c = chunks(&[10, 10, 5]);
        let p = plan_pieces(&c, 0, 25, 4);
        assert_eq!(p.iter().map(|p| p.len).sum::<u64>(), 25);
        assert!(p.iter().all(|p| p.offset + p.len <= c[p.chunk].length));
        assert_eq!(p[0], Piece { chunk: 0, offset: 0, len: 4 });
        assert_eq!(p[2], Piece { chunk: 0, offset: 8, len: 2 });
        assert_eq!(p[3], Piece { chunk: 1, offset: 0, len: 4 });
    }

    #[test]
    fn a_range_inside_one_chunk() {
        let c = chunks(&[10, 10]);
        assert_eq!(plan_pieces(&c, 12, 15, 100), vec![Piece { chunk: 1, offset: 2, len: 3 }]);
        assert_eq!(
            plan_pieces(&c, 8, 12, 100),
            vec![Piece { chunk: 0, offset: 8, len: 2 }, Piece { chunk: 1, offset: 0, len: 2 }]
        );
        assert!(plan_pieces(&c, 5, 5, 100).is_empty());
        assert!(plan_pieces(&[], 0, 0, 100).is_empty());
    }
}
