//! A cpio (newc) initramfs written directly, so no root is needed for device nodes or
//! ownership, then gzip'd.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev(u32, u32),
}

/// Files of an initramfs, by absolute path inside it.
#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(d) = p {
            let s = d.to_string_lossy();
            if s == "/" || s.is_empty() {
                break;
            }
            self.entries.entry(s.into_owned()).or_insert(Entry::Dir);
            p = d.parent();
        }
    }

    /// Adds an (empty) directory.
    pub fn dir(&mut self, path: &str) {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Dir);
    }

    /// Adds a file with these contents.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::File { data, mode });
    }

    /// Adds a host file (symlinks followed).
    pub fn host_file(&mut self, path: &str, host: &Path, mode: u32) -> Result<()> {
        let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.file(path, data, mode);
        Ok(())
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::Symlink(target.to_string()));
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::CharDev(major, minor));
    }

    /// Adds busybox-static at /bin/busybox and a link for every applet but "busybox"
    /// itself (linking that name over the binary makes every applet fail with ELOOP).
    pub fn busybox(&mut self, host: &Path) -> Result<()> {
        self.host_file("/bin/busybox", host, 0o755)?;
        let out = Command::new(host)
            .arg("--list-full")
            .output()
            .context("busybox --list-full")?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let name = applet.rsplit('/').next().unwrap_or(applet);
            if name == "busybox" || applet.is_empty() {
                continue;
            }
            let path = format!("/{applet}");
            if !self.entries.contains_key(&path) {
                self.symlink(&path, "/bin/busybox");
            }
        }
        Ok(())
    }

    /// Adds a dynamically linked host binary at `path` plus every library `ldd` lists, at the
    /// same paths as on the host (so the interpreter path baked into the binary works).
    pub fn binary_with_libs(&mut self, path: &str, host: &Path) -> Result<()> {
        self.host_file(path, host, 0o755)?;
        let out = Command::new("ldd")
            .arg(host)
            .output()
            .context("running ldd")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // Static binaries make ldd fail with "not a dynamic executable": nothing to copy.
            return Ok(());
        }
        for line in text.lines() {
            let lib = match line.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next().unwrap_or(""),
                None => line.split_whitespace().next().unwrap_or(""),
            };
            if lib.starts_with('/') {
                self.host_file(lib, Path::new(lib), 0o755)?;
            }
        }
        Ok(())
    }

    /// Writes the gzip'd newc archive.
    pub fn write_gz(&self, out: &Path) -> Result<()> {
        let mut cpio = Vec::new();
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match e {
                Entry::Dir => (0o040755, &[], (0, 0)),
                Entry::File { data, mode } => (0o100000 | mode, data, (0, 0)),
                Entry::Symlink(t) => (0o120777, t.as_bytes(), (0, 0)),
                Entry::CharDev(ma, mi) => (0o020600, &[], (*ma, *mi)),
            };
            newc_entry(&mut cpio, ino as u32 + 1, mode, name, data, rdev);
        }
        newc_entry(&mut cpio, 0, 0, "TRAILER!!!", &[], (0, 0));
        let mut child = Command::new("gzip")
            .args(["-n", "-6", "-c"])
            .stdin(Stdio::piped())
            .stdout(fs::File::create(out).with_context(|| format!("creating {}", out.display()))?)
            .spawn()
            .context("running gzip")?;
        child.stdin.take().expect("piped").write_all(&cpio)?;
        if !child.wait()?.success() {
            bail!("gzip failed");
        }
        Ok(())
    }
}

fn newc_entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8], rdev: (u32, u32)) {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Kernel module names (as in `depends=`, '-' and '_' equal) to their files under `dir`.
fn module_index(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut idx = HashMap::new();
    let mut stack = vec![dir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(base) = n.split(".ko").next().filter(|_| n.contains(".ko")) {
                    idx.insert(base.replace('-', "_"), p);
                }
            }
        }
    }
    Ok(idx)
}

fn decompress(p: &Path) -> Result<Vec<u8>> {
    let name = p.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return fs::read(p).map_err(Into::into);
    };
    let out = Command::new(tool)
        .arg("-dcq")
        .arg(p)
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -d {name} failed");
    }
    Ok(out.stdout)
}

/// `depends=` from a module's .modinfo strings.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(0);
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds `wanted` modules (those the kernel has as modules; built-in ones are skipped) and
/// their dependencies as /lib/modules/NAME.ko; returns the load order (dependencies first).
pub fn add_modules(
    ird: &mut Initramfs,
    modules_dir: &Path,
    wanted: &[&str],
) -> Result<Vec<String>> {
    let idx = module_index(modules_dir)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        name: &str,
        idx: &HashMap<String, PathBuf>,
        ird: &mut Initramfs,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let Some(p) = idx.get(name) else {
            // Not a module: built in (Debian builds virtio_pci and others in).
            return Ok(());
        };
        let data = decompress(p)?;
        for d in depends(&data) {
            visit(&d, idx, ird, seen, order)?;
        }
        ird.file(&format!("/lib/modules/{name}.ko"), data, 0o644);
        order.push(name.to_string());
        Ok(())
    }
    for w in wanted {
        let w = w.replace('-', "_");
        // Names that are not modules are built in (7.x packages ship no modules.builtin to
        // check against): the guest's mount then fails loudly if that was wrong.
        visit(&w, &idx, ird, &mut seen, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut v = Vec::new();
        newc_entry(&mut v, 1, 0o100644, "ab", b"xyz", (0, 0));
        assert_eq!(&v[..6], b"070701");
        // 110-byte header + "ab\0" padded to 4, + data padded to 4.
        assert_eq!(v.len(), 116 + 4);
        assert_eq!(v.len() % 4, 0);
    }

    #[test]
    fn modinfo_depends() {
        assert_eq!(
            depends(b"\0license=GPL\0depends=jbd2,crc16,mbcache\0intree=Y\0"),
            ["jbd2", "crc16", "mbcache"]
        );
        assert!(depends(b"\0depends=\0").is_empty());
    }
}
