//! The email report: a `Subject:` line (`[BUG] mm/percpu: <headline> on <release>`, at
//! most [`SUBJECT_WIDTH`] columns), a blank line, and the text report folded to
//! [`EMAIL_WIDTH`] columns, plain ASCII, ready for `git send-email` or mutt. Tag lines (`Fixes:`, `Signature:`) are never folded, as
//! in a kernel commit message.
use crate::engine::{Finding, FindingKind};

use super::{
    context::{ReportContext, StackTable},
    text, wording as d,
};

/// Widest line of the email body.
pub const EMAIL_WIDTH: usize = 72;

/// The whole email.
pub(super) fn render(ctx: &ReportContext, findings: &[&Finding], stacks: &StackTable) -> String {
    let mut s = format!("Subject: {}\n\n", subject(ctx, findings));
    for line in text::render_width(ctx, findings, stacks, EMAIL_WIDTH).lines() {
        s.push_str(&fold(line, EMAIL_WIDTH));
    }
    d::ascii(&s)
}

/// Widest subject (after `Subject: `), as git and the kernel's mailing lists expect.
pub const SUBJECT_WIDTH: usize = 72;

/// `[BUG] mm/percpu: <headline of the most severe finding> on <release>`, within
/// [`SUBJECT_WIDTH`]: the headline is shortened (a shorter form, then `(+N more)` is
/// dropped, then "possible"); the release is never cut, so only a release too long for the
/// shortest form leaves a longer subject.
pub fn subject(ctx: &ReportContext, findings: &[&Finding]) -> String {
    let rel = ctx
        .run
        .kernel_release
        .as_deref()
        .unwrap_or("unknown kernel");
    let Some(f) = findings.first() else {
        return format!("percpu-trace: no finding on {rel}");
    };
    let more = match findings.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let [full, medium, short] = headline_forms(ctx, f);
    let line = |h: &str, more: &str| format!("[BUG] mm/percpu: {h} on {rel}{more}");
    // "possible" stays before "(+N more)" does: dropping the count hides nothing false,
    // dropping the qualifier would claim more than was seen.
    let candidates = [
        line(&full, &more),
        line(&medium, &more),
        line(&full, ""),
        line(&medium, ""),
        line(&short, &more),
    ];
    // A release too long for even the shortest form keeps it: the release is never cut.
    candidates
        .into_iter()
        .find(|s| s.len() <= SUBJECT_WIDTH)
        .unwrap_or_else(|| line(&short, ""))
}

/// The finding's headline, a shorter form that keeps "possible", the constraint and what
/// broke it, and a shortest one without "possible".
fn headline_forms(ctx: &ReportContext, f: &Finding) -> [String; 3] {
    let w = d::constraint_word(&ctx.run.gfp_layout, f);
    let medium = match f.kind {
        FindingKind::Recursion => format!("possible {w} reclaim recursion"),
        FindingKind::Window => format!("possible {w} recursion window"),
        FindingKind::CrossTask => format!("possible {w} reclaim deadlock"),
    };
    let short = medium.trim_start_matches("possible ").to_string();
    [d::headline(&ctx.run.gfp_layout, f), medium, short]
}

/// Whether a line is a tag that must stay whole.
fn is_tag(line: &str) -> bool {
    line.starts_with("Fixes: ") || line.starts_with("Signature: ")
}

/// One line folded at spaces to `width` columns, continuation lines indented two more than
/// the line's own indent; a word longer than a line is cut (an email line has a hard limit).
fn fold(line: &str, width: usize) -> String {
    if line.len() <= width || is_tag(line) {
        return format!("{line}\n");
    }
    let lead = line.len() - line.trim_start().len();
    let cont = " ".repeat((lead + 2).min(width / 2));
    let mut out = String::new();
    let mut cur = line[..lead].to_string();
    let mut fresh = true;
    for word in line.split_whitespace() {
        let sep = usize::from(!fresh);
        if !fresh && cur.len() + sep + word.len() > width {
            out.push_str(&cur);
            out.push('\n');
            cur = cont.clone();
            fresh = true;
        }
        let mut w = word;
        while cur.len() + usize::from(!fresh) + w.len() > width {
            let room = width - cur.len() - usize::from(!fresh);
            if !fresh {
                cur.push(' ');
            }
            // ASCII only (the report is ASCII), so byte cuts are char cuts.
            cur.push_str(&w[..room]);
            w = &w[room..];
            out.push_str(&cur);
            out.push('\n');
            cur = cont.clone();
            fresh = true;
        }
        if !fresh {
            cur.push(' ');
        }
        cur.push_str(w);
        fresh = false;
    }
    out.push_str(&cur);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_indent_and_width() {
        let line = format!(" {}", "word ".repeat(40));
        let out = fold(&line, 72);
        assert!(out.lines().all(|l| l.len() <= 72), "{out}");
        assert!(
            out.lines().skip(1).all(|l| l.starts_with("   word")),
            "{out}"
        );
        let long = format!("  {}", "x".repeat(200));
        assert!(fold(&long, 72).lines().all(|l| l.len() <= 72));
        let tag =
            "Fixes: 9a5b183941b5 (\"mm, percpu: do not consider sleepable allocations atomic\")";
        assert_eq!(fold(tag, 72), format!("{tag}\n"));
        assert_eq!(fold("short", 72), "short\n");
    }
}
