//! The TLS configuration: certificate and key from PEM files, rebuilt on `SIGHUP`.
//!
//! The sessions themselves live in the net thread's connections (`net::transport`); this module
//! only turns files into a `rustls::ServerConfig`. New connections take the config current when
//! they are accepted, so a reload never touches a session in progress.

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::config::TlsFiles;

/// The TLS settings the net thread holds: the files (to read again on `SIGHUP`) and the config
/// built from them.
pub struct Tls {
    files: TlsFiles,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Reads the certificate and key. The error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let config = server_config(&files)?;
        Ok(Tls { files, config })
    }

    /// Reads the files again and, if they make a valid config, uses it for new connections.
    /// On error the old config stays in force: a half-written file during rotation must not
    /// take the server off the air.
    pub fn reload(&mut self) -> Result<(), String> {
        self.config = server_config(&self.files)?;
        Ok(())
    }

    /// A server session for a freshly accepted connection.
    pub fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(Arc::clone(&self.config))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Builds the server config: TLS 1.2 and 1.3 with the `ring` provider's safe defaults, ALPN
/// `http/1.1` (all this port speaks), the certificate chain and its key.
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let cert_name = files.cert.display();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {cert_name}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("TLS certificate {cert_name}: no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS key {}: {e}", files.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        // Also checks that the key belongs to the certificate.
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS certificate {cert_name} with key {}: {e}",
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
