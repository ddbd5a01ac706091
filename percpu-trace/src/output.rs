//! Output files and terminal output that are safe for a root process.
//!
//! The tool runs as root exactly when a host is in trouble, often with `--output` in a
//! shared directory such as /tmp, and what it writes holds kernel addresses (a KASLR leak
//! if world-readable). So every file it writes:
//! - is never reached through a symlink: the last path component is checked with
//!   `lstat`, new files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` (which fails on any
//!   existing entry, a dangling symlink included), and an existing file is replaced by
//!   renaming a fresh file over it, which replaces the directory entry and never writes
//!   into the old inode (so a hard link to another file is not written through either);
//! - is mode 0600 whatever the umask (`fchmod` after creation);
//! - does not replace a file owned by another user unless the caller passes `force`.
//!   A symlink at the path is refused even with `force`: removing it is the user's call.
//!
//! `-` means stdout. Errors are one line that names the path.
//!
//! The second half is terminal output that never panics: `print!` and `eprintln!` panic
//! when stdout/stderr is a closed pipe (`percpu-trace check | true`). Use [`out`] /
//! [`outln!`] for program output (errors propagate) and [`warn`] / [`warnln!`] for
//! diagnostics on stderr (errors ignored: there is nowhere left to report them).
use std::{
    ffi::{CString, OsString},
    fmt,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// Mode of every file this module creates.
pub const MODE: u32 = 0o600;

/// Where output goes: stdout (`-`) or a file made by [`create_private`].
#[derive(Debug)]
pub enum Output {
    /// The process's stdout.
    Stdout(io::Stdout),
    /// A private file.
    File(File),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(s) => s.write(buf),
            Output::File(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.write_all(buf),
            Output::File(f) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

impl Output {
    /// Asks the kernel to put written data on the disk (a file; nothing for stdout), so
    /// a power loss keeps what was recorded up to here.
    pub fn sync_data(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File(f) => f.sync_data(),
        }
    }
}

/// True for the path that means stdout.
pub fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Opens `path` for writing a stream: `-` is stdout, anything else goes through
/// [`create_private`].
pub fn open_output(path: &Path, force: bool) -> io::Result<Output> {
    if is_stdout(path) {
        return Ok(Output::Stdout(io::stdout()));
    }
    create_private(path, force).map(Output::File)
}

/// Creates `path` for writing, mode 0600, visible under its name at once (a recording
/// must be readable after SIGKILL, so no write-then-rename here). Refuses a symlink at the
/// path (even with `force`), a directory or block device, and an existing file or FIFO
/// owned by another user unless `force`. An existing regular file is replaced (a new
/// inode renamed over it), never truncated in place. A character device (`/dev/null`) is
/// opened as is: unprivileged users cannot create one. `-` is an error here: use
/// [`open_output`].
pub fn create_private(path: &Path, force: bool) -> io::Result<File> {
    if is_stdout(path) {
        return Err(fail(
            path,
            io::ErrorKind::InvalidInput,
            "stdout (\"-\") is not a file",
        ));
    }
    match check_target(path, force)? {
        Target::Missing => {
            let f = open_new(path).map_err(|e| create_error(path, e))?;
            Ok(f)
        }
        Target::Regular => {
            let (f, tmp) = temp_beside(path)?;
            // Replace the entry right away: the file is visible under its name from the
            // start, so a crash leaves it behind rather than a stray temp file.
            if let Err(e) = std::fs::rename(&tmp, path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(fail(path, e.kind(), &format!("cannot replace it: {e}")));
            }
            Ok(f)
        }
        Target::Special(md) => open_special(path, &md),
    }
}

/// Writes `contents` to `path` as a whole: `-` is stdout; a file is written to a 0600
/// temp file in the same directory and renamed over `path` only when complete, so a
/// failed write leaves the old file (or nothing). Same refusals as [`create_private`].
pub fn write_private(path: &Path, contents: &[u8], force: bool) -> io::Result<()> {
    if is_stdout(path) {
        let mut out = io::stdout().lock();
        return out
            .write_all(contents)
            .and_then(|()| out.flush())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write to stdout: {e}")));
    }
    let target = check_target(path, force)?;
    if let Target::Special(md) = target {
        let mut f = open_special(path, &md)?;
        return f
            .write_all(contents)
            .map_err(|e| fail(path, e.kind(), &e.to_string()));
    }
    let (mut f, tmp) = temp_beside(path)?;
    let done = f
        .write_all(contents)
        .and_then(|()| f.flush())
        .map_err(|e| fail(path, e.kind(), &e.to_string()))
        .and_then(|()| match target {
            // Something may have appeared at the path since the check: do not replace it.
            Target::Missing => rename_noreplace(&tmp, path).map_err(|e| create_error(path, e)),
            _ => std::fs::rename(&tmp, path)
                .map_err(|e| fail(path, e.kind(), &format!("cannot replace it: {e}"))),
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// What is at the path now, after the refusals.
enum Target {
    Missing,
    Regular,
    /// FIFO, socket or character device: opened in place.
    Special(std::fs::Metadata),
}

fn check_target(path: &Path, force: bool) -> io::Result<Target> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_dir(path);
            if !parent.is_dir() {
                return Err(fail(path, e.kind(), "the directory does not exist"));
            }
            return Ok(Target::Missing);
        }
        Err(e) => return Err(fail(path, e.kind(), &e.to_string())),
    };
    let ft = md.file_type();
    if ft.is_symlink() {
        return Err(fail(
            path,
            io::ErrorKind::AlreadyExists,
            "is a symbolic link: refusing to write through it (even with --force); \
             remove it or choose another path",
        ));
    }
    if ft.is_dir() {
        return Err(fail(path, io::ErrorKind::IsADirectory, "is a directory"));
    }
    if ft.is_block_device() {
        return Err(fail(
            path,
            io::ErrorKind::InvalidInput,
            "is a block device: refusing to write to it",
        ));
    }
    // A character device can only be made by root, so its owner says nothing about who
    // planted it; /dev/null and ttys are owned by others legitimately.
    if !ft.is_char_device() {
        let me = euid();
        if md.uid() != me && !force {
            return Err(fail(
                path,
                io::ErrorKind::PermissionDenied,
                &format!(
                    "exists and is owned by uid {}, not by you (uid {me}): refusing to \
                     overwrite it; use --force to replace it",
                    md.uid()
                ),
            ));
        }
    }
    // Replacing is a rename in the directory, which would succeed over a read-only file:
    // keep refusing what opening the file for writing would refuse (root may write
    // anything, as before).
    if ft.is_file() && md.uid() == euid() && euid() != 0 && md.mode() & 0o200 == 0 && !force {
        return Err(fail(
            path,
            io::ErrorKind::PermissionDenied,
            "permission denied (read-only file); use --force to replace it",
        ));
    }
    if ft.is_file() {
        Ok(Target::Regular)
    } else {
        Ok(Target::Special(md))
    }
}

/// Opens a FIFO, socket or character device found by [`check_target`] without following
/// a symlink, and checks it is still the same inode (nothing swapped in meanwhile).
fn open_special(path: &Path, md: &std::fs::Metadata) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| create_error(path, e))?;
    let now = f
        .metadata()
        .map_err(|e| fail(path, e.kind(), &e.to_string()))?;
    if now.dev() != md.dev() || now.ino() != md.ino() || now.file_type() != md.file_type() {
        return Err(fail(
            path,
            io::ErrorKind::Other,
            "changed while being opened: refusing to write to it",
        ));
    }
    Ok(f)
}

/// `O_CREAT|O_EXCL|O_NOFOLLOW`, then `fchmod` 0600 so the umask does not matter.
fn open_new(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(MODE))?;
    Ok(f)
}

/// A new 0600 file next to `path` (same directory, so a rename is atomic), and its name.
fn temp_beside(path: &Path) -> io::Result<(File, PathBuf)> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = parent_dir(path);
    let base = path.file_name().unwrap_or_default();
    let mut last = None;
    for _ in 0..16 {
        let mut name = OsString::from(".");
        name.push(base);
        name.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(name);
        match open_new(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            // Someone else's entry (perhaps planted): pick another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(fail(
                    path,
                    e.kind(),
                    &format!("cannot create a file in {}: {e}", dir.display()),
                ))
            }
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no free temporary name"));
    Err(fail(
        path,
        e.kind(),
        &format!("no free temporary name: {e}"),
    ))
}

/// `renameat2(RENAME_NOREPLACE)`: fails if anything (a symlink included) is at `to`.
/// Filesystems without it fall back to a plain rename (the check just before is the
/// protection then).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
    };
    let (a, b) = (c(from)?, c(to)?);
    // The raw syscall, not glibc's wrapper: `renameat2()` appeared in glibc 2.28 and the
    // release binary must start on glibc 2.17 (a kernel without the syscall says ENOSYS).
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => std::fs::rename(from, to),
        _ => Err(e),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Error of creating a new entry, in words: EEXIST after the check means something was
/// put there meanwhile (a planted symlink fails here too, thanks to O_EXCL/NOREPLACE).
fn create_error(path: &Path, e: io::Error) -> io::Error {
    let why = match e.kind() {
        io::ErrorKind::AlreadyExists => {
            "appeared while it was being created: refusing to replace it".to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::NotFound => "the directory does not exist".to_string(),
        _ if e.raw_os_error() == Some(libc::ELOOP) => {
            "is a symbolic link: refusing to write through it".to_string()
        }
        _ => e.to_string(),
    };
    fail(path, e.kind(), &why)
}

/// One line naming the path: "`path`: why".
fn fail(path: &Path, kind: io::ErrorKind, why: &str) -> io::Error {
    io::Error::new(kind, format!("{}: {why}", path.display()))
}

/// Writes program output to stdout. A closed pipe or any other error is returned (not a
/// panic, unlike `print!`), named as a stdout error.
pub fn out(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut o = io::stdout().lock();
    o.write_fmt(args)
        .and_then(|()| o.flush())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write to stdout: {e}")))
}

/// Writes a diagnostic to stderr, ignoring errors: stderr is where errors would go, so a
/// closed stderr must not end (or panic) the program.
pub fn warn(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `print!` that returns `io::Result<()>` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::out(format_args!($($arg)*))
    };
}

/// `println!` that returns `io::Result<()>` instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that ignores write errors instead of panicking.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::output::warn(format_args!($($arg)*))
    };
}

/// `eprintln!` that ignores write errors instead of panicking.
#[macro_export]
macro_rules! warnln {
    ($($arg:tt)*) => {
        $crate::output::warn(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
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
        // A character device is written in place, not replaced.
        write_private(Path::new("/dev/null"), b"x", false).unwrap();
        assert!(std::fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
