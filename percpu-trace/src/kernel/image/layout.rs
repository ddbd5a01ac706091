//! A kernel image in memory: a vmlinux ELF (x86_64 bzImage payloads, a user's vmlinux) or a
//! raw arm64 `Image`, with what discovery reads from it: the architecture, the BTF, the
//! version banner, the region to search for kallsyms, and the bytes at a link-time address
//! (the image's stand-in for kernel memory).
use object::{Object, ObjectSection, ObjectSegment};

use super::kallsyms::AddressMap;

/// arm64 `KIMAGE_VADDR` with 48-bit VA (6.6 and later): where a raw Image is taken to be
/// linked when it has no RELA table to say otherwise (a kernel packing its relocations as
/// RELR, as 7.x does). Only the printed addresses depend on it.
pub const ARM64_KIMAGE_VADDR: u64 = 0xffff_8000_8000_0000;

/// arm64 `KIMAGE_VADDR` is `MODULES_END`, a multiple of the 128 MiB (before 6.6) or 2 GiB
/// module region above the 128 MiB-aligned start of the kernel's VA range.
const ARM64_KIMAGE_ALIGN: u64 = 128 << 20;

/// `R_AARCH64_RELATIVE`: the relocations a relocatable arm64 kernel applies to itself.
const R_AARCH64_RELATIVE: u64 = 1027;

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
    /// "ELF vmlinux" or "raw arm64 Image", and for a raw Image where its link address
    /// came from.
    pub format: String,
    segments: Vec<Segment>,
    /// Byte range searched for kallsyms (.rodata, or the whole raw image).
    rodata: (usize, usize),
    /// Byte range of the BTF.
    btf: Option<(usize, usize)>,
    text_start: u64,
    /// A raw arm64 Image's RELA table (file offset, entries), sorted by place.
    rela: Option<(usize, usize)>,
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
            format: "ELF vmlinux".into(),
            segments,
            rodata,
            btf,
            text_start,
            rela: None,
            data,
        })
    }

    fn raw_arm64(data: Vec<u8>) -> Image {
        let len = data.len();
        let btf = find_raw_btf(&data);
        // Byte 0 of the Image is `_text` = KIMAGE_VADDR + text_offset (header word 1; 0 since
        // 5.8). KIMAGE_VADDR is in no header: the RELA table's places are link-time
        // addresses inside the image, so it is the aligned address below the lowest one.
        let text_offset = u64_at(&data, 8).unwrap_or(0);
        let image_size = u64_at(&data, 16).filter(|&n| n as usize >= len);
        let rela = find_rela(&data);
        let places = rela.map(|(at, n)| {
            let lo = u64_at(&data, at).unwrap_or(0);
            let hi = u64_at(&data, at + 24 * (n - 1)).unwrap_or(0);
            (lo, hi)
        });
        let from_rela = places.and_then(|(lo, hi)| {
            let text = (lo & !(ARM64_KIMAGE_ALIGN - 1)).checked_add(text_offset)?;
            let end = text.checked_add(image_size.unwrap_or(len as u64))?;
            (lo >= text && hi < end).then_some(text)
        });
        let (text_start, format) = match from_rela {
            Some(t) => (
                t,
                format!("raw arm64 Image linked at {t:#x} (from its RELA relocations)"),
            ),
            None => (
                ARM64_KIMAGE_VADDR + text_offset,
                format!(
                    "raw arm64 Image, link address {:#x} assumed (no RELA table)",
                    ARM64_KIMAGE_VADDR + text_offset
                ),
            ),
        };
        Image {
            arch: "aarch64".into(),
            format,
            segments: vec![Segment {
                vaddr: text_start,
                off: 0,
                len,
            }],
            rodata: (0, len),
            btf,
            text_start,
            rela: from_rela.and(rela),
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
        let text = self.banner_text()?;
        let line = text.strip_prefix("Linux version ")?;
        let release = line.split_whitespace().next()?.to_string();
        let version = line.find(" #").map(|p| line[p + 1..].trim().to_string())?;
        Some((release, version))
    }

    /// The whole `linux_banner` line, from "Linux version " to the newline: the first such
    /// string followed by a release number and a ` #` build.
    pub fn banner_text(&self) -> Option<String> {
        let needle = b"Linux version ";
        let mut from = 0;
        while let Some(i) = find(&self.data[from..], needle) {
            let at = from + i;
            from = at + needle.len();
            let end = self.data.len().min(at + 1024);
            let line = super::debug_vmlinux::banner_line(&self.data[at..end]);
            let rest = &line[needle.len()..];
            if rest.starts_with(|c: char| c.is_ascii_digit()) && rest.contains(" #") {
                return Some(line);
            }
        }
        None
    }

    /// The GNU build ids: the ELF's note, or in a raw Image every `NT_GNU_BUILD_ID` note of
    /// 20 bytes in the loaded bytes (the kernel's `.notes`, and the vDSO's inside it).
    pub fn build_ids(&self) -> Vec<Vec<u8>> {
        if self.format.starts_with("ELF") {
            let Ok(f) = object::File::parse(&self.data[..]) else {
                return Vec::new();
            };
            return f
                .build_id()
                .ok()
                .flatten()
                .map(<[u8]>::to_vec)
                .into_iter()
                .collect();
        }
        // namesz 4, descsz 20, type 3 (NT_GNU_BUILD_ID), "GNU\0".
        const NOTE: &[u8] = b"\x04\0\0\0\x14\0\0\0\x03\0\0\0GNU\0";
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(i) = find(&self.data[from..], NOTE) {
            let at = from + i + NOTE.len();
            from = at;
            if let Some(id) = self.data.get(at..at + 20) {
                found.push(id.to_vec());
            }
        }
        found
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

    fn relocated(&self, off: usize) -> Option<u64> {
        let (at, n) = self.image.rela?;
        let place = self.vaddr(off)?;
        let d = &self.image.data;
        let entry = |i: usize| u64_at(d, at + 24 * i);
        // Sorted by place (checked by find_rela): binary search.
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let p = entry(mid)?;
            if p == place {
                return u64_at(d, at + 24 * mid + 16);
            }
            if p < place {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        None
    }
}

fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The longest run of `R_AARCH64_RELATIVE` Elf64_Rela entries (place, info, addend) in a raw
/// arm64 Image, if it is long (a relocatable kernel has tens of thousands; a stray match a
/// few) and sorted by place (ld sorts it), so places can be binary-searched.
fn find_rela(d: &[u8]) -> Option<(usize, usize)> {
    let info = |o: usize| u64_at(d, o + 8);
    let mut best = (0, 0);
    let mut i = 0;
    while i + 24 <= d.len() {
        if info(i) != Some(R_AARCH64_RELATIVE) {
            i += 8;
            continue;
        }
        let start = i;
        while info(i) == Some(R_AARCH64_RELATIVE) {
            i += 24;
        }
        let n = (i - start) / 24;
        if n > best.1 {
            best = (start, n);
        }
    }
    let (at, n) = best;
    let sorted = (1..n).all(|k| u64_at(d, at + 24 * (k - 1)) < u64_at(d, at + 24 * k));
    (n >= 1024 && sorted).then_some(best)
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

    /// A raw arm64 Image of `len` bytes with a RELA table of `n` entries at 0x1000 whose
    /// places start `first` bytes past `link`.
    fn raw_with_rela(link: u64, first: u64, n: usize) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000 + 24 * n + 0x1000];
        d[56..60].copy_from_slice(b"ARM\x64");
        let len = d.len() as u64;
        d[16..24].copy_from_slice(&len.to_le_bytes());
        for i in 0..n {
            let e = 0x1000 + 24 * i;
            let place = link + first + 8 * i as u64;
            d[e..e + 8].copy_from_slice(&place.to_le_bytes());
            d[e + 8..e + 16].copy_from_slice(&R_AARCH64_RELATIVE.to_le_bytes());
            d[e + 16..e + 24].copy_from_slice(&(link + 0x10000 + i as u64).to_le_bytes());
        }
        d
    }

    #[test]
    fn raw_image_link_address_from_its_rela_table() {
        // 6.1's KIMAGE_VADDR, not the 6.6+ default.
        let link = 0xffff_8000_0800_0000;
        let img = Image::parse(raw_with_rela(link, 0x1000, 2048)).unwrap();
        assert!(
            img.format
                .contains("linked at 0xffff800008000000 (from its RELA"),
            "{}",
            img.format
        );
        let (_, map) = img.rodata();
        assert_eq!(map.text_start(), link);
        assert_eq!(map.relocated(0x1000 + 8 * 7), Some(link + 0x10000 + 7));
        assert_eq!(map.relocated(0x1004), None);
        // Too few entries to be a kernel's table: the 6.6+ default, said so.
        let img = Image::parse(raw_with_rela(link, 0x1000, 100)).unwrap();
        assert!(
            img.format.contains("assumed (no RELA table)"),
            "{}",
            img.format
        );
        assert_eq!(img.rodata().1.text_start(), ARM64_KIMAGE_VADDR);
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
