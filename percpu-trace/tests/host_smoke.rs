//! Host smoke test: the real embedded eBPF object on this machine's kernel.
//!
//! Needs root, so it is `#[ignore]`d for plain `cargo test`; `cargo xtask test` runs it with
//! `--ignored` and fails loudly when it cannot. It makes the kernel do constrained percpu
//! allocations for real (a PR_SET_IO_FLUSHER thread creating per-CPU BPF arrays) and checks
//! that the events arrive with the fields that thread had.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_percpu-trace");
const PR_SET_IO_FLUSHER: libc::c_int = 57;
const PF_MEMALLOC_NOIO: u64 = 0x80000;
const GFP_IO: u64 = 0x40;
const VALUE_SIZE: u32 = 32768;
const THREAD_NAME: &str = "pt-noio-smoke";

fn assert_root() {
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the host smoke test needs root (run `sudo cargo xtask test`)");
}

/// Starts `percpu-trace record` and waits until its probes are attached.
fn start_tool(args: &[&str]) -> Child {
    let mut child = Command::new(BIN)
        .arg("record")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting percpu-trace");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[percpu-trace] {line}");
            if line.contains("probe(s) attached") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("percpu-trace did not report attached probes within 60 s");
    child
}

/// Creates per-CPU arrays from a thread in an IO_FLUSHER (NOIO) scope; returns its tid.
fn constrained_percpu_allocations(maps: usize) -> u32 {
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            // SAFETY: plain syscalls with valid arguments.
            unsafe {
                assert_eq!(libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0), 0, "prctl(PR_SET_IO_FLUSHER)");
                let mut fds = Vec::new();
                for _ in 0..maps {
                    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
                    let mut attr = [0u32; 32];
                    attr[0] = 6; // BPF_MAP_TYPE_PERCPU_ARRAY
                    attr[1] = 4;
                    attr[2] = VALUE_SIZE;
                    attr[3] = 4;
                    let fd = libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr));
                    assert!(fd >= 0, "BPF_MAP_CREATE failed: {}", std::io::Error::last_os_error());
                    fds.push(fd as i32);
                }
                for fd in fds {
                    libc::close(fd);
                }
                libc::gettid() as u32
            }
        })
        .unwrap()
        .join()
        .unwrap()
}

fn events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("reading the recording");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("recording line is JSON"))
        .filter(|v| v["t"] == "event")
        .collect()
}

/// Names of loaded BPF programs (15-char kernel names), from bpftool.
fn loaded_program_names() -> Vec<String> {
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().expect("running bpftool");
    assert!(out.status.success(), "bpftool prog show failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().filter_map(|p| p["name"].as_str().map(String::from)).collect()
}

fn assert_no_programs_left() {
    let ours = ["pcpu_alloc_ente", "percpu_alloc_tp", "chunk_create_tp", "direct_reclaim_", "contention_begi"];
    let names = loaded_program_names();
    for n in ours {
        assert!(!names.iter().any(|x| x == n), "program {n} still loaded after the tool exited: {names:?}");
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel; run by `cargo xtask test`"]
fn tracepoint_mode_streams_real_constrained_allocations() {
    assert_root();
    let dir = tempfile_dir();
    let rec = dir.join("smoke.jsonl");
    let child = start_tool(&["--duration", "6s", "--output", rec.to_str().unwrap()]);
    let tid = constrained_percpu_allocations(16);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.code().is_some_and(|c| c == 0 || c == 1), "percpu-trace failed: {:?}", out.status);

    let evs = events(&rec);
    let ours: Vec<_> = evs
        .iter()
        .filter(|e| e["pid"].as_u64() == Some(tid as u64) && e["kind"]["type"] == "pcpu_alloc_done")
        .collect();
    // One percpu allocation per map (value area), possibly more (map internals).
    assert!(ours.len() >= 16, "expected >= 16 constrained allocations by tid {tid}, got {} of {} events", ours.len(), evs.len());
    for e in &ours {
        assert_eq!(e["comm"], THREAD_NAME);
        let flags = e["task_flags"].as_u64().unwrap();
        assert_ne!(flags & PF_MEMALLOC_NOIO, 0, "task flags {flags:#x} lack PF_MEMALLOC_NOIO");
        let gfp = e["kind"]["gfp"].as_u64().unwrap();
        assert_eq!(gfp & GFP_IO, 0, "gfp {gfp:#x} still allows IO inside a NOIO scope");
    }
    assert!(ours.iter().any(|e| e["kind"]["size"].as_u64() == Some(VALUE_SIZE as u64)), "no allocation of the map value size");
    assert_no_programs_left();
}

#[test]
#[ignore = "needs root and a BPF-capable kernel; run by `cargo xtask test`"]
fn sigterm_and_sigkill_leave_nothing_behind() {
    assert_root();
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGKILL] {
        let child = start_tool(&[]);
        let started = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        if sig != libc::SIGKILL {
            assert_eq!(out.status.code(), Some(0), "signal {sig}: exit {:?}", out.status);
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_no_programs_left();
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn without_root_one_line_and_exit_2() {
    assert_root();
    // Drop to nobody in the child: the tool must refuse with one line, not a backtrace.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", BIN, "record", "--duration", "1s"])
        .output()
        .expect("running setpriv");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains("needs root"), "stderr: {err}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("percpu-trace-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn every_kprobe_and_tracepoint_program_passes_this_verifier() {
    assert_root();
    let results = percpu_trace::probes::verify_programs().expect("loading the object");
    let mut checked = 0;
    for (name, res) in &results {
        match res {
            Ok(()) => checked += 1,
            Err(e) if e.starts_with("not checked") => assert!(name.starts_with("fentry_") || name.starts_with("fexit_"), "{name}: {e}"),
            Err(e) => panic!("{name} rejected by the verifier: {e}"),
        }
    }
    assert!(checked >= 17, "only {checked} programs verified: {results:?}");
}
