//! Throwaway TLS material for a mini cluster (`minicluster up --tls`): a CA made for the
//! cluster and one server certificate it signs, valid for `localhost` and every loopback
//! address the cluster's processes listen on. Files, in `DIR/tls/`: `ca.pem` (what
//! clients trust: `DFS_TLS_CA`), `server.pem` and `server.key` (mode 0600).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::error::{Error, Result};

/// Where a cluster's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The servers' certificate.
    pub cert: PathBuf,
    /// The servers' private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of the cluster in `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        let tls = dir.join("tls");
        TlsFiles {
            ca: tls.join("ca.pem"),
            cert: tls.join("server.pem"),
            key: tls.join("server.key"),
        }
    }

    /// Whether they exist.
    pub fn exist(&self) -> bool {
        self.ca.exists() && self.cert.exists() && self.key.exists()
    }

    /// The flags a server of the cluster takes.
    pub fn server_args(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert".into(),
            s(&self.cert),
            "--tls-key".into(),
            s(&self.key),
            "--tls-ca".into(),
            s(&self.ca),
        ]
    }
}

fn bad(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::InvalidOptions(format!("generating the cluster's TLS {what}: {e}"))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(format!("cannot write {}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(Error::io(format!("cannot write {}", path.display())))
}

/// Generates the CA and the server certificate for `names` (host names and IP
/// addresses) into `files`.
///
/// # Errors
/// [`Error::InvalidOptions`] if generation fails, [`Error::Io`] if a file can't be written.
pub fn generate(files: &TlsFiles, names: &[String]) -> Result<()> {
    if let Some(dir) = files.ca.parent() {
        std::fs::create_dir_all(dir)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
    }
    let ca_key = KeyPair::generate().map_err(bad("CA key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad("CA"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "mini cluster CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(bad("CA"))?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(bad("server key"))?;
    let mut server = CertificateParams::new(names.to_vec()).map_err(bad("server certificate"))?;
    server.distinguished_name.push(DnType::CommonName, "mini cluster server");
    let cert = server.signed_by(&key, &issuer).map_err(bad("server certificate"))?;
    write(&files.ca, &ca_cert.pem(), 0o644)?;
    write(&files.cert, &cert.pem(), 0o644)?;
    write(&files.key, &key.serialize_pem(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_cluster_ca_and_certificate_load_as_tls_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles::in_dir(dir.path());
        generate(&files, &["localhost".into(), "127.0.0.1".into()]).expect("generate");
        assert!(files.exist());
        let args = security::tls::TlsArgs {
            tls_cert: Some(files.cert.clone()),
            tls_key: Some(files.key.clone()),
            tls_ca: None,
        };
        assert!(args.load().expect("load").is_some());
        assert!(security::tls::client_config(&files.ca).is_ok());
    }
}
