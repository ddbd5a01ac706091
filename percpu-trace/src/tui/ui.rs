//! Drawing: pure functions of [`App`] into a ratatui frame. Nothing here changes state;
//! the few things that depend on the terminal size (which rows are visible) are computed
//! from the selection on every draw.
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::Modifier,
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap},
    Frame,
};

use crate::{
    engine::{Activity, Finding, FindingKind, Severity, TaskRole, Trigger},
    kernel::decode,
    report::ProbeState,
};

use super::{
    app::{App, Focus, Mode, Tab, Verdict},
    keys,
};

/// Below this size only the summary is drawn.
pub const MIN_WIDTH: u16 = 60;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 16;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_tiny(app, frame, area);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, frame, head);
    // The mutex panel and tables get a fixed slice; findings take the rest, they matter most.
    let top_h = if body.height >= 30 { 12 } else { 8 };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_h), Constraint::Fill(1)]).areas(body);
    let mutex_w = (area.width * 2 / 5).clamp(34, 60);
    let [mutex, tables] =
        Layout::horizontal([Constraint::Length(mutex_w), Constraint::Fill(1)]).areas(top);
    let list_w = (area.width * 9 / 20).clamp(34, 64);
    let [list, detail] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Fill(1)]).areas(bottom);
    render_mutex(app, frame, mutex);
    render_tables(app, frame, tables);
    render_findings(app, frame, list);
    render_detail(app, frame, detail);
    render_footer(app, frame, foot);
    if app.mode == Mode::Help {
        render_help(app, frame, area);
    }
}

// ---------------------------------------------------------------- formatting helpers

/// Nanoseconds as a short duration: "850ns", "12.3µs", "4.5ms", "1.20s", "3m05s".
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        1_000_000_000..60_000_000_000 => format!("{:.2}s", ns as f64 / 1e9),
        _ => {
            let s = ns / 1_000_000_000;
            format!("{}m{:02}s", s / 60, s % 60)
        }
    }
}

/// A count with a k/M suffix past 10,000.
pub fn fmt_count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..10_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Holder knowledge older than this is shown as "last holder" (see the mutex panel).
const STALE_HOLDER_NS: u64 = 500_000_000;

fn fmt_uptime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn gfp(app: &App, g: u32) -> String {
    decode::format_gfp(g, &app.header.context.run.gfp_layout)
}

fn rel(app: &App, ts: u64) -> String {
    let base = app.base_ns.unwrap_or(ts);
    format!("+{}", fmt_ns(ts.saturating_sub(base)))
}

fn activity(a: Activity) -> &'static str {
    match a {
        Activity::Idle => "idle",
        Activity::Allocating => "allocating",
        Activity::CreatingChunk => "creating a chunk",
        Activity::Populating => "populating a chunk",
        Activity::Reclaiming => "in reclaim",
        Activity::Waiting => "waiting for the mutex",
    }
}

/// The memalloc scope in task flags, short.
fn scope(app: &App, flags: u32) -> &'static str {
    let c = &app.header.engine;
    if flags & c.pf_memalloc_noio != 0 {
        "NOIO"
    } else if flags & c.pf_memalloc_nofs != 0 {
        "NOFS"
    } else {
        "-"
    }
}

fn sev_tag(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRIT",
        Severity::High => "HIGH",
        Severity::Warning => "WARN",
        Severity::Info => "INFO",
    }
}

fn role(r: TaskRole) -> &'static str {
    match r {
        TaskRole::Holder => "holder",
        TaskRole::Waiter => "waiter",
        TaskRole::Caller => "caller",
    }
}

fn pane<'a>(app: &App, title: Line<'a>, focused: bool) -> Block<'a> {
    let t = &app.theme;
    Block::bordered().title(title).border_style(if focused {
        t.focus_border()
    } else {
        t.border()
    })
}

/// First `n` rows visible with `sel` in view: the offset to start from.
fn window(sel: usize, len: usize, n: usize) -> usize {
    if n == 0 || len <= n {
        0
    } else {
        sel.saturating_sub(n - 1).min(len - n)
    }
}

// ---------------------------------------------------------------- header

fn verdict_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let (style, text) = match app.verdict {
        Verdict::Hit(n) => (
            t.bad(),
            format!("BUG HIT: NOFS/NOIO caller in FS/IO reclaim holding pcpu_alloc_mutex ({n})"),
        ),
        Verdict::Live(n) => (
            t.severity(Severity::High),
            format!("HAZARD LIVE: mutex holder in FS/IO reclaim, constrained task waiting ({n})"),
        ),
        Verdict::Exposed(n) => (
            t.warn(),
            format!(
                "EXPOSED: FS/IO-capable allocation under the mutex for a NOIO/NOFS caller ({n})"
            ),
        ),
        Verdict::Quiet(Some(false)) => (
            t.warn(),
            "no finding yet; kernel lacks the fix series (vulnerable)".into(),
        ),
        Verdict::Quiet(Some(true)) => (t.good(), "no finding; kernel has the fix series".into()),
        Verdict::Quiet(None) => (
            t.text(),
            "no finding yet; fix status of this kernel unknown".into(),
        ),
    };
    Line::from(vec![Span::styled("▶ ", style), Span::styled(text, style)])
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let h = &app.header;
    let sep = || Span::styled(" │ ", t.dim());
    let (fix_text, fix_style) = match h.fix_present() {
        Some(true) => ("fix present", t.good()),
        Some(false) => ("fix ABSENT", t.bad()),
        None => ("fix unknown", t.warn()),
    };
    let mut l1 = vec![
        Span::styled("percpu-trace", t.title()),
        sep(),
        Span::raw(format!("Linux {} {}", h.kernel_release(), h.arch())),
        sep(),
        Span::styled(fix_text, fix_style),
        sep(),
        Span::raw("attach "),
        Span::styled(
            h.attach_mode().to_string(),
            if h.degraded() { t.warn() } else { t.text() },
        ),
    ];
    if h.degraded() {
        l1.push(Span::styled(" (degraded: tracepoints only)", t.warn()));
    }
    if let Some(p) = h.replay_path() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        l1.push(sep());
        l1.push(Span::styled(format!("replay {name}"), t.title()));
    }

    let lost = app.events_lost();
    let mut l2 = vec![
        Span::raw(format!("{} ev/s", fmt_count(app.rate.round() as u64))),
        sep(),
        Span::raw(format!("{} events", fmt_count(app.events))),
        sep(),
        Span::styled(
            format!("drops {}", fmt_count(lost)),
            if lost > 0 { t.bad() } else { t.text() },
        ),
    ];
    let stacks_lost = app.stacks_lost();
    if stacks_lost > 0 {
        l2.push(Span::styled(
            format!(" (+{} stacks)", fmt_count(stacks_lost)),
            t.warn(),
        ));
    }
    l2.extend([
        sep(),
        Span::raw(format!("tasks {}", fmt_count(app.snap.tasks.len() as u64))),
        sep(),
        Span::raw(format!("up {}", fmt_uptime(app.uptime))),
    ]);
    if app.paused {
        l2.push(sep());
        let more = if app.held_back > 0 && !app.is_replay() {
            format!(" (+{} new)", fmt_count(app.held_back))
        } else {
            String::new()
        };
        l2.push(Span::styled(
            format!("PAUSED{more}"),
            t.warn().add_modifier(Modifier::REVERSED),
        ));
    }
    if let Some(e) = &app.ended {
        l2.push(sep());
        l2.push(Span::styled(e.clone(), t.dim()));
    }

    let probes = &h.context.run.probes;
    let l3 = if probes.is_empty() {
        Line::from(Span::styled(
            "probes: not known (recording without a probe list)",
            t.dim(),
        ))
    } else {
        let on = probes
            .iter()
            .filter(|p| p.state == ProbeState::Attached)
            .count();
        let off: Vec<&str> = h.probes_off().map(|p| p.point.as_str()).collect();
        let mut spans = vec![Span::styled(
            format!("probes {on}/{} on", probes.len()),
            if off.is_empty() { t.good() } else { t.warn() },
        )];
        if !off.is_empty() {
            spans.push(Span::styled(
                format!("; off (? for why): {}", off.join(", ")),
                t.warn(),
            ));
        }
        Line::from(spans)
    };
    let lines = vec![Line::from(l1), Line::from(l2), l3, verdict_line(app)];
    frame.render_widget(Paragraph::new(lines), area);
}

// ---------------------------------------------------------------- mutex panel

fn render_mutex(app: &App, frame: &mut Frame, area: Rect) {
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

// ---------------------------------------------------------------- live tables

fn render_tables(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut title = vec![Span::raw(" ")];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        if i > 0 {
            title.push(Span::styled(" │ ", t.dim()));
        }
        let style = if *tab == app.tab {
            t.title().add_modifier(Modifier::UNDERLINED)
        } else {
            t.dim()
        };
        title.push(Span::styled(format!("{} {}", i + 1, tab.title()), style));
    }
    title.push(Span::raw(" "));
    let block = pane(app, Line::from(title), app.focus == Focus::Tables);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 2 {
        return;
    }
    let visible = usize::from(inner.height - 1);
    let sel = app.table_sel[app.tab.index()];
    let head_style = t.dim().add_modifier(Modifier::BOLD);
    let (header, widths, rows, len, empty): (Row, Vec<Constraint>, Vec<Row>, usize, &str) =
        match app.tab {
            Tab::Callers => {
                let all = app.caller_rows();
                let off = window(sel, all.len(), visible);
                let rows = all
                    .iter()
                    .skip(off)
                    .take(visible)
                    .map(|r| {
                        Row::new(vec![
                            Cell::from(r.comm.clone()),
                            Cell::from(r.cgroup_id.to_string()),
                            Cell::from(gfp(app, r.gfp)),
                            Cell::from(fmt_count(r.count)),
                        ])
                    })
                    .collect();
                (
                    Row::new(["comm", "cg", "gfp", "calls"]),
                    vec![
                        Constraint::Length(15),
                        Constraint::Length(5),
                        Constraint::Fill(1),
                        Constraint::Length(6),
                    ],
                    rows,
                    all.len(),
                    "no constrained percpu allocation seen yet",
                )
            }
            Tab::Reclaim => {
                let all = app.reclaim_rows();
                let off = window(sel, all.len(), visible);
                let rows = all
                    .iter()
                    .skip(off)
                    .take(visible)
                    .map(|r| {
                        let took = r
                            .end_ns
                            .map_or("open".into(), |e| fmt_ns(e.saturating_sub(r.begin_ns)));
                        let style = if app.header.engine.forbidden(r.effective_gfp) == 0 {
                            t.warn()
                        } else {
                            t.text()
                        };
                        Row::new(vec![
                            Cell::from(r.pid.to_string()),
                            Cell::from(r.comm.clone()),
                            Cell::from(gfp(app, r.effective_gfp)),
                            Cell::from(took),
                            Cell::from(if r.memcg { "memcg" } else { "direct" }),
                        ])
                        .style(style)
                    })
                    .collect();
                (
                    Row::new(["pid", "comm", "reclaim gfp", "took", "kind"]),
                    vec![
                        Constraint::Length(7),
                        Constraint::Length(15),
                        Constraint::Fill(1),
                        Constraint::Length(7),
                        Constraint::Length(6),
                    ],
                    rows,
                    all.len(),
                    "no reclaim entered while holding the mutex",
                )
            }
            Tab::Chunks => {
                let all = app.chunk_rows();
                let off = window(sel, all.len(), visible);
                let rows = all
                    .iter()
                    .skip(off)
                    .take(visible)
                    .map(|r| {
                        Row::new(vec![
                            Cell::from(r.comm.clone()),
                            Cell::from(fmt_count(r.creates)),
                            Cell::from(fmt_count(r.populates)),
                            Cell::from(fmt_count(r.vm_areas)),
                            Cell::from(fmt_count(r.pgtables + r.vmallocs)),
                            Cell::from(fmt_count(r.held)),
                        ])
                    })
                    .collect();
                (
                    Row::new(["comm", "create", "popul", "vmarea", "pt+vm", "held"]),
                    vec![
                        Constraint::Fill(1),
                        Constraint::Length(6),
                        Constraint::Length(6),
                        Constraint::Length(6),
                        Constraint::Length(6),
                        Constraint::Length(6),
                    ],
                    rows,
                    all.len(),
                    if app.header.degraded() {
                        "tracepoint-only: populate/vmalloc/page tables are not seen"
                    } else {
                        "no chunk creation or population seen yet"
                    },
                )
            }
            Tab::Tasks => {
                let len = app.task_rows.len();
                let off = window(sel, len, visible);
                let rows = app.task_rows[off..(off + visible).min(len)]
                    .iter()
                    .map(|&i| {
                        let tv = &app.snap.tasks[i];
                        Row::new(vec![
                            Cell::from(tv.pid.to_string()),
                            Cell::from(tv.comm.clone()),
                            Cell::from(tv.cgroup_id.to_string()),
                            Cell::from(scope(app, tv.task_flags)),
                            Cell::from(activity(tv.activity)),
                        ])
                    })
                    .collect();
                (
                    Row::new(["pid", "comm", "cg", "scope", "doing"]),
                    vec![
                        Constraint::Length(7),
                        Constraint::Length(15),
                        Constraint::Length(5),
                        Constraint::Length(5),
                        Constraint::Fill(1),
                    ],
                    rows,
                    len,
                    "no task with open percpu/reclaim/mutex state",
                )
            }
        };
    if len == 0 {
        frame.render_widget(
            Paragraph::new(Span::styled(empty, t.dim())).wrap(Wrap { trim: true }),
            inner,
        );
        return;
    }
    let sel_in_window = sel.min(len - 1) - window(sel, len, visible);
    let rows: Vec<Row> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if app.focus == Focus::Tables && i == sel_in_window {
                r.style(t.selected())
            } else {
                r
            }
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(header.style(head_style))
        .column_spacing(1);
    frame.render_widget(table, inner);
}

// ---------------------------------------------------------------- findings

/// The first task's comm (pids are in the detail pane).
fn finding_who(f: &Finding) -> String {
    f.tasks
        .first()
        .map_or_else(|| "?".into(), |t| t.comm.clone())
}

/// The trigger in at most 8 characters, for the findings list.
fn short_op(t: &Trigger) -> &'static str {
    match t {
        Trigger::Reclaim { memcg: false, .. } => "reclaim",
        Trigger::Reclaim { memcg: true, .. } => "memcg",
        Trigger::ChunkCreate { .. } => "create",
        Trigger::ChunkPopulate { .. } => "populate",
        Trigger::GetVmAreas { .. } => "vm_areas",
        Trigger::Vmalloc { .. } => "vmalloc",
        Trigger::PgtableAlloc => "pgtable",
    }
}

fn render_findings(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut title = vec![
        Span::styled(format!(" findings {} ", app.view.len()), t.title()),
        Span::styled(format!("[{}] ", app.sort.label()), t.dim()),
    ];
    if !app.filter.is_empty() {
        title.push(Span::styled(
            format!("filter {} ", app.filter.describe()),
            t.warn(),
        ));
    }
    let block = pane(app, Line::from(title), app.focus == Focus::Findings);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let findings = app.findings();
    if app.view.is_empty() {
        let mut lines = vec![Line::from(Span::styled(
            if findings.is_empty() {
                "no findings yet"
            } else {
                "no finding matches the filter"
            },
            t.dim(),
        ))];
        if app.header.degraded() {
            lines.push(Line::from(Span::styled(
                "tracepoint-only mode: pcpu_alloc entry and nested allocations are not observed, so window findings cannot appear (see ?)",
                t.warn(),
            )));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    let n = usize::from(inner.height);
    let off = window(app.selected, app.view.len(), n);
    // The trigger column only when there is room; the comm is cut before the count.
    let with_op = inner.width >= 40;
    let rows: Vec<Row> = app.view[off..(off + n).min(app.view.len())]
        .iter()
        .enumerate()
        .map(|(i, &fi)| {
            let f = &findings[fi];
            let mut cells = vec![
                Cell::from(Span::styled(sev_tag(f.severity), t.severity(f.severity))),
                Cell::from(f.kind.id()),
            ];
            if with_op {
                cells.push(Cell::from(short_op(&f.trigger)));
            }
            cells.push(Cell::from(finding_who(f)));
            cells.push(Cell::from(Span::styled(
                format!("×{}", fmt_count(f.count)),
                t.dim(),
            )));
            let row = Row::new(cells);
            if off + i == app.selected {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let mut widths = vec![Constraint::Length(4), Constraint::Length(10)];
    if with_op {
        widths.push(Constraint::Length(8));
    }
    widths.extend([Constraint::Fill(1), Constraint::Length(5)]);
    frame.render_widget(Table::new(rows, widths).column_spacing(1), inner);
}

fn trigger_text(app: &App, tr: &Trigger) -> String {
    let g = |v: Option<u32>| v.map(|v| gfp(app, v));
    match *tr {
        Trigger::Reclaim { gfp: v, order, .. } => {
            format!("{} gfp {} order {order}", tr.name(), gfp(app, v))
        }
        Trigger::ChunkCreate { gfp: v } | Trigger::ChunkPopulate { gfp: v } => {
            format!(
                "{} gfp {}",
                tr.name(),
                g(v).unwrap_or_else(|| "not seen".into())
            )
        }
        Trigger::GetVmAreas { gfp: v } => format!(
            "{} gfp {}",
            tr.name(),
            g(v).unwrap_or_else(|| "none (unpatched: GFP_KERNEL metadata)".into())
        ),
        Trigger::Vmalloc { gfp: v } => format!("{} gfp {}", tr.name(), gfp(app, v)),
        Trigger::PgtableAlloc => format!("{} (GFP_PGTABLE_KERNEL)", tr.name()),
    }
}

/// The detail of one finding as lines (also what the detail pane scrolls through).
pub fn detail_lines(app: &App, f: &Finding) -> Vec<Line<'static>> {
    let t = &app.theme;
    let label = |s: &str| Span::styled(format!("{s:<11}"), t.dim());
    let mut l: Vec<Line<'static>> = Vec::new();
    l.push(Line::from(vec![
        Span::styled(
            f.severity.to_string().to_uppercase(),
            t.severity(f.severity),
        ),
        Span::raw(format!(" {}  ×{}", f.kind, f.count)),
    ]));
    l.push(Line::from(vec![
        label("seen"),
        Span::raw(format!(
            "first {}  last {}",
            rel(app, f.first_seen_ns),
            rel(app, f.last_seen_ns)
        )),
    ]));
    l.push(Line::from(vec![
        label("trigger"),
        Span::raw(trigger_text(app, &f.trigger)),
    ]));
    if let Some(e) = f.trigger_effective_gfp {
        l.push(Line::from(vec![label("effective"), Span::raw(gfp(app, e))]));
    }
    l.push(Line::from(vec![
        label("constraint"),
        Span::styled(gfp(app, f.constraint_gfp), t.warn()),
    ]));
    l.push(Line::from(vec![
        label("violated"),
        Span::styled(gfp(app, f.violated_bits), t.bad()),
    ]));
    for task in &f.tasks {
        l.push(Line::from(vec![
            label(role(task.role)),
            Span::styled(
                format!("{}/{}", task.comm, task.pid),
                t.text().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" tgid {} cg {}", task.tgid, task.cgroup_id)),
        ]));
        let mut parts = Vec::new();
        if let Some(g) = task.gfp {
            parts.push(format!("gfp {}", gfp(app, g)));
        }
        if let Some(g) = task.effective_gfp {
            parts.push(format!("eff {}", gfp(app, g)));
        }
        parts.push(format!(
            "flags {}",
            decode::format_task_flags(task.task_flags)
        ));
        l.push(Line::from(vec![
            Span::raw("           "),
            Span::raw(parts.join("  ")),
        ]));
    }
    stacks_lines(app, f, &mut l);
    l.push(Line::from(Span::styled("what happened", t.title())));
    l.push(Line::from(f.explanation.clone()));
    let d = &f.durations;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), fmt_ns);
    l.push(Line::from(vec![
        label("times"),
        Span::raw(format!(
            "held ≥{}  reclaim {} (total {})  wait {}",
            opt(d.hold_ns),
            opt(d.reclaim_ns),
            fmt_ns(d.reclaim_total_ns),
            opt(d.wait_ns)
        )),
    ]));
    let fix = match f.fix_present {
        Some(true) => "present",
        Some(false) => "absent",
        None => "unknown",
    };
    l.push(Line::from(vec![label("fix series"), Span::raw(fix)]));
    l.push(Line::from(vec![
        label("signature"),
        Span::styled(format!("{:016x}", f.signature), t.dim()),
    ]));
    l
}

fn stacks_lines(app: &App, f: &Finding, l: &mut Vec<Line<'static>>) {
    let t = &app.theme;
    for (i, id) in f.stack_ids.iter().enumerate() {
        let whose = if i == 0 { "trigger" } else { "other task" };
        l.push(Line::from(Span::styled(
            format!("stack #{id} ({whose})"),
            t.title(),
        )));
        match app.stacks.get(id) {
            Some(frames) if !frames.is_empty() => {
                for fr in frames {
                    l.push(Line::from(format!("  {fr}")));
                }
            }
            _ => l.push(Line::from(Span::styled(
                "  (not in the stack table: lost or not yet read)",
                t.warn(),
            ))),
        }
    }
    if f.stack_ids.is_empty() {
        l.push(Line::from(Span::styled(
            "no kernel stack was taken for this finding",
            t.dim(),
        )));
    }
}

fn render_detail(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane(
        app,
        Line::from(Span::styled(" detail ", t.title())),
        app.focus == Focus::Detail,
    );
    let para = match app.selected_finding() {
        Some((_, f)) => Paragraph::new(detail_lines(app, f)).scroll((app.detail_scroll, 0)),
        None => {
            let mut lines = vec![Line::from(Span::styled(
                "select a finding to see its tasks, gfp masks and stacks",
                t.dim(),
            ))];
            let k = FindingKind::ALL;
            lines.push(Line::from(""));
            for kind in k {
                let what = match kind {
                    FindingKind::Recursion => {
                        "constrained caller reclaimed with FS/IO holding the mutex"
                    }
                    FindingKind::CrossTask => {
                        "holder in FS/IO reclaim while a constrained task waits"
                    }
                    FindingKind::Window => {
                        "FS/IO-capable allocation under the mutex for a constrained caller"
                    }
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{} {:<10} ", sev_tag(kind.severity()), kind.id()),
                        t.severity(kind.severity()),
                    ),
                    Span::styled(what, t.dim()),
                ]));
            }
            Paragraph::new(lines)
        }
    };
    frame.render_widget(para.block(block).wrap(Wrap { trim: false }), area);
}

// ---------------------------------------------------------------- footer and overlays

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let line = match &app.mode {
        Mode::Filter { input } => Line::from(vec![
            Span::styled("filter> ", t.title()),
            Span::raw(input.clone()),
            Span::styled("█", t.text()),
            Span::styled("  Enter apply · Esc cancel · pid:N comm:S cg:N", t.dim()),
        ]),
        Mode::Export { input, all } => Line::from(vec![
            Span::styled(
                if *all {
                    "export all to> "
                } else {
                    "export finding to> "
                },
                t.title(),
            ),
            Span::raw(input.clone()),
            Span::styled("█", t.text()),
            Span::styled("  Enter write · Esc cancel", t.dim()),
        ]),
        _ => match &app.status {
            Some(s) => Line::from(vec![
                Span::styled(s.text.clone(), if s.error { t.bad() } else { t.good() }),
                Span::styled("  │ ? help · q quit", t.dim()),
            ]),
            None => {
                let mut spans = Vec::new();
                for (k, what) in keys::FOOTER {
                    spans.push(Span::styled(*k, t.title()));
                    spans.push(Span::styled(format!(" {what} "), t.dim()));
                }
                Line::from(spans)
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

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

fn render_help(app: &App, frame: &mut Frame, area: Rect) {
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

fn render_tiny(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let counts = format!(
        "{} findings · {} events · drops {}",
        app.findings().len(),
        fmt_count(app.events),
        fmt_count(app.events_lost())
    );
    let lines = vec![
        Line::from(vec![
            Span::styled("percpu-trace ", t.title()),
            Span::raw(app.header.kernel_release().to_string()),
        ]),
        verdict_line(app),
        Line::from(counts),
        Line::from(Span::styled(
            format!(
                "terminal {}x{}: enlarge to {MIN_WIDTH}x{MIN_HEIGHT} for the full view",
                area.width, area.height
            ),
            t.warn(),
        )),
        Line::from(Span::styled("q quit", t.dim())),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}
