//! The `dfs` command line against a real mini cluster: data round trips, namespace
//! semantics and their errors, fsck, and bad input. Each test starts its own cluster
//! (1 MiB chunks, so a few MiB span several chunks).

use std::path::Path;

use tests::data::random_bytes;
use tests::{ClusterOptions, MiniCluster};

const MIB: usize = 1 << 20;

async fn cluster() -> MiniCluster {
    match MiniCluster::start(ClusterOptions::for_tests()).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Asserts `remote` reads back as `expected` through both `get` and `cat`.
fn assert_reads_back(c: &MiniCluster, local_dir: &Path, remote: &str, expected: &[u8]) {
    let out = local_dir.join(format!("out-{}", remote.replace('/', "_")));
    // `get` refuses to replace a local file (without -f), as hdfs does.
    let _ = std::fs::remove_file(&out);
    c.dfs(&["get", remote, path_str(&out)]).assert_ok();
    let got = std::fs::read(&out).expect("get wrote the local file");
    assert_eq!(got.len(), expected.len(), "length of {remote} after get");
    assert!(got == expected, "{remote}: get returned different bytes");
    let cat = c.dfs(&["cat", remote]);
    cat.assert_ok();
    assert_eq!(cat.stdout.len(), expected.len(), "length of {remote} after cat");
    assert!(cat.stdout == expected, "{remote}: cat returned different bytes");
}

#[tokio::test]
async fn put_get_round_trips() {
    let c = cluster().await;
    let local = tempfile::tempdir().unwrap();
    c.dfs(&["mkdir", "-p", "/rt"]).assert_ok();
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + MIB / 2, 64 * 1024 + 7];
    for (seed, size) in sizes.into_iter().enumerate() {
        let data = random_bytes(seed as u64, size);
        let src = local.path().join(format!("in-{size}"));
        std::fs::write(&src, &data).unwrap();
        let remote = format!("/rt/file-{size}");
        c.dfs(&["put", path_str(&src), &remote]).assert_ok();
        assert_reads_back(&c, local.path(), &remote, &data);
    }

    // The library agrees on lengths and chunk counts (1 MiB chunks).
    let client = c.client().await.unwrap();
    let st = client.stat("/rt/file-3670016").await.unwrap();
    assert_eq!((st.length, st.chunk_count), (3 * MIB as u64 + MIB as u64 / 2, 4));
    let st = client.stat("/rt/file-0").await.unwrap();
    assert_eq!((st.length, st.chunk_count), (0, 0));

    // `put -` reads stdin; `-p` creates the parents.
    let data = random_bytes(99, 2 * MIB + 12345);
    c.dfs_with_stdin(&["put", "-p", "-", "/stdin/deep/file"], Some(&data)).assert_ok();
    assert_reads_back(&c, local.path(), "/stdin/deep/file", &data);

    // `get REMOTE -` writes to stdout.
    let out = c.dfs(&["get", "/stdin/deep/file", "-"]);
    assert!(out.assert_ok().stdout == data, "get to stdout returned different bytes");

    // `cat` of several files concatenates them.
    let (a, b) = (random_bytes(5, 1000), random_bytes(6, MIB + 3));
    c.dfs_with_stdin(&["put", "-", "/rt/a"], Some(&a)).assert_ok();
    c.dfs_with_stdin(&["put", "-", "/rt/b"], Some(&b)).assert_ok();
    let cat = c.dfs(&["cat", "/rt/a", "/rt/b"]);
    assert!(cat.assert_ok().stdout == [a, b].concat(), "cat of two files");
}

#[tokio::test]
async fn namespace_semantics() {
    let c = cluster().await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f");
    let data = random_bytes(1, 300_000);
    std::fs::write(&src, &data).unwrap();
    let src = path_str(&src);

    // mkdir: parents required without -p; -p is idempotent.
    c.dfs(&["mkdir", "/a/b"]).assert_fails(1, "dfs: ");
    c.dfs(&["mkdir", "-p", "/a/b"]).assert_ok();
    c.dfs(&["mkdir", "-p", "/a/b"]).assert_ok();
    c.dfs(&["mkdir", "/a/b"]).assert_fails(1, "dfs: ");
    c.dfs(&["mkdir", "/a/c"]).assert_ok();
    let ls = c.dfs(&["ls", "/a"]);
    let listing = ls.assert_ok().stdout_str();
    assert!(listing.contains("/a/b") && listing.contains("/a/c"), "ls /a: {listing}");

    // put refuses to replace a file unless -f.
    c.dfs(&["put", src, "/a/b/f"]).assert_ok();
    let err = c.dfs(&["put", src, "/a/b/f"]).assert_fails(1, "dfs: ");
    assert!(err.contains("/a/b/f"), "the error names the path: {err}");
    c.dfs(&["put", "-f", src, "/a/b/f"]).assert_ok();
    assert_reads_back(&c, local.path(), "/a/b/f", &data);
    // Nor a directory, even with -f.
    c.dfs(&["put", "-f", src, "/a/c"]).assert_ok();
    assert_reads_back(&c, local.path(), "/a/c/f", &data);

    // rm of a non-empty directory needs -r and deletes nothing without it.
    c.dfs(&["rm", "/a"]).assert_fails(1, "dfs: ");
    c.dfs(&["rm", "/a/b"]).assert_fails(1, "dfs: ");
    assert_reads_back(&c, local.path(), "/a/b/f", &data);
    c.dfs(&["rm", "/a/missing"]).assert_fails(1, "dfs: ");
    c.dfs(&["rm", "-f", "/a/missing"]).assert_ok();

    // mv into an existing directory keeps the name.
    c.dfs(&["mv", "/a/b/f", "/a"]).assert_ok();
    assert_reads_back(&c, local.path(), "/a/f", &data);
    c.dfs(&["stat", "/a/b/f"]).assert_fails(1, "dfs: ");
    // mv onto an existing file fails and leaves both.
    c.dfs(&["put", src, "/a/g"]).assert_ok();
    c.dfs(&["mv", "/a/f", "/a/g"]).assert_fails(1, "dfs: ");
    assert_reads_back(&c, local.path(), "/a/f", &data);
    assert_reads_back(&c, local.path(), "/a/g", &data);
    // Plain rename.
    c.dfs(&["mv", "/a/g", "/a/h"]).assert_ok();
    c.dfs(&["stat", "/a/g"]).assert_fails(1, "dfs: ");
    assert_reads_back(&c, local.path(), "/a/h", &data);

    // get of a missing file fails; get of a directory copies its files.
    let missing = local.path().join("missing-out");
    c.dfs(&["get", "/a/nope", path_str(&missing)]).assert_fails(1, "dfs: ");
    assert!(!missing.exists(), "a failed get leaves no local file");
    let dir_out = local.path().join("dir-out");
    c.dfs(&["get", "/a/c", path_str(&dir_out)]).assert_ok();
    let copied = [dir_out.join("f"), dir_out.join("c").join("f")];
    let copied = copied.iter().find(|p| p.is_file()).expect("get of a directory copies its files");
    assert!(std::fs::read(copied).unwrap() == data, "directory copy differs");
    c.dfs(&["cat", "/a/c"]).assert_fails(1, "dfs: ");

    // stat, du, setrep.
    let stat = c.dfs(&["stat", "/a/h"]);
    let text = stat.assert_ok().stdout_str();
    assert!(text.contains("300000"), "stat shows the length: {text}");
    let du = c.dfs(&["du", "-s", "/a"]);
    let text = du.assert_ok().stdout_str();
    // /a holds /a/f, /a/h and /a/c/f: 900000 bytes.
    assert!(text.contains("900000"), "du -s shows the total: {text}");
    c.dfs(&["setrep", "2", "/a/h"]).assert_ok();
    let client = c.client().await.unwrap();
    assert_eq!(client.stat("/a/h").await.unwrap().replication, 2);
    assert_eq!(client.stat("/a/f").await.unwrap().replication, 3);
    c.dfs(&["setrep", "2", "/a"]).assert_ok();
    assert_eq!(client.stat("/a/c/f").await.unwrap().replication, 2);

    // rm -r removes the whole tree.
    c.dfs(&["rm", "-r", "/a"]).assert_ok();
    c.dfs(&["ls", "/a"]).assert_fails(1, "dfs: ");
    let root = c.dfs(&["ls", "/"]);
    assert!(!root.assert_ok().stdout_str().contains("/a"), "ls / after rm -r");
}

#[tokio::test]
async fn fsck_reports_every_chunk_healthy_on_two_racks() {
    let c = cluster().await;
    for (i, size) in [0, 10, 2 * MIB + 5].into_iter().enumerate() {
        let data = random_bytes(i as u64, size);
        c.dfs_with_stdin(&["put", "-p", "-", &format!("/fsck/f{i}")], Some(&data)).assert_ok();
    }
    // Replica reports may trail the writes by a heartbeat: poll instead of asserting once.
    let mut last = String::new();
    let healthy = tests::wait_until(
        "fsck to show every chunk healthy",
        tests::DEFAULT_TIMEOUT,
        tests::DEFAULT_POLL,
        || {
            let out = c.dfs(&["fsck", "/", "--json"]);
            last = out.describe();
            let ok = out.code() == Some(0) && fsck_all_healthy(&out.stdout);
            async move { ok }
        },
    )
    .await;
    assert!(healthy.is_ok(), "{last}");
    let out = c.dfs(&["fsck", "/"]);
    assert!(out.assert_ok().stdout_str().contains("HEALTHY"), "{}", out.describe());
}

/// Every chunk of every file: healthy, 3 healthy replicas, on at least 2 racks.
fn fsck_all_healthy(json: &[u8]) -> bool {
    let Ok(report) = serde_json::from_slice::<dfs::FsckReport>(json) else {
        return false;
    };
    let chunks: Vec<&dfs::fsck::FsckChunk> = report.files.iter().flat_map(|f| &f.chunks).collect();
    let files_ok =
        report.files.len() == 3 && report.files.iter().map(|f| f.chunks.len()).sum::<usize>() == 4;
    files_ok
        && report.status == dfs::FsckStatus::Healthy
        && chunks.iter().all(|ch| {
            let healthy: Vec<_> =
                ch.replicas.iter().filter(|r| r.state == dfs::ReplicaState::Healthy).collect();
            let racks: std::collections::BTreeSet<_> = healthy.iter().map(|r| &r.rack).collect();
            ch.health == dfs::ChunkHealth::Healthy && healthy.len() == 3 && racks.len() >= 2
        })
}

#[tokio::test]
async fn bad_input_is_refused_cleanly() {
    let c = cluster().await;
    // Usage errors: exit 2.
    for args in [
        &[][..],
        &["frobnicate"],
        &["put"],
        &["put", "only-one"],
        &["get", "/x"],
        &["cat"],
        &["mkdir"],
        &["rm"],
        &["mv", "/x"],
        &["stat"],
        &["setrep", "many", "/x"],
        &["setrep", "2"],
        &["put", "--chunk-size", "12q", "a", "/b"],
        &["ls", "--no-such-flag"],
    ] {
        c.dfs(args).assert_fails(2, "");
    }

    // Unknown paths: exit 1, one line.
    for args in [
        &["ls", "/nope"][..],
        &["cat", "/nope"],
        &["stat", "/nope"],
        &["rm", "/nope"],
        &["rm", "-r", "/nope"],
        &["mv", "/nope", "/x"],
        &["du", "/nope"],
        &["setrep", "2", "/nope"],
        &["get", "/nope", "/dev/null"],
        &["mkdir", "/nope/deeper"],
    ] {
        let err = c.dfs(args).assert_fails(1, "dfs: ");
        assert!(err.contains("/nope"), "the error names the path: {err}");
    }

    // Invalid paths: exit 1, one line.
    for args in [
        &["ls", "/a/../b"][..],
        &["mkdir", "-p", "/a:b"],
        &["stat", "/a/./b"],
        &["mv", "/x", "/a/../y"],
    ] {
        c.dfs(args).assert_fails(1, "dfs: ");
    }
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f");
    std::fs::write(&src, b"x").unwrap();
    c.dfs(&["put", path_str(&src), "/a:b"]).assert_fails(1, "dfs: ");
    // A missing local source.
    let err = c.dfs(&["put", "/definitely/not/here", "/x"]).assert_fails(1, "dfs: ");
    assert!(err.contains("/definitely/not/here"), "{err}");
    // Nothing was created by any of the above.
    let client = c.client().await.unwrap();
    let root = client.list("/").await.unwrap();
    assert!(root.is_empty(), "/ after bad input: {root:?}");
}

#[tokio::test]
async fn path_patterns_expand_like_hdfs() {
    let c = cluster().await;
    c.dfs(&["mkdir", "-p", "/g/sub"]).assert_ok();
    for (name, body) in
        [("part-00000", "zero\n"), ("part-00001", "one\n"), ("part-00002", "two\n"), ("log", "x\n")]
    {
        c.dfs_with_stdin(&["put", "-", &format!("/g/{name}")], Some(body.as_bytes())).assert_ok();
    }
    // Matches come back sorted, so cat concatenates in name order.
    let cat = c.dfs(&["cat", "/g/part-*"]);
    cat.assert_ok();
    assert_eq!(cat.stdout, b"zero\none\ntwo\n");
    let cat = c.dfs(&["cat", "/g/part-0000[12]", "/g/l?g"]);
    cat.assert_ok();
    assert_eq!(cat.stdout, b"one\ntwo\nx\n");

    // A pattern matching nothing is an error naming it (and `ls` does not fall back to
    // the home directory); with `rm -f` it is not.
    let err = c.dfs(&["ls", "/g/nothing*"]).assert_fails(1, "dfs: ls: ");
    assert!(err.contains("/g/nothing*") && err.contains("no such file"), "{err}");
    c.dfs(&["rm", "-f", "/g/nothing*"]).assert_ok();

    // Patterns in the middle of a path, and as sources of mv.
    c.dfs(&["mv", "/g/part-0000[01]", "/g/sub"]).assert_ok();
    let ls = c.dfs(&["ls", "/*/sub/*"]);
    ls.assert_ok();
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listed.contains("/g/sub/part-00000") && listed.contains("/g/sub/part-00001"),
        "{listed}"
    );
    c.dfs(&["rm", "/g/sub/part-*"]).assert_ok();
    let client = c.client().await.unwrap();
    assert!(client.list("/g/sub").await.unwrap().is_empty());
    assert!(client.try_stat("/g/part-00002").await.unwrap().is_some());
}
