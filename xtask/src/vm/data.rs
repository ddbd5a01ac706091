//! The data disk: files whose page cache reclaim can take.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use super::kernels::run as run_cmd;

/// An ext4 image holding `big` (400 MiB, read by noio-scope and contention) and `big1000`
/// (1000 MiB, the page cache `recursion` fills in its 2 GiB guest): page cache that reclaim
/// can really take (reading a raw block device did not fill the page cache). Made without
/// mounting (`mke2fs -d`) and booted with snapshot=on, so it stays pristine and is built
/// once (a new name when its contents change: the cache is shared between worktrees).
pub fn image(cache: &Path) -> Result<PathBuf> {
    let img = cache.join("data2-ext4.img");
    if img.exists() {
        return Ok(img);
    }
    let src = cache.join(format!("data-src.{}", std::process::id()));
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src)?;
    // Non-zero bytes, so no tool along the way turns the file into holes.
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 | 1)
        .collect();
    for (name, mib) in [("big", 400), ("big1000", 1000)] {
        let mut f = fs::File::create(src.join(name))?;
        for _ in 0..mib {
            f.write_all(&chunk)?;
        }
    }
    let tmp = cache.join(format!("data2-ext4.img.part.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    run_cmd(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(&src)
            .arg(&tmp)
            .arg("1600M"),
        "mke2fs (data image)",
    )?;
    fs::rename(&tmp, &img)?;
    fs::remove_dir_all(&src)?;
    Ok(img)
}
