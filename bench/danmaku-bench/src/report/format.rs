//! Formatting for the report: HTML escaping, numbers with thousands separators, rates,
//! milliseconds, KiB, and compact axis labels.

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Distinct values in order of first appearance.
pub(super) fn unique<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Inserts thousands separators into the integer part of a formatted number.
fn group_digits(formatted: &str) -> String {
    let (sign, rest) = match formatted.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", formatted),
    };
    let (int, frac) = match rest.find('.') {
        Some(dot) => rest.split_at(dot),
        None => (rest, ""),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

pub(super) fn fmt_int(v: u64) -> String {
    group_digits(&v.to_string())
}

/// A float with `decimals` decimals and thousands separators; `–` when not finite.
pub(super) fn fmt_fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        group_digits(&format!("{v:.decimals$}"))
    } else {
        "–".to_string()
    }
}

pub(super) fn fmt_ms(v: f64) -> String {
    fmt_fixed(v, 2)
}

/// A per-second rate: whole numbers from 100 up, one decimal below.
pub(super) fn fmt_rate(v: f64) -> String {
    fmt_fixed(v, if v.abs() >= 100.0 { 0 } else { 1 })
}

/// Bytes as KiB.
pub(super) fn fmt_kib(bytes: f64) -> String {
    let kib = bytes / 1024.0;
    format!(
        "{} KiB",
        fmt_fixed(kib, if kib.abs() >= 1000.0 { 0 } else { 1 })
    )
}

/// Compact axis tick labels: 12k, 1.5M, 2G, 0.25, 3.
pub(super) fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e9 {
        format!("{}G", trim_zeros(&format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim_zeros(&format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim_zeros(&format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(&format!("{v:.2}"))
    } else {
        trim_zeros(&format!("{v:.3}"))
    };
    if s == "-0" { "0".to_string() } else { s }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}
