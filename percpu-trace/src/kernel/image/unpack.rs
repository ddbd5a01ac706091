//! From a file an SRE has to the kernel image inside it: a Debian kernel package (the image
//! member of its data.tar, read as a stream: the modules after it are never decompressed), a
//! bzImage (its payload found through the setup header, else by magic), an EFI zboot image,
//! a compressed Image.gz, or an image as is (vmlinux ELF, arm64 Image). Every step is named
//! for the evidence; every read is capped by what a real kernel can be.
use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use super::decompress::{self, Codec};

/// The largest vmlinuz/Image file read (Debian's arm64 Image is about 50 MiB).
pub const MAX_FILE: usize = 256 << 20;
/// The largest decompressed image (Debian's x86_64 vmlinux is about 65 MiB).
pub const MAX_IMAGE: usize = 256 << 20;

/// The kernel image found in a file and how.
pub struct Unpacked {
    /// Bytes of the ELF vmlinux or raw arm64 Image.
    pub image: Vec<u8>,
    /// How it was reached ("deb data.tar.xz: ./boot/vmlinuz-6.1.0-57-amd64", "bzImage xz
    /// payload at 0x52cc").
    pub steps: Vec<String>,
    /// (Package, Version) of a Debian package.
    pub package: Option<(String, String)>,
}

/// Finds the kernel image in `path`.
pub fn open(path: &Path) -> Result<Unpacked, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut head = [0u8; 8];
    let n = f.read(&mut head).map_err(|e| format!("cannot read: {e}"))?;
    if head[..n].starts_with(b"!<arch>\n") {
        return deb(path);
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_FILE as u64 {
        return Err(format!(
            "{} MiB: larger than any kernel image (at most {} MiB is read)",
            len >> 20,
            MAX_FILE >> 20
        ));
    }
    let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut steps = Vec::new();
    let image = kernel_bytes(data, &mut steps, 0)?;
    Ok(Unpacked {
        image,
        steps,
        package: None,
    })
}

/// A Debian package: Package/Version from control.tar, the image from data.tar.
fn deb(path: &Path) -> Result<Unpacked, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    let mut package = None;
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|e| format!("not a readable .deb (ar): {e}"))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(codec) = Codec::by_extension(&name) else {
            continue;
        };
        let stream = decompress::reader(codec, entry).map_err(|e| format!("{name}: {e}"))?;
        let mut tar = tar::Archive::new(stream);
        let entries = tar.entries().map_err(|e| format!("{name}: {e}"))?;
        if name.starts_with("control.tar") {
            for e in entries {
                let mut e = e.map_err(|e| format!("{name}: {e}"))?;
                if e.path().is_ok_and(|p| p.ends_with("control")) {
                    let text = decompress::read_capped(&mut e, 1 << 20)
                        .map_err(|e| format!("{name}: {e}"))?;
                    package = control_fields(&String::from_utf8_lossy(&text));
                }
            }
            continue;
        }
        if !name.starts_with("data.tar") {
            continue;
        }
        for e in entries {
            let mut e = e.map_err(|e| format!("{name} (truncated package?): {e}"))?;
            let p = e
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !is_image_path(&p) || e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let data = decompress::read_capped(&mut e, MAX_FILE)
                .map_err(|e| format!("{name}: {p}: {e} (truncated package?)"))?;
            let mut steps = vec![format!("package member {name}: {p}")];
            let image = kernel_bytes(data, &mut steps, 0)?;
            return Ok(Unpacked {
                image,
                steps,
                package,
            });
        }
        return Err(match &package {
            Some((pkg, _)) => format!(
                "package {pkg} holds no kernel image (vmlinuz, vmlinux or Image): modules, headers or -dbg packages are not kernels"
            ),
            None => "the package holds no kernel image (vmlinuz, vmlinux or Image)".into(),
        });
    }
    Err("not a kernel package: no data.tar member (truncated .deb?)".into())
}

/// The paths of a kernel image in a Debian package (6.x: /boot/vmlinuz-REL; 7.x:
/// /usr/lib/modules/REL/vmlinuz).
fn is_image_path(p: &str) -> bool {
    let file = p.rsplit('/').next().unwrap_or(p);
    let dir = p.trim_start_matches("./");
    let in_boot =
        dir.starts_with("boot/") && (file.starts_with("vmlinuz-") || file.starts_with("vmlinux-"));
    let in_modules = (dir.starts_with("usr/lib/modules/") || dir.starts_with("lib/modules/"))
        && (file == "vmlinuz" || file == "vmlinux" || file == "Image");
    in_boot || in_modules
}

fn control_fields(text: &str) -> Option<(String, String)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    Some((field("Package:")?, field("Version:")?))
}

/// The ELF vmlinux or raw arm64 Image in `data` (decompressing once or twice at most).
fn kernel_bytes(data: Vec<u8>, steps: &mut Vec<String>, depth: u32) -> Result<Vec<u8>, String> {
    if data.starts_with(b"\x7fELF") || data.get(56..60) == Some(b"ARM\x64") {
        return Ok(data);
    }
    if depth > 2 {
        return Err("nested compression deeper than a kernel uses".into());
    }
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        return Err("an initramfs (cpio archive), not a kernel image".into());
    }
    // EFI zboot (arm64 vmlinuz.efi): "zimg", payload offset and size, compression name.
    if data.starts_with(b"MZ") && data.get(4..8) == Some(b"zimg") {
        let u = |o: usize| -> Option<usize> {
            Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize)
        };
        let (off, size) = (u(8).unwrap_or(0), u(12).unwrap_or(0));
        let payload = data
            .get(off..off.saturating_add(size))
            .ok_or("EFI zboot image with its payload out of the file")?;
        let codec =
            Codec::sniff(payload).ok_or("EFI zboot payload in an unsupported compression")?;
        steps.push(format!("EFI zboot {} payload at {off:#x}", codec.name()));
        let inner = decompress::decode(codec, payload, MAX_IMAGE)?;
        return kernel_bytes(inner, steps, depth + 1);
    }
    // x86 bzImage: the setup header says where the compressed vmlinux is.
    if data.get(0x202..0x206) == Some(b"HdrS") {
        let setup = match data.get(0x1f1).copied().unwrap_or(0) {
            0 => 4,
            n => n as usize,
        };
        let u = |o: usize| -> Option<usize> {
            Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize)
        };
        if let (Some(po), Some(pl)) = (u(0x248), u(0x24c)) {
            let start = (setup + 1) * 512 + po;
            if let Some(payload) = data.get(start..start.saturating_add(pl)) {
                if let Some(codec) = Codec::sniff(payload) {
                    steps.push(format!("bzImage {} payload at {start:#x}", codec.name()));
                    let inner = decompress::decode(codec, payload, MAX_IMAGE)?;
                    return kernel_bytes(inner, steps, depth + 1);
                }
            }
        }
    }
    if let Some(codec) = Codec::sniff(&data) {
        steps.push(format!("{} stream", codec.name()));
        let inner = decompress::decode(codec, &data, MAX_IMAGE)?;
        if inner.starts_with(b"070701") || inner.starts_with(b"070702") {
            return Err(format!(
                "a {}-compressed initramfs (cpio archive), not a kernel image",
                codec.name()
            ));
        }
        return kernel_bytes(inner, steps, depth + 1);
    }
    // Last resort: the first compressed stream anywhere that decodes to a kernel.
    for codec in Codec::ALL {
        for at in codec.positions(&data, 4) {
            if let Ok(inner) = decompress::decode(codec, &data[at..], MAX_IMAGE) {
                if inner.starts_with(b"\x7fELF") || inner.get(56..60) == Some(b"ARM\x64") {
                    steps.push(format!("{} stream found at {at:#x}", codec.name()));
                    return Ok(inner);
                }
            }
        }
    }
    Err(
        "not a kernel image: no ELF, arm64 Image, bzImage, zboot or compressed kernel inside"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, data: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pt-unpack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn bad_inputs_say_what_they_are() {
        let e = open(&tmp("random", &[0x5a; 5000])).err().unwrap();
        assert!(e.contains("not a kernel image"), "{e}");
        let e = open(&tmp("initrd", b"070701000000")).err().unwrap();
        assert!(e.contains("initramfs"), "{e}");
        let e = open(&tmp("trunc.deb", b"!<arch>\ndebian-binary   0"))
            .err()
            .unwrap();
        assert!(e.contains(".deb") || e.contains("package"), "{e}");
        assert!(open(Path::new("/nonexistent/vmlinuz")).is_err());
    }

    #[test]
    fn image_paths() {
        assert!(is_image_path("./boot/vmlinuz-6.1.0-57-amd64"));
        assert!(is_image_path(
            "./usr/lib/modules/7.2.13+deb14-amd64/vmlinuz"
        ));
        assert!(!is_image_path("./boot/System.map-6.1.0-57-amd64"));
        assert!(!is_image_path(
            "./usr/lib/modules/7.2.13+deb14-amd64/kernel/fs/x.ko"
        ));
    }
}
