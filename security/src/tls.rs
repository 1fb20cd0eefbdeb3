//! Transport encryption (optional): TLS on every port, with tonic's rustls.
//!
//! A server given `--tls-cert` and `--tls-key` (PEM) accepts only TLS connections. Every
//! outgoing call of a process (a `dfs` client's, a chunkserver's to the master and its
//! pipeline peers, the master's lease recovery, MapReduce's) goes through [`endpoint`],
//! which speaks TLS when the process knows the cluster's CA: `--tls-ca` on a server
//! ([`TlsArgs::load`] installs it), or the file `DFS_TLS_CA` names in a client. One
//! process talks to one cluster, so this is a process-wide setting, set once at start.
//!
//! TLS here encrypts and proves the server to the client; who the client is stays the
//! business of tokens (token mode), as in HDFS, where RPC privacy and data transfer
//! encryption are separate from Kerberos and block tokens.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Environment variable naming the cluster CA's certificate (PEM) for clients.
pub const CA_ENV: &str = "DFS_TLS_CA";

/// The TLS flags every server takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsArgs {
    /// This server's certificate chain (PEM): serve TLS only. Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// This server's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM): this server's own calls to other servers
    /// speak TLS and trust certificates it signed (default: `DFS_TLS_CA`).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

impl TlsArgs {
    /// Installs the CA for this process's outgoing calls and returns the server's TLS
    /// configuration (`None`: plain TCP).
    ///
    /// # Errors
    /// A one-line message naming the file that can't be read, or a CA set twice.
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, String> {
        init_client(self.tls_ca.as_deref())?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read(cert, "TLS certificate")?, read(key, "TLS key")?);
                Ok(Some(ServerTlsConfig::new().identity(identity)))
            }
            (None, None) => Ok(None),
            _ => Err("--tls-cert and --tls-key go together".to_owned()),
        }
    }
}

static CLIENT: OnceLock<Option<ClientTlsConfig>> = OnceLock::new();
static CA_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The CA file this process's client TLS trusts, if it speaks TLS: what a worker hands
/// its task attempts (`DFS_TLS_CA`) so their calls speak TLS too.
pub fn ca_path() -> Option<&'static Path> {
    client()?;
    CA_PATH.get().and_then(Option::as_deref)
}

/// Sets this process's client TLS from the CA certificate at `ca` (else `DFS_TLS_CA`,
/// else plain TCP). The first call wins; later ones must agree.
///
/// # Errors
/// A message naming an unreadable CA file.
pub fn init_client(ca: Option<&Path>) -> Result<(), String> {
    let env = std::env::var_os(CA_ENV).filter(|p| !p.is_empty()).map(PathBuf::from);
    let path = ca.map(Path::to_path_buf).or(env);
    let config = match &path {
        Some(p) => Some(client_config(p)?),
        None => None,
    };
    let set = CLIENT.get_or_init(|| {
        let _ = CA_PATH.set(path.clone());
        config.clone()
    });
    if set.is_some() != config.is_some() {
        return Err("TLS for outgoing calls was already set up differently".to_owned());
    }
    Ok(())
}

/// TLS trusting the CA certificate (PEM) at `ca`, for a client that talks to a cluster
/// other than its process's.
///
/// # Errors
/// A message naming an unreadable file.
pub fn client_config(ca: &Path) -> Result<ClientTlsConfig, String> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "TLS CA")?)))
}

/// This process's client TLS (see [`init_client`]), if it speaks TLS.
pub fn default_client() -> Option<ClientTlsConfig> {
    client().cloned()
}

fn client() -> Option<&'static ClientTlsConfig> {
    if CLIENT.get().is_none() {
        // A library user that never called init_client: the environment decides. An
        // unreadable CA file then makes every connection fail, naming it.
        let _ = init_client(None);
    }
    CLIENT.get().and_then(Option::as_ref)
}

/// An endpoint for the server at `addr` (`host:port`): `https` with the cluster CA if
/// this process speaks TLS, else `http`; a 5 s connect timeout.
///
/// # Errors
/// A message if `addr` is not a valid address or the TLS setup fails.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    endpoint_with(addr, client())
}

/// As [`endpoint`], with `tls` (`None`: plain TCP) instead of the process's setting.
///
/// # Errors
/// As [`endpoint`].
pub fn endpoint_with(addr: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|_| format!("{addr:?} is not a host:port address"))?
        .connect_timeout(Duration::from_secs(5));
    match tls {
        Some(cfg) => ep.tls_config(cfg.clone()).map_err(|e| format!("TLS to {addr}: {e}")),
        None => Ok(ep),
    }
}
