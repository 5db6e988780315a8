//! A scenario's layout: what its command set (the [`Shape`]) and the options every scenario
//! takes, checked, turned into the [`Layout`] the plan splits over workers, and the parameters
//! the result records.

use std::net::Ipv4Addr;

use anyhow::bail;

use crate::ipc::Scenario;
use crate::plan::{Layout, apportion, popularity};
use crate::proto::Target;
use crate::scenario::Common;

/// What the scenario commands set; the rest stays at its default.
#[derive(Default)]
pub(crate) struct Shape {
    pub viewers: u64,
    pub streams: usize,
    pub posters: u32,
    pub rate: f64,
    pub hot: Option<f64>,
    /// Connect-and-leave loops: (slots, shortest and longest hold in ms).
    pub churn: Option<(u32, u64, u64)>,
    pub max_rate: u32,
    pub system_share: f64,
    pub service_token: Option<String>,
    /// Blocked terms put on every stream, and the share of user comments shadowed by one.
    pub blocked_terms: u32,
    pub shadow_share: f64,
}

/// The layout and the parameters (as recorded in the result) of a scenario command.
pub(super) fn layout(
    scenario: Scenario,
    common: &Common,
    shape: Shape,
) -> anyhow::Result<(Layout, serde_json::Value)> {
    check(common, &shape)?;
    if !(common.lead_in.is_finite() && common.lead_in >= 0.0) {
        bail!("--lead-in is a number of seconds, 0 or more");
    }
    if common.lead_in > 0.0 && scenario != Scenario::Fanout {
        bail!("--lead-in is fanout's (the posters' head start before the measured phase)");
    }
    // The first token of a `DANMAKU_SERVICE_TOKENS`-style list.
    let service_token = shape
        .service_token
        .as_deref()
        .and_then(|t| t.split(',').map(str::trim).find(|t| !t.is_empty()))
        .map(str::to_owned);
    if shape.system_share > 0.0 && service_token.is_none() {
        bail!("--system-share needs --service-token (or DANMAKU_SERVICE_TOKENS)");
    }
    if shape.blocked_terms > 0 && service_token.is_none() {
        bail!("--blocked-terms needs --service-token (or DANMAKU_SERVICE_TOKENS)");
    }
    let pusher = match common.target {
        Target::Pusher => Some(crate::proto::pusher::App::parse(&common.pusher_app)?),
        _ => None,
    };
    // A Pusher subscription carries no history (Sockudo keeps one only in a database).
    let prefill = match common.target {
        Target::Pusher => 0,
        _ => common.history,
    };
    if prefill < common.history {
        eprintln!("--history ignored: a Pusher subscription carries no history");
    }
    let run_id: u32 = rand::random::<u32>() & 0xff_ffff;
    let weights = popularity(shape.streams, common.zipf, shape.hot);
    let (slots, hold_min, hold_max) = shape.churn.unwrap_or((0, 0, 0));
    let layout = Layout {
        scenario,
        target: common.target,
        urls: common.urls.clone(),
        sources: (1..=common.sources)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect(),
        streams: (0..shape.streams)
            .map(|i| format!("b{run_id:06x}-{i}"))
            .collect(),
        viewers: apportion(shape.viewers, &weights),
        posters: apportion(shape.posters as u64, &weights)
            .into_iter()
            .map(|p| p as u32)
            .collect(),
        poster_rate: if shape.posters > 0 {
            shape.rate / shape.posters as f64
        } else {
            0.0
        },
        prefill,
        churn_slots: slots,
        churn_hold_ms: (hold_min, hold_max),
        concurrency: common.concurrency,
        shuffled_arrival: common.shuffled_arrival,
        max_rate: (shape.max_rate > 0).then_some(shape.max_rate),
        system_share: shape.system_share,
        service_token,
        blocked_terms: shape.blocked_terms,
        shadow_share: shape.shadow_share,
        // A server that thins tells a viewer what it left out in its next `comments` frame:
        // a last comment per stream that no server thins (a moderator's) carries the rest.
        end_markers: scenario.fans_out() && common.target == Target::Danmaku,
        deflate: common.deflate,
        pusher,
    };
    let params = params(common, &shape, &layout);
    Ok((layout, params))
}

/// Refuses options that do not make a run.
fn check(common: &Common, shape: &Shape) -> anyhow::Result<()> {
    if shape.streams == 0 || common.urls.is_empty() || common.sources == 0 {
        bail!("--streams, --url and --sources must not be empty");
    }
    if shape.hot.is_some_and(|h| !(0.0..=1.0).contains(&h)) {
        bail!("--hot is a fraction between 0 and 1");
    }
    if !(0.0..=1.0).contains(&shape.system_share) || !(0.0..=1.0).contains(&shape.shadow_share) {
        bail!("--system-share and --shadow-share are fractions between 0 and 1");
    }
    if shape.blocked_terms > 1_000 {
        bail!("--blocked-terms: a stream holds at most 1,000");
    }
    if shape.shadow_share > 0.0 && shape.blocked_terms == 0 {
        bail!("--shadow-share needs --blocked-terms of at least 1 (the shadow term is one)");
    }
    let danmaku = common.target == Target::Danmaku;
    let moderated = shape.blocked_terms > 0;
    if !danmaku && (shape.max_rate > 0 || shape.system_share > 0.0 || moderated) {
        bail!(
            "--max-rate, --system-share and --blocked-terms are danmaku's (the peers neither thin nor have its service API or blocked terms)"
        );
    }
    if common.target == Target::Pusher && common.deflate {
        bail!("--deflate is not measured against a Pusher server (danmaku and Socket.IO only)");
    }
    Ok(())
}

/// The scenario's parameters as the result records them.
fn params(common: &Common, shape: &Shape, layout: &Layout) -> serde_json::Value {
    serde_json::json!({
        "case": common.case,
        "viewers": shape.viewers,
        "streams": shape.streams,
        "posters": shape.posters,
        "rate": shape.rate,
        "hot": shape.hot,
        "max_rate": shape.max_rate,
        "system_share": shape.system_share,
        "blocked_terms": shape.blocked_terms,
        "shadow_share": shape.shadow_share,
        "zipf": common.zipf,
        // What the viewers' `init` carried: none against a Pusher server.
        "history": layout.prefill,
        "duration_s": common.duration,
        "settle_s": common.settle,
        "lead_in_s": common.lead_in,
        "churn_slots": layout.churn_slots,
        "churn_hold_ms": [layout.churn_hold_ms.0, layout.churn_hold_ms.1],
        "sources": common.sources,
        "concurrency": common.concurrency,
        "deflate": common.deflate,
        "shuffled_arrival": common.shuffled_arrival,
        "offered_deliveries_per_s": layout.offered_deliveries_per_s(),
    })
}
