//! How a configuration shows in logs and panics: every field, secrets redacted.

use std::fmt;

use super::Config;

// Secrets never reach a log line, not even through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis_url", &self.redis_url)
            .field("redis_username", &self.redis_username)
            .field("redis_password", &self.redis_password)
            .field("redis_password_file", &self.redis_password_file)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_cert_file", &self.redis_cert_file)
            .field("redis_key_file", &self.redis_key_file)
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
            .field("blocked_terms_file", &self.blocked_terms_file)
            .field("history_len", &self.history_len)
            .field("init_comments", &self.init_comments)
            .field("compression", &self.compression)
            .field("log_format", &self.log_format)
            .field("replay_retention_s", &self.replay_retention_s)
            .field("replay_max_comments", &self.replay_max_comments)
            .field("max_comment_chars", &self.max_comment_chars)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("rate_burst", &self.rate_burst)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("http_timeout_ms", &self.http_timeout_ms)
            .field("drain_ms", &self.drain_ms)
            .field("cpu_ready_threshold", &self.cpu_ready_threshold)
            .field("cpu_window_ms", &self.cpu_window_ms)
            .field("cpu_dwell_ms", &self.cpu_dwell_ms)
            .field("cpu_dwell_jitter_ms", &self.cpu_dwell_jitter_ms)
            .field("ready_ramp_ms", &self.ready_ramp_ms)
            .field("instance_lease_ms", &self.instance_lease_ms)
            .field("unsubscribe_linger_ms", &self.unsubscribe_linger_ms)
            .field("coalesce_ms", &self.coalesce_ms)
            .field("viewer_max_rate", &self.viewer_max_rate)
            .field("slot", &self.slot)
            .field("pod_name", &self.pod_name)
            .field("dev", &self.dev)
            .finish()
    }
}
