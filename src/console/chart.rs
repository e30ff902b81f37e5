//! The runs-over-time chart of a tenant's page: inline SVG drawn here, on the server — three
//! bar rows sharing one time axis (duration, API requests, events per run), each bar coloured
//! by the run's outcome and titled with its numbers. No script, no external asset.

use maud::{html, Markup};

use crate::run::{RunOutcome, RunSummary};

const WIDTH: f64 = 1000.0;
const ROW: f64 = 64.0;
const GAP: f64 = 22.0;
const LEFT: f64 = 110.0;

/// One bar row: its label, the run's value, the value's unit.
type Row = (&'static str, fn(&RunSummary) -> f64, &'static str);

/// The CSS class of an outcome's colour (the stylesheet has one per outcome).
pub fn outcome_class(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Committed => "ok",
        RunOutcome::NoChanges => "same",
        RunOutcome::DryRun => "dry",
        RunOutcome::Refused => "refused",
        RunOutcome::Failed => "failed",
    }
}

/// Slots on the time axis: the newest run is drawn at the right edge, older ones leftwards.
pub const SLOTS: usize = 60;

/// The chart of `runs`, newest first as the store reads them (drawn oldest on the left).
pub fn runs_chart(runs: &[RunSummary]) -> Markup {
    let runs: Vec<&RunSummary> = runs.iter().take(SLOTS).rev().collect();
    let first_slot = SLOTS - runs.len();
    let rows: [Row; 3] = [
        ("duration", |r| r.duration_ms as f64 / 1000.0, "s"),
        ("API requests", |r| r.api_requests as f64, ""),
        ("events", |r| r.events as f64, ""),
    ];
    let height = rows.len() as f64 * (ROW + GAP) + 20.0;
    let slot = (WIDTH - LEFT) / SLOTS as f64;
    let bar = (slot * 0.8).clamp(1.0, 24.0);
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox=(format!("0 0 {WIDTH} {height}"))
            aria-label=(format!("the last {} runs: duration, API requests and events per run", runs.len())) {
            @for (index, (label, value, unit)) in rows.iter().enumerate() {
                @let top = index as f64 * (ROW + GAP) + 10.0;
                @let max = runs.iter().map(|r| value(r)).fold(0.0_f64, f64::max);
                text x="0" y=(top + 14.0) class="axis" { (label) }
                text x="0" y=(top + 30.0) class="axis small" { "max " (format_value(max)) (unit) }
                text x=(WIDTH) y=(top + ROW + 14.0) class="axis small" text-anchor="end" { "newest" }
                line x1=(LEFT) x2=(WIDTH) y1=(top + ROW) y2=(top + ROW) class="baseline" {}
                @for (slot_index, run) in runs.iter().enumerate() {
                    @let v = value(run);
                    @let h = if max > 0.0 { (v / max * ROW).max(if v > 0.0 { 1.5 } else { 0.0 }) } else { 0.0 };
                    @let x = LEFT + (first_slot + slot_index) as f64 * slot + (slot - bar) / 2.0;
                    rect class=(format!("bar {}", outcome_class(run.outcome)))
                        x=(format!("{x:.1}")) y=(format!("{:.1}", top + ROW - h.max(2.0)))
                        width=(format!("{bar:.1}")) height=(format!("{:.1}", h.max(2.0))) {
                        title {
                            "run " (run.sync_id.unwrap_or_default()) " at " (run.finished_at.to_rfc3339())
                            ": " (run.outcome.as_str()) ", " (format_value(v)) (unit) " " (label)
                        }
                    }
                }
            }
        }
    }
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
