//! Tests of [`super`]: planted symlinks, modes, owners, FIFOs.
use super::*;
use std::os::unix::fs::symlink;

/// A fresh directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "percpu-trace-output-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NOBODY: u32 = 65534;

fn chown(p: &Path, uid: u32) -> bool {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).is_ok()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A 0600 "secret" owned by nobody, and a symlink to it planted at `name`.
fn planted(d: &Dir, name: &str) -> Option<(PathBuf, PathBuf)> {
    let secret = d.0.join("secret");
    std::fs::write(&secret, b"root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    if !chown(&secret, NOBODY) {
        eprintln!("skipped: needs root to chown");
        return None;
    }
    let link = d.0.join(name);
    symlink(&secret, &link).unwrap();
    Some((secret, link))
}

#[test]
fn planted_symlink_is_refused_and_its_target_unchanged() {
    let d = Dir::new("symlink");
    let Some((secret, link)) = planted(&d, "out.txt") else {
        return;
    };
    for force in [false, true] {
        let e = create_private(&link, force).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&link.display().to_string()), "{msg}");
        assert!(msg.contains("symbolic link"), "{msg}");
        assert!(!msg.contains('\n'));
        let e = write_private(&link, b"report", force).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_output(&link, force).unwrap_err();
        assert!(e.to_string().contains("even with --force"), "{e}");
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"root only\n");
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(std::fs::symlink_metadata(&secret).unwrap().uid(), NOBODY);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // A dangling symlink too (it would create the target through the link).
    let dangling = d.0.join("dangling");
    symlink(d.0.join("nowhere"), &dangling).unwrap();
    assert!(create_private(&dangling, true).is_err());
    assert!(write_private(&dangling, b"x", true).is_err());
    assert!(!d.0.join("nowhere").exists());
}

const UMASK_DIR: &str = "PERCPU_TRACE_TEST_UMASK_DIR";

/// Creates files under a umask that would make them 0400, in a process of its own
/// (started by `new_files_are_0600_whatever_the_umask`): the umask is per process, and
/// changing it here would race with other tests creating files.
#[test]
#[ignore = "run in a child process by new_files_are_0600_whatever_the_umask"]
fn umask_child() {
    let Some(dir) = std::env::var_os(UMASK_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    // SAFETY: umask has no preconditions; this process runs only this test.
    unsafe { libc::umask(0o277) };
    create_private(&dir.join("rec.jsonl"), false)
        .unwrap()
        .write_all(b"x\n")
        .unwrap();
    write_private(&dir.join("report.txt"), b"report\n", false).unwrap();
}

#[test]
fn new_files_are_0600_whatever_the_umask() {
    let d = Dir::new("mode");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["output::tests::umask_child", "--exact", "--ignored"])
        .env(UMASK_DIR, &d.0)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let a = d.0.join("rec.jsonl");
    let b = d.0.join("report.txt");
    assert_eq!(mode(&a), 0o600);
    assert_eq!(mode(&b), 0o600);
    assert_eq!(std::fs::read(&b).unwrap(), b"report\n");
    // Replacing an existing 0644 file of ours gives 0600 too, and no temp file stays.
    let c = d.0.join("old.txt");
    std::fs::write(&c, b"old").unwrap();
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_private(&c, b"new", false).unwrap();
    assert_eq!(mode(&c), 0o600);
    assert_eq!(std::fs::read(&c).unwrap(), b"new");
    let mut f = create_private(&c, false).unwrap();
    f.write_all(b"stream").unwrap();
    assert_eq!(mode(&c), 0o600);
    assert_eq!(std::fs::read(&c).unwrap(), b"stream");
    let names: Vec<_> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn a_file_owned_by_someone_else_needs_force() {
    let d = Dir::new("owner");
    let p = d.0.join("theirs.txt");
    std::fs::write(&p, b"theirs").unwrap();
    if !chown(&p, NOBODY) {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let e = create_private(&p, false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    assert!(e.to_string().contains("--force"), "{e}");
    assert!(write_private(&p, b"mine", false).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"theirs");

    write_private(&p, b"mine", true).unwrap();
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (euid(), 0o600));
    assert_eq!(std::fs::read(&p).unwrap(), b"mine");

    assert!(chown(&p, NOBODY));
    let mut f = create_private(&p, true).unwrap();
    f.write_all(b"stream").unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().uid(), euid());
    assert_eq!(std::fs::read(&p).unwrap(), b"stream");
}

#[test]
fn replacing_never_writes_through_a_hard_link() {
    let d = Dir::new("hardlink");
    let other = d.0.join("other");
    std::fs::write(&other, b"keep").unwrap();
    let p = d.0.join("out.txt");
    std::fs::hard_link(&other, &p).unwrap();
    write_private(&p, b"new", false).unwrap();
    assert_eq!(std::fs::read(&other).unwrap(), b"keep");
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
}

#[test]
fn dash_is_stdout_and_other_refusals() {
    assert!(matches!(
        open_output(Path::new("-"), false).unwrap(),
        Output::Stdout(_)
    ));
    assert!(is_stdout(Path::new("-")));
    assert!(create_private(Path::new("-"), false).is_err());
    write_private(Path::new("-"), b"", false).unwrap();
    let d = Dir::new("misc");
    let e = create_private(&d.0, true).unwrap_err();
    assert!(e.to_string().ends_with("is a directory"), "{e}");
    let e = write_private(&d.0.join("no/such/dir/x"), b"", false).unwrap_err();
    assert!(e.to_string().contains("directory does not exist"), "{e}");
    // Outputs are regular files: a character device is refused, not written in place.
    let e = write_private(Path::new("/dev/null"), b"x", true).unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    assert!(std::fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
}

/// A FIFO at the path (ours or another user's, with or without --force) is refused at
/// once: opening it for writing would block until a reader came (before: forever, with
/// SIGTERM ignored), and with --force another user's FIFO got the data.
#[test]
fn a_fifo_is_refused_without_blocking_even_with_force() {
    let d = Dir::new("fifo");
    let p = d.0.join("f");
    mkfifo(&p);
    let theirs = chown(&p, NOBODY);
    let started = std::time::Instant::now();
    for force in [false, true] {
        for e in [
            create_private(&p, force).unwrap_err(),
            open_output(&p, force).unwrap_err(),
            write_private(&p, b"report", force).unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
            assert!(msg.contains("`-` for stdout"), "{msg}");
            assert!(!msg.contains('\n'));
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let md = std::fs::symlink_metadata(&p).unwrap();
    assert!(md.file_type().is_fifo(), "the FIFO was replaced");
    if theirs {
        assert_eq!(md.uid(), NOBODY);
    }
}

/// `nobody` plants `d -> ROOT_ONLY_DIR` in a sticky world-writable directory: root's
/// `-o STICKY/d/r.txt` is refused and nothing is created in the private directory.
/// Links owned by the caller, or outside shared directories, are followed as before.
#[test]
fn a_symlinked_directory_planted_in_a_shared_directory_is_not_followed() {
    let d = Dir::new("sticky");
    let sticky = d.0.join("tmp");
    let private = d.0.join("root-only");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = sticky.join("d");
    symlink(&private, &link).unwrap();
    // The caller's own link in a shared directory is fine.
    write_private(&link.join("mine.txt"), b"x", false).unwrap();
    assert!(private.join("mine.txt").exists());
    if !chown(&link, NOBODY) {
        eprintln!("skipped: needs root to chown");
        return;
    }
    for force in [false, true] {
        let out = link.join("r.txt");
        let e = write_private(&out, b"report", force).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("symbolic link owned by uid 65534"), "{msg}");
        assert!(msg.contains("fs.protected_symlinks"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(create_private(&out, force).is_err());
        assert!(open_output(&link.join("deeper/x"), force).is_err());
    }
    assert!(!private.join("r.txt").exists());
    // The same link outside a shared directory is followed (its owner could write there).
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_private(&link.join("r.txt"), b"report", false).unwrap();
    assert!(private.join("r.txt").exists());
}
