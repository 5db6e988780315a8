//! Test certificates made at run time with rcgen: a CA, a server certificate for
//! `127.0.0.1` and `localhost` (the address every Redis node of the harness announces), and
//! a client certificate for mutual TLS, written as PEM files into a fresh directory that
//! containers mount and the app reads. The directory goes when the value drops. (The server
//! certificate serves for client auth too: nodes present it to each other on the cluster
//! bus and for replication.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// A CA and, signed by it, a server and a client certificate with their keys.
    pub fn generate() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "danmaku-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = TestPki { dir };

        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "danmaku test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        pki.write("ca.pem", &ca.pem());

        for (name, usage) in [
            (
                "server",
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            ("client", vec![ExtendedKeyUsagePurpose::ClientAuth]),
        ] {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("danmaku test {name}"));
            params.extended_key_usages = usage;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            pki.write(&format!("{name}.pem"), &cert.pem());
            pki.write(&format!("{name}.key"), &key.serialize_pem());
        }
        // A second CA that signed nothing here: trusting it alone must fail.
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = other.self_signed(&KeyPair::generate().unwrap()).unwrap();
        pki.write("other-ca.pem", &other.pem());
        pki
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.dir.join(name), pem).unwrap();
    }

    /// The directory holding `ca.pem`, `server.pem`, `server.key`, `client.pem`,
    /// `client.key` and `other-ca.pem`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
