//! The recording a live `record` run writes: crash-safe (flushed and synced every second
//! and at each new finding, whole lines only), with the run's wall-clock length, and
//! bounded by `--max-size` (the file is rotated to `FILE.1`, which replaces the previous
//! one, so at most two files of that size exist).
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    event::{Event, Frame},
    output::{self, Output},
    record::{Header, RecordingWriter},
};

/// How often the run's wall-clock length is written (with each flush: ~50 bytes a second,
/// so a killed run still says how long it ran).
const RUN_RECORD_EVERY: Duration = Duration::from_secs(1);

/// A live recording: file or stdout.
pub struct LiveRecording {
    writer: RecordingWriter<Output>,
    header: Header,
    /// `None` for stdout (never rotated).
    path: Option<PathBuf>,
    max_size: Option<u64>,
    /// Every stack seen, so a rotated file can carry the stacks its events refer to.
    stacks: HashMap<u32, Vec<Frame>>,
    started: Instant,
    last_run_record: Instant,
    /// Files rotated away so far.
    pub rotations: u64,
}

impl LiveRecording {
    /// Creates the recording at `path` (`-`: stdout) and writes its header. Files are
    /// private and never written through a symlink ([`output::open_output`]).
    pub fn create(
        path: &Path,
        header: Header,
        force: bool,
        max_size: Option<u64>,
        started: Instant,
    ) -> io::Result<Self> {
        let out = output::open_output(path, force)?;
        Self::start(out, path, header, max_size, started)
    }

    /// Writes the header into `out`, already opened at `path` with
    /// [`output::open_output`] (`record` opens it before attaching anything, so a bad
    /// output fails before the probes are loaded).
    pub fn start(
        out: Output,
        path: &Path,
        header: Header,
        max_size: Option<u64>,
        started: Instant,
    ) -> io::Result<Self> {
        let writer = RecordingWriter::new(out, &header)?;
        Ok(LiveRecording {
            writer,
            header,
            path: (!output::is_stdout(path)).then(|| path.to_path_buf()),
            max_size,
            stacks: HashMap::new(),
            started,
            last_run_record: started,
            rotations: 0,
        })
    }

    /// Writes an event (and its stack first, when this file does not have it yet).
    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        if let Some(id) = ev.stack_id {
            if !self.writer.has_stack(id) {
                if let Some(frames) = self.stacks.get(&id) {
                    self.writer.write_stack(id, frames)?;
                }
            }
        }
        self.writer.write_event(ev)?;
        self.rotate_if_full()
    }

    /// Rotates when the file reached `--max-size`: checked after every line written, so
    /// a quiet host (activity, drops and run lines only) is bounded too.
    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self
            .max_size
            .is_some_and(|m| self.writer.bytes_written() >= m)
        {
            self.rotate()?;
        }
        Ok(())
    }

    /// Notes a stack (written before the first event that uses it).
    pub fn stack(&mut self, id: u32, frames: &[Frame]) -> io::Result<()> {
        self.stacks.insert(id, frames.to_vec());
        self.writer.write_stack(id, frames)?;
        self.rotate_if_full()
    }

    /// Writes the cumulative loss counters.
    pub fn drops(&mut self, d: &std::collections::BTreeMap<String, u64>) -> io::Result<()> {
        self.writer.write_drops(d)?;
        self.rotate_if_full()
    }

    /// Writes the kernel's host-wide activity totals.
    pub fn activity(&mut self, totals: &std::collections::BTreeMap<String, u64>) -> io::Result<()> {
        self.writer.write_activity(totals)?;
        self.rotate_if_full()
    }

    /// Pushes everything to the disk; writes the run's length when due (or `now`).
    pub fn sync(&mut self, run_record_now: bool) -> io::Result<()> {
        if run_record_now || self.last_run_record.elapsed() >= RUN_RECORD_EVERY {
            self.last_run_record = Instant::now();
            self.writer
                .write_run(self.started.elapsed().as_nanos() as u64, false)?;
            self.rotate_if_full()?;
        }
        self.writer.flush()?;
        self.writer.get_mut().map_or(Ok(()), Output::sync_data)
    }

    /// Ends the recording cleanly: last loss counters and the final run length, `traced`
    /// (the time traced: it ends when tracing stopped, not after the probes detached).
    pub fn finish(
        mut self,
        d: &std::collections::BTreeMap<String, u64>,
        traced: std::time::Duration,
    ) -> io::Result<()> {
        self.writer.write_drops(d)?;
        self.writer.write_run(traced.as_nanos() as u64, true)?;
        let mut out = self.writer.finish()?;
        io::Write::flush(&mut out)?;
        out.sync_data()
    }

    /// Closes this file as `FILE.1` (replacing an older one) and starts `FILE` again with
    /// the same header. Rename does not follow a symlink at `FILE.1`: it replaces the link.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.writer
            .write_run(self.started.elapsed().as_nanos() as u64, false)?;
        self.writer.flush()?;
        if let Some(o) = self.writer.get_mut() {
            o.sync_data()?;
        }
        let mut old = path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&path, &old)?;
        // The path is free now: created O_EXCL, private, as the first one was.
        let out = output::open_output(&path, false)?;
        self.writer = RecordingWriter::new(out, &self.header)?;
        self.rotations += 1;
        Ok(())
    }
}

/// Parses a size like `200M`, `1G`, `64k` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("{s:?}: unknown size suffix (use K, M or G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 200M"))?;
    match n.checked_mul(mult) {
        Some(v) if v >= 64 << 10 => Ok(v),
        Some(_) => Err(format!("{s:?} is too small (at least 64K)")),
        None => Err(format!("{s:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::event::EventKind;

    fn ev(ts: u64, stack: Option<u32>) -> Event {
        Event {
            ts_ns: ts,
            pid: 7,
            tgid: 7,
            comm: "w".into(),
            cgroup_id: 1,
            task_flags: 0,
            holds_mutex: Some(true),
            caller_gfp: Some(0xc00),
            stack_id: stack,
            kind: EventKind::PgtableAlloc,
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("1k").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn rotation_keeps_two_bounded_files_each_replayable_with_its_stacks() {
        let dir = std::env::temp_dir().join(format!("pt-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        let header = Header::new(EngineConfig::default());
        let max = 64 << 10;
        let mut r = LiveRecording::create(&path, header, false, Some(max), Instant::now()).unwrap();
        r.stack(5, &[Frame::default()]).unwrap();
        for i in 0..2000 {
            r.event(&ev(i, Some(5))).unwrap();
        }
        r.finish(&Default::default(), Duration::from_secs(1))
            .unwrap();
        assert!(r_rotations(&dir) >= 1);
        for f in [path.clone(), dir.join("r.jsonl.1")] {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len <= max + 4096, "{f:?} has {len} bytes");
            let (_, s) = crate::record::replay_file(&f).unwrap();
            assert!(s.events > 0);
            assert_eq!(
                s.missing_stacks, 0,
                "{f:?}: every file has the stacks it uses"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A quiet host writes only activity, drops and run lines: they count toward
    /// `--max-size` too (before: 111,905 bytes with `--max-size 64K` and no `.1`).
    #[test]
    fn a_quiet_recording_is_bounded_and_rotates() {
        let dir = std::env::temp_dir().join(format!("pt-rotate-quiet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.jsonl");
        let max = 64 << 10;
        let header = Header::new(EngineConfig::default());
        let mut r = LiveRecording::create(&path, header, false, Some(max), Instant::now()).unwrap();
        for i in 0..4000u64 {
            let m: std::collections::BTreeMap<String, u64> = [
                ("percpu_allocations".to_string(), i),
                ("waits".to_string(), i / 3),
            ]
            .into();
            r.activity(&m).unwrap();
            r.drops(&[("ringbuf_full".to_string(), 0)].into()).unwrap();
            r.sync(true).unwrap();
        }
        r.finish(&Default::default(), Duration::from_secs(1))
            .unwrap();
        let old = dir.join("q.jsonl.1");
        assert!(old.exists(), "no rotation on a quiet host");
        for f in [&path, &old] {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= max + 4096, "{f:?} has {len} bytes");
            crate::record::replay_file(f).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn r_rotations(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count() - 1
    }
}
