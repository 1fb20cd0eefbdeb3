//! `Client::list` against an in-process stand-in master that answers `ListDir` in pages
//! of two and can change the directory between pages, or break the paging protocol: the
//! client must list every entry that existed throughout exactly once, and must never
//! loop on a master whose pages do not move on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::gfs as pb;
use proto::gfs::client_protocol_server::{ClientProtocol, ClientProtocolServer};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// How the stand-in answers `ListDir`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Pages of two after the cursor, as the master does; after the first page, the
    /// cursor's own entry and one after it are deleted, one is added before the cursor
    /// and one after it.
    Churn,
    /// The first page again whatever the cursor, always saying more remain.
    Stuck,
}

struct Fake {
    mode: Mode,
    names: Mutex<BTreeSet<String>>,
    pages: Mutex<u32>,
}

const LIMIT: usize = 2;

fn status(name: &str) -> pb::FileStatus {
    pb::FileStatus {
        path: format!("/d/{name}"),
        permission: 0o644,
        replication: 1,
        owner: "u".into(),
        group: "g".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl ClientProtocol for Fake {
    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let r = req.into_inner();
        assert_eq!(r.path, "/d");
        let mut names = self.names.lock().unwrap();
        let after = if self.mode == Mode::Stuck { String::new() } else { r.start_after };
        let rest: Vec<String> = names.iter().filter(|n| **n > after).cloned().collect();
        let page: Vec<String> = rest.iter().take(LIMIT).cloned().collect();
        let remaining = (rest.len() - page.len()) as u64;
        let mut pages = self.pages.lock().unwrap();
        *pages += 1;
        if self.mode == Mode::Churn && *pages == 1 {
            // The page ended at "b": "b" (the cursor) and "d" go, "aa" (before the
            // cursor) and "z" come.
            names.remove("b");
            names.remove("d");
            names.insert("aa".into());
            names.insert("z".into());
        }
        let entries = page.iter().map(|n| status(n)).collect();
        Ok(Response::new(pb::ListDirResponse { entries, remaining }))
    }

    async fn mkdir(
        &self,
        _: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        Err(Status::unimplemented("mkdir"))
    }
    async fn create(
        &self,
        _: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        Err(Status::unimplemented("create"))
    }
    async fn add_chunk(
        &self,
        _: Request<pb::AddChunkRequest>,
    ) -> Result<Response<pb::AddChunkResponse>, Status> {
        Err(Status::unimplemented("add_chunk"))
    }
    async fn complete(
        &self,
        _: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        Err(Status::unimplemented("complete"))
    }
    async fn get_file_info(
        &self,
        _: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        Err(Status::unimplemented("get_file_info"))
    }
    async fn get_chunk_locations(
        &self,
        _: Request<pb::GetChunkLocationsRequest>,
    ) -> Result<Response<pb::GetChunkLocationsResponse>, Status> {
        Err(Status::unimplemented("get_chunk_locations"))
    }
    async fn rename(
        &self,
        _: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        Err(Status::unimplemented("rename"))
    }
    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(Status::unimplemented("delete"))
    }
    async fn set_replication(
        &self,
        _: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        Err(Status::unimplemented("set_replication"))
    }
    async fn set_permission(
        &self,
        _: Request<pb::SetPermissionRequest>,
    ) -> Result<Response<pb::SetPermissionResponse>, Status> {
        Err(Status::unimplemented("set_permission"))
    }
    async fn set_owner(
        &self,
        _: Request<pb::SetOwnerRequest>,
    ) -> Result<Response<pb::SetOwnerResponse>, Status> {
        Err(Status::unimplemented("set_owner"))
    }
    async fn get_content_summary(
        &self,
        _: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        Err(Status::unimplemented("get_content_summary"))
    }
    async fn report_bad_replica(
        &self,
        _: Request<pb::ReportBadReplicaRequest>,
    ) -> Result<Response<pb::ReportBadReplicaResponse>, Status> {
        Err(Status::unimplemented("report_bad_replica"))
    }
    async fn update_pipeline(
        &self,
        _: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        Err(Status::unimplemented("update_pipeline"))
    }
    async fn renew_lease(
        &self,
        _: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        Err(Status::unimplemented("renew_lease"))
    }
    async fn renew_token(
        &self,
        _: Request<pb::RenewTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        Err(Status::unimplemented("renew_token"))
    }
}

/// Serves a stand-in in `mode` over the names `a`..`f` and connects a client to it;
/// also returns how many pages it has answered.
async fn fake(mode: Mode) -> (dfs::Client, Arc<Fake>) {
    let names = ["a", "b", "c", "d", "e", "f"].iter().map(|s| s.to_string()).collect();
    let fake = Arc::new(Fake { mode, names: Mutex::new(names), pages: Mutex::new(0) });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = ClientProtocolServer::from_arc(Arc::clone(&fake));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let cfg = dfs::ClientConfig {
        master_retry_deadline: Duration::ZERO,
        user: "u".into(),
        ..dfs::ClientConfig::default()
    };
    (dfs::Client::connect(&addr, cfg).await.unwrap(), fake)
}

#[tokio::test]
async fn a_directory_changing_between_pages_is_listed_without_skips_or_repeats() {
    let (client, fake) = fake(Mode::Churn).await;
    let listed: Vec<String> =
        client.list("/d").await.unwrap().iter().map(|s| s.path.to_string()).collect();
    // "a" and "b" came on the first page; "c", "e", "f" existed throughout and come
    // after the deleted cursor "b"; "z" was added after the cursor; "aa", added before
    // it, is not seen (a listing is not a snapshot, as in HDFS); "d" went before its page.
    assert_eq!(listed, ["/d/a", "/d/b", "/d/c", "/d/e", "/d/f", "/d/z"]);
    assert_eq!(*fake.pages.lock().unwrap(), 3, "pages of two: a b | c e | f z");
}

#[tokio::test]
async fn a_master_whose_pages_do_not_move_on_is_a_protocol_error_not_a_loop() {
    let (client, fake) = fake(Mode::Stuck).await;
    let listed = tokio::time::timeout(Duration::from_secs(10), client.list("/d"))
        .await
        .expect("the client gives up instead of looping");
    let err = listed.expect_err("a listing from a broken master");
    assert!(matches!(err, dfs::Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("does not move on"), "{err}");
    assert_eq!(*fake.pages.lock().unwrap(), 2, "the second page repeated the first");
}
