//! A randomized model of the writer around [`Placement`]: a log with duplicates,
//! several sources and hours, incompressible events, rolls by size, by memory and
//! by time, a FIFO committer, checkpoints persisted at any moment, and crashes at
//! any moment (with the object in the committer's hands uploaded or not). After
//! every recovery and at the end, each distinct event must be in exactly one
//! committed object.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::log::EventRecord;
use crate::state::KeyDeriver;

fn message_key(source: &str, id: &str) -> MessageKey {
    KeyDeriver::new((7, 9)).key(source, id)
}

const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
enum Op {
    /// The writer reads a chunk of this many records.
    Read(usize),
    /// The committer commits the oldest rolled object.
    Commit,
    /// Time passes (ms), then expired objects roll.
    Tick(u64),
    /// The writer persists the checkpoint.
    Save,
    /// SIGKILL. `uploaded`: the object the committer was working on reached
    /// storage, so recovery re-commits it from its intent.
    Crash { uploaded: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..300).prop_map(Op::Read),
        4 => Just(Op::Commit),
        2 => (0u64..3_000).prop_map(Op::Tick),
        3 => Just(Op::Save),
        1 => any::<bool>().prop_map(|uploaded| Op::Crash { uploaded }),
    ]
}

/// (source, id, hour, pad seed) per record; `None`: an idempotency record.
type Spec = Option<(u8, u8, u8, u64)>;

fn record() -> impl Strategy<Value = Spec> {
    prop_oneof![
        1 => Just(None),
        12 => (0u8..3, 0u8..120, 0u8..2, any::<u64>()).prop_map(Some),
    ]
}

fn event(spec: (u8, u8, u8, u64), base_ms: i64) -> EventRecord {
    let (source, id, hour, seed) = spec;
    let source = format!("s{source}");
    let message_id = format!("m{id}");
    let received_at_ms = base_ms + i64::from(hour) * HOUR_MS;
    // Incompressible: hex of a xorshift stream, 100 to 500 characters.
    let mut x = seed | 1;
    let mut pad = String::new();
    for _ in 0..(100 + seed % 400) / 16 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pad.push_str(&format!("{x:016x}"));
    }
    let json = serde_json::json!({
        "type": "track", "event": "E", "messageId": message_id, "source": source,
        "receivedAt": chrono::DateTime::from_timestamp_millis(received_at_ms)
            .unwrap_or_default()
            .to_rfc3339(),
        "properties": {"pad": pad},
    });
    EventRecord {
        received_at_ms,
        source,
        message_id,
        json: serde_json::to_vec(&json).unwrap_or_default(),
    }
}

struct Sim {
    limits: RollLimits,
    log: Vec<Option<EventRecord>>,
    /// Dedupe index: keys of committed objects.
    index: HashSet<MessageKey>,
    /// Committed objects' events, as (source, messageId) read back from them.
    stored: Vec<(String, String)>,
    persisted: u64,
    placement: Placement,
    read: usize,
    committer: VecDeque<Rolled>,
    now: Instant,
}

impl Sim {
    fn read(&mut self, n: usize) {
        let end = (self.read + n).min(self.log.len());
        // The writer looks every key of a chunk up once, before placing any.
        let known: Vec<bool> = self.log[self.read..end]
            .iter()
            .map(|r| {
                r.as_ref()
                    .is_some_and(|e| self.index.contains(&message_key(&e.source, &e.message_id)))
            })
            .collect();
        let mut out = Vec::new();
        for (offset, known) in (self.read..end).zip(known) {
            match &self.log[offset] {
                None => self.placement.skip(offset as u64),
                Some(ev) => {
                    let key = message_key(&ev.source, &ev.message_id);
                    self.placement
                        .place(offset as u64, ev, key, known, self.now, &mut out)
                        .expect("every event encodes");
                }
            }
        }
        self.read = end;
        self.committer.extend(out);
    }

    fn commit(&mut self) {
        if let Some(obj) = self.committer.pop_front() {
            self.store(&obj);
            self.placement.committed(obj.first, &obj.keys);
        }
    }

    /// Upload and commit: the object's events read back, its keys indexed.
    fn store(&mut self, obj: &Rolled) {
        let bytes = obj.bytes.as_ref().expect("object encodes");
        let events = self.limits.format.decode(bytes).expect("object decodes");
        assert_eq!(events.len(), obj.keys.len());
        for e in events {
            let (source, id) = (e["source"].as_str(), e["messageId"].as_str());
            let (Some(source), Some(id)) = (source, id) else {
                panic!("stored event without source or messageId: {e}");
            };
            self.stored.push((source.to_string(), id.to_string()));
        }
        for k in &obj.keys {
            assert!(self.index.insert(*k), "a key committed twice");
        }
    }

    fn crash(&mut self, uploaded: bool) {
        if uploaded && let Some(obj) = self.committer.pop_front() {
            // Recovery re-commits an object whose intent is left and which exists.
            self.store(&obj);
        }
        self.committer.clear();
        self.placement = Placement::new(self.limits, self.persisted);
        self.read = self.persisted as usize;
        self.check(false);
    }

    fn save(&mut self) {
        let c = self.placement.checkpoint();
        assert!(c >= self.persisted, "the checkpoint went back");
        self.persisted = c;
    }

    /// No event stored twice; at the end, every distinct event stored.
    fn check(&self, complete: bool) {
        let mut counts: HashMap<&(String, String), usize> = HashMap::new();
        for e in &self.stored {
            *counts.entry(e).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "stored more than once: {twice:?}");
        if complete {
            let distinct: HashSet<(String, String)> = self
                .log
                .iter()
                .flatten()
                .map(|e| (e.source.clone(), e.message_id.clone()))
                .collect();
            let missing: Vec<_> = distinct
                .iter()
                .filter(|e| !counts.contains_key(e))
                .collect();
            assert!(missing.is_empty(), "lost: {missing:?}");
        }
    }

    fn finish(&mut self) {
        self.read(usize::MAX / 2);
        let mut out = Vec::new();
        self.placement.roll_all(&mut out);
        self.committer.extend(out);
        while !self.committer.is_empty() {
            self.commit();
        }
        self.save();
        assert_eq!(
            self.persisted,
            self.log.len() as u64,
            "drained log fully settled"
        );
        self.check(true);
    }
}

fn run(specs: Vec<Spec>, ops: Vec<Op>, limits: RollLimits) {
    let base_ms = 1_700_000_000_000;
    let log: Vec<Option<EventRecord>> = specs
        .into_iter()
        .map(|s| s.map(|s| event(s, base_ms)))
        .collect();
    let now = Instant::now();
    let mut sim = Sim {
        limits,
        log,
        index: HashSet::new(),
        stored: Vec::new(),
        persisted: 0,
        placement: Placement::new(limits, 0),
        read: 0,
        committer: VecDeque::new(),
        now,
    };
    for op in ops {
        match op {
            Op::Read(n) => sim.read(n),
            Op::Commit => sim.commit(),
            Op::Tick(ms) => {
                sim.now += Duration::from_millis(ms);
                let mut out = Vec::new();
                sim.placement.roll_expired(sim.now, &mut out);
                sim.committer.extend(out);
            }
            Op::Save => sim.save(),
            Op::Crash { uploaded } => sim.crash(uploaded),
        }
    }
    sim.finish();
}

fn limits() -> impl Strategy<Value = RollLimits> {
    (
        prop_oneof![4 => Just(Format::Ndjson), 1 => Just(Format::Parquet)],
        // Objects of a few events up to never rolling by size.
        prop_oneof![Just(1u64), 1u64..100_000, Just(u64::MAX)],
        // Memory budgets from one event up to unlimited.
        prop_oneof![Just(1u64), 1u64..1_000_000, Just(u64::MAX)],
        prop_oneof![
            Just(Duration::ZERO),
            (1u64..5_000).prop_map(Duration::from_millis),
            Just(Duration::MAX)
        ],
    )
        .prop_map(
            |(format, roll_bytes, max_buffer_bytes, roll_interval)| RollLimits {
                format,
                roll_bytes,
                max_buffer_bytes,
                roll_interval,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_event_lands_in_exactly_one_committed_object(
        specs in proptest::collection::vec(record(), 1..700),
        ops in proptest::collection::vec(op(), 0..120),
        limits in limits(),
    ) {
        run(specs, ops, limits);
    }
}

/// The case by hand: an object rolls by size in the middle of a chunk,
/// its commit lands, the checkpoint is saved, and the server dies before the rest
/// of the chunk is committed. The records after the rolled one must be replayed.
#[test]
fn a_roll_inside_a_chunk_does_not_skip_the_rest_of_the_chunk() {
    let limits = RollLimits {
        format: Format::Ndjson,
        roll_bytes: 1,
        max_buffer_bytes: u64::MAX,
        roll_interval: Duration::MAX,
    };
    let specs: Vec<Spec> = (0..10).map(|i| Some((0, i, 0, u64::from(i) + 7))).collect();
    let mut ops = vec![
        Op::Read(10),
        Op::Commit,
        Op::Save,
        Op::Crash { uploaded: false },
    ];
    ops.extend([
        Op::Read(3),
        Op::Commit,
        Op::Save,
        Op::Crash { uploaded: true },
    ]);
    run(specs, ops, limits);
}
