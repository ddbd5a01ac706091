//! The pcpu_alloc_mutex panel: who holds it (as far as events show), doing what, who
//! waits, and recent hold times.
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::Modifier,
    text::{Line, Span},
    widgets::{Paragraph, Sparkline, Wrap},
    Frame,
};

use crate::engine::Activity;

use super::{
    super::app::App,
    format::{activity, fmt_count, fmt_ns, gfp},
    pane,
};

/// Holder knowledge older than this is shown as "last holder".
const STALE_HOLDER_NS: u64 = 500_000_000;

/// The mutex panel: holder, waiters, hold times and their sparkline.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane(
        app,
        Line::from(Span::styled(" pcpu_alloc_mutex ", t.title())),
        false,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let snap = &app.snap;
    let mut lines: Vec<Line> = Vec::new();
    if !app.mutex_known() && app.events > 0 {
        lines.push(Line::from(Span::styled(
            "address unknown: holder and",
            t.warn(),
        )));
        lines.push(Line::from(Span::styled("waiters cannot be told", t.warn())));
    } else if let Some(hv) = &snap.holder {
        // Releases are not observed (no probe on mutex_unlock), so a holder is only known
        // as of its last event: say so once that knowledge is old.
        let stale_ns = snap.now_ns.saturating_sub(hv.confirmed_ns);
        let stale = stale_ns > STALE_HOLDER_NS;
        lines.push(Line::from(vec![
            Span::styled(if stale { "last holder " } else { "holder " }, t.dim()),
            Span::styled(
                format!("{} {}", hv.pid, hv.comm),
                t.text().add_modifier(Modifier::BOLD),
            ),
        ]));
        let (c, cs) = if hv.constrained {
            (gfp(app, hv.constraint_gfp), t.warn())
        } else {
            ("unconstrained".to_string(), t.text())
        };
        lines.push(Line::from(vec![
            Span::styled("  held ", t.dim()),
            Span::raw(fmt_ns(hv.held_ns)),
            Span::styled(" as ", t.dim()),
            Span::styled(c, cs),
        ]));
        let doing_style = if hv.activity == Activity::Reclaiming {
            t.bad()
        } else {
            t.text()
        };
        lines.push(Line::from(vec![
            Span::styled("  doing ", t.dim()),
            Span::styled(activity(hv.activity), doing_style),
        ]));
        if stale {
            lines.push(Line::from(Span::styled(
                format!("  seen holding {} ago", fmt_ns(stale_ns)),
                t.dim(),
            )));
        }
    } else {
        lines.push(Line::from(Span::styled("holder  none seen now", t.dim())));
    }
    if snap.waiters.is_empty() {
        lines.push(Line::from(Span::styled("waiters none", t.dim())));
    } else {
        let mut spans = vec![Span::styled(
            format!("waiters {}: ", snap.waiters.len()),
            t.dim(),
        )];
        // Constrained waiters first (they are the ones a reclaiming holder endangers), and
        // only as many as the panel can show: there may be thousands.
        let shown = 6;
        let constrained = snap.waiters.iter().filter(|w| w.constrained);
        let others = snap.waiters.iter().filter(|w| !w.constrained);
        for (i, w) in constrained.chain(others).take(shown).enumerate() {
            if i > 0 {
                spans.push(Span::raw(", "));
            }
            let style = if w.constrained { t.warn() } else { t.text() };
            let c = if w.constrained {
                gfp(app, w.constraint_gfp)
            } else {
                "unconstrained".into()
            };
            spans.push(Span::styled(format!("{} {} [{c}]", w.pid, w.comm), style));
        }
        if snap.waiters.len() > shown {
            spans.push(Span::styled(
                format!(", +{} more", snap.waiters.len() - shown),
                t.dim(),
            ));
        }
        lines.push(Line::from(spans));
    }
    let holds = app.holds();
    let spark_h: u16 = if inner.height >= 8 { 2 } else { 1 };
    let label = if holds.count == 0 {
        "holds: none measured yet".to_string()
    } else {
        format!(
            "holds {} last {} max {}",
            fmt_count(holds.count),
            fmt_ns(holds.recent_ns.back().copied().unwrap_or(0)),
            fmt_ns(holds.max_ns)
        )
    };
    let text_h = inner.height.saturating_sub(spark_h + 1);
    lines.truncate(usize::from(text_h));
    let [text, lab, spark] = Layout::vertical([
        Constraint::Length(text_h),
        Constraint::Length(1),
        Constraint::Length(spark_h),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
    frame.render_widget(Paragraph::new(Span::styled(label, t.dim())), lab);
    let n = usize::from(spark.width);
    let data: Vec<u64> = holds
        .recent_ns
        .iter()
        .rev()
        .take(n)
        .rev()
        .copied()
        .collect();
    frame.render_widget(Sparkline::default().data(data).style(t.spark()), spark);
}
