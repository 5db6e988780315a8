//! Every metric the Grafana dashboards (`dashboards/*.json`) and the Prometheus rules
//! (`rules/*.yaml`) query exists in the `/metrics` output of a real running instance after
//! real traffic, with the label names and the literal label values the queries match on.
//!
//! The queries are read from the files themselves: every `expr` (and templating query) of
//! the dashboards, every `expr:` of the rules. Names the rules record (`record:`) may be
//! queried too; they are not in `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use danmaku::readiness::CpuSample;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::raw::RawClient;

/// Labels a Prometheus scrape adds to every series (Kubernetes service discovery or a
/// ServiceMonitor), and the label the recording rules add: queries may use them although
/// `/metrics` does not carry them.
const SCRAPE_LABELS: [&str; 6] = ["namespace", "job", "instance", "pod", "slo", "__name__"];

/// One sample line of the Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// What a real instance exposes: its samples and the `# TYPE` of each family.
#[derive(Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    self.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.samples.push(parse_sample(line));
        }
    }

    fn series(&self, name: &str) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.name == name)
    }

    fn has_series(&self, name: &str) -> bool {
        self.series(name).next().is_some()
    }

    /// The sample names a queried name stands for: itself, or a histogram's `_bucket`,
    /// `_sum` and `_count` when the query names the family.
    fn resolve(&self, name: &str) -> Result<Vec<String>, String> {
        if self.has_series(name) {
            return Ok(vec![name.to_owned()]);
        }
        if self.types.get(name).map(String::as_str) == Some("histogram") {
            let parts: Vec<String> = ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect();
            let missing: Vec<&String> = parts.iter().filter(|p| !self.has_series(p)).collect();
            return if missing.is_empty() {
                Ok(parts)
            } else {
                Err(format!("histogram {name} lacks {missing:?}"))
            };
        }
        Err(format!("no {name} in /metrics"))
    }

    /// Every label name on any `danmaku_*` or `target_info` series.
    fn label_names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, _value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("bad sample line {line:?}"));
    let Some((name, labels)) = series.split_once('{') else {
        return Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
        };
    };
    let body = labels
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "bad labels in {line:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap_or('\\')),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Sample {
        name: name.to_owned(),
        labels: out,
    }
}

/// A label matcher of a selector: `key op "value"`.
#[derive(Debug)]
struct Matcher {
    key: String,
    op: String,
    value: String,
}

/// What one query names: metric selectors with their matchers, and the labels of its
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` clauses.
#[derive(Debug, Default)]
struct Query {
    selectors: Vec<(String, Vec<Matcher>)>,
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A small PromQL scanner: enough to find metric names, their matchers and grouping labels.
fn scan(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c == '$' || c.is_ascii_digit() {
            // A Grafana variable ($__rate_interval) or a number/duration (5m, 0.01).
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !is_ident_start(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let ident: String = chars[start..i].iter().collect();
        let next = skip_space(i);
        let grouping = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        if grouping.contains(&ident.as_str()) && chars.get(next) == Some(&'(') {
            let close = (next..chars.len())
                .find(|&j| chars[j] == ')')
                .unwrap_or_else(|| panic!("unclosed {ident}( in {expr}"));
            let list: String = chars[next + 1..close].iter().collect();
            query.grouping.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
            i = close + 1;
            continue;
        }
        let is_metric = ident.starts_with("danmaku_")
            || ident.starts_with("danmaku:")
            || ident == "target_info";
        if !is_metric {
            continue;
        }
        let mut matchers = Vec::new();
        if chars.get(next) == Some(&'{') {
            let mut j = next + 1;
            loop {
                j = skip_space(j);
                if j >= chars.len() || chars[j] == '}' {
                    break;
                }
                let k0 = j;
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                let key: String = chars[k0..j].iter().collect();
                j = skip_space(j);
                let o0 = j;
                while j < chars.len() && "=!~".contains(chars[j]) {
                    j += 1;
                }
                let op: String = chars[o0..j].iter().collect();
                j = skip_space(j);
                let quote = chars[j];
                assert!(quote == '"' || quote == '\'', "bad matcher in {expr}");
                j += 1;
                let v0 = j;
                while j < chars.len() && chars[j] != quote {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                let value: String = chars[v0..j].iter().collect();
                j = skip_space(j + 1);
                if chars.get(j) == Some(&',') {
                    j += 1;
                }
                matchers.push(Matcher { key, op, value });
            }
            i = j + 1;
        }
        query.selectors.push((ident, matchers));
    }
    query
}

fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_in(dir: &str, extension: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// Every PromQL string of a Grafana dashboard: panel targets and templating queries.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The `expr:` of every rule (inline, or a `|`/`>` block) and every `record:` name.
fn rule_queries(text: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let (mut exprs, mut records) = (Vec::new(), Vec::new());
    let indent = |l: &str| l.len() - l.trim_start().len();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("record:") {
            records.push(name.trim().to_owned());
        }
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(rest.trim_matches('\'').to_owned());
        }
    }
    (exprs, records)
}

/// The reasons docs/readiness.md documents (its first table's first column).
fn documented_readiness_reasons() -> BTreeSet<String> {
    repo_file("docs/readiness.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(reason, _)| reason.to_owned()))
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Real traffic on a real instance: viewers, comments over HTTP and WebSocket, a client
/// error, a refused handshake; then the instance not ready (draining, CPU gate closed).
async fn exposition_after_traffic() -> Exposition {
    let app = spawn_app().await;
    let stream = "observability";

    let (mut alice, _) = app.user(stream, "alice").await;
    let (mut watcher, _) = app.viewer(stream).await;
    app.post_system(stream, "welcome").await;
    alice
        .send_json(json!({"type": "comment", "text": "hello", "ref": "c1"}))
        .await;
    let ack = alice.next_of("ack").await;
    assert_eq!(ack["ref"], "c1", "{ack}");
    // An error frame: empty text is `invalid`.
    alice
        .send_json(json!({"type": "comment", "text": "", "ref": "c2"}))
        .await;
    let error = alice.next_of("error").await;
    assert_eq!(error["code"], "invalid", "{error}");
    let got = watcher.comments(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (status, _) = app.refused(stream, "access_token=not-a-token", &[]).await;
    assert_eq!(status, 401);
    // A viewer that negotiated compression, sent a frame long enough to compress.
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let (mut compressed, _) = RawClient::handshake(&app, stream, None, offer).await;
    compressed.read_frame().await.expect("init");
    app.post_system(stream, &"z".repeat(200)).await;
    let compressed_frame = async { while !compressed.read_frame().await.expect("open").rsv1 {} };
    tokio::time::timeout(WAIT, compressed_frame)
        .await
        .expect("the comment, compressed");

    eventually("the traffic to be counted", || async {
        app.metric("danmaku_comments_delivered_total").await >= 4.0
            && app.metric("danmaku_ws_init_duration_seconds_count").await >= 2.0
            && app
                .metric("danmaku_comment_delivery_duration_seconds_count")
                .await
                >= 2.0
            && app
                .metric("danmaku_comment_fanout_duration_seconds_count")
                .await
                >= 2.0
            && app
                .metric("danmaku_comments_rejected_total{code=\"invalid\"}")
                .await
                >= 1.0
            && app.metric("danmaku_ws_handshakes_refused_total").await >= 1.0
            && app.metric("danmaku_ws_frames_compressed_total").await >= 1.0
    })
    .await;
    let mut exposition = Exposition::default();
    exposition.add(&scrape(&app).await);

    // Not ready, for two reasons: SIGTERM's draining, and the CPU gate closed by a sample
    // of 1,000 CPU seconds in one second (it then stays closed for its dwell of >= 15 s).
    app.state.lifecycle.start_draining();
    let t0 = Instant::now();
    app.state.readiness.observe(
        CpuSample {
            at: t0,
            cpu_seconds: 0.0,
        },
        0.0,
    );
    app.state.readiness.observe(
        CpuSample {
            at: t0 + Duration::from_secs(1),
            cpu_seconds: 1000.0,
        },
        0.0,
    );
    let not_ready = scrape(&app).await;
    for reason in ["draining", "cpu"] {
        assert!(
            not_ready.contains(&format!(
                "danmaku_readiness_state_ratio{{reason=\"{reason}\"}} 0"
            )),
            "no readiness reason {reason}:\n{not_ready}"
        );
    }
    exposition.add(&not_ready);
    drop((alice, watcher));
    exposition
}

#[tokio::test]
async fn every_metric_the_dashboards_and_rules_query_exists_in_a_real_instance() {
    let exposition = exposition_after_traffic().await;
    let documented_reasons = documented_readiness_reasons();
    assert!(
        ["draining", "broker", "cpu"]
            .iter()
            .all(|r| documented_reasons.contains(*r)),
        "docs/readiness.md reasons: {documented_reasons:?}"
    );
    let label_names = exposition.label_names();

    // Every query of every dashboard and rules file, named by where it came from.
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    let dashboards = files_in("dashboards", "json");
    assert!(
        dashboards.iter().any(|d| d.ends_with("slo.json"))
            && dashboards.iter().any(|d| d.ends_with("capacity.json")),
        "{dashboards:?}"
    );
    for file in &dashboards {
        let json: Value = serde_json::from_str(&repo_file(file))
            .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        let mut found = Vec::new();
        dashboard_queries(&json, &mut found);
        assert!(found.len() >= 10, "{file}: only {} queries", found.len());
        queries.extend(found.into_iter().map(|q| (file.clone(), q)));
    }
    let rule_files = files_in("rules", "yaml");
    assert!(!rule_files.is_empty(), "no rules/*.yaml");
    for file in &rule_files {
        let (exprs, records) = rule_queries(&repo_file(file));
        assert!(!exprs.is_empty(), "{file}: no expr");
        recorded.extend(records);
        queries.extend(exprs.into_iter().map(|q| (file.clone(), q)));
    }

    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for (file, expr) in &queries {
        let query = scan(expr);
        for (name, matchers) in &query.selectors {
            checked.insert(name.clone());
            if name.contains(':') {
                if !recorded.contains(name) {
                    problems.push(format!("{file}: {name} is recorded by no rule"));
                }
                for m in matchers {
                    if !SCRAPE_LABELS.contains(&m.key.as_str()) {
                        problems.push(format!("{file}: {name} has no label {}", m.key));
                    }
                }
                continue;
            }
            let series = match exposition.resolve(name) {
                Ok(series) => series,
                Err(problem) => {
                    problems.push(format!("{file}: {problem} (in {expr})"));
                    continue;
                }
            };
            for m in matchers {
                if SCRAPE_LABELS.contains(&m.key.as_str()) {
                    continue;
                }
                let values: BTreeSet<&str> = series
                    .iter()
                    .flat_map(|s| exposition.series(s))
                    .filter_map(|s| s.labels.get(&m.key).map(String::as_str))
                    .collect();
                if values.is_empty() {
                    problems.push(format!("{file}: {name} has no label {}", m.key));
                    continue;
                }
                // Literal values (`=`, or `=~` of plain alternatives) must occur.
                let literal = !m.value.contains('$')
                    && m.value.chars().all(|c| {
                        c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '|' || c == '+'
                    });
                if !literal || m.value.is_empty() || !(m.op == "=" || m.op == "=~") {
                    continue;
                }
                for wanted in m.value.split('|') {
                    let documented = name == "danmaku_readiness_state_ratio"
                        && m.key == "reason"
                        && documented_reasons.contains(wanted);
                    if !values.contains(wanted) && !documented {
                        problems.push(format!(
                            "{file}: {name}{{{}{}\"{}\"}}: no such value (seen {values:?})",
                            m.key, m.op, wanted
                        ));
                    }
                }
            }
        }
        for label in &query.grouping {
            if !(label_names.contains(label) || SCRAPE_LABELS.contains(&label.as_str())) {
                problems.push(format!(
                    "{file}: groups by {label}, which no series carries (in {expr})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The files do query the SLIs and the capacity metrics (the scan found them).
    for name in [
        "danmaku_ws_init_duration_seconds_bucket",
        "danmaku_ws_init_duration_seconds_count",
        "danmaku_comment_delivery_duration_seconds_bucket",
        "danmaku_comment_delivery_duration_seconds_count",
        "danmaku_comment_fanout_duration_seconds_bucket",
        "danmaku_ws_connections",
        "danmaku_streams_subscribed",
        "danmaku_process_cpu_utilization_ratio",
        "danmaku_readiness_state_ratio",
        "danmaku_comments_dropped_total",
        "danmaku_comments_rejected_total",
        "danmaku_comments_published_total",
        "danmaku_comments_delivered_total",
        "danmaku_ws_handshakes_refused_total",
        "danmaku_broker_subscriptions_rebuilt_total",
        "target_info",
    ] {
        assert!(
            checked.contains(name),
            "no dashboard or rule queries {name}"
        );
    }
    for record in &recorded {
        assert!(
            checked.contains(record),
            "{record} is recorded but nothing queries it"
        );
    }
}

#[test]
fn the_scanner_finds_names_matchers_and_grouping_labels() {
    let q = scan(
        r#"sum by (le) (rate(danmaku_x_bucket{le="0.25", reason=~"a|b"}[$__rate_interval]) * on (job, instance) group_left (service_instance_id) target_info{service_name="danmaku"}) / danmaku:slo:ratio_rate5m"#,
    );
    let names: Vec<&str> = q.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "danmaku_x_bucket",
            "target_info",
            "danmaku:slo:ratio_rate5m"
        ]
    );
    let m = &q.selectors[0].1;
    assert_eq!(
        (m[0].key.as_str(), m[0].op.as_str(), m[0].value.as_str()),
        ("le", "=", "0.25")
    );
    assert_eq!(
        (m[1].key.as_str(), m[1].op.as_str(), m[1].value.as_str()),
        ("reason", "=~", "a|b")
    );
    assert_eq!(q.grouping, ["le", "job", "instance", "service_instance_id"]);

    let (exprs, records) = rule_queries(
        "      - record: a:b:c\n        expr: |\n          sum(danmaku_y)\n          / 2\n        labels:\n          x: y\n      - alert: A\n        expr: danmaku_z == 0\n",
    );
    assert_eq!(records, ["a:b:c"]);
    assert_eq!(exprs.len(), 2);
    assert!(exprs[0].contains("sum(danmaku_y)") && exprs[0].contains("/ 2"));
    assert!(!exprs[0].contains("labels"));
    assert_eq!(exprs[1], "danmaku_z == 0");
}
