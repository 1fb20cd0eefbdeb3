//! What a mini cluster is made of: [`ClusterOptions`] (what the user asked for) and
//! [`ClusterSpec`] (what was started: every process's command line, address, pid, data
//! directory and log), persisted as `DIR/cluster.json`. [`ClusterSpec::plan`] turns
//! options into each process's command line (the flags are the servers' contract).
//!
//! `cluster.json` is how the `minicluster` binary finds a cluster again after the command
//! that started it has exited (`down`, `status`, `kill`, `start`), so it holds enough to
//! restart any process with the same flags and data. Field names are stable: scripts read
//! them (`jq -r .master.addr DIR/cluster.json`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the cluster description inside the cluster directory.
pub const SPEC_FILE: &str = "cluster.json";

/// Name of the master process.
pub const MASTER: &str = "master";

/// How to build a mini cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOptions {
    /// Number of chunkservers (`cs-1` ... `cs-N`).
    pub chunkservers: usize,
    /// Number of racks; chunkservers are spread over them round-robin.
    pub racks: usize,
    /// Chunk size of new files, in bytes.
    pub chunk_size: u64,
    /// Default replication factor.
    pub replication: u32,
    /// Heartbeat interval of chunkservers (and the master's expectation of it), in ms.
    pub heartbeat_ms: u64,
    /// Silence after which the master declares a chunkserver dead (default: the master's).
    #[serde(default)]
    pub dead_after_ms: Option<u64>,
    /// Bytes each chunkserver may use (default: the filesystem's space).
    #[serde(default)]
    pub capacity: Option<u64>,
    /// Extra flags appended to the master's command line (e.g. a safe-mode setting).
    #[serde(default)]
    pub master_args: Vec<String>,
    /// Extra flags appended to every chunkserver's command line.
    #[serde(default)]
    pub chunkserver_args: Vec<String>,
    /// Also start a MapReduce `coordinator` and one `worker` per chunkserver host.
    #[serde(default)]
    pub mapreduce: bool,
    /// Task slots of each worker.
    #[serde(default = "default_slots")]
    pub worker_slots: u32,
    /// Heartbeat interval of workers, in ms (default: the chunkservers').
    #[serde(default)]
    pub mr_heartbeat_ms: Option<u64>,
    /// Extra flags appended to the coordinator's command line (e.g. `--dead-after-ms`).
    #[serde(default)]
    pub coordinator_args: Vec<String>,
    /// Extra flags appended to every worker's command line.
    #[serde(default)]
    pub worker_args: Vec<String>,
    /// Token mode (`--auth token`): the harness creates the cluster secret `DIR/secret`,
    /// every server takes it, and clients it runs carry tokens it mints.
    #[serde(default)]
    pub token_auth: bool,
    /// TLS on every port (`--tls`): the harness makes a throwaway CA and a server
    /// certificate in `DIR/tls/` (see [`crate::certs`]); clients it runs trust the CA.
    #[serde(default)]
    pub tls: bool,
    /// Members of the master group: 1 is a single master (`master`); 3 or 5 start a
    /// replicated group `master`, `master-2`, ... on `127.0.1.{1,2,...}`.
    #[serde(default = "one")]
    pub masters: usize,
}

fn one() -> usize {
    1
}

fn default_slots() -> u32 {
    2
}

impl Default for ClusterOptions {
    /// The production-like shape: 4 chunkservers on 2 racks, 64 MiB chunks, 3 replicas.
    fn default() -> Self {
        ClusterOptions {
            chunkservers: 4,
            racks: 2,
            chunk_size: 64 << 20,
            replication: 3,
            heartbeat_ms: 3000,
            dead_after_ms: None,
            capacity: None,
            master_args: Vec::new(),
            chunkserver_args: Vec::new(),
            mapreduce: false,
            worker_slots: default_slots(),
            mr_heartbeat_ms: None,
            coordinator_args: Vec::new(),
            worker_args: Vec::new(),
            token_auth: false,
            tls: false,
            masters: 1,
        }
    }
}

impl ClusterOptions {
    /// The shape integration tests use: 1 MiB chunks and 200 ms heartbeats, so that files
    /// of a few MiB span several chunks and failures are noticed within seconds.
    pub fn for_tests() -> Self {
        ClusterOptions {
            chunk_size: 1 << 20,
            heartbeat_ms: 200,
            dead_after_ms: Some(2000),
            ..ClusterOptions::default()
        }
    }

    /// The shape MapReduce integration tests use: [`ClusterOptions::for_tests`] plus a
    /// coordinator and a worker per chunkserver host with 100 ms heartbeats.
    pub fn for_mapreduce_tests() -> Self {
        ClusterOptions {
            mapreduce: true,
            mr_heartbeat_ms: Some(100),
            ..ClusterOptions::for_tests()
        }
    }

    /// Checks the options describe a cluster that can exist.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidOptions(m.to_owned()));
        if self.chunkservers == 0 {
            return bad("at least one chunkserver is needed");
        }
        // Chunkserver i listens on 127.0.0.{i+1}; the last octet must stay below 255.
        if self.chunkservers > 250 {
            return bad("at most 250 chunkservers fit on 127.0.0.0/24");
        }
        if self.racks == 0 || self.racks > 26 {
            return bad("racks must be between 1 and 26");
        }
        if self.chunk_size == 0 {
            return bad("chunk size must be positive");
        }
        if self.replication == 0 {
            return bad("replication must be at least 1");
        }
        if self.heartbeat_ms == 0 {
            return bad("heartbeat interval must be positive");
        }
        if self.masters == 0 || self.masters > 9 {
            return bad("masters must be between 1 and 9");
        }
        if self.mapreduce && self.worker_slots == 0 {
            return bad("workers need at least one slot");
        }
        Ok(())
    }

    /// Rack of the `index`-th chunkserver (0-based): `/rack-a`, `/rack-b`, ... round-robin.
    pub fn rack_of(&self, index: usize) -> String {
        let letter = (b'a' + (index % self.racks.max(1)) as u8) as char;
        format!("/rack-{letter}")
    }
}

/// Which server a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The `master` binary.
    Master,
    /// The `chunkserver` binary.
    Chunkserver,
    /// The MapReduce `coordinator` binary.
    Coordinator,
    /// The MapReduce `worker` binary.
    Worker,
}

/// One process of the cluster, as it was last started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `master`, `cs-1`, `cs-2`, ...
    pub name: String,
    /// Which server it is.
    pub role: Role,
    /// The address it is listening on (`host:port`), as read from its address file.
    pub addr: String,
    /// Its process id when last started.
    pub pid: u32,
    /// Rack of a chunkserver; `None` for the master.
    #[serde(default)]
    pub rack: Option<String>,
    /// Its data directory.
    pub dir: PathBuf,
    /// File receiving its stdout and stderr (appended to across restarts).
    pub log: PathBuf,
    /// File it writes its bound address to.
    pub addr_file: PathBuf,
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// Full argument list it was last started with.
    pub args: Vec<String>,
}

impl ProcessSpec {
    /// Arguments for starting it again on the address it had, so peers and clients that
    /// remember that address keep working (`--addr` is rewritten, the rest kept).
    pub fn restart_args(&self) -> Vec<String> {
        if self.addr.is_empty() { self.args.clone() } else { self.args_with_addr(&self.addr) }
    }

    /// Its arguments with the value of `--addr` replaced by `addr`.
    pub fn args_with_addr(&self, addr: &str) -> Vec<String> {
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--addr")
            && let Some(v) = args.get_mut(i + 1)
        {
            *v = addr.to_owned();
        }
        args
    }

    /// Host part of the address it binds to (`127.0.0.3`).
    pub fn host(&self) -> &str {
        let bind = self
            .args
            .iter()
            .position(|a| a == "--addr")
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
            .unwrap_or(&self.addr);
        bind.rsplit_once(':').map_or(bind, |(host, _)| host)
    }
}

/// A started cluster: the contents of `DIR/cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The cluster directory (data, logs, address files, this description).
    pub dir: PathBuf,
    /// Directory holding the `master`, `chunkserver` and `dfs` binaries.
    pub bin_dir: PathBuf,
    /// How the cluster was built.
    pub options: ClusterOptions,
    /// The master process.
    pub master: ProcessSpec,
    /// The chunkserver processes, `cs-1` first.
    pub chunkservers: Vec<ProcessSpec>,
    /// The MapReduce coordinator, if MapReduce is on.
    #[serde(default)]
    pub coordinator: Option<ProcessSpec>,
    /// The MapReduce workers, `w-1` (beside `cs-1`) first.
    #[serde(default)]
    pub workers: Vec<ProcessSpec>,
    /// The other members of a replicated master group (`master` is member 1):
    /// `master-2`, `master-3`, ...
    #[serde(default)]
    pub other_masters: Vec<ProcessSpec>,
}

impl ClusterSpec {
    /// Path of `cluster.json` inside `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(SPEC_FILE)
    }

    /// Reads `DIR/cluster.json`.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read (no cluster was started there), [`Error::Spec`]
    /// if it is not a cluster description.
    pub fn load(dir: &Path) -> Result<ClusterSpec> {
        let path = ClusterSpec::path_in(dir);
        let text = fs::read_to_string(&path)
            .map_err(Error::io(format!("cannot read {} (no cluster here?)", path.display())))?;
        serde_json::from_str(&text).map_err(|source| Error::Spec { path, source })
    }

    /// Writes `DIR/cluster.json` atomically (temporary file, then rename).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn save(&self) -> Result<()> {
        let path = ClusterSpec::path_in(&self.dir);
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| Error::Spec { path: path.clone(), source })?;
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, text + "\n")
            .map_err(Error::io(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(Error::io(format!("cannot write {}", path.display())))
    }

    /// Every process: master, chunkservers, coordinator, workers.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessSpec> {
        std::iter::once(&self.master)
            .chain(&self.other_masters)
            .chain(&self.chunkservers)
            .chain(self.coordinator.as_ref())
            .chain(&self.workers)
    }

    /// The process called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn process(&self, name: &str) -> Result<&ProcessSpec> {
        self.processes().find(|p| p.name == name).ok_or_else(|| Error::UnknownProcess(name.into()))
    }

    /// The process called `name`, mutably.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn process_mut(&mut self, name: &str) -> Result<&mut ProcessSpec> {
        std::iter::once(&mut self.master)
            .chain(&mut self.other_masters)
            .chain(&mut self.chunkservers)
            .chain(self.coordinator.as_mut())
            .chain(&mut self.workers)
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownProcess(name.into()))
    }
}

impl ClusterSpec {
    /// The processes a cluster in `dir` with `options` consists of, not yet started:
    /// addresses and pids are empty, and chunkservers' `--master` is filled in once the
    /// master has bound its port.
    pub fn plan(dir: PathBuf, bin_dir: PathBuf, options: ClusterOptions) -> ClusterSpec {
        let mut master = master_spec(&dir, &bin_dir, &options, MASTER);
        let mut other_masters: Vec<ProcessSpec> = (2..=options.masters)
            .map(|i| master_spec(&dir, &bin_dir, &options, &format!("{MASTER}-{i}")))
            .collect();
        if options.masters > 1 {
            group_masters(&mut master, &mut other_masters);
        }
        let chunkservers = (0..options.chunkservers)
            .map(|i| chunkserver_spec(&dir, &bin_dir, &options, i))
            .collect();
        let (coordinator, workers) = if options.mapreduce {
            let workers = (0..options.chunkservers)
                .map(|i| worker_spec(&dir, &bin_dir, &options, i))
                .collect();
            (Some(coordinator_spec(&dir, &bin_dir, &options)), workers)
        } else {
            (None, Vec::new())
        };
        ClusterSpec {
            dir,
            bin_dir,
            options,
            master,
            chunkservers,
            coordinator,
            workers,
            other_masters,
        }
    }

    /// Every master's `host:port`, comma-separated (what `DFS_MASTER` is set to).
    pub fn master_addrs(&self) -> String {
        std::iter::once(&self.master)
            .chain(&self.other_masters)
            .map(|m| m.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master processes: `master`, then the other members of a group.
    pub fn masters(&self) -> impl Iterator<Item = &ProcessSpec> {
        std::iter::once(&self.master).chain(&self.other_masters)
    }
}

/// Gives the members of a master group fixed addresses (they must know each other's
/// before they start): member `i` on `127.0.1.i`, on a port free when planned.
fn group_masters(first: &mut ProcessSpec, others: &mut [ProcessSpec]) {
    let mut addrs = Vec::new();
    for i in 1..=others.len() + 1 {
        let host = format!("127.0.1.{i}");
        let port = std::net::TcpListener::bind((host.as_str(), 0))
            .and_then(|l| l.local_addr())
            .map_or(9000 + i as u16, |a| a.port());
        addrs.push(format!("{host}:{port}"));
    }
    let peers: Vec<String> =
        addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let peers = peers.join(",");
    for (i, m) in std::iter::once(first).chain(others.iter_mut()).enumerate() {
        if let Some(at) = m.args.iter().position(|a| a == "--addr") {
            m.args[at + 1] = addrs[i].clone();
        }
        m.addr = addrs[i].clone();
        m.args.extend([
            "--id".to_owned(),
            (i + 1).to_string(),
            "--peers".to_owned(),
            peers.clone(),
        ]);
    }
}

/// The cluster secret of a token-mode cluster in `dir`.
pub fn secret_file(dir: &Path) -> PathBuf {
    dir.join("secret")
}

/// Flags every server takes for token mode and TLS (none in simple mode without TLS).
fn auth_args(dir: &Path, o: &ClusterOptions) -> Vec<String> {
    let mut args = Vec::new();
    if o.token_auth {
        args.extend([
            "--auth".to_owned(),
            "token".to_owned(),
            "--secret-file".to_owned(),
            secret_file(dir).display().to_string(),
        ]);
    }
    if o.tls {
        args.extend(crate::certs::TlsFiles::in_dir(dir).server_args());
    }
    args
}

fn base_spec(dir: &Path, bin_dir: &Path, name: &str, role: Role) -> ProcessSpec {
    let program = match role {
        Role::Master => "master",
        Role::Chunkserver => "chunkserver",
        Role::Coordinator => "coordinator",
        Role::Worker => "worker",
    };
    ProcessSpec {
        name: name.to_owned(),
        role,
        addr: String::new(),
        pid: 0,
        rack: None,
        dir: dir.join(name),
        log: dir.join("logs").join(format!("{name}.log")),
        addr_file: dir.join("run").join(format!("{name}.addr")),
        program: bin_dir.join(program),
        args: Vec::new(),
    }
}

fn master_spec(dir: &Path, bin_dir: &Path, o: &ClusterOptions, name: &str) -> ProcessSpec {
    let mut spec = base_spec(dir, bin_dir, name, Role::Master);
    let mut args = vec![
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--dir".to_owned(),
        spec.dir.display().to_string(),
        "--chunk-size".to_owned(),
        o.chunk_size.to_string(),
        "--replication".to_owned(),
        o.replication.to_string(),
        "--heartbeat-ms".to_owned(),
        o.heartbeat_ms.to_string(),
    ];
    if let Some(ms) = o.dead_after_ms {
        args.extend(["--dead-after-ms".to_owned(), ms.to_string()]);
    }
    args.extend(auth_args(dir, o));
    args.extend(o.master_args.iter().cloned());
    args.extend(["--addr-file".to_owned(), spec.addr_file.display().to_string()]);
    spec.args = args;
    spec
}

/// The `index`-th chunkserver (0-based): `cs-{index+1}` on `127.0.0.{index+2}`. Its
/// `--master` value is filled in once the master's address is known.
fn chunkserver_spec(dir: &Path, bin_dir: &Path, o: &ClusterOptions, index: usize) -> ProcessSpec {
    let name = format!("cs-{}", index + 1);
    let mut spec = base_spec(dir, bin_dir, &name, Role::Chunkserver);
    let rack = o.rack_of(index);
    let mut args = vec![
        "--addr".to_owned(),
        format!("127.0.0.{}:0", index + 2),
        "--master".to_owned(),
        String::new(),
        "--dir".to_owned(),
        spec.dir.display().to_string(),
        "--rack".to_owned(),
        rack.clone(),
        "--heartbeat-ms".to_owned(),
        o.heartbeat_ms.to_string(),
    ];
    if let Some(bytes) = o.capacity {
        args.extend(["--capacity".to_owned(), bytes.to_string()]);
    }
    args.extend(auth_args(dir, o));
    args.extend(o.chunkserver_args.iter().cloned());
    args.extend(["--addr-file".to_owned(), spec.addr_file.display().to_string()]);
    spec.rack = Some(rack);
    spec.args = args;
    spec
}

/// Name of the coordinator process.
pub const COORDINATOR: &str = "coordinator";

fn mr_heartbeat(o: &ClusterOptions) -> u64 {
    o.mr_heartbeat_ms.unwrap_or(o.heartbeat_ms)
}

/// The coordinator on `127.0.0.1`; `--master` is filled in once the master is up.
fn coordinator_spec(dir: &Path, bin_dir: &Path, o: &ClusterOptions) -> ProcessSpec {
    let mut spec = base_spec(dir, bin_dir, COORDINATOR, Role::Coordinator);
    spec.args = vec![
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--master".to_owned(),
        String::new(),
        "--dir".to_owned(),
        spec.dir.display().to_string(),
        "--heartbeat-ms".to_owned(),
        mr_heartbeat(o).to_string(),
    ];
    spec.args.extend(auth_args(dir, o));
    spec.args.extend(o.coordinator_args.iter().cloned());
    spec.args.extend(["--addr-file".to_owned(), spec.addr_file.display().to_string()]);
    spec
}

/// The `index`-th worker (0-based): `w-{index+1}` on the host of `cs-{index+1}`
/// (`127.0.0.{index+2}`) and its rack, so that locality is real. `--coordinator` and
/// `--master` are filled in at start.
fn worker_spec(dir: &Path, bin_dir: &Path, o: &ClusterOptions, index: usize) -> ProcessSpec {
    let name = format!("w-{}", index + 1);
    let mut spec = base_spec(dir, bin_dir, &name, Role::Worker);
    let rack = o.rack_of(index);
    spec.args = vec![
        "--addr".to_owned(),
        format!("127.0.0.{}:0", index + 2),
        "--coordinator".to_owned(),
        String::new(),
        "--master".to_owned(),
        String::new(),
        "--rack".to_owned(),
        rack.clone(),
        "--slots".to_owned(),
        o.worker_slots.to_string(),
        "--dir".to_owned(),
        spec.dir.display().to_string(),
        "--heartbeat-ms".to_owned(),
        mr_heartbeat(o).to_string(),
    ];
    spec.args.extend(auth_args(dir, o));
    spec.args.extend(o.worker_args.iter().cloned());
    spec.args.extend(["--addr-file".to_owned(), spec.addr_file.display().to_string()]);
    spec.rack = Some(rack);
    spec
}

/// Sets the value following `flag` in `args`.
pub fn set_flag(args: &mut [String], flag: &str, value: &str) {
    if let Some(i) = args.iter().position(|a| a == flag)
        && let Some(v) = args.get_mut(i + 1)
    {
        *v = value.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str], addr: &str) -> ProcessSpec {
        ProcessSpec {
            name: "cs-2".into(),
            role: Role::Chunkserver,
            addr: addr.into(),
            pid: 1,
            rack: Some("/rack-b".into()),
            dir: "/d/cs-2".into(),
            log: "/d/logs/cs-2.log".into(),
            addr_file: "/d/run/cs-2.addr".into(),
            program: "/bin/chunkserver".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn racks_round_robin() {
        let o = ClusterOptions { racks: 2, ..ClusterOptions::default() };
        let racks: Vec<_> = (0..4).map(|i| o.rack_of(i)).collect();
        assert_eq!(racks, ["/rack-a", "/rack-b", "/rack-a", "/rack-b"]);
    }

    #[test]
    fn restart_keeps_the_port() {
        let p = spec(&["--addr", "127.0.0.3:0", "--dir", "/d/cs-2"], "127.0.0.3:41234");
        assert_eq!(p.restart_args(), ["--addr", "127.0.0.3:41234", "--dir", "/d/cs-2"]);
        assert_eq!(p.host(), "127.0.0.3");
    }

    #[test]
    fn validate_rejects_empty_clusters() {
        assert!(ClusterOptions { chunkservers: 0, ..Default::default() }.validate().is_err());
        assert!(ClusterOptions { racks: 27, ..Default::default() }.validate().is_err());
        assert!(ClusterOptions::for_tests().validate().is_ok());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let c = ClusterSpec {
            dir: dir.path().to_owned(),
            bin_dir: "/bin".into(),
            options: ClusterOptions::for_tests(),
            master: ProcessSpec { name: MASTER.into(), role: Role::Master, ..spec(&[], "x:1") },
            chunkservers: vec![spec(&["--addr", "127.0.0.3:0"], "127.0.0.3:5")],
            coordinator: None,
            workers: Vec::new(),
            other_masters: Vec::new(),
        };
        c.save().unwrap();
        let back = ClusterSpec::load(dir.path()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.process("cs-2").unwrap().addr, "127.0.0.3:5");
        assert!(back.process("cs-9").is_err());
    }

    #[test]
    fn a_master_group_gets_fixed_addresses_and_its_peer_list() {
        let o = ClusterOptions { masters: 3, ..ClusterOptions::for_tests() };
        let c = ClusterSpec::plan("/c".into(), "/bin".into(), o);
        let names: Vec<&str> = c.masters().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["master", "master-2", "master-3"]);
        let addrs = c.master_addrs();
        let peers: Vec<String> = addrs
            .split(',')
            .enumerate()
            .map(|(i, a)| {
                assert!(a.starts_with(&format!("127.0.1.{}:", i + 1)), "{a}");
                format!("{}={a}", i + 1)
            })
            .collect();
        for (i, m) in c.masters().enumerate() {
            let line = m.args.join(" ");
            assert!(
                line.contains(&format!("--id {} --peers {}", i + 1, peers.join(","))),
                "{line}"
            );
            assert!(line.contains(&format!("--addr {}", m.addr)), "{line}");
        }
        assert_eq!(c.process("master-3").unwrap().role, Role::Master);
    }

    #[test]
    fn command_lines_follow_the_contract() {
        let o = ClusterOptions { capacity: Some(3 << 20), ..ClusterOptions::for_tests() };
        let m = master_spec(Path::new("/c"), Path::new("/bin"), &o, MASTER);
        assert_eq!(m.program, Path::new("/bin/master"));
        assert_eq!(
            m.args.join(" "),
            "--addr 127.0.0.1:0 --dir /c/master --chunk-size 1048576 --replication 3 \
             --heartbeat-ms 200 --dead-after-ms 2000 --addr-file /c/run/master.addr"
        );
        let c = chunkserver_spec(Path::new("/c"), Path::new("/bin"), &o, 1);
        assert_eq!(c.name, "cs-2");
        assert_eq!(c.rack.as_deref(), Some("/rack-b"));
        assert_eq!(
            c.args.join(" "),
            "--addr 127.0.0.3:0 --master  --dir /c/cs-2 --rack /rack-b --heartbeat-ms 200 \
             --capacity 3145728 --addr-file /c/run/cs-2.addr"
        );
        assert_eq!(c.args_with_addr("127.0.0.3:9")[1], "127.0.0.3:9");
    }

    #[test]
    fn mapreduce_adds_a_coordinator_and_a_worker_per_host() {
        let o = ClusterOptions { chunkservers: 2, ..ClusterOptions::for_mapreduce_tests() };
        let plan = ClusterSpec::plan("/c".into(), "/bin".into(), o);
        let w = &plan.workers[1];
        assert_eq!(w.name, "w-2");
        assert_eq!(w.host(), plan.chunkservers[1].host());
        assert_eq!(w.rack, plan.chunkservers[1].rack);
        let names: Vec<&str> = plan.processes().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["master", "cs-1", "cs-2", "coordinator", "w-1", "w-2"]);
        let off = ClusterSpec::plan("/c".into(), "/bin".into(), ClusterOptions::for_tests());
        assert!(off.coordinator.is_none() && off.workers.is_empty());
    }
}
