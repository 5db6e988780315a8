//! The Redis settings: `DANMAKU_REDIS_URL` (`redis://`, `rediss://`, `redis-cluster://`,
//! `rediss-cluster://`, credentials optional in the userinfo) and the ACL and TLS settings
//! beside it, merged into one [`RedisSettings`] for the broker. Passwords are [`Secret`]s:
//! no `Debug`, log line or error message shows them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use percent_encoding::percent_decode_str;

use super::{Config, ConfigError, bad};

/// A value that must never be shown: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Where Redis is, whether to speak TLS to it, and the credentials the URL carried. Only
/// checked for shape here; the broker connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub nodes: RedisNodes,
    /// `rediss://` or `rediss-cluster://`.
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisNodes {
    /// `host:port`
    Standalone(String),
    /// Seed nodes, each `host:port`.
    Cluster(Vec<String>),
}

impl FromStr for RedisUrl {
    type Err = String;

    /// Error messages never repeat the userinfo (it may hold a password).
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(expected)?;
        let (tls, cluster) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis-cluster" => (false, true),
            "rediss-cluster" => (true, true),
            _ => return Err(expected()),
        };
        // The last `@` ends the userinfo: an unencoded `@` in a password still parses.
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = info.split_once(':').unwrap_or((info, ""));
                let decode = |v: &str, what: &str| {
                    percent_decode_str(v)
                        .decode_utf8()
                        .map(|d| d.into_owned())
                        .map_err(|_| format!("the URL's {what} is not UTF-8 once decoded"))
                };
                let user = decode(user, "user name")?;
                let pass = decode(pass, "password")?;
                (
                    (!user.is_empty()).then_some(user),
                    (!pass.is_empty()).then_some(Secret(pass)),
                )
            }
        };
        let hosts = hosts.trim_end_matches('/');
        let nodes = if cluster {
            let nodes = hosts
                .split(',')
                .map(str::trim)
                .map(host_port)
                .collect::<Result<Vec<_>, _>>()?;
            RedisNodes::Cluster(nodes)
        } else {
            RedisNodes::Standalone(host_port(hosts)?)
        };
        Ok(Self {
            nodes,
            tls,
            username,
            password,
        })
    }
}

fn expected() -> String {
    "expected redis://host:port, rediss://host:port, redis-cluster://host:port,host:port,... \
     or rediss-cluster://host:port,..."
        .into()
}

fn host_port(hp: &str) -> Result<String, String> {
    let bad = || format!("'{hp}' is not host:port");
    let (host, port) = hp.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(hp.to_owned())
}

/// clap's own error for a bad value quotes the value, which may hold a password: this
/// parser reports the variable and the problem only.
#[derive(Clone)]
pub(super) struct RedisUrlParser;

impl TypedValueParser for RedisUrlParser {
    type Value = RedisUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RedisUrl, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(ErrorKind::InvalidUtf8, "DANMAKU_REDIS_URL: not UTF-8\n")
        })?;
        text.parse().map_err(|e| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value for DANMAKU_REDIS_URL: {e}\n"),
            )
        })
    }
}

/// Everything the Redis broker needs to connect: the URL with its credentials merged from
/// every source, and the TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// CA bundle (PEM) for TLS; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// The Redis settings, if a Redis URL is set: credentials from the URL or the
    /// `DANMAKU_REDIS_*` settings (one source each, or it is an error), the password file read
    /// (its trailing newline trimmed), the TLS files checked for consistency.
    pub fn redis(&self) -> Result<Option<RedisSettings>, ConfigError> {
        let Some(url) = &self.redis_url else {
            if self.redis_username.is_some()
                || self.redis_password.is_some()
                || self.redis_password_file.is_some()
                || self.redis_ca_file.is_some()
                || self.redis_cert_file.is_some()
                || self.redis_key_file.is_some()
            {
                return Err(bad(
                    "DANMAKU_REDIS_URL",
                    "must be set when other DANMAKU_REDIS_* settings are",
                ));
            }
            return Ok(None);
        };
        let mut url = url.clone();
        self.put_credentials(&mut url)?;
        let client_cert = self.client_cert()?;
        if !url.tls && (self.redis_ca_file.is_some() || client_cert.is_some()) {
            return Err(bad(
                "DANMAKU_REDIS_URL",
                "TLS files are set but the URL is not rediss:// or rediss-cluster://",
            ));
        }
        Ok(Some(RedisSettings {
            url,
            ca_file: self.redis_ca_file.clone(),
            client_cert,
        }))
    }

    /// The user and password into `url`: from the URL or the `DANMAKU_REDIS_*` settings,
    /// one source each; a user needs a password.
    fn put_credentials(&self, url: &mut RedisUrl) -> Result<(), ConfigError> {
        if let Some(user) = &self.redis_username {
            if url.username.is_some() {
                return Err(bad(
                    "DANMAKU_REDIS_USERNAME",
                    "the user is already in DANMAKU_REDIS_URL: set it in one place",
                ));
            }
            if user.is_empty() {
                return Err(bad("DANMAKU_REDIS_USERNAME", "must not be empty when set"));
            }
            url.username = Some(user.clone());
        }
        let sources = [
            url.password.is_some(),
            self.redis_password.is_some(),
            self.redis_password_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(bad(
                "DANMAKU_REDIS_PASSWORD",
                "set the password in one place only: DANMAKU_REDIS_URL, \
                 DANMAKU_REDIS_PASSWORD or DANMAKU_REDIS_PASSWORD_FILE",
            ));
        }
        if let Some(password) = &self.redis_password {
            if password.expose().is_empty() {
                return Err(bad("DANMAKU_REDIS_PASSWORD", "must not be empty when set"));
            }
            url.password = Some(password.clone());
        }
        if let Some(path) = &self.redis_password_file {
            url.password = Some(read_password(path)?);
        }
        if url.username.is_some() && url.password.is_none() {
            return Err(bad(
                "DANMAKU_REDIS_PASSWORD",
                "an ACL user (DANMAKU_REDIS_USERNAME or the URL's) needs a password",
            ));
        }
        Ok(())
    }

    /// The client certificate and key for mutual TLS: both, or neither.
    fn client_cert(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.redis_cert_file, &self.redis_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(bad(
                "DANMAKU_REDIS_KEY_FILE",
                "must be set with DANMAKU_REDIS_CERT_FILE",
            )),
            (None, Some(_)) => Err(bad(
                "DANMAKU_REDIS_CERT_FILE",
                "must be set with DANMAKU_REDIS_KEY_FILE",
            )),
        }
    }
}

fn read_password(path: &PathBuf) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "DANMAKU_REDIS_PASSWORD_FILE",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(bad(
            "DANMAKU_REDIS_PASSWORD_FILE",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RedisUrl {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_scheme() {
        let u = url("redis://localhost:6379");
        assert_eq!(u.nodes, RedisNodes::Standalone("localhost:6379".into()));
        assert!(!u.tls && u.username.is_none() && u.password.is_none());
        let u = url("rediss://redis.example:6380/");
        assert_eq!(u.nodes, RedisNodes::Standalone("redis.example:6380".into()));
        assert!(u.tls);
        let u = url("redis-cluster://127.0.0.1:7000, 127.0.0.1:7001");
        assert_eq!(
            u.nodes,
            RedisNodes::Cluster(vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()])
        );
        assert!(!u.tls);
        let u = url("rediss-cluster://a:1,b:2");
        assert_eq!(
            u.nodes,
            RedisNodes::Cluster(vec!["a:1".into(), "b:2".into()])
        );
        assert!(u.tls);
    }

    #[test]
    fn credentials_in_the_userinfo_are_decoded() {
        let u = url("rediss://app:p%40ss%3Aw0rd@h:1");
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p@ss:w0rd"));
        // Password only (the `default` user), and an unencoded `@` in it.
        let u = url("redis://:se@cret@h:1");
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("se@cret"));
        let u = url("rediss-cluster://app:pw@a:1,b:2");
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(
            u.nodes,
            RedisNodes::Cluster(vec!["a:1".into(), "b:2".into()])
        );
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_the_password() {
        for bad in [
            "http://x:1",
            "redis://nohost",
            "redis://h:0",
            "rediss://h:99999",
            "redis-cluster://a:1,b",
            "rediss://user:hunter2@nohost",
            "redis://h:1/0",
        ] {
            let err = RedisUrl::from_str(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
        let shown = format!("{:?}", url("rediss://u:hunter2@h:1"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
