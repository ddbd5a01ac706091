//! A kernel image in memory: a vmlinux ELF (x86_64 bzImage payloads, a user's vmlinux) or a
//! raw arm64 `Image`, with what discovery reads from it: the architecture, the BTF, the
//! version banner, the region to search for kallsyms, and the bytes at a link-time address
//! (the image's stand-in for kernel memory).
use object::{Object, ObjectSection, ObjectSegment};

use super::kallsyms::AddressMap;

/// arm64 `KIMAGE_VADDR` with 48-bit VA (6.6 and later): where a raw Image is linked. A raw
/// Image holds no ELF header to say so; only the printed addresses depend on it.
pub const ARM64_KIMAGE_VADDR: u64 = 0xffff_8000_8000_0000;

/// One loaded range: link-time address, file offset, length.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    off: usize,
    len: usize,
}

/// A kernel image and the ranges that map its bytes to addresses.
pub struct Image {
    data: Vec<u8>,
    /// `uname -m` of the kernel.
    pub arch: String,
    /// "ELF vmlinux" or "raw arm64 Image".
    pub format: &'static str,
    segments: Vec<Segment>,
    /// Byte range searched for kallsyms (.rodata, or the whole raw image).
    rodata: (usize, usize),
    /// Byte range of the BTF.
    btf: Option<(usize, usize)>,
    text_start: u64,
}

impl Image {
    /// Reads the layout of `data`: an ELF vmlinux or a raw arm64 Image.
    pub fn parse(data: Vec<u8>) -> Result<Image, String> {
        if data.starts_with(b"\x7fELF") {
            return Self::elf(data);
        }
        if data.get(56..60) == Some(b"ARM\x64") {
            return Ok(Self::raw_arm64(data));
        }
        Err("neither an ELF vmlinux nor an arm64 Image".into())
    }

    fn elf(data: Vec<u8>) -> Result<Image, String> {
        let f = object::File::parse(&data[..]).map_err(|e| format!("bad ELF: {e}"))?;
        let arch = match f.architecture() {
            object::Architecture::X86_64 => "x86_64",
            object::Architecture::Aarch64 => "aarch64",
            a => {
                return Err(format!(
                    "ELF for {a:?}: only x86_64 and aarch64 kernels are read"
                ))
            }
        };
        let mut segments: Vec<Segment> = f
            .segments()
            .filter_map(|s| {
                let (off, len) = s.file_range();
                Some(Segment {
                    vaddr: s.address(),
                    off: usize::try_from(off).ok()?,
                    len: usize::try_from(len).ok()?,
                })
            })
            .filter(|s| s.len > 0)
            .collect();
        if segments.is_empty() {
            // A vmlinux with section headers only: map by the sections.
            segments = f
                .sections()
                .filter_map(|s| {
                    let (off, len) = s.file_range()?;
                    Some(Segment {
                        vaddr: s.address(),
                        off: usize::try_from(off).ok()?,
                        len: usize::try_from(len).ok()?,
                    })
                })
                .filter(|s| s.vaddr != 0 && s.len > 0)
                .collect();
        }
        let range = |name: &str| -> Option<(usize, usize)> {
            let (off, len) = f.section_by_name(name)?.file_range()?;
            let (off, len) = (usize::try_from(off).ok()?, usize::try_from(len).ok()?);
            (off.checked_add(len)? <= data.len()).then_some((off, off + len))
        };
        let rodata = range(".rodata").unwrap_or((0, data.len()));
        let btf = range(".BTF");
        // `_text`: where the kernel's code starts (.head.text on arm64, .text on x86_64).
        let text_start = f
            .section_by_name(".head.text")
            .or_else(|| f.section_by_name(".text"))
            .map(|s| s.address())
            .ok_or("ELF without .text")?;
        Ok(Image {
            arch: arch.into(),
            format: "ELF vmlinux",
            segments,
            rodata,
            btf,
            text_start,
            data,
        })
    }

    fn raw_arm64(data: Vec<u8>) -> Image {
        let len = data.len();
        let btf = find_raw_btf(&data);
        Image {
            arch: "aarch64".into(),
            format: "raw arm64 Image",
            segments: vec![Segment {
                vaddr: ARM64_KIMAGE_VADDR,
                off: 0,
                len,
            }],
            rodata: (0, len),
            btf,
            text_start: ARM64_KIMAGE_VADDR,
            data,
        }
    }

    /// The bytes searched for kallsyms and the map of their offsets to addresses.
    pub fn rodata(&self) -> (&[u8], RodataMap<'_>) {
        let (s, e) = self.rodata;
        (
            &self.data[s..e],
            RodataMap {
                image: self,
                start: s,
            },
        )
    }

    /// The raw BTF, if the image has it.
    pub fn btf(&self) -> Option<&[u8]> {
        self.btf.map(|(s, e)| &self.data[s..e])
    }

    /// `len` bytes at link-time address `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        for s in &self.segments {
            if addr >= s.vaddr && addr - s.vaddr < s.len as u64 {
                let o = s.off + (addr - s.vaddr) as usize;
                let end = o.saturating_add(len).min(s.off + s.len);
                return Ok(self.data[o..end].to_vec());
            }
        }
        Err(format!("{addr:#x} is not in the image's loaded bytes"))
    }

    /// (release, version) from the `linux_banner` string ("Linux version 7.2.13+deb14-amd64
    /// (...) #1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)"): what `uname -r` and
    /// `uname -v` say once it runs.
    pub fn banner(&self) -> Option<(String, String)> {
        let needle = b"Linux version ";
        let mut from = 0;
        while let Some(i) = find(&self.data[from..], needle) {
            let at = from + i + needle.len();
            from = at;
            let line_end = self.data[at..]
                .iter()
                .take(1024)
                .position(|&b| b == b'\n' || b == 0)
                .map(|p| at + p)?;
            let line = String::from_utf8_lossy(&self.data[at..line_end]).into_owned();
            if !line.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let release = line.split_whitespace().next()?.to_string();
            let version = line.find(" #").map(|p| line[p + 1..].trim().to_string());
            if let Some(v) = version {
                return Some((release, v));
            }
        }
        None
    }
}

/// Offsets of the kallsyms search region to link-time addresses.
pub struct RodataMap<'a> {
    image: &'a Image,
    start: usize,
}

impl AddressMap for RodataMap<'_> {
    fn vaddr(&self, off: usize) -> Option<u64> {
        let o = self.start + off;
        self.image
            .segments
            .iter()
            .find(|s| o >= s.off && o < s.off + s.len)
            .map(|s| s.vaddr + (o - s.off) as u64)
    }

    fn text_start(&self) -> u64 {
        self.image.text_start
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw BTF inside an arm64 Image (its .BTF section), found by the magic and cut to the
/// length its header declares; a stray magic has no such header.
fn find_raw_btf(image: &[u8]) -> Option<(usize, usize)> {
    const MAGIC: [u8; 4] = [0x9f, 0xeb, 0x01, 0x00];
    let mut from = 0;
    while let Some(i) = find(&image[from..], &MAGIC) {
        let off = from + i;
        from = off + 1;
        let u = |o: usize| -> Option<usize> {
            let b = image.get(off + o..off + o + 4)?;
            Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
        };
        let (Some(hdr), Some(toff), Some(tlen), Some(soff), Some(slen)) =
            (u(4), u(8), u(12), u(16), u(20))
        else {
            continue;
        };
        let len = hdr + (toff + tlen).max(soff + slen);
        if hdr == 24 && tlen > 1 << 20 && off + len <= image.len() {
            return Some((off, off + len));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_kernel() {
        assert!(Image::parse(b"hello".to_vec()).is_err());
        assert!(Image::parse(b"\x7fELF garbage".to_vec()).is_err());
    }

    #[test]
    fn raw_image_banner_and_reads() {
        let mut d = vec![0u8; 4096];
        d[56..60].copy_from_slice(b"ARM\x64");
        let b = b"Linux version 7.3.4+deb13-arm64 (x@y) (gcc (Debian) 15) #1 SMP Debian 7.3.4-1 (2026-11-15)\n";
        d[1000..1000 + b.len()].copy_from_slice(b);
        let img = Image::parse(d).unwrap();
        assert_eq!(img.arch, "aarch64");
        let (r, v) = img.banner().unwrap();
        assert_eq!(r, "7.3.4+deb13-arm64");
        assert_eq!(v, "#1 SMP Debian 7.3.4-1 (2026-11-15)");
        assert_eq!(img.read(ARM64_KIMAGE_VADDR + 56, 4).unwrap(), b"ARM\x64");
        assert!(img.read(0x1000, 4).is_err());
        assert!(img.btf().is_none());
    }
}
