//! Configuration: every `DANMAKU_*` variable of the contract (`docs/protocol.md`, section 1),
//! each also a flag with the same meaning (`DANMAKU_RATE_PER_SEC` is `--rate-per-sec`). A
//! flag wins over the variable. Plain data: nothing here knows the rest of the server.

mod redis;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser};

mod compression;
mod debug;
mod identity;
mod replay;
mod terms;
mod values;
pub use compression::{CompressionSettings, Switch};
pub use identity::TokenSettings;
pub use redis::{RedisNodes, RedisSettings, RedisUrl, Secret};
pub use values::{List, LogFormat, Origins, Slot};
use values::{hostname, parse_list, parse_origins};

#[derive(Clone, Parser)]
#[command(
    name = "danmaku",
    version,
    about = "Realtime WebSocket comment fan-out for live streams"
)]
pub struct Config {
    /// Address to serve HTTP and WebSocket on (port 0 picks a free port).
    #[arg(
        long,
        env = "DANMAKU_LISTEN",
        value_name = "DANMAKU_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Unset: the embedded broker. `redis://host:port` or `redis-cluster://h1:p1,h2:p2`;
    /// `rediss://` and `rediss-cluster://` for TLS. Credentials may be in the userinfo.
    #[arg(long, env = "DANMAKU_REDIS_URL", value_name = "DANMAKU_REDIS_URL",
          hide_env_values = true, value_parser = redis::RedisUrlParser)]
    pub redis_url: Option<RedisUrl>,

    /// ACL user for every Redis connection (needs a password).
    #[arg(
        long,
        env = "DANMAKU_REDIS_USERNAME",
        value_name = "DANMAKU_REDIS_USERNAME"
    )]
    pub redis_username: Option<String>,

    /// The Redis password. Prefer the file form.
    #[arg(long, env = "DANMAKU_REDIS_PASSWORD", value_name = "DANMAKU_REDIS_PASSWORD",
          hide_env_values = true, value_parser = |s: &str| Ok::<_, String>(Secret::new(s)))]
    pub redis_password: Option<Secret>,

    /// A file holding the Redis password (a mounted Secret); a trailing newline is trimmed.
    #[arg(
        long,
        env = "DANMAKU_REDIS_PASSWORD_FILE",
        value_name = "DANMAKU_REDIS_PASSWORD_FILE"
    )]
    pub redis_password_file: Option<PathBuf>,

    /// CA bundle (PEM) that Redis's TLS certificate must chain to. Unset: the system roots.
    #[arg(
        long,
        env = "DANMAKU_REDIS_CA_FILE",
        value_name = "DANMAKU_REDIS_CA_FILE"
    )]
    pub redis_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS with Redis, with DANMAKU_REDIS_KEY_FILE.
    #[arg(
        long,
        env = "DANMAKU_REDIS_CERT_FILE",
        value_name = "DANMAKU_REDIS_CERT_FILE"
    )]
    pub redis_cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "DANMAKU_REDIS_KEY_FILE",
        value_name = "DANMAKU_REDIS_KEY_FILE"
    )]
    pub redis_key_file: Option<PathBuf>,

    /// HS256 secret for viewer tokens (at least 32 bytes). Without it and without the
    /// settings of `tokens`, every connection is anonymous.
    #[arg(
        long,
        env = "DANMAKU_JWT_SECRET",
        value_name = "DANMAKU_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Identity-provider keys and the required `aud`/`iss`.
    #[command(flatten)]
    pub tokens: TokenSettings,

    /// Whether anonymous connections may watch (they never post).
    #[arg(long, env = "DANMAKU_ALLOW_ANONYMOUS", value_name = "DANMAKU_ALLOW_ANONYMOUS",
          default_value = "true", action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub allow_anonymous: bool,

    /// Comma-separated bearer tokens accepted on the service API.
    #[arg(long, env = "DANMAKU_SERVICE_TOKENS", value_name = "DANMAKU_SERVICE_TOKENS",
          hide_env_values = true, value_parser = parse_list)]
    pub service_tokens: Option<List>,

    /// Comma-separated Origin allow-list for WebSocket handshakes. Unset: any origin.
    #[arg(long, env = "DANMAKU_ALLOWED_ORIGINS", value_name = "DANMAKU_ALLOWED_ORIGINS", value_parser = parse_origins)]
    pub allowed_origins: Option<Origins>,

    /// A file of blocked terms for every stream: lines `action<TAB>term` (`refuse`, `hold`
    /// or `shadow`); blank lines and lines starting with `#` are skipped.
    #[arg(
        long,
        env = "DANMAKU_BLOCKED_TERMS_FILE",
        value_name = "DANMAKU_BLOCKED_TERMS_FILE"
    )]
    pub blocked_terms_file: Option<std::path::PathBuf>,

    /// Comments kept per stream for `init`, resume and `GET .../comments`.
    #[arg(
        long,
        env = "DANMAKU_HISTORY_LEN",
        value_name = "DANMAKU_HISTORY_LEN",
        default_value_t = 200
    )]
    pub history_len: usize,

    /// How many recent comments `init` carries (at most `DANMAKU_HISTORY_LEN` are kept).
    #[arg(
        long,
        env = "DANMAKU_INIT_COMMENTS",
        value_name = "DANMAKU_INIT_COMMENTS",
        default_value_t = 50
    )]
    pub init_comments: usize,

    /// Seconds a comment stays replayable by media time (`GET …/replay`); 0 turns replay off.
    #[arg(
        long,
        env = "DANMAKU_REPLAY_RETENTION_S",
        value_name = "DANMAKU_REPLAY_RETENTION_S",
        default_value_t = 86_400
    )]
    pub replay_retention_s: u64,

    /// Comments kept for replay per stream at most (the oldest media time goes first).
    #[arg(
        long,
        env = "DANMAKU_REPLAY_MAX_COMMENTS",
        value_name = "DANMAKU_REPLAY_MAX_COMMENTS",
        default_value_t = 1_000_000
    )]
    pub replay_max_comments: usize,

    /// Longest comment text, in Unicode scalar values.
    #[arg(
        long,
        env = "DANMAKU_MAX_COMMENT_CHARS",
        value_name = "DANMAKU_MAX_COMMENT_CHARS",
        default_value_t = 200
    )]
    pub max_comment_chars: usize,

    /// Comments a user may post per second on a stream, sustained.
    #[arg(
        long,
        env = "DANMAKU_RATE_PER_SEC",
        value_name = "DANMAKU_RATE_PER_SEC",
        default_value_t = 1.0
    )]
    pub rate_per_sec: f64,

    /// The rate limiter's bucket size.
    #[arg(
        long,
        env = "DANMAKU_RATE_BURST",
        value_name = "DANMAKU_RATE_BURST",
        default_value_t = 5.0
    )]
    pub rate_burst: f64,

    /// WebSocket connections this instance accepts; 0: as many as the open-file limit
    /// allows, less headroom (64 files or 5 %, whichever is more).
    #[arg(
        long,
        env = "DANMAKU_MAX_CONNECTIONS",
        value_name = "DANMAKU_MAX_CONNECTIONS",
        default_value_t = 0
    )]
    pub max_connections: usize,

    /// A connection that sends nothing (not even a pong) for this long is closed.
    #[arg(
        long,
        env = "DANMAKU_IDLE_TIMEOUT_MS",
        value_name = "DANMAKU_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub idle_timeout_ms: u64,

    /// How long a client has to send a request's head, and then its body: a connection that
    /// sends no complete head in time is closed; a body that is late gets `408`.
    #[arg(
        long,
        env = "DANMAKU_HTTP_TIMEOUT_MS",
        value_name = "DANMAKU_HTTP_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_timeout_ms: u64,

    /// On SIGTERM: how long `reconnect` hints are spread over before the rest is closed.
    #[arg(
        long,
        env = "DANMAKU_DRAIN_MS",
        value_name = "DANMAKU_DRAIN_MS",
        default_value_t = 10_000
    )]
    pub drain_ms: u64,

    /// CPU fraction above which `/readyz` fails.
    #[arg(
        long,
        env = "DANMAKU_CPU_READY_THRESHOLD",
        value_name = "DANMAKU_CPU_READY_THRESHOLD",
        default_value_t = 0.80
    )]
    pub cpu_ready_threshold: f64,

    /// Advanced: the CPU gate's averaging window (see `docs/readiness.md`).
    #[arg(
        long,
        env = "DANMAKU_CPU_WINDOW_MS",
        value_name = "DANMAKU_CPU_WINDOW_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub cpu_window_ms: u64,

    /// Advanced: least time the CPU gate stays closed.
    #[arg(
        long,
        env = "DANMAKU_CPU_DWELL_MS",
        value_name = "DANMAKU_CPU_DWELL_MS",
        default_value_t = 15_000,
        hide = true
    )]
    pub cpu_dwell_ms: u64,

    /// Advanced: the random extra dwell, up to this much.
    #[arg(
        long,
        env = "DANMAKU_CPU_DWELL_JITTER_MS",
        value_name = "DANMAKU_CPU_DWELL_JITTER_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub cpu_dwell_jitter_ms: u64,

    /// Advanced: how long handshakes ramp up after the CPU gate reopens (0: no ramp).
    #[arg(
        long,
        env = "DANMAKU_READY_RAMP_MS",
        value_name = "DANMAKU_READY_RAMP_MS",
        default_value_t = 20_000,
        hide = true
    )]
    pub ready_ramp_ms: u64,

    /// Advanced: an instance whose lease in Redis is not renewed for this long is taken as
    /// gone and its viewers leave the counts (see `docs/redis.md`).
    #[arg(
        long,
        env = "DANMAKU_INSTANCE_LEASE_MS",
        value_name = "DANMAKU_INSTANCE_LEASE_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub instance_lease_ms: u64,

    /// How long a stream's broker subscription outlives its last local viewer.
    #[arg(
        long,
        env = "DANMAKU_UNSUBSCRIBE_LINGER_MS",
        value_name = "DANMAKU_UNSUBSCRIBE_LINGER_MS",
        default_value_t = 2_000
    )]
    pub unsubscribe_linger_ms: u64,

    /// A hot stream's coalescing window: comments within it go out in one frame.
    #[arg(
        long,
        env = "DANMAKU_COALESCE_MS",
        value_name = "DANMAKU_COALESCE_MS",
        default_value_t = 40
    )]
    pub coalesce_ms: u64,

    /// User comments per second sent to one viewer at most; 0 is no limit. Beyond it a
    /// viewer's user comments are thinned (system and moderator comments never are).
    #[arg(
        long,
        env = "DANMAKU_VIEWER_MAX_RATE",
        value_name = "DANMAKU_VIEWER_MAX_RATE",
        default_value_t = 30
    )]
    pub viewer_max_rate: u32,

    /// Deployment slot reported in `init` and `/version`.
    #[arg(
        long,
        env = "DANMAKU_SLOT",
        value_name = "DANMAKU_SLOT",
        default_value = "blue"
    )]
    pub slot: Slot,

    /// This instance's name; defaults to the host name.
    #[arg(long, env = "DANMAKU_POD_NAME", value_name = "DANMAKU_POD_NAME", default_value_t = hostname())]
    pub pod_name: String,

    /// WebSocket compression (`permessage-deflate`).
    #[command(flatten)]
    pub compression: CompressionSettings,

    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(
        long,
        env = "DANMAKU_LOG_FORMAT",
        value_name = "DANMAKU_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Development mode. Never on in production.
    #[arg(long, env = "DANMAKU_DEV", value_name = "DANMAKU_DEV", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub dev: bool,
}

/// A configuration value that is out of range, naming its variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

impl Config {
    /// The documented defaults, whatever the process environment says: the base for tests
    /// and embedding, which then change fields directly. (An exported `DANMAKU_REDIS_URL`
    /// must not reroute a test suite.)
    pub fn defaults() -> Self {
        let command = Self::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["danmaku"])
            .expect("the defaults parse");
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// Range and cross-field checks that a value parser cannot do alone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000).contains(&self.history_len) {
            return Err(bad("DANMAKU_HISTORY_LEN", "must be between 1 and 1000"));
        }
        self.validate_replay()?;
        self.compression.validate()?;
        if !(1..=10_000).contains(&self.max_comment_chars) {
            return Err(bad(
                "DANMAKU_MAX_COMMENT_CHARS",
                "must be between 1 and 10000",
            ));
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0) {
            return Err(bad(
                "DANMAKU_RATE_PER_SEC",
                "must be a number greater than 0",
            ));
        }
        if !(self.rate_burst.is_finite() && self.rate_burst >= 1.0) {
            return Err(bad("DANMAKU_RATE_BURST", "must be a number of at least 1"));
        }
        if self.coalesce_ms > 100 {
            return Err(bad("DANMAKU_COALESCE_MS", "must be at most 100"));
        }
        if self.viewer_max_rate > 1000 {
            return Err(bad("DANMAKU_VIEWER_MAX_RATE", "must be at most 1000"));
        }
        if self.idle_timeout_ms < 100 {
            return Err(bad("DANMAKU_IDLE_TIMEOUT_MS", "must be at least 100"));
        }
        if !(100..=600_000).contains(&self.http_timeout_ms) {
            return Err(bad(
                "DANMAKU_HTTP_TIMEOUT_MS",
                "must be between 100 and 600000",
            ));
        }
        if !(self.cpu_ready_threshold > 0.0 && self.cpu_ready_threshold <= 1.0) {
            return Err(bad("DANMAKU_CPU_READY_THRESHOLD", "must be in (0, 1]"));
        }
        if !(1_000..=600_000).contains(&self.cpu_window_ms) {
            return Err(bad(
                "DANMAKU_CPU_WINDOW_MS",
                "must be between 1000 and 600000",
            ));
        }
        if !(1_000..=120_000).contains(&self.instance_lease_ms) {
            return Err(bad(
                "DANMAKU_INSTANCE_LEASE_MS",
                "must be between 1000 and 120000",
            ));
        }
        if self.pod_name.is_empty() || self.pod_name.len() > 253 {
            return Err(bad("DANMAKU_POD_NAME", "must be 1 to 253 characters"));
        }
        // RFC 7518, 3.2: an HS256 key must be at least as long as the hash (32 bytes);
        // shorter ones can be guessed offline from any one token.
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(bad(
                "DANMAKU_JWT_SECRET",
                "must be at least 32 bytes (e.g. `openssl rand -base64 48`)",
            ));
        }
        self.redis()?;
        self.tokens.validate()?;
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    pub fn instance_lease(&self) -> Duration {
        Duration::from_millis(self.instance_lease_ms)
    }

    pub fn unsubscribe_linger(&self) -> Duration {
        Duration::from_millis(self.unsubscribe_linger_ms)
    }

    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["danmaku"];
        argv.extend_from_slice(args);
        let c = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (c.history_len, c.init_comments, c.max_comment_chars),
            (200, 50, 200)
        );
        assert_eq!((c.rate_per_sec, c.rate_burst), (1.0, 5.0));
        assert_eq!(
            (c.idle_timeout_ms, c.drain_ms, c.unsubscribe_linger_ms),
            (60_000, 10_000, 2_000)
        );
        assert!(c.allow_anonymous && !c.dev && c.redis_url.is_none());
        assert_eq!(c.instance_lease(), Duration::from_secs(30));
        c.validate().unwrap();
    }

    #[test]
    fn an_instance_lease_is_between_1_s_and_2_min() {
        let mut c = Config::defaults();
        for (ms, ok) in [
            (999, false),
            (1_000, true),
            (120_000, true),
            (120_001, false),
        ] {
            c.instance_lease_ms = ms;
            assert_eq!(c.validate().is_ok(), ok, "{ms} ms");
        }
    }

    /// Re-runs this test in a child process with `DANMAKU_*` variables exported (a test must
    /// not change its own process's environment): the child sees them, and the defaults
    /// ignore them.
    #[test]
    fn defaults_ignore_the_environment() {
        const MARK: &str = "DANMAKU_TEST_DEFAULTS_CHILD";
        if std::env::var_os(MARK).is_some() {
            assert_eq!(
                std::env::var("DANMAKU_REDIS_URL").as_deref(),
                Ok("redis://elsewhere:6379")
            );
            let c = Config::defaults();
            assert!(c.redis_url.is_none(), "{:?}", c.redis_url);
            assert_eq!(c.rate_per_sec, 1.0);
            return;
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "config::tests::defaults_ignore_the_environment"])
            .env(MARK, "1")
            .env("DANMAKU_REDIS_URL", "redis://elsewhere:6379")
            .env("DANMAKU_RATE_PER_SEC", "7")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success() && stdout.contains("1 passed"),
            "the child saw the environment in the defaults:\n{stdout}"
        );
        // The variables still work for the binary's own parse.
        let c = Config::try_parse_from(["danmaku", "--rate-per-sec", "7"]).unwrap();
        assert_eq!(c.rate_per_sec, 7.0);
    }

    #[test]
    fn parses_redis_urls() {
        let c = parse(&[
            "--redis-url",
            "redis-cluster://127.0.0.1:7000, 127.0.0.1:7001",
        ])
        .unwrap();
        let url = c.redis_url.unwrap();
        assert_eq!(
            url.nodes,
            RedisNodes::Cluster(vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()])
        );
        assert!(!url.tls);
        let c = parse(&["--redis-url", "rediss://localhost:6379"]).unwrap();
        let url = c.redis_url.unwrap();
        assert_eq!(url.nodes, RedisNodes::Standalone("localhost:6379".into()));
        assert!(url.tls);
        for bad in [
            "http://x:1",
            "redis://nohost",
            "redis://h:0",
            "redis-cluster://a:1,b",
            "rediss://app:hunter2@nohost",
        ] {
            let err = parse(&["--redis-url", bad]).unwrap_err();
            assert!(err.contains("DANMAKU_REDIS_URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    fn redis_settings(args: &[&str]) -> Result<RedisSettings, String> {
        let c = parse(args)?;
        Ok(c.redis().unwrap().unwrap())
    }

    #[test]
    fn redis_credentials_come_from_one_place() {
        let s = redis_settings(&["--redis-url", "rediss://app:pw@h:1"]).unwrap();
        assert_eq!(s.url.username.as_deref(), Some("app"));
        assert_eq!(s.url.password.as_ref().map(Secret::expose), Some("pw"));
        let s = redis_settings(&[
            "--redis-url",
            "rediss-cluster://a:1,b:2",
            "--redis-username",
            "app",
            "--redis-password",
            "pw",
        ])
        .unwrap();
        assert_eq!(s.url.username.as_deref(), Some("app"));
        assert_eq!(s.url.password.as_ref().map(Secret::expose), Some("pw"));

        let file = std::env::temp_dir().join(format!("danmaku-pw-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap();
        let s =
            redis_settings(&["--redis-url", "redis://h:1", "--redis-password-file", path]).unwrap();
        assert_eq!(
            s.url.password.as_ref().map(Secret::expose),
            Some("from-file")
        );

        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "--redis-url",
                    "redis://:hunter2@h:1",
                    "--redis-password-file",
                    path,
                ],
                "DANMAKU_REDIS_PASSWORD",
            ),
            (
                &[
                    "--redis-url",
                    "redis://u:hunter2@h:1",
                    "--redis-username",
                    "v",
                ],
                "DANMAKU_REDIS_USERNAME",
            ),
            (
                &["--redis-url", "redis://h:1", "--redis-username", "u"],
                "DANMAKU_REDIS_PASSWORD",
            ),
            (
                &[
                    "--redis-url",
                    "redis://h:1",
                    "--redis-password-file",
                    "/nonexistent/pw",
                ],
                "DANMAKU_REDIS_PASSWORD_FILE",
            ),
            (
                &["--redis-url", "rediss://h:1", "--redis-cert-file", "c.pem"],
                "DANMAKU_REDIS_KEY_FILE",
            ),
            (
                &["--redis-url", "redis://h:1", "--redis-ca-file", "ca.pem"],
                "DANMAKU_REDIS_URL",
            ),
            (&["--redis-password", "hunter2"], "DANMAKU_REDIS_URL"),
        ];
        for (args, var) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(var), "{args:?}: {err}");
            assert!(!err.contains("hunter2"), "{args:?}: {err}");
        }
        std::fs::write(&file, "\n").unwrap();
        let err =
            parse(&["--redis-url", "redis://h:1", "--redis-password-file", path]).unwrap_err();
        assert!(err.contains("DANMAKU_REDIS_PASSWORD_FILE"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--cpu-ready-threshold", "1.5"],
                "DANMAKU_CPU_READY_THRESHOLD",
            ),
            (
                &["--cpu-ready-threshold", "0"],
                "DANMAKU_CPU_READY_THRESHOLD",
            ),
            (&["--rate-per-sec", "abc"], "DANMAKU_RATE_PER_SEC"),
            (&["--rate-per-sec", "0"], "DANMAKU_RATE_PER_SEC"),
            (&["--listen", "nope"], "DANMAKU_LISTEN"),
            (&["--history-len", "0"], "DANMAKU_HISTORY_LEN"),
            (
                &["--replay-retention-s", "2592001"],
                "DANMAKU_REPLAY_RETENTION_S",
            ),
            (
                &["--replay-max-comments", "0"],
                "DANMAKU_REPLAY_MAX_COMMENTS",
            ),
            (
                &["--allowed-origins", "not a url"],
                "DANMAKU_ALLOWED_ORIGINS",
            ),
            (&["--slot", "red"], "DANMAKU_SLOT"),
            (&["--dev", "maybe"], "DANMAKU_DEV"),
            (
                &["--jwt-secret", "31-bytes-is-one-byte-too-short!"],
                "DANMAKU_JWT_SECRET",
            ),
            (
                &["--jwt-jwks-url", "ftp://idp/keys"],
                "DANMAKU_JWT_JWKS_URL",
            ),
            (
                &["--jwt-jwks-url", "https://u:p@idp/keys"],
                "DANMAKU_JWT_JWKS_URL",
            ),
            (&["--jwt-audience", ""], "DANMAKU_JWT_AUDIENCE"),
        ];
        for (args, var) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(var), "{args:?}: {err}");
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let c = parse(&[
            "--allowed-origins",
            "https://a.example,http://localhost:3000",
        ])
        .unwrap();
        let o = c.allowed_origins.unwrap();
        assert!(o.allows("https://a.example"));
        assert!(o.allows("https://a.example:443"));
        assert!(o.allows("http://localhost:3000"));
        assert!(!o.allows("http://a.example"));
        assert!(!o.allows("http://localhost:3001"));
        assert!(!o.allows("https://a.example.evil.com"));
        assert!(!o.allows("null"));
    }

    #[test]
    fn fractional_rates_and_flags() {
        let c = parse(&[
            "--rate-per-sec",
            "0.5",
            "--dev",
            "--allow-anonymous",
            "false",
        ])
        .unwrap();
        assert_eq!(c.rate_per_sec, 0.5);
        assert!(c.dev && !c.allow_anonymous);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let secret = "hunter2-hunter2-hunter2-hunter2-hunter2";
        let c = parse(&[
            "--jwt-secret",
            secret,
            "--service-tokens",
            "tok-a,tok-b",
            "--redis-url",
            "rediss://app:url-pw@h:1",
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["hunter2", "tok-a", "url-pw"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let c = parse(&["--redis-url", "redis://h:1", "--redis-password", "flag-pw"]).unwrap();
        let shown = format!("{c:?} {:?}", c.redis());
        assert!(!shown.contains("flag-pw"), "{shown}");
    }
}
