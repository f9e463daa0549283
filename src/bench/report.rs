//! The bench's output: a table on stdout and a JSON report, every figure next to its ceiling
//! (as a ratio) and its goal.

use serde_json::{Map, Value, json};

use super::env::round;

/// What a figure should reach.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// value / ceiling at least this.
    RatioAtLeast(f64),
    /// value at most this (in the figure's unit); `applies` is false when the run was smaller
    /// than the size the goal is stated for.
    AtMost { limit: f64, applies: bool },
}

impl Goal {
    pub const fn at_most(limit: f64) -> Self {
        Self::AtMost {
            limit,
            applies: true,
        }
    }

    /// The same goal, judged only when `applies` (the run had the size it is stated for).
    pub const fn applies_if(self, applies: bool) -> Self {
        match self {
            Self::AtMost { limit, .. } => Self::AtMost { limit, applies },
            ratio => ratio,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub key: &'static str,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    /// The raw reference this figure is compared with: (what it is, value in the same unit).
    pub ceiling: Option<(String, f64)>,
    pub goal: Option<(Goal, String)>,
    /// What exactly was measured, and the numbers around it.
    pub detail: Value,
}

impl Figure {
    /// A figure on its own (a raw reference, say); [`Self::against`], [`Self::goal`] and
    /// [`Self::detail`] add the rest.
    pub fn new(
        key: &'static str,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            key,
            label: label.into(),
            value,
            unit,
            ceiling: None,
            goal: None,
            detail: Value::Null,
        }
    }

    /// Compared with `ceiling`, a raw reference measured in the same run (same unit).
    pub fn against(self, what: &str, ceiling: f64) -> Self {
        Self {
            ceiling: Some((what.into(), ceiling)),
            ..self
        }
    }

    pub fn goal(self, goal: Goal, text: &str) -> Self {
        Self {
            goal: Some((goal, text.into())),
            ..self
        }
    }

    /// What exactly was measured, and the numbers around it.
    pub fn detail(self, detail: Value) -> Self {
        Self { detail, ..self }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.ceiling
            .as_ref()
            .filter(|(_, c)| *c > 0.0)
            .map(|(_, c)| self.value / c)
    }

    /// Whether the goal is met; `None` when there is no goal or it does not apply to this size.
    pub fn met(&self) -> Option<bool> {
        match self.goal.as_ref()?.0 {
            Goal::RatioAtLeast(r) => self.ratio().map(|x| x >= r),
            Goal::AtMost { limit, applies } => applies.then_some(self.value <= limit),
        }
    }
}

/// Thousands separators for large numbers, sensible decimals for small ones.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table, one line per figure.
pub fn table(figures: &[Figure]) -> String {
    let header = ["figure", "value", "unit", "ceiling", "ratio", "goal", "met"];
    let rows: Vec<[String; 7]> = figures
        .iter()
        .map(|f| {
            [
                f.label.clone(),
                fmt_num(f.value),
                f.unit.to_owned(),
                f.ceiling
                    .as_ref()
                    .map_or("-".into(), |(what, v)| format!("{} ({what})", fmt_num(*v))),
                f.ratio().map_or("-".into(), |r| format!("{r:.2}")),
                f.goal.as_ref().map_or("-".into(), |(_, text)| text.clone()),
                match f.met() {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Numbers right-aligned, text left-aligned.
            if i == 1 || i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header.map(str::to_owned));
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// The JSON form of the figures, keyed by figure.
pub fn figures_json(figures: &[Figure]) -> Value {
    let mut m = Map::new();
    for f in figures {
        m.insert(
            f.key.to_owned(),
            json!({
                "label": f.label,
                "value": round(f.value, 3),
                "unit": f.unit,
                "ceiling": f.ceiling.as_ref().map(|(what, v)| json!({"what": what, "value": round(*v, 3)})),
                "ratio": f.ratio().map(|r| round(r, 3)),
                "goal": f.goal.as_ref().map(|(_, text)| text.clone()),
                "met": f.met(),
                "detail": f.detail,
            }),
        );
    }
    Value::Object(m)
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(999.6), "1000");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&s[..10], 99.0), 10.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn goals_judge_ratio_or_limit() {
        let mut f = Figure::new("k", "x", 60.0, "msg/s")
            .against("raw", 100.0)
            .goal(Goal::RatioAtLeast(0.5), "≥ 0.50");
        assert_eq!(f.met(), Some(true));
        f.value = 40.0;
        assert_eq!(f.met(), Some(false));
        f.goal = Some((
            Goal::AtMost {
                limit: 10.0,
                applies: false,
            },
            "≤ 10 s".into(),
        ));
        assert_eq!(f.met(), None);
        assert!(table(&[f]).contains("40.0"));
    }
}
