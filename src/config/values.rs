//! The value types of some settings: the deployment slot, the log format, comma-separated
//! lists, origins.

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

/// How log lines are written (`DANMAKU_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line (time, level, target, message and fields), for a collector.
    Json,
}

/// A non-empty comma-separated list.
#[derive(Clone, PartialEq, Eq)]
pub struct List(pub Vec<String>);

pub(super) fn parse_list(s: &str) -> Result<List, String> {
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

pub(super) fn parse_origins(s: &str) -> Result<Origins, String> {
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

pub(super) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "danmaku".into())
}
