//! Scenarios: what runs in the guest (shell glue around `pt-workload` and the tool), and
//! the guest's /init that runs a list of them in one boot.
//!
//! Why each workload reaches the code under test is in README.md next to this file.
use std::time::Duration;

/// Machine shape a scenario needs; scenarios of one shape share a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// 1 vCPU: the balance worker cannot run beside a SCHED_FIFO writer.
    Narrow,
    /// 3 vCPUs: two for the load, one where kswapd is starved by a SCHED_FIFO hog.
    Wide,
    /// 32 possible vCPUs (the scenario offlines 31: percpu chunks of 32 units, one CPU to
    /// run on) and 2 GiB: `recursion`'s recipe.
    Many,
}

impl Shape {
    /// vCPUs and MiB of RAM.
    pub fn machine(self) -> (u32, u32) {
        match self {
            Shape::Narrow => (1, 512),
            Shape::Wide => (3, 512),
            Shape::Many => (32, 2048),
        }
    }

    /// Kernel parameters of this shape's boots. `Many`: `maxcpus=1` brings up only CPU 0
    /// while all 32 stay possible (percpu chunks have a unit per possible CPU): the same
    /// machine as offlining 31 CPUs after boot, without bringing 31 vCPUs up under TCG
    /// (that took about 90 s of a boot).
    pub fn kernel_args(self) -> &'static str {
        match self {
            Shape::Narrow | Shape::Wide => "",
            // no_timer_check: a 7.3.4 boot of this shape on a loaded host panicked in
            // the IO-APIC timer check ("IO-APIC + timer doesn't work!"): TCG was too slow.
            Shape::Many => "maxcpus=1 no_timer_check",
        }
    }

    /// Rough seconds of one boot of this shape, to start the longest boots first.
    pub fn expected_secs(self) -> u32 {
        match self {
            Shape::Many => 250,
            Shape::Narrow => 90,
            Shape::Wide => 80,
        }
    }

    /// Module parameters of this shape's boots. null_blk: extra request queues, so one
    /// io.max write creates blkgs (GFP_NOIO percpu allocations) on many disks instead of
    /// one, without more cgroups: 8 (ten disks) for noio-gfp, 32 (34 disks) for recursion.
    pub fn module_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Narrow | Shape::Wide => &[("null_blk", "nr_devices=8")],
            Shape::Many => &[("null_blk", "nr_devices=32")],
        }
    }
}

/// One scenario.
pub struct Scenario {
    /// Name for `--scenario` and the result directory.
    pub name: &'static str,
    /// Machine shape.
    pub shape: Shape,
    /// Guest time this scenario may take (tool start included).
    pub limit: Duration,
    /// Whether its positive assertion depends on reclaim/scheduling timing (then a miss is
    /// retried in a fresh boot, see [`crate::vm::RETRIES`]).
    pub timing: bool,
    /// Guest shell body; `$D` is the result directory, `$N` a unique run tag.
    pub body: &'static str,
    /// Part of the default run (the others are self-tests of the harness, run by name).
    pub default: bool,
    /// In the default run only on matrix lines (kernel and mode) that have an expectation
    /// for it: it needs its own costly boot, so it runs where it proves something.
    pub where_expected: bool,
}

/// All scenarios, in the order they run within a boot.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "idle",
        shape: Shape::Narrow,
        limit: Duration::from_secs(120),
        timing: false,
        default: true,
        where_expected: false,
        body: r#"
start_tool
sleep 8
stop_tool
"#,
    },
    Scenario {
        name: "noio-scope",
        shape: Shape::Narrow,
        limit: Duration::from_secs(240),
        timing: false,
        default: true,
        where_expected: false,
        body: r#"
start_tool
churn_start
pt-workload percpu-arrays --io-flusher --maps 20 --entries 64 --rounds 2 --label noio-scope > $D/workload.out 2>&1
echo $? > $D/workload.rc
churn_stop
stop_tool
"#,
    },
    Scenario {
        name: "noio-gfp",
        shape: Shape::Narrow,
        limit: Duration::from_secs(300),
        timing: true,
        default: true,
        where_expected: false,
        body: r#"
start_tool
pt-workload noio-gfp --disks all --chains 6 --depth 400 --prio 50 --prefix g$N- > $D/workload.out 2>&1
echo $? > $D/workload.rc
stop_tool
"#,
    },
    Scenario {
        name: "detach",
        shape: Shape::Narrow,
        limit: Duration::from_secs(200),
        timing: false,
        default: true,
        where_expected: false,
        body: r#"
for sig in TERM KILL; do
  pt-workload snapshot --out /tmp/before.$N.$sig
  percpu-trace record --attach $ATTACH --output $D/$sig.jsonl > $D/$sig.out 2> $D/$sig.err &
  P=$!
  pt-workload wait-attached --before /tmp/before.$N.$sig --pid $P > $D/$sig.attach 2>&1
  echo $? > $D/$sig.attach.rc
  kill -$sig $P
  wait $P
  echo $? > $D/$sig.rc
  pt-workload compare --before /tmp/before.$N.$sig --wait 15 > $D/$sig.compare 2>&1
  echo $? > $D/$sig.compare.rc
  cat /sys/kernel/tracing/kprobe_events > $D/$sig.kprobe_events
done
"#,
    },
    Scenario {
        name: "contention",
        shape: Shape::Wide,
        limit: Duration::from_secs(300),
        timing: true,
        default: true,
        where_expected: false,
        body: r#"
start_tool
pt-workload contention --secs 30 --file /mnt/big > $D/workload.out 2>&1
echo $? > $D/workload.rc
stop_tool
"#,
    },
    // Issue 24: `--pid` of a *holder* (the unconstrained creator unc-a) must still give the
    // cross_task whose waiter is another process (the IO_FLUSHER creator): the kernel-side
    // filter may narrow what is sent, never what judging the selected task needs. The
    // creators start first and wait at a gate, so the tool can be given unc-a's pid.
    Scenario {
        name: "contention-pid",
        shape: Shape::Wide,
        limit: Duration::from_secs(300),
        timing: true,
        default: true,
        where_expected: true,
        body: r#"
G=/tmp/gate.$N
mkdir -p $G
pt-workload contention --secs 30 --file /mnt/big --gate $G > $D/workload.out 2>&1 &
W=$!
i=0
while [ ! -s $G/unc-a.pid ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
cat $G/unc-a.pid > $D/selected.pid
TOOL_ARGS="--pid $(cat $G/unc-a.pid)"
# A one-bucket stack map: nearly every stack travels inline in its record (stack_check
# then requires some, and the waiter classification must not change).
export PERCPU_TRACE_STACK_MAP_ENTRIES=1
echo 1 > $D/stack_map_entries
start_tool
unset PERCPU_TRACE_STACK_MAP_ENTRIES
TOOL_ARGS=
touch $G/go
wait $W
echo $? > $D/workload.rc
stop_tool
"#,
    },
    // The issue-25 recipe (README.md, "recursion"): the GFP_NOIO io.max writer reclaims
    // with FS/IO allowed while it holds pcpu_alloc_mutex. tracefs ground truth runs beside
    // the tool, and the tool's count must equal it (fewer only with lost events). In the
    // default run on the lines that expect something of it (`where_expected`): a pass hits
    // in about half the boots, so a line that needs a hit runs up to two passes and
    // stops after the first that hit (`EXPECT_HIT`). Not three: each pass pins ~380 MiB
    // of percpu memory and blkgs, and a third ran a 7.2-rt guest out of memory (panic).
    Scenario {
        name: "recursion",
        shape: Shape::Many,
        // 20-140 s of TCG a pass, up to two passes; a machine shared with builds
        // slows TCG three- to fourfold.
        limit: Duration::from_secs(900),
        timing: true,
        default: true,
        where_expected: true,
        body: r#"
for f in /sys/devices/system/cpu/cpu*/online; do echo 0 > $f 2>/dev/null; done
say online cpus $(cat /sys/devices/system/cpu/online)
mkdir -p /balloon
mount -t tmpfs -o size=1900m tmpfs /balloon
# A ring that holds a whole pass: the SCHED_FIFO writer keeps the reader off the only
# online CPU for the pass, and the default 4 MiB lost 100,000-700,000 events in most boots
# (README.md, "recursion"). ring_mib tells rss.rs the ring's share of the recorder's RSS.
TOOL_ARGS="--ring-buffer-mib 256"
echo 256 > $D/ring_mib
# Each pass records ~12 MB of mutex contention in truth's buffer: 64 MiB holds three.
TRUTH_ARGS="--buffer-kb 65536"
start_tool
TOOL_ARGS=
truth_start
TRUTH_ARGS=
# Where a hit must appear: up to 2 passes, stopping after the first that hits (about one
# pass in two does on 7.2.13); the negative makes one pass.
P=1
[ $EXPECT_HIT = 1 ] && P=2
pt-workload recursion --file /mnt/big1000 --balloon /balloon/fill --free-mib 1060 --chains 4 --depth 400 --disks all --prio 50 --jitter-prio ${REC_JITTER:-90} --prefix r$N- --passes $P --settle $D/rec.jsonl > $D/workload.out 2>&1
echo $? > $D/workload.rc
truth_stop
stop_tool
umount /balloon
"#,
    },
    // Harness self-tests: each must make `vm-test` fail (a guest that panics or hangs
    // never passes).
    Scenario {
        name: "selftest-panic",
        shape: Shape::Narrow,
        limit: Duration::from_secs(60),
        timing: false,
        default: false,
        where_expected: false,
        body: "echo c > /proc/sysrq-trigger\n",
    },
    Scenario {
        name: "selftest-hang",
        shape: Shape::Narrow,
        limit: Duration::from_secs(20),
        timing: false,
        default: false,
        where_expected: false,
        body: "sleep 100000\n",
    },
];

/// Looks a scenario up by name.
pub fn by_name(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Everything /init needs to know.
pub struct InitPlan<'a> {
    /// Modules to insmod, in order.
    pub modules: &'a [String],
    /// (scenario, result directory name) in run order.
    pub runs: &'a [(&'static Scenario, String)],
    /// Run the tool; false runs the workloads alone (harness development).
    pub with_tool: bool,
    /// Module parameters (by machine shape).
    pub module_params: &'a [(&'a str, &'a str)],
    /// `--attach` for `check` and `record` (auto, kprobe, tracepoint).
    pub attach: &'a str,
    /// Run `check --probe --json` after `check` (into /out/probe.*). First, before any
    /// scenario: a fresh kernel still has to allocate page tables for new chunks, which is
    /// what shows populate-gfp at work; its maps are freed before idle starts, and
    /// noio-scope churns percpu memory far more before noio-gfp anyway.
    pub probe: bool,
    /// Offset of the owner word in struct mutex, from the kernel's BTF (`truth` reads it;
    /// 24 on PREEMPT_RT, where it is `mutex.rtmutex.owner`).
    pub owner_off: u64,
    /// Scenarios whose expectation on this line requires a finding (`EXPECT_HIT=1` in
    /// their run: recursion then runs more passes).
    pub positive: &'a [&'a str],
    /// Variables exported in the guest (development knobs: `PT_GUEST_X=v` on the host
    /// exports `X=v`; values limited to `[A-Za-z0-9_.-]`).
    pub guest_env: &'a [(String, String)],
}

/// The guest's /init. Progress goes to the console as `@@PT ...` lines (the host prints
/// them with timestamps); results go to /out, an ext4 disk the host reads afterwards.
pub fn init_script(p: &InitPlan) -> String {
    let mut s = String::from(INIT_HEAD);
    s.push_str(&format!("ATTACH={}\nOWNER_OFF={}\n", p.attach, p.owner_off));
    for (k, v) in p.guest_env {
        s.push_str(&format!("export {k}={v}\n"));
    }
    for m in p.modules {
        let params = p
            .module_params
            .iter()
            .find(|(n, _)| n == m)
            .map_or("", |(_, p)| p);
        s.push_str(&format!(
            "insmod /lib/modules/{m}.ko {params} || say FAIL insmod {m}\n"
        ));
    }
    s.push_str(INIT_DISKS);
    s.push_str(if p.with_tool { TOOL_FNS } else { NO_TOOL_FNS });
    if p.with_tool {
        s.push_str("percpu-trace check --attach $ATTACH --json > /out/check.json 2> /out/check.err\necho $? > /out/check.rc\n");
        s.push_str("say check rc=$(cat /out/check.rc)\n");
    }
    if p.with_tool && p.probe {
        s.push_str("percpu-trace check --attach $ATTACH --probe --json > /out/probe.json 2> /out/probe.err\necho $? > /out/probe.rc\n");
        s.push_str("say probe rc=$(cat /out/probe.rc)\n");
    }
    for (i, (sc, dir)) in p.runs.iter().enumerate() {
        s.push_str(&format!(
            "\nD=/out/{dir}; N={i}; EXPECT_HIT={}; mkdir -p $D\nsay begin {dir}\n",
            u8::from(p.positive.contains(&sc.name))
        ));
        if p.with_tool || sc.name != "detach" {
            s.push_str(sc.body.trim_start());
        }
        s.push_str(&format!("say end {dir}\n"));
    }
    s.push_str(INIT_TAIL);
    s
}

const INIT_HEAD: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
say() { echo "@@PT $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /mnt /out
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
say boot $(uname -r) cpus=$(nproc) mem=$(grep MemTotal /proc/meminfo)
"#;

const INIT_DISKS: &str = r#"i=0
while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -o ro /dev/vda /mnt || say FAIL mount data disk
mount /dev/vdb /out || { say FAIL mount out disk; poweroff -f; }
# Reclaim pressure: a raised watermark makes direct reclaim frequent (too high and the
# guest declares itself deadlocked on memory).
echo 20000 > /proc/sys/vm/min_free_kbytes
"#;

const TOOL_FNS: &str = r#"start_tool() {
  pt-workload snapshot --out /tmp/before.$N
  # The default 4 MiB ring everywhere: noio-gfp's SCHED_FIFO writer keeps the reader off
  # the only vCPU for a whole pass, which once needed 32 MiB (~145,000 records a pass);
  # its fast-path allocations are now counted in the kernel, not sent (~5,000 records).
  # $TOOL_ARGS: a scenario's own options (contention-pid's --pid), empty otherwise.
  percpu-trace record --attach $ATTACH --duration 600s $TOOL_ARGS --output $D/rec.jsonl > $D/record.out 2> $D/record.err &
  TP=$!
  # The OOM killer must not pick the tool: under contention's starved kswapd it took the
  # recorder (anon RSS 128 MB) on arm64 7.3.4 (record exit 137), which proves nothing
  # about detection. The workloads stay killable.
  echo -1000 > /proc/$TP/oom_score_adj
  # 180 s: on a machine shared with builds, TCG took over 60 s to load and attach.
  pt-workload wait-attached --before /tmp/before.$N --pid $TP --timeout 180 > $D/attach.out 2>&1 || say FAIL attach $D
  # The peak so far is start-up's (discovery, load, attach): told apart from the run's.
  sed -n 's/^VmHWM:/AttachVmHWM:/p' /proc/$TP/status > $D/rss-attach.txt
}
stop_tool() {
  sleep 2
  # Peak memory of the recorder over the whole scenario (asserted on the host).
  grep -E '^Vm(HWM|RSS):' /proc/$TP/status > $D/rss.txt
  echo "Arch: $(uname -m)" >> $D/rss.txt
  cat $D/rss-attach.txt >> $D/rss.txt
  kill -TERM $TP
  wait $TP
  echo $? > $D/record.rc
  say record rc=$(cat $D/record.rc) findings=$(grep -c . $D/record.out)
}
churn_start() {
  pt-workload churn --file /mnt/big --secs 900 > $D/churn.out 2>&1 &
  CH=$!
}
churn_stop() { kill $CH; wait $CH; }
# tracefs ground truth beside the tool (kprobe events, not BPF): the host compares counts.
truth_start() { pt-workload truth start --owner-off $OWNER_OFF $TRUTH_ARGS 2> $D/truth.err || say FAIL truth start $D; }
truth_stop() { pt-workload truth stop --out $D/truth.txt > /dev/null 2>> $D/truth.err; }
"#;

// Without the tool: tracefs ground truth instead (calibrates the workloads).
const NO_TOOL_FNS: &str = r#"start_tool() { pt-workload truth start --owner-off $OWNER_OFF $TRUTH_ARGS 2> $D/truth.err || say truth unavailable; }
stop_tool() {
  pt-workload truth stop --out $D/truth.txt > /dev/null 2>> $D/truth.err
  say workload rc=$(cat $D/workload.rc 2>/dev/null)
}
churn_start() {
  pt-workload churn --file /mnt/big --secs 900 > $D/churn.out 2>&1 &
  CH=$!
}
churn_stop() { kill $CH; wait $CH; }
# start_tool/stop_tool run it already.
truth_start() { :; }
truth_stop() { :; }
"#;

const INIT_TAIL: &str = r#"
dmesg > /out/dmesg.txt
sync
umount /out || say FAIL umount out
say done
poweroff -f
"#;
