//! TLS for both listeners from PEM files (rustls with the ring provider), and client
//! certificate verification (mutual TLS) when a client CA bundle is configured.
//!
//! The files are read once at start-up: a restart picks up renewed certificates. Both
//! listeners accept connections with tokio-rustls: gRPC (ALPN `h2`) in
//! [`crate::listener::serve_grpc`], the REST shim (ALPN `http/1.1`) in
//! [`crate::listener::serve_http`]; each serves plaintext and TLS alike.

use std::{fmt, fs, path::Path, sync::Arc, time::Duration};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::config::TlsConfig;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listeners require, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext.
    Off,
    /// TLS, no client certificates.
    On,
    /// TLS, and every client must present a certificate signed by the client CA.
    Mutual,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Mutual => "mutual",
        })
    }
}

/// TLS material loaded and checked: one acceptor configuration per listener.
#[derive(Clone)]
pub struct ServerTls {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    mode: TlsMode,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the configured files: `None` when TLS is off. Errors name the
    /// setting (`tls.cert_file: ...`), so the operator knows which file to fix. A key file
    /// group or others may read is refused unless `allow_readable_key_files`.
    pub fn load(
        config: &TlsConfig,
        allow_readable_key_files: bool,
    ) -> Result<Option<Self>, String> {
        config.validate()?;
        let (Some(cert_path), Some(key_path)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Clients built in this process (webhook delivery) use the process-wide provider;
        // make it ring explicitly rather than relying on it being the only one compiled in.
        let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());

        let cert_pem = read("tls.cert_file", cert_path)?;
        let chain = certificates("tls.cert_file", cert_path, &cert_pem)?;
        let key_pem = read("tls.key_file", key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "tls.key_file {}: no PEM private key found ({e})",
                key_path.display()
            )
        })?;
        crate::private_files::check_key_file("tls.key_file", key_path, allow_readable_key_files)?;

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let (builder, mode) = match &config.client_ca_file {
            None => (builder.with_no_client_auth(), TlsMode::On),
            Some(ca_path) => {
                let ca_pem = read("tls.client_ca_file", ca_path)?;
                let mut roots = RootCertStore::empty();
                for (i, cert) in certificates("tls.client_ca_file", ca_path, &ca_pem)?
                    .into_iter()
                    .enumerate()
                {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "tls.client_ca_file {}: certificate {} is not a usable CA certificate: {e}",
                            ca_path.display(),
                            i + 1
                        )
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("tls.client_ca_file {}: {e}", ca_path.display()))?;
                (builder.with_client_cert_verifier(verifier), TlsMode::Mutual)
            }
        };
        let mut http = builder
            .with_single_cert(chain, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
                    "tls.key_file {}: the private key does not match the certificate in tls.cert_file {}",
                    key_path.display(),
                    cert_path.display()
                ),
                other => format!(
                    "tls.key_file {}: cannot use this key with tls.cert_file {}: {other}",
                    key_path.display(),
                    cert_path.display()
                ),
            })?;
        let mut grpc = http.clone();
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Self {
            grpc: Arc::new(grpc),
            http: Arc::new(http),
            mode,
        }))
    }

    /// The gRPC listener's rustls configuration.
    pub fn grpc(&self) -> Arc<ServerConfig> {
        self.grpc.clone()
    }

    /// The REST listener's rustls configuration.
    pub fn http(&self) -> Arc<ServerConfig> {
        self.http.clone()
    }

    /// What clients must present.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }
}

/// The certificate chain a client presented during the TLS handshake (mutual TLS), leaf
/// first: a gRPC call's request extension when its connection has one.
#[derive(Debug, Clone)]
pub struct ClientCertificates(Arc<[CertificateDer<'static>]>);

impl ClientCertificates {
    /// The chain the client of `connection` presented, if any.
    pub fn of(connection: &rustls::ServerConnection) -> Option<Self> {
        let chain = connection.peer_certificates()?;
        (!chain.is_empty()).then(|| {
            Self(
                chain
                    .iter()
                    .map(|certificate| certificate.clone().into_owned())
                    .collect(),
            )
        })
    }

    /// The client's own certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.0[0]
    }
}

/// The subject of a DER certificate as `CN=envoy, O=platform` (attributes in the
/// certificate's order); `None` when it does not parse.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.subject().to_string())
}

/// The mode of an optional configuration (`off` without one).
pub fn mode_of(tls: Option<&ServerTls>) -> TlsMode {
    tls.map_or(TlsMode::Off, ServerTls::mode)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))
}

fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}
