//! Raft's messages between members over gRPC: `gfs.v1.RaftProtocol` on the master's one
//! port, each message openraft's own request or result type encoded with postcard. Only
//! cluster services may call it (in token mode a service token; see
//! [`security::ServerAuth`]), as chunkservers' calls.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use proto::gfs::RaftMessage;
use proto::gfs::raft_protocol_client::RaftProtocolClient;
use proto::gfs::raft_protocol_server::RaftProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::TypeConfig;

/// Largest Raft message taken or sent: a batch of entries or a snapshot chunk (openraft
/// sends snapshots in chunks of a few MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

type Channel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, security::Attach>;

/// Makes clients to other members, calling with this member's service credentials.
#[derive(Debug, Clone)]
pub struct Network {
    attach: security::Attach,
}

impl Network {
    /// Calls go out with `attach` (the master's service credentials).
    pub fn new(attach: security::Attach) -> Network {
        Network { attach }
    }
}

/// A connection to one member.
#[derive(Debug)]
pub struct Peer {
    target: u64,
    addr: String,
    client: Option<RaftProtocolClient<Channel>>,
    attach: security::Attach,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer { target, addr: node.addr.clone(), client: None, attach: self.attach.clone() }
    }
}

fn encode<T: Serialize>(msg: &T) -> Result<RaftMessage, postcard::Error> {
    postcard::to_stdvec(msg).map(|v| RaftMessage { payload: v.into() })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

impl Peer {
    fn client(&mut self) -> Result<RaftProtocolClient<Channel>, Failed> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = security::tls::endpoint(&self.addr)
            .map_err(|e| Failed(format!("member {} at {}: {e}", self.target, self.addr)))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .connect_lazy();
        let client = RaftProtocolClient::with_interceptor(channel, self.attach.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// One call: encode, send within the deadline, decode the member's result.
    async fn call<Req, Resp, E, F, Fut>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        send: F,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftProtocolClient<Channel>, RaftMessage) -> Fut,
        Fut: std::future::Future<Output = Result<Response<RaftMessage>, Status>>,
    {
        let unreachable = |e: Failed| RPCError::Unreachable(Unreachable::new(&e));
        let msg = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let client = self.client().map_err(unreachable)?;
        let answer = tokio::time::timeout(option.hard_ttl(), send(client, msg)).await;
        let reply = match answer {
            Err(_) => {
                return Err(unreachable(Failed(format!(
                    "member {} at {}: no answer within {:?}",
                    self.target,
                    self.addr,
                    option.hard_ttl()
                ))));
            }
            Ok(Err(status)) => {
                let e = Failed(format!(
                    "member {} at {}: {}",
                    self.target,
                    self.addr,
                    status.message()
                ));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => unreachable(e),
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<u64, E>> = postcard::from_bytes(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(&rpc, &option, |mut c, m| async move { c.append_entries(m).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, |mut c, m| async move { c.install_snapshot(m).await }).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(&rpc, &option, |mut c, m| async move { c.vote(m).await }).await
    }
}

/// The receiving side: hands each message to this member's Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

impl RaftService {
    /// The service for `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> RaftService {
        RaftService { raft }
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftMessage>) -> Result<T, Status> {
    postcard::from_bytes(&req.into_inner().payload).map_err(|e| {
        proto::reason::status(
            tonic::Code::InvalidArgument,
            format!("undecodable Raft message: {e}"),
            proto::reason::ErrorReason::InvalidArgument,
        )
    })
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    encode(result)
        .map(Response::new)
        .map_err(|e| Status::internal(format!("encoding a Raft answer: {e}")))
}

#[tonic::async_trait]
impl RaftProtocol for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> = decode(req)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
