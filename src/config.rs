//! Configuration: every `DANMAKU_*` variable of the contract (`docs/protocol.md`, section 1),
//! each also a flag with the same meaning (`DANMAKU_RATE_PER_SEC` is `--rate-per-sec`). A
//! flag wins over the variable. Plain data: nothing here knows the rest of the server.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser};

mod identity;
pub use identity::TokenSettings;

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

    /// Unset: the embedded broker. `redis://host:port` or `redis-cluster://h1:p1,h2:p2`.
    #[arg(long, env = "DANMAKU_REDIS_URL", value_name = "DANMAKU_REDIS_URL", value_parser = RedisUrl::parse)]
    pub redis_url: Option<RedisUrl>,

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

    /// WebSocket connections this instance accepts; 0 is no limit.
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
        if !(self.cpu_ready_threshold > 0.0 && self.cpu_ready_threshold <= 1.0) {
            return Err(bad("DANMAKU_CPU_READY_THRESHOLD", "must be in (0, 1]"));
        }
        if !(1_000..=600_000).contains(&self.cpu_window_ms) {
            return Err(bad(
                "DANMAKU_CPU_WINDOW_MS",
                "must be between 1000 and 600000",
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
        self.tokens.validate()?;
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    pub fn unsubscribe_linger(&self) -> Duration {
        Duration::from_millis(self.unsubscribe_linger_ms)
    }

    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }
}

// Secrets never reach a log line, not even through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis_url", &self.redis_url)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("tokens", &self.tokens)
            .field("allow_anonymous", &self.allow_anonymous)
            .field(
                "service_tokens",
                &self
                    .service_tokens
                    .as_ref()
                    .map(|t| format!("<{} redacted>", t.0.len())),
            )
            .field("allowed_origins", &self.allowed_origins)
            .field("history_len", &self.history_len)
            .field("init_comments", &self.init_comments)
            .field("max_comment_chars", &self.max_comment_chars)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("rate_burst", &self.rate_burst)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("drain_ms", &self.drain_ms)
            .field("cpu_ready_threshold", &self.cpu_ready_threshold)
            .field("cpu_window_ms", &self.cpu_window_ms)
            .field("cpu_dwell_ms", &self.cpu_dwell_ms)
            .field("cpu_dwell_jitter_ms", &self.cpu_dwell_jitter_ms)
            .field("ready_ramp_ms", &self.ready_ramp_ms)
            .field("unsubscribe_linger_ms", &self.unsubscribe_linger_ms)
            .field("coalesce_ms", &self.coalesce_ms)
            .field("viewer_max_rate", &self.viewer_max_rate)
            .field("slot", &self.slot)
            .field("pod_name", &self.pod_name)
            .field("dev", &self.dev)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

/// Where Redis is. Only checked for shape here; the broker connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    Standalone(String),
    Cluster(Vec<String>),
}

impl RedisUrl {
    fn parse(s: &str) -> Result<Self, String> {
        if s.contains('@') {
            return Err("credentials in the URL are not supported (and would reach logs)".into());
        }
        let host_port = |hp: &str| -> Result<String, String> {
            let (host, port) = hp
                .rsplit_once(':')
                .ok_or_else(|| format!("'{hp}' is not host:port"))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("'{hp}' is not host:port"));
            }
            Ok(hp.to_owned())
        };
        if let Some(rest) = s.strip_prefix("redis-cluster://") {
            let nodes = rest
                .split(',')
                .map(str::trim)
                .map(host_port)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Cluster(nodes));
        }
        if let Some(rest) = s.strip_prefix("redis://") {
            return Ok(Self::Standalone(host_port(rest.trim_end_matches('/'))?));
        }
        Err("expected redis://host:port or redis-cluster://host:port,host:port,...".into())
    }
}

/// A non-empty comma-separated list.
#[derive(Clone, PartialEq, Eq)]
pub struct List(pub Vec<String>);

fn parse_list(s: &str) -> Result<List, String> {
    let items: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if items.is_empty() {
        Err("the list is empty".into())
    } else {
        Ok(List(items))
    }
}

/// Allowed WebSocket origins, compared by scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(pub Vec<url::Origin>);

impl Origins {
    /// Whether an `Origin` header value is allowed. Unparsable values never are.
    pub fn allows(&self, origin: &str) -> bool {
        url::Url::parse(origin).is_ok_and(|u| self.0.contains(&u.origin()))
    }
}

fn parse_origins(s: &str) -> Result<Origins, String> {
    let list = parse_list(s)?;
    let origins = list
        .0
        .iter()
        .map(|o| match url::Url::parse(o) {
            Ok(u) if u.origin().is_tuple() => Ok(u.origin()),
            _ => Err(format!("'{o}' is not an origin like https://example.com")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Origins(origins))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "danmaku".into())
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
        c.validate().unwrap();
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
        assert_eq!(
            c.redis_url,
            Some(RedisUrl::Cluster(vec![
                "127.0.0.1:7000".into(),
                "127.0.0.1:7001".into()
            ]))
        );
        let c = parse(&["--redis-url", "redis://localhost:6379"]).unwrap();
        assert_eq!(
            c.redis_url,
            Some(RedisUrl::Standalone("localhost:6379".into()))
        );
        for bad in [
            "http://x:1",
            "redis://nohost",
            "redis://h:0",
            "redis-cluster://a:1,b",
            "redis://:pw@h:1",
        ] {
            let err = parse(&["--redis-url", bad]).unwrap_err();
            assert!(err.contains("DANMAKU_REDIS_URL"), "{err}");
        }
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
        let c = parse(&["--jwt-secret", secret, "--service-tokens", "tok-a,tok-b"]).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-a"),
            "{shown}"
        );
    }
}
