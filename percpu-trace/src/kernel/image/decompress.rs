//! The compressions a kernel image (or a Debian package member) comes in, recognised by
//! their magic, each decoded by a pure-Rust crate with a cap on the output: nothing larger
//! than a real kernel is ever held.
use std::io::{self, Read};

/// A compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// zstd frame (7.x bzImage payloads; some data.tar.zst).
    Zstd,
    /// xz container (6.1 payloads; Debian's data.tar.xz).
    Xz,
    /// gzip (arm64 Image.gz, EFI zboot payloads, data.tar.gz).
    Gzip,
    /// LZ4 legacy frames, as the kernel's build writes them.
    Lz4Legacy,
}

impl Codec {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
            Codec::Gzip => "gzip",
            Codec::Lz4Legacy => "lz4",
        }
    }

    fn magic(self) -> &'static [u8] {
        match self {
            Codec::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
            Codec::Xz => b"\xfd7zXZ\x00",
            Codec::Gzip => &[0x1f, 0x8b, 0x08],
            Codec::Lz4Legacy => &[0x02, 0x21, 0x4c, 0x18],
        }
    }

    /// Every codec.
    pub const ALL: [Codec; 4] = [Codec::Zstd, Codec::Xz, Codec::Gzip, Codec::Lz4Legacy];

    /// The codec whose magic `data` starts with.
    pub fn sniff(data: &[u8]) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| data.starts_with(c.magic()))
    }

    /// By a file-name extension (`data.tar.xz`).
    pub fn by_extension(name: &str) -> Option<Codec> {
        match name.rsplit('.').next()? {
            "zst" => Some(Codec::Zstd),
            "xz" => Some(Codec::Xz),
            "gz" => Some(Codec::Gzip),
            _ => None,
        }
    }

    /// Offsets where this codec's magic occurs in `data`, first `max` of them.
    pub fn positions(self, data: &[u8], max: usize) -> Vec<usize> {
        let m = self.magic();
        data.windows(m.len())
            .enumerate()
            .filter(|(_, w)| *w == m)
            .map(|(i, _)| i)
            .take(max)
            .collect()
    }
}

/// A streaming decoder of `codec` over `r` (the first frame or stream only: kernel payloads
/// are followed by a 4-byte size, which is not another frame).
pub fn reader<'a>(codec: Codec, r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        ),
        Codec::Xz => Box::new(lzma_rust2::XzReader::new(r, false)),
        Codec::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
        Codec::Lz4Legacy => Box::new(Lz4Legacy::new(r)),
    })
}

/// Decodes `data` with `codec`, refusing output larger than `cap` bytes.
pub fn decode(codec: Codec, data: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let r = reader(codec, data).map_err(|e| format!("{}: {e}", codec.name()))?;
    read_capped(r, cap).map_err(|e| format!("{}: {e}", codec.name()))
}

/// Reads all of `r`, failing past `cap` bytes.
pub fn read_capped(r: impl Read, cap: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(cap as u64 + 1).read_to_end(&mut out)?;
    if out.len() > cap {
        return Err(io::Error::other(format!(
            "more than {} MiB: larger than any kernel image",
            cap >> 20
        )));
    }
    Ok(out)
}

/// The kernel's LZ4 format: the legacy magic, then blocks of `u32 size` + LZ4 block, each
/// at most 8 MiB decoded; it ends at the end of the data or at a size that is not a block.
struct Lz4Legacy<R> {
    inner: R,
    started: bool,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Lz4Legacy<R> {
    fn new(inner: R) -> Self {
        Lz4Legacy {
            inner,
            started: false,
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn next_block(&mut self) -> io::Result<()> {
        const BLOCK: usize = 8 << 20;
        let mut word = [0u8; 4];
        if !self.started {
            self.inner.read_exact(&mut word)?;
            if word != [0x02, 0x21, 0x4c, 0x18] {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "not LZ4 legacy"));
            }
            self.started = true;
        }
        if self.inner.read_exact(&mut word).is_err() {
            self.done = true;
            return Ok(());
        }
        let size = u32::from_le_bytes(word) as usize;
        // The appended decompressed size, or another magic: the end of the frames.
        if size == 0 || size > lz4_flex::block::get_maximum_output_size(BLOCK) {
            self.done = true;
            return Ok(());
        }
        let mut block = vec![0u8; size];
        if self.inner.read_exact(&mut block).is_err() {
            // The kernel's 4-byte size trailer read as a block size: the end.
            self.done = true;
            return Ok(());
        }
        self.out.resize(BLOCK, 0);
        let n = lz4_flex::block::decompress_into(&block, &mut self.out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.out.truncate(n);
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for Lz4Legacy<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.next_block()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip_and_cap() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&[7u8; 10_000]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(Codec::sniff(&z), Some(Codec::Gzip));
        assert_eq!(decode(Codec::Gzip, &z, 1 << 20).unwrap().len(), 10_000);
        assert!(decode(Codec::Gzip, &z, 100)
            .unwrap_err()
            .contains("larger than"));
    }

    #[test]
    fn lz4_legacy_frames() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        let block = lz4_flex::block::compress(&data);
        let mut f = vec![0x02, 0x21, 0x4c, 0x18];
        f.extend_from_slice(&(block.len() as u32).to_le_bytes());
        f.extend_from_slice(&block);
        f.extend_from_slice(&(data.len() as u32).to_le_bytes()); // the kernel's size trailer
        assert_eq!(decode(Codec::Lz4Legacy, &f, 1 << 20).unwrap(), data);
    }

    #[test]
    fn garbage_fails_cleanly() {
        for c in Codec::ALL {
            let mut d = c.magic().to_vec();
            d.extend_from_slice(&[0xff; 64]);
            // Either an error or some bytes: never a panic.
            let _ = decode(c, &d, 1 << 20);
        }
    }
}
