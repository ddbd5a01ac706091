//! Writing recordings: one whole JSON line per record.
use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use serde::Serialize;

use super::format::{Header, Record};
use crate::event::{Event, Frame};

/// Writes a recording. Buffered; flushed by [`RecordingWriter::finish`] or on drop.
pub struct RecordingWriter<W: Write> {
    out: Option<BufWriter<W>>,
    stacks: HashSet<u32>,
    line: Vec<u8>,
    written: u64,
}

impl RecordingWriter<File> {
    /// Creates `path` and writes the header: [`RecordingWriter::create_with`] without
    /// `force`.
    pub fn create(path: &Path, header: &Header) -> io::Result<Self> {
        Self::create_with(path, header, false)
    }

    /// Creates `path` with [`crate::output::create_private`] (never through a symlink,
    /// mode 0600, another user's file replaced only with `force`) and writes the header.
    pub fn create_with(path: &Path, header: &Header, force: bool) -> io::Result<Self> {
        let f = crate::output::create_private(path, force)?;
        RecordingWriter::new(f, header)
    }
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the header to `out`.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = RecordingWriter {
            out: Some(BufWriter::with_capacity(256 << 10, out)),
            stacks: HashSet::new(),
            line: Vec::with_capacity(512),
            written: 0,
        };
        w.put(header)?;
        Ok(w)
    }

    fn put<T: Serialize>(&mut self, v: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v).map_err(io::Error::other)?;
        self.line.push(b'\n');
        match &mut self.out {
            Some(o) => {
                o.write_all(&self.line)?;
                self.written += self.line.len() as u64;
                Ok(())
            }
            None => Err(io::Error::other("recording already finished")),
        }
    }

    /// Bytes written so far (header included).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Writes an event. Write its stack first with [`RecordingWriter::write_stack`].
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            t: &'static str,
            #[serde(flatten)]
            ev: &'a Event,
        }
        self.put(&Tagged { t: "event", ev })
    }

    /// Whether stack `id` was written already.
    pub fn has_stack(&self, id: u32) -> bool {
        self.stacks.contains(&id)
    }

    /// Writes a stack table entry; a no-op for an id already written.
    pub fn write_stack(&mut self, id: u32, frames: &[Frame]) -> io::Result<()> {
        if !self.stacks.insert(id) {
            return Ok(());
        }
        #[derive(Serialize)]
        struct Stack<'a> {
            t: &'static str,
            id: u32,
            frames: &'a [Frame],
        }
        self.put(&Stack {
            t: "stack",
            id,
            frames,
        })
    }

    /// Writes the cumulative loss counters.
    pub fn write_drops(&mut self, counters: &BTreeMap<String, u64>) -> io::Result<()> {
        self.put(&Record::Drops(counters.clone()))
    }

    /// Writes the kernel's host-wide activity totals.
    pub fn write_activity(&mut self, totals: &BTreeMap<String, u64>) -> io::Result<()> {
        self.put(&Record::Activity(totals.clone()))
    }

    /// Writes the run's wall-clock length so far.
    pub fn write_run(&mut self, elapsed_ns: u64, ended: bool) -> io::Result<()> {
        self.put(&Record::Run { elapsed_ns, ended })
    }

    /// Pushes what is buffered to the file (each record is a whole line, so a reader
    /// after a crash sees complete lines up to the last flush).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }

    /// The underlying writer (after [`RecordingWriter::flush`], everything written so far
    /// has reached it).
    pub fn get_mut(&mut self) -> Option<&mut W> {
        self.out.as_mut().map(BufWriter::get_mut)
    }

    /// Writes any record.
    pub fn write_record(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::Event(ev) => self.write_event(ev),
            Record::Stack { id, frames } => self.write_stack(*id, frames),
            Record::Drops(d) => self.write_drops(d),
            Record::Run { elapsed_ns, ended } => self.write_run(*elapsed_ns, *ended),
            Record::Activity(a) => self.put(&Record::Activity(a.clone())),
        }
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let out = self.out.take().expect("out is only taken here");
        out.into_inner().map_err(|e| e.into_error())
    }
}

impl<W: Write> Drop for RecordingWriter<W> {
    fn drop(&mut self) {
        if let Some(o) = &mut self.out {
            // Best effort: errors are reported by finish(), which callers should use.
            let _ = o.flush();
        }
    }
}
