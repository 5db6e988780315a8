//! TLS to Redis with fred's own rustls support: the roots (`DANMAKU_REDIS_CA_FILE` or the
//! system's) and the client certificate for mutual TLS, read once at start-up. Errors name
//! the setting and the file, never a key's content.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::RedisSettings;

/// The TLS configuration both fred clients share, or `None` for plain `redis://`.
///
/// Cluster nodes are reached by the address they announce, and that address (an IP or a
/// host name) is the name the certificate must carry (fred's `TlsHostMapping::None`).
pub(super) fn tls_config(settings: &RedisSettings) -> anyhow::Result<Option<TlsConfig>> {
    if !settings.url.tls {
        return Ok(None);
    }
    // The provider fred's `enable-rustls-ring` feature builds on, named so no process-wide
    // default has to be installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS to Redis: no protocol version in common")?
        .with_root_certificates(roots(settings.ca_file.as_deref())?);
    let config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert, "DANMAKU_REDIS_CERT_FILE")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow!(
                    "DANMAKU_REDIS_KEY_FILE: no private key read from {}: {e}",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("DANMAKU_REDIS_CERT_FILE / DANMAKU_REDIS_KEY_FILE: not a usable pair")?
        }
    };
    Ok(Some(TlsConfig {
        connector: TlsConnector::from(config),
        hostnames: TlsHostMapping::None,
    }))
}

fn roots(ca_file: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates(path, "DANMAKU_REDIS_CA_FILE")? {
                roots.add(cert).map_err(|e| {
                    anyhow!(
                        "DANMAKU_REDIS_CA_FILE: {} holds a bad CA: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            // Unreadable system certificates are skipped; none at all is an error below.
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(anyhow!(
                    "DANMAKU_REDIS_CA_FILE: unset, and no system root certificates were found; \
                     set it to the CA bundle of Redis's TLS certificate"
                ));
            }
        }
    }
    Ok(roots)
}

fn certificates(path: &Path, variable: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{variable}: cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{variable}: no PEM certificate in {}",
            path.display()
        ));
    }
    Ok(certs)
}
