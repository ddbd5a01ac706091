//! The help overlay: the keys, then every probe point with why it is off.
use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph},
    Frame,
};

use crate::report::ProbeState;

use super::super::{app::App, keys};

/// A `w`x`h` rectangle centred in `area` (clipped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The help overlay, centred over `area`.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    // Keys first (the overlay is for them); then one line per probe point with why it is
    // off, cut at the width: what each lost point costs is in an exported report.
    let mut lines: Vec<Line> = vec![Line::from(Span::styled("keys", t.title()))];
    lines.extend(keys::HELP.iter().map(|(k, what)| {
        Line::from(vec![
            Span::styled(format!("  {k:<15}"), t.title()),
            Span::raw(*what),
        ])
    }));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("probe points", t.title())));
    if app.header.context.run.probes.is_empty() {
        lines.push(Line::from(Span::styled("  not known", t.dim())));
    }
    for p in &app.header.context.run.probes {
        let (mark, style) = match p.state {
            ProbeState::Attached => ("on ", t.good()),
            ProbeState::Unavailable => ("off", t.warn()),
            ProbeState::Failed => ("ERR", t.bad()),
        };
        let mut spans = vec![
            Span::styled(format!("  {mark} "), style),
            Span::raw(p.point.clone()),
        ];
        if p.target != "-" {
            spans.push(Span::styled(format!(" ({})", p.target), t.dim()));
        }
        if let Some(d) = &p.detail {
            let why = d.split("; loses:").next().unwrap_or(d);
            spans.push(Span::styled(format!(": {why}"), style));
        }
        lines.push(Line::from(spans));
    }
    let r = centered(
        area,
        area.width.saturating_sub(4).min(100),
        area.height.saturating_sub(2),
    );
    frame.render_widget(Clear, r);
    let block = Block::bordered()
        .title(Span::styled(" help (any key closes) ", t.title()))
        .border_style(t.focus_border());
    frame.render_widget(Paragraph::new(lines).block(block), r);
}
