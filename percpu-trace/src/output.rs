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
//! - is reached only through directories nobody else could have redirected: a symlink
//!   in the directory part that sits in a sticky or world-writable directory and is owned
//!   by neither the caller nor that directory's owner is refused (what
//!   `fs.protected_symlinks` does for the last component), see [`check_parent`];
//! - is a regular file: a FIFO, socket or device at the path is refused (even with
//!   `force`): opening a FIFO for writing blocks until a reader comes, and another user's
//!   FIFO would get the data. Files are opened `O_NONBLOCK` and checked with `fstat`
//!   before anything is written;
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
/// path, anything but a regular file (a FIFO, socket, device or directory: even with
/// `force`), a planted symlink in the directory part ([`check_parent`]), and an existing
/// file owned by another user unless `force`. An existing regular file is replaced (a new
/// inode renamed over it), never truncated in place. `-` is an error here: use
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
    let (mut f, tmp) = temp_beside(path)?;
    let done = f
        .write_all(contents)
        .and_then(|()| f.flush())
        .map_err(|e| fail(path, e.kind(), &e.to_string()))
        .and_then(|()| match target {
            // Something may have appeared at the path since the check: do not replace it.
            Target::Missing => rename_noreplace(&tmp, path).map_err(|e| create_error(path, e)),
            Target::Regular => std::fs::rename(&tmp, path)
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
}

fn check_target(path: &Path, force: bool) -> io::Result<Target> {
    check_parent(path)?;
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
    if !ft.is_file() {
        return Err(fail(
            path,
            io::ErrorKind::InvalidInput,
            &format!(
                "is a {}, not a regular file: refusing to write to it (even with --force); \
                 outputs are regular files, or `-` for stdout",
                kind_name(&ft)
            ),
        ));
    }
    if md.uid() != euid() && !force {
        return Err(fail(
            path,
            io::ErrorKind::PermissionDenied,
            &format!(
                "exists and is owned by uid {}, not by you (uid {}): refusing to overwrite \
                 it; use --force to replace it",
                md.uid(),
                euid()
            ),
        ));
    }
    // Replacing is a rename in the directory, which would succeed over a read-only file:
    // keep refusing what opening the file for writing would refuse (root may write
    // anything, as before).
    if md.uid() == euid() && euid() != 0 && md.mode() & 0o200 == 0 && !force {
        return Err(fail(
            path,
            io::ErrorKind::PermissionDenied,
            "permission denied (read-only file); use --force to replace it",
        ));
    }
    Ok(Target::Regular)
}

/// What a non-regular file is, in words.
fn kind_name(ft: &std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Refuses a path whose directory part goes through a symlink that another user could
/// have planted: one in a sticky or world-writable directory, owned by neither the caller
/// nor that directory's owner (`nobody` running `ln -s /root/private /tmp/d` must not make
/// root create `/tmp/d/report.txt` inside /root/private). This is the rule the kernel's
/// `fs.protected_symlinks` applies to the last component, applied to every directory
/// component (the last one is never followed at all: `O_NOFOLLOW`).
pub fn check_parent(path: &Path) -> io::Result<()> {
    let parent = parent_dir(path);
    let mut prefix = PathBuf::new();
    for comp in parent.components() {
        prefix.push(comp);
        let Ok(md) = std::fs::symlink_metadata(&prefix) else {
            // Missing: creating the file fails later with its own message.
            return Ok(());
        };
        if !md.file_type().is_symlink() {
            continue;
        }
        let dir = parent_dir(&prefix);
        let Ok(dmd) = std::fs::metadata(dir) else {
            continue;
        };
        let shared = dmd.mode() & (libc::S_ISVTX | 0o002) != 0;
        if shared && md.uid() != euid() && md.uid() != dmd.uid() {
            return Err(fail(
                path,
                io::ErrorKind::PermissionDenied,
                &format!(
                    "{} is a symbolic link owned by uid {} in the shared directory {}: \
                     refusing to follow it (as fs.protected_symlinks would); give the real \
                     directory",
                    prefix.display(),
                    md.uid(),
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `O_CREAT|O_EXCL|O_NOFOLLOW|O_NONBLOCK` (never blocks, never opens what is there),
/// checked with `fstat` to be a regular file, then `fchmod` 0600 so the umask does not
/// matter.
fn open_new(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file after creating it",
        ));
    }
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
#[path = "output_tests.rs"]
mod tests;
