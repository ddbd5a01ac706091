//! Manual pages and shell completions, both generated from the one clap definition in
//! [`crate::cli`], so they cannot drift from `--help`.
//!
//! There is one page per subcommand, named as `man` looks them up (`percpu-trace-record`
//! is percpu-trace-record(1)), the way git and perf ship theirs. Every page has EXAMPLES
//! (the `--help` examples) and EXIT STATUS sections.
use clap::Command;

/// Exit status of every command: errors of any kind exit 2, as usage errors do.
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "percpu-trace",
        "0: success. 1: findings (record and report). 2: an error, bad arguments included.",
    ),
    ("man", "0: the page was printed. 2: an error."),
    ("completions", "0: the script was printed. 2: an error."),
    (
        "check",
        "0: the check ran (the verdict is in its output). 2: an error.",
    ),
    ("record", "0: no findings. 1: findings. 2: an error."),
    ("report", "0: no findings. 1: findings. 2: an error."),
];

/// The command tree as `man` and the completion scripts see it: `help` is not a page.
/// The caller hands in the clap definition (cli.rs owns it; no import back).
fn command() -> Command {
    let mut cmd = (BASE.get().copied().unwrap_or(empty))().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn empty() -> Command {
    Command::new("percpu-trace")
}

/// The program's clap definition, set once by [`set_command`].
static BASE: std::sync::OnceLock<fn() -> Command> = std::sync::OnceLock::new();

/// Registers the clap definition the pages and completions are made from.
pub fn set_command(f: fn() -> Command) {
    let _ = BASE.set(f);
}

/// Names of every page, top level first (`percpu-trace`, `percpu-trace-check`, ...).
pub fn page_names() -> Vec<String> {
    let cmd = command();
    std::iter::once(cmd.get_name().to_string())
        .chain(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| format!("{}-{}", cmd.get_name(), s.get_name())),
        )
        .collect()
}

/// The roff source of one page: `None` or `percpu-trace` is the top level, a subcommand's
/// name (`record`) or page name (`percpu-trace-record`) its own page.
pub fn page(name: Option<&str>) -> Result<Vec<u8>, String> {
    let top = command();
    let sub = name
        .map(|n| n.strip_prefix("percpu-trace-").unwrap_or(n))
        .filter(|n| *n != top.get_name());
    let (cmd, key) = match sub {
        None => (top.clone(), top.get_name().to_string()),
        Some(n) => {
            let s = top
                .get_subcommands()
                .find(|s| s.get_name() == n && !s.is_hide_set())
                .ok_or_else(|| {
                    format!("no manual page {n:?} (pages: {})", page_names().join(", "))
                })?;
            (s.clone(), n.to_string())
        }
    };
    render(cmd, &key).map_err(|e| format!("rendering the manual page: {e}"))
}

fn render(cmd: Command, key: &str) -> std::io::Result<Vec<u8>> {
    let examples = examples(&cmd);
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_version = cmd.get_version().is_some();
    // Subcommands have no version of their own: every page names the program's.
    let man =
        clap_mangen::Man::new(cmd).source(format!("percpu-trace {}", env!("CARGO_PKG_VERSION")));
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if has_args {
        man.render_options_section(&mut w)?;
    }
    if has_subs {
        man.render_subcommands_section(&mut w)?;
    }
    if !examples.is_empty() {
        w.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for l in &examples {
            w.extend_from_slice(roff_line(l).as_bytes());
            w.push(b'\n');
        }
        w.extend_from_slice(b".fi\n");
    }
    if let Some((_, text)) = EXIT_STATUS.iter().find(|(k, _)| *k == key) {
        w.extend_from_slice(b".SH \"EXIT STATUS\"\n");
        for l in text.split(". ") {
            w.extend_from_slice(
                format!(".TP\n{}\n", roff_line(l.trim_end_matches('.'))).as_bytes(),
            );
        }
    }
    // clap_mangen unwraps the version: only the top level has one.
    if has_version {
        man.render_version_section(&mut w)?;
    }
    Ok(w)
}

/// The indented example lines of the `--help` epilogue (the "EXAMPLES:" block).
fn examples(cmd: &Command) -> Vec<String> {
    let text = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string())
        .unwrap_or_default();
    text.lines()
        .skip_while(|l| !l.starts_with("EXAMPLES:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(|l| l.trim_start().to_string())
        .collect()
}

/// One line of literal text in roff: backslashes escaped, a leading `.` or `'` defused.
fn roff_line(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "percpu-trace", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: Option<&str>) -> String {
        register();
        String::from_utf8(page(name).unwrap()).unwrap()
    }

    /// The real definition, as `main` registers it.
    fn register() {
        use clap::CommandFactory;
        set_command(<crate::cli::Cli as CommandFactory>::command);
    }

    #[test]
    fn one_page_per_subcommand_each_with_exit_status() {
        register();
        let names = page_names();
        for want in [
            "percpu-trace",
            "percpu-trace-check",
            "percpu-trace-record",
            "percpu-trace-report",
            "percpu-trace-man",
            "percpu-trace-completions",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let top = text(None);
        assert!(top.contains(".TH percpu-trace 1 "), "{top}");
        // Every page the top level refers to exists.
        for n in &names[1..] {
            // roff writes a hyphen as `\-`.
            let cited = format!("{}(1)", n.replace('-', "\\-"));
            assert!(top.contains(&cited), "{cited} referenced: {top}");
            assert!(text(Some(n)).contains(&format!(".TH {n} 1 ")), "{n} page");
        }
        for (key, _) in EXIT_STATUS {
            let p = text(Some(key));
            assert!(p.contains(".SH \"EXIT STATUS\""), "{key}: {p}");
            assert!(p.contains(".TP\n2: an error"), "{key}: {p}");
        }
        let rec = text(Some("record"));
        assert!(
            rec.contains(".SH EXAMPLES\n.nf\nsudo percpu-trace record -d 5m"),
            "{rec}"
        );
        assert!(rec.contains("1: findings"), "{rec}");
        assert_eq!(
            page(Some("percpu-trace-record")).unwrap(),
            page(Some("record")).unwrap()
        );
        assert!(page(Some("nonsense")).is_err());
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_line(".x"), "\\&.x");
        assert_eq!(roff_line("a\\b"), "a\\eb");
    }

    #[test]
    fn completions_know_the_subcommands() {
        register();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let s = String::from_utf8(completions(shell)).unwrap();
            for sub in ["record", "report", "check", "completions"] {
                assert!(s.contains(sub), "{shell:?} lacks {sub}");
            }
            assert!(s.contains("ring-buffer-mib"), "{shell:?}");
        }
    }
}
