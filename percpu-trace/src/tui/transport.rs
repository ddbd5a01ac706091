//! Where a replay is going and how fast: plain data that [`super::app::App`] changes on
//! keys and the replay driver ([`super::replay::Replay`]) reads before feeding events.
//! Nothing here is derived from events: the position shown is the engine's clock.

/// The speeds `+`/`-` step through: factors against the recorded timestamps, then full
/// speed (`None`: as fast as the engine takes events, no pacing).
pub const SPEEDS: [Option<u64>; 5] = [Some(1), Some(10), Some(100), Some(1000), None];

/// What the replay runs towards. Anything but [`Goal::Play`] runs at full speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Play at the chosen speed.
    Play,
    /// Full speed until the engine reports a new finding (in the view), then pause.
    NextFinding,
    /// Full speed to the end of the recording.
    End,
    /// Full speed up to this recorded timestamp (ns), then pause before the first event
    /// after it: how a rewind ends, after the engine was restarted from the start.
    Until(u64),
    /// Pause before the first event (after a restart: back at the start).
    Start,
}

/// The replay's transport state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Index into [`SPEEDS`].
    pub speed: usize,
    /// What the replay runs towards.
    pub goal: Goal,
    /// Timestamp of the recording's first event, if it has one (from the file, at open).
    pub first_ns: Option<u64>,
    /// Timestamp of its last event, if it could be read from the file's tail at open.
    pub last_ns: Option<u64>,
    /// The recording's clock where the replay is (the latest timed record fed: an event,
    /// or a `run` record on the recording's own clock); 0 before the first.
    pub clock_ns: u64,
}

impl Default for Transport {
    /// As recorded (1x), playing, span not known yet.
    fn default() -> Self {
        Transport {
            speed: 0,
            goal: Goal::Play,
            first_ns: None,
            last_ns: None,
            clock_ns: 0,
        }
    }
}

impl Transport {
    /// The chosen time factor; `None`: full speed.
    pub fn factor(&self) -> Option<u64> {
        SPEEDS.get(self.speed).copied().flatten()
    }

    /// The factor the driver uses now: `None` (full speed) while seeking.
    pub fn pace(&self) -> Option<u64> {
        match self.goal {
            Goal::Play => self.factor(),
            _ => None,
        }
    }

    /// One step faster (stays at full speed).
    pub fn faster(&mut self) {
        self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
    }

    /// One step slower (stays at 1x).
    pub fn slower(&mut self) {
        self.speed = self.speed.saturating_sub(1);
    }

    /// "1x", "100x", "max".
    pub fn speed_label(&self) -> String {
        match self.factor() {
            Some(f) => format!("{f}x"),
            None => "max".into(),
        }
    }

    /// Length of the recording (first to last event), when both ends are known.
    pub fn span_ns(&self) -> Option<u64> {
        Some(self.last_ns?.saturating_sub(self.first_ns?))
    }

    /// The status text, e.g. "replay 12.3 s / 75.0 s, 10x, paused", for the engine's clock
    /// `now_ns` (0: no event yet).
    pub fn describe(&self, now_ns: u64, paused: bool, ended: bool) -> String {
        // An idle stretch moves the recording's clock, not the engine's.
        let now_ns = now_ns.max(self.clock_ns);
        let pos = match self.first_ns {
            Some(first) if now_ns > 0 => now_ns.saturating_sub(first),
            _ => 0,
        };
        let mut s = format!("replay {}", secs(pos));
        if let Some(span) = self.span_ns() {
            s.push_str(&format!(" / {}", secs(span)));
        }
        s.push_str(", ");
        s.push_str(&self.speed_label());
        let state = match self.goal {
            Goal::NextFinding => ", to the next finding",
            Goal::End => ", to the end",
            Goal::Until(_) | Goal::Start => ", rewinding",
            Goal::Play if ended => ", at the end",
            Goal::Play if paused => ", paused",
            Goal::Play => "",
        };
        s.push_str(state);
        s
    }
}

/// Nanoseconds as seconds with one decimal: "12.3 s".
fn secs(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}
