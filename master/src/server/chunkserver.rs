//! `gfs.v1.ChunkserverProtocol`: what chunkservers call (HDFS's DatanodeProtocol).
//! Registration with a full replica report, heartbeats whose answers carry delete and
//! replicate commands, and incremental replica reports. None of it is logged: replica
//! locations are rebuilt from these reports after a restart (GFS). Register and
//! heartbeat answers carry the chunk token keys ([`crate::chunk_tokens`]) and copy
//! orders a replicate token; in simple mode this service is unauthenticated, so whoever
//! registers gets the keys (see `docs/security.md`).

use proto::gfs::chunkserver_protocol_server::ChunkserverProtocol;
use proto::gfs::{self as pb, ChunkCommand, DeleteChunks, ReplicateChunk, chunk_command};
use security::chunk_token::Modes;
use sha2::Digest;
use tonic::{Request, Response, Status};

use super::{command, unexpected};
use crate::clock::wall_ms;
use crate::cluster::Load;
use crate::command::{Command, Reply, ServerName};
use crate::core::ReportedReplica;
use crate::driver::Driver;
use crate::ids::ChunkHandle;
use crate::report;

/// The `ChunkserverProtocol` service over the driver.
#[derive(Debug, Clone)]
pub struct ChunkserverProtocolService {
    driver: Driver,
}

impl ChunkserverProtocolService {
    /// A service over `driver`.
    pub fn new(driver: Driver) -> ChunkserverProtocolService {
        ChunkserverProtocolService { driver }
    }
}

fn reported(c: &pb::ReportedChunk) -> ReportedReplica {
    ReportedReplica {
        handle: ChunkHandle(c.handle),
        version: c.version,
        length: c.length,
        finalized: c.finalized,
    }
}

fn load(capacity: u64, used: u64, remaining: u64, active_writes: u32, chunk_count: u64) -> Load {
    Load { capacity, used, remaining, active_writes, chunk_count }
}

#[tonic::async_trait]
impl ChunkserverProtocol for ChunkserverProtocolService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let Some(server) = r.server else {
            return Err(Status::invalid_argument("register: server is required"));
        };
        if server.id.is_empty() || server.addr.is_empty() {
            return Err(Status::invalid_argument("register: server id and addr are required"));
        }
        let chunks: Vec<ReportedReplica> = r.chunks.iter().map(reported).collect();
        let load = load(r.capacity, r.used, r.remaining, 0, chunks.len() as u64);
        let proof = match r.id_secret.len() {
            0 => None,
            32 => Some(<[u8; 32]>::from(sha2::Sha256::digest(&r.id_secret))),
            n => {
                return Err(Status::invalid_argument(format!(
                    "register: id_secret is {n} bytes, expected 32"
                )));
            }
        };
        let server = ServerName { id: server.id, addr: server.addr, rack: server.rack, proof };
        let tokens = self.driver.tokens();
        let (leader, term) = self.driver.leadership()?;
        let resp = command(&self.driver, Command::Register { server, load, chunks }, |st, _| {
            Ok(pb::RegisterResponse {
                heartbeat_interval_ms: st.config.heartbeat_interval.as_millis() as u64,
                chunk_size: st.config.chunk_size,
                token_keys: tokens.keys(wall_ms()),
                leader,
                term,
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let load = load(r.capacity, r.used, r.remaining, r.active_writes, r.chunk_count);
        let tokens = self.driver.tokens();
        let now_ms = wall_ms();
        // A follower of a master group hears heartbeats too (so it knows who is live when
        // it leads) but gives no orders: only the leader does.
        let (leader, term) = self.driver.leadership()?;
        let resp = command(&self.driver, Command::Heartbeat { id: r.id, load }, |st, reply| {
            let reply = match reply {
                Reply::Heartbeat(Some(reply)) => reply,
                Reply::Heartbeat(None) => {
                    return Ok(pb::HeartbeatResponse {
                        commands: vec![],
                        reregister: true,
                        token_keys: Vec::new(),
                        leader,
                        term,
                    });
                }
                other => return Err(unexpected(&other)),
            };
            let mut commands = Vec::new();
            if !leader {
                return Ok(pb::HeartbeatResponse {
                    commands,
                    reregister: reply.reregister,
                    token_keys: tokens.keys(now_ms),
                    leader,
                    term,
                });
            }
            if !reply.deletes.is_empty() {
                let replicas = reply
                    .deletes
                    .into_iter()
                    .map(|d| pb::DeleteReplica {
                        handle: d.handle.0,
                        version: d.version,
                        rbw_only: d.rbw_only,
                    })
                    .collect();
                commands.push(ChunkCommand {
                    command: Some(chunk_command::Command::Delete(DeleteChunks { replicas })),
                });
            }
            for c in reply.replicates {
                commands.push(ChunkCommand {
                    command: Some(chunk_command::Command::Replicate(ReplicateChunk {
                        handle: c.handle.0,
                        version: c.version,
                        length: c.length,
                        source: Some(report::server_info(st, c.source)),
                        // The target reads the chunk from the source with it.
                        token: tokens.sign(c.handle.0, c.version, Modes::REPLICATE, now_ms).into(),
                    })),
                });
            }
            Ok(pb::HeartbeatResponse {
                commands,
                reregister: reply.reregister,
                token_keys: tokens.keys(now_ms),
                leader,
                term,
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn report_chunks(
        &self,
        req: Request<pb::ReportChunksRequest>,
    ) -> Result<Response<pb::ReportChunksResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::ReportChunks {
            id: r.id,
            received: r.received.iter().map(reported).collect(),
            deleted: r.deleted.iter().map(|&h| ChunkHandle(h)).collect(),
            corrupt: r.corrupt.iter().map(|&h| ChunkHandle(h)).collect(),
        };
        let known = command(&self.driver, cmd, |_, reply| match reply {
            Reply::Known(known) => Ok(known),
            other => Err(unexpected(&other)),
        })?;
        Ok(Response::new(pb::ReportChunksResponse { reregister: !known }))
    }
}
