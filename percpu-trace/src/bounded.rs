//! Reading input files no larger than a real one can be.
//!
//! A path given on the command line (or a kernel file that is not what it should be) can be
//! anything: `--btf /dev/zero` used to read until memory ran out (4 GB in 4 s). Every
//! whole-file read of an input goes through here with a bound taken from what a real file
//! of that kind is, and the rest is refused in one line naming the file. Recording lines
//! have their own bound ([`crate::record::MAX_LINE`]).
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
};

/// Largest BTF read (raw, or the `.BTF` section of a vmlinux): a distribution kernel's
/// vmlinux BTF is 5 to 8 MiB.
pub const MAX_BTF: u64 = 64 << 20;

/// Largest kallsyms-format file read (/proc/kallsyms, System.map): ~10 MiB on Debian's
/// arm64 kernels with their modules loaded, the largest seen.
pub const MAX_KALLSYMS: u64 = 128 << 20;

/// Longest kallsyms line: address, type, a name of at most KSYM_NAME_LEN (512) and a
/// module name.
pub const MAX_KALLSYMS_LINE: usize = 4096;

/// The one-line refusal for a file larger than `max` bytes of its kind (`what`).
pub fn too_large(path: &Path, what: &str, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: more than {} MiB, which no real {what} is: refusing to read the rest",
            path.display(),
            max >> 20
        ),
    )
}

/// Reads all of `path`, at most `max` bytes: a larger file (or an endless one such as
/// /dev/zero) is refused with [`too_large`] after reading `max + 1` bytes.
pub fn read_file(path: &Path, what: &str, max: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_large(path, what, max));
    }
    Ok(buf)
}

/// [`read_file`] as text (invalid UTF-8 is an error, as `fs::read_to_string` has it).
pub fn read_text(path: &Path, what: &str, max: u64) -> io::Result<String> {
    String::from_utf8(read_file(path, what, max)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not UTF-8 text", path.display()),
        )
    })
}

/// Calls `each` with every line of a kallsyms-format file (without its newline), reading
/// line by line (the whole text is never in memory). Refuses a file over
/// [`MAX_KALLSYMS`] or a line over [`MAX_KALLSYMS_LINE`] in one line.
pub fn kallsyms_lines(path: &Path, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut r = BufReader::new(File::open(path)?).take(MAX_KALLSYMS + 1);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_KALLSYMS_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if r.limit() == 0 {
            return Err(too_large(path, "kallsyms or System.map", MAX_KALLSYMS));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_KALLSYMS_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a line longer than {MAX_KALLSYMS_LINE} bytes, which no real kallsyms \
                     or System.map has: refusing to read the rest",
                    path.display()
                ),
            ));
        }
        each(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /dev/zero is endless: every reader stops at its bound with one line (before: `check
    /// --btf /dev/zero` reached 4 GB in 4 s).
    #[test]
    fn endless_inputs_are_refused_at_their_bound() {
        let zero = Path::new("/dev/zero");
        let e = read_file(zero, "test file", 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero: more than 1 MiB, which no real test file is: refusing to read the rest"
        );
        let mut lines = 0;
        let e = kallsyms_lines(zero, |_| lines += 1).unwrap_err();
        assert!(e.to_string().contains("a line longer than 4096"), "{e}");
        assert_eq!(lines, 0);
        assert_eq!(read_file(Path::new("/dev/null"), "x", 1).unwrap(), b"");
        // The readers of each kind of input.
        let e = crate::kernel::btf_file::BtfFile::open(zero).err().unwrap();
        assert!(
            format!("{e:#}").contains("more than 64 MiB, which no real BTF is"),
            "{e:#}"
        );
        assert!(!format!("{e:#}").contains('\n'));
        let e = crate::symbolize::Symbolizer::from_kallsyms(zero).unwrap_err();
        assert!(format!("{e:#}").contains("a line longer than"), "{e:#}");
        let e = crate::kernel::symbols::read_lines_matching(zero, |_| true).unwrap_err();
        assert!(e.to_string().contains("a line longer than"), "{e}");
    }

    #[test]
    fn lines_are_given_without_newlines_and_a_last_line_without_one_too() {
        let p = std::env::temp_dir().join(format!("pt-bounded-{}", std::process::id()));
        std::fs::write(&p, b"ffff t a\n\nffff T b").unwrap();
        let mut got = Vec::new();
        kallsyms_lines(&p, |l| got.push(String::from_utf8_lossy(l).into_owned())).unwrap();
        assert_eq!(got, ["ffff t a", "", "ffff T b"]);
        std::fs::remove_file(&p).unwrap();
    }
}
