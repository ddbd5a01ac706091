//! The kernel's own symbol table (kallsyms) decoded from the bytes of an image, without the
//! running kernel: `scripts/kallsyms.c` lays it out as `kallsyms_num_syms`, `kallsyms_names`
//! (token-compressed, a ULEB128 length each), `kallsyms_markers` (the names offset of every
//! 256th symbol), `kallsyms_token_table` and `kallsyms_token_index`, and the addresses as
//! 32-bit `kallsyms_offsets`. What moves across versions is handled by checking candidates
//! rather than trusting a version number:
//! - where the offsets are: before `kallsyms_num_syms` with `kallsyms_relative_base` between
//!   (5.10, 6.1), or right after the token index (6.12, 7.x);
//! - what an offset means: base-relative (unsigned, from `kallsyms_relative_base`),
//!   base-relative with absolute per-CPU symbols (x86_64 up to 6.12: non-negative offsets are
//!   absolute per-CPU addresses, negative ones `base - 1 - off`), or place-relative (7.x: the
//!   address of the offset itself plus the signed offset);
//! - alignment between the tables (8 bytes up to 6.1, none after), a `kallsyms_seqs_of_names`
//!   table between the markers and the token table (6.2 to 6.3).
//!
//! A candidate is taken only when every marker agrees with the decoded names, the addresses
//! come out sorted (the tables are sorted by address) and `_text` lands where the image
//! starts: a wrong guess fails one of those.

/// One decoded symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Link-time address.
    pub addr: u64,
    /// nm type letter.
    pub kind: char,
    /// Name, compiler suffixes included.
    pub name: String,
}

/// How the 32-bit offsets became addresses (said in the evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrMode {
    /// `kallsyms_relative_base + (u32)off`.
    BaseRelative,
    /// Non-negative: absolute per-CPU address; negative: `base - 1 - off`.
    AbsolutePercpu,
    /// Address of the entry plus the signed offset.
    PlaceRelative,
}

impl AddrMode {
    /// For the evidence line.
    pub fn describe(self) -> &'static str {
        match self {
            AddrMode::BaseRelative => "base-relative offsets",
            AddrMode::AbsolutePercpu => "base-relative offsets, absolute per-CPU symbols",
            AddrMode::PlaceRelative => "place-relative offsets",
        }
    }
}

/// The decoded table and how it was read.
#[derive(Debug)]
pub struct Kallsyms {
    /// In table order (sorted by address).
    pub symbols: Vec<Symbol>,
    /// How the offsets were read.
    pub mode: AddrMode,
    /// Byte offset of the token table in the searched bytes.
    pub token_table: usize,
}

/// Where the searched bytes live: the link-time address of a byte offset, and where the
/// image starts (the address `_text` must have).
pub trait AddressMap {
    /// Link-time address of byte `off` of the searched bytes.
    fn vaddr(&self, off: usize) -> Option<u64>;
    /// The address `_text` has in this image (its first loaded byte).
    fn text_start(&self) -> u64;
    /// The value a relocation stores at byte `off` when the kernel relocates itself (a raw
    /// arm64 Image leaves such places 0 and lists them in its RELA table).
    fn relocated(&self, _off: usize) -> Option<u64> {
        None
    }
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The 256 tokens: (table start, offsets of each token, end of the index).
struct Tokens {
    table: usize,
    offsets: Vec<u16>,
    index_end: usize,
}

impl Tokens {
    fn token<'a>(&self, d: &'a [u8], i: u8) -> &'a [u8] {
        let s = self.table + self.offsets[i as usize] as usize;
        let e = d[s..]
            .iter()
            .position(|&b| b == 0)
            .map_or(d.len(), |p| s + p);
        &d[s..e]
    }
}

/// Finds the token table by the digits '0'..'9', which every kernel's symbols use and so keep
/// as one-character tokens 0x30..0x39 in a row, and checks it against the token index that
/// follows it. Tokens 0x01..0x2f are walked back over (each non-empty, NUL-terminated);
/// where token 0x00 starts is read from the index itself, because the table before it may
/// end right there without a NUL (arm64 6.1: a `kallsyms_seqs_of_names` table ending on
/// the 8-byte boundary the token table is aligned to).
fn find_tokens(d: &[u8]) -> Option<Tokens> {
    let digits: Vec<u8> = (b'0'..=b'9').flat_map(|c| [c, 0]).collect();
    let finder = memchr_find(&digits);
    let mut from = 0;
    while let Some(hit) = finder(&d[from..]).map(|i| from + i) {
        from = hit + 1;
        if let Some(t) = tokens_at(d, hit) {
            return Some(t);
        }
    }
    None
}

/// The token table whose token 0x30 is at `hit`, if its index agrees.
fn tokens_at(d: &[u8], hit: usize) -> Option<Tokens> {
    // Start of token 0x01.
    let mut s = hit;
    for _ in 0..0x2f {
        if s < 2 || d[s - 1] != 0 {
            return None;
        }
        let mut j = s - 2;
        while j > 0 && d[j] != 0 {
            j -= 1;
        }
        if d[j] != 0 {
            return None;
        }
        s = j + 1;
        if hit - s > 0x30 * 64 {
            return None;
        }
    }
    let tok1 = s;
    if tok1 < 2 || d[tok1 - 1] != 0 {
        return None;
    }
    // Offsets of tokens 0x01..0xff from token 0x01.
    let mut rel = Vec::with_capacity(255);
    let mut p = tok1;
    for _ in 1..256 {
        rel.push(p - tok1);
        let n = d.get(p..)?.iter().position(|&b| b == 0)?;
        p += n + 1;
    }
    for align in [2usize, 4, 8] {
        let idx = p.div_ceil(align) * align;
        let at = |i: usize| -> Option<usize> {
            let o = idx + 2 * i;
            Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?) as usize)
        };
        // index[1] is the length of token 0 plus its NUL.
        let (Some(0), Some(len0)) = (at(0), at(1)) else {
            continue;
        };
        if !(2..=64).contains(&len0) || len0 > tok1 {
            continue;
        }
        let table = tok1 - len0;
        if d[table..tok1 - 1].contains(&0) {
            continue;
        }
        let agree = rel
            .iter()
            .enumerate()
            .all(|(i, &r)| at(i + 1) == Some(r + len0));
        if agree {
            let offsets = std::iter::once(Some(0))
                .chain(rel.iter().map(|&r| u16::try_from(r + len0).ok()))
                .collect::<Option<Vec<u16>>>()?;
            return Some(Tokens {
                table,
                offsets,
                index_end: idx + 512,
            });
        }
    }
    None
}

/// A substring search (the kernel tables are megabytes in; a naive scan is fine but this
/// keeps it linear).
fn memchr_find(needle: &[u8]) -> impl Fn(&[u8]) -> Option<usize> + '_ {
    move |hay: &[u8]| {
        let first = needle[0];
        let mut i = 0;
        while i + needle.len() <= hay.len() {
            let p = hay[i..].iter().position(|&b| b == first)?;
            i += p;
            if hay.get(i..i + needle.len())? == needle {
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

/// Length of the names entry at `p` and where its tokens start.
fn entry(d: &[u8], p: usize) -> Option<(usize, usize)> {
    let b = *d.get(p)? as usize;
    if b & 0x80 != 0 {
        let hi = *d.get(p + 1)? as usize;
        Some(((b & 0x7f) | (hi << 7), p + 2))
    } else {
        Some((b, p + 1))
    }
}

/// End of `n` names entries from `p`.
fn walk(d: &[u8], mut p: usize, n: usize) -> Option<usize> {
    for _ in 0..n {
        let (len, start) = entry(d, p)?;
        if len == 0 {
            return None;
        }
        p = start + len;
    }
    (p <= d.len()).then_some(p)
}

/// The markers: a run of u32 starting at 0, increasing by a plausible amount per 256 names,
/// found by scanning back from the token table (they are right before it, or before a
/// `seqs_of_names` table).
fn find_markers(d: &[u8], before: usize) -> Option<(usize, Vec<u32>)> {
    let lo = before.saturating_sub(32 << 20);
    let mut q = before / 4 * 4;
    while q >= lo + 4 {
        q -= 4;
        if u32_at(d, q) != Some(0) {
            continue;
        }
        let mut vals = vec![0u32];
        let mut r = q + 4;
        while r + 4 <= before {
            let Some(v) = u32_at(d, r) else { break };
            let last = *vals.last()?;
            let step = v.wrapping_sub(last);
            if v <= last || !(256 * 2..=256 * 600).contains(&step) {
                break;
            }
            vals.push(v);
            r += 4;
        }
        if vals.len() >= 16 {
            return Some((q, vals));
        }
    }
    None
}

/// num_syms and the names start: the names end at the markers; every marker must agree.
fn find_names(d: &[u8], markers_at: usize, markers: &[u32]) -> Option<(usize, usize)> {
    let m = markers.len();
    let last = *markers.last()? as usize;
    let hi = markers_at.checked_sub(last)?;
    let lo = hi.saturating_sub(256 * 520);
    for ns in (lo..hi).rev() {
        let ok = [1, 2, m - 1]
            .iter()
            .filter(|&&k| k < m)
            .all(|&k| walk(d, ns, 256 * k).map(|e| e - ns) == Some(markers[k] as usize));
        if !ok {
            continue;
        }
        for gap in [4usize, 8] {
            let Some(n) = ns.checked_sub(gap).and_then(|p| u32_at(d, p)) else {
                continue;
            };
            let n = n as usize;
            if n.div_ceil(256) != m {
                continue;
            }
            let end = walk(d, ns + last, n - 256 * (m - 1))?;
            if end <= markers_at && markers_at - end < 8 {
                return Some((ns - gap, n));
            }
        }
    }
    None
}

/// Decodes every name (type letter first).
fn names(d: &[u8], tokens: &Tokens, start: usize, n: usize) -> Option<Vec<(char, String)>> {
    let mut out = Vec::with_capacity(n);
    let mut p = start;
    let mut buf = Vec::with_capacity(128);
    for _ in 0..n {
        let (len, s) = entry(d, p)?;
        buf.clear();
        for &t in d.get(s..s + len)? {
            buf.extend_from_slice(tokens.token(d, t));
        }
        p = s + len;
        let (&kind, name) = buf.split_first()?;
        out.push((kind as char, String::from_utf8_lossy(name).into_owned()));
    }
    Some(out)
}

/// Addresses from the offsets at `at` read in `mode`, or None when they are not sorted.
fn addresses(
    d: &[u8],
    at: usize,
    n: usize,
    mode: AddrMode,
    base: u64,
    map: &dyn AddressMap,
) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(n);
    let (mut last_rel, mut last_abs) = (0u64, 0u64);
    for i in 0..n {
        let raw = u32_at(d, at + 4 * i)?;
        let (a, absolute) = match mode {
            AddrMode::BaseRelative => (base.wrapping_add(raw as u64), false),
            AddrMode::AbsolutePercpu if (raw as i32) >= 0 => (raw as u64, true),
            AddrMode::AbsolutePercpu => (
                base.wrapping_sub(1).wrapping_sub(raw as i32 as i64 as u64),
                false,
            ),
            AddrMode::PlaceRelative => (
                map.vaddr(at + 4 * i)?
                    .wrapping_add(raw as i32 as i64 as u64),
                false,
            ),
        };
        let last = if absolute {
            &mut last_abs
        } else {
            &mut last_rel
        };
        if a < *last {
            return None;
        }
        *last = a;
        out.push(a);
    }
    Some(out)
}

/// Whether the addresses read from the offsets at `at` sit where the image puts the code:
/// `_text` (when listed) at the image start, and `_stext` from there up to the offsets table
/// itself (code comes before read-only data in every kernel's link order). Offsets read in
/// the wrong mode fail this: place-relative reading of base-relative offsets puts `_stext`
/// inside the table, base-relative reading of place-relative ones far from the image.
fn anchored(
    addrs: &[u64],
    text: Option<usize>,
    stext: Option<usize>,
    at: usize,
    map: &dyn AddressMap,
) -> bool {
    if let Some(t) = text {
        if addrs[t] != map.text_start() {
            return false;
        }
    }
    match (stext, map.vaddr(at)) {
        (Some(s), Some(table)) => (map.text_start()..table).contains(&addrs[s]),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Decodes the kallsyms tables found in `d`. Err says which table was not found.
pub fn decode(d: &[u8], map: &dyn AddressMap) -> Result<Kallsyms, String> {
    let tokens =
        find_tokens(d).ok_or("no kallsyms token table (kernel built without CONFIG_KALLSYMS?)")?;
    let (markers_at, markers) =
        find_markers(d, tokens.table).ok_or("kallsyms token table found but no markers")?;
    let (num_at, n) = find_names(d, markers_at, &markers)
        .ok_or("kallsyms markers found but no names table agreeing with them")?;
    let names_start = num_at
        + if u32_at(d, num_at + 4) == Some(0) {
            8
        } else {
            4
        };
    let names = names(d, &tokens, names_start, n).ok_or("kallsyms names do not decode")?;
    let text = names.iter().position(|(_, nm)| nm == "_text");
    let stext = names.iter().position(|(_, nm)| nm == "_stext");
    if text.is_none() && stext.is_none() {
        return Err(format!(
            "kallsyms: {n} names decoded but neither _text nor _stext among them: no anchor to check addresses against"
        ));
    }
    // Candidates: (offsets at, relative_base at) in the two layouts, at each alignment.
    let after = tokens.index_end;
    let before = |pad: usize| num_at.checked_sub(8 + 4 * n + pad);
    let mut cands: Vec<(usize, Option<usize>)> = Vec::new();
    for a in [after.div_ceil(4) * 4, after.div_ceil(8) * 8] {
        let base_at = (a + 4 * n).div_ceil(8) * 8;
        cands.push((a, Some(base_at)));
    }
    for pad in [0, 4] {
        if let Some(a) = before(pad) {
            cands.push((a, num_at.checked_sub(8)));
        }
    }
    cands.dedup();
    for mode in [
        AddrMode::PlaceRelative,
        AddrMode::AbsolutePercpu,
        AddrMode::BaseRelative,
    ] {
        for &(at, base_at) in &cands {
            let base = match mode {
                AddrMode::PlaceRelative => 0,
                _ => match base_at.map(|b| (b, u64_at(d, b))) {
                    Some((_, Some(b))) if b != 0 => b,
                    // Not relocated in place (a raw arm64 Image): the value its relocation
                    // stores there, or else _text, which the check below then requires to
                    // be in the table at offset 0.
                    Some((b, _)) => match map.relocated(b) {
                        Some(v) => v,
                        None if text.is_some() => map.text_start(),
                        None => continue,
                    },
                    None => continue,
                },
            };
            let Some(addrs) = addresses(d, at, n, mode, base, map) else {
                continue;
            };
            if !anchored(&addrs, text, stext, at, map) {
                continue;
            }
            let symbols = addrs
                .into_iter()
                .zip(names)
                .map(|(addr, (kind, name))| Symbol { addr, kind, name })
                .collect();
            return Ok(Kallsyms {
                symbols,
                mode,
                token_table: tokens.table,
            });
        }
    }
    Err(format!(
        "kallsyms: {n} names decoded but no offsets table gives sorted addresses with _text at {:#x}",
        map.text_start()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flat(u64);
    impl AddressMap for Flat {
        fn vaddr(&self, off: usize) -> Option<u64> {
            Some(self.0 + off as u64)
        }
        fn text_start(&self) -> u64 {
            self.0
        }
    }

    /// A small table in the 7.x layout: num_syms, names, markers, tokens, index, offsets.
    fn build(place_relative: bool) -> (Vec<u8>, Vec<(u64, String)>) {
        let base = 0xffff_8000_8000_0000u64;
        let mut syms: Vec<(u64, String)> = (0..300u64)
            .map(|i| (base + 0x1000 + i * 16, format!("Tfunc_{i:03}")))
            .collect();
        syms.insert(0, (base, "T_text".into()));
        let mut d = vec![0xaau8; 64];
        d.extend_from_slice(&(syms.len() as u32).to_le_bytes());
        d.extend_from_slice(&[0; 4]);
        let names_at = d.len();
        let mut markers = Vec::new();
        for (i, (_, n)) in syms.iter().enumerate() {
            if i % 256 == 0 {
                markers.push((d.len() - names_at) as u32);
            }
            d.push(n.len() as u8);
            d.extend_from_slice(n.as_bytes()); // every byte is its own token
        }
        while !d.len().is_multiple_of(8) {
            d.push(0);
        }
        for m in &markers {
            d.extend_from_slice(&m.to_le_bytes());
        }
        // Two markers only: `decode` needs a run of 16 (real kernels have hundreds), so
        // these tests check the pieces; the xtask test decodes every real image.
        let table = d.len();
        let mut idx = Vec::new();
        for c in 0..=255u8 {
            idx.push((d.len() - table) as u16);
            d.push(if c == 0 { b'?' } else { c });
            d.push(0);
        }
        for i in idx {
            d.extend_from_slice(&i.to_le_bytes());
        }
        let offs = d.len();
        for (i, (a, _)) in syms.iter().enumerate() {
            let v = if place_relative {
                a.wrapping_sub(base + (offs + 4 * i) as u64) as i64 as i32 as u32
            } else {
                (a - base) as u32
            };
            d.extend_from_slice(&v.to_le_bytes());
        }
        while !d.len().is_multiple_of(8) {
            d.push(0);
        }
        d.extend_from_slice(&if place_relative { 0 } else { base }.to_le_bytes());
        (d, syms)
    }

    #[test]
    fn tokens_and_names_walk() {
        let (d, syms) = build(true);
        let t = find_tokens(&d).expect("token table");
        assert_eq!(t.token(&d, b'f'), b"f");
        let start = 64 + 8;
        assert_eq!(
            names(&d, &t, start, syms.len()).unwrap()[1],
            ('T', "func_000".to_string())
        );
        assert!(walk(&d, start, syms.len()).is_some());
    }

    #[test]
    fn token_zero_found_without_a_nul_before_it() {
        // arm64 6.1: kallsyms_seqs_of_names ends on the token table's 8-byte boundary, so
        // the byte before token 0 is a table byte, not a NUL.
        let (mut d, _) = build(true);
        let table = find_tokens(&d).unwrap().table;
        d[table - 1] = 0xee;
        d[table - 2] = 0x76;
        let t = find_tokens(&d).expect("token table");
        assert_eq!(t.table, table);
        assert_eq!(t.token(&d, 0), b"?");
        assert_eq!(t.token(&d, b'f'), b"f");
    }

    #[test]
    fn anchors_reject_offsets_read_in_the_wrong_mode() {
        let map = Flat(0xffff_8000_0800_0000);
        let base = map.0 + 0x10000;
        // _stext first (arm64 6.1 lists no _text), then code, then the tables at 0x100000.
        let at = 0x10_0000;
        let right = [base, base + 0x40, base + 0x90];
        assert!(anchored(&right, None, Some(0), at, &map));
        // The same offsets (0, 0x40, 0x90) read place-relative: _stext inside the table.
        let wrong: Vec<u64> = [0u64, 0x40, 0x90]
            .iter()
            .enumerate()
            .map(|(i, o)| map.0 + at as u64 + 4 * i as u64 + o)
            .collect();
        assert!(!anchored(&wrong, None, Some(0), at, &map));
        // _text, when listed, must be the image start.
        assert!(!anchored(&right, Some(0), Some(0), at, &map));
        assert!(anchored(&[map.0, base], Some(0), Some(1), at, &map));
    }

    #[test]
    fn offsets_in_every_mode() {
        let map = Flat(0xffff_8000_8000_0000);
        for place in [true, false] {
            let (d, syms) = build(place);
            let t = find_tokens(&d).unwrap();
            let at = t.index_end.div_ceil(4) * 4;
            let mode = if place {
                AddrMode::PlaceRelative
            } else {
                AddrMode::BaseRelative
            };
            let a = addresses(&d, at, syms.len(), mode, map.0, &map).unwrap();
            assert_eq!(a[5], syms[5].0);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let map = Flat(0);
        assert!(decode(&[], &map).is_err());
        assert!(decode(&[0u8; 4096], &map).is_err());
        let digits: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(decode(&digits, &map).is_err());
    }
}
