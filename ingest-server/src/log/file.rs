//! The local file log: segments, group commit, torn-tail repair (see the
//! parent module's docs).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{
    Broker, EventRecord, IdempotencyHook, IdempotencyRecord, Log, LogError, LogReader, Record, lock,
};

/// Default size at which the log starts a new segment file.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Appends waiting for the log thread, in bytes, above which new appends are refused.
pub const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;
/// Largest group written with one fsync.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

enum Msg {
    Append {
        records: Vec<Record>,
        bytes: u64,
        done: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
    Stop,
}

struct Shared {
    dir: PathBuf,
    durable: Mutex<u64>,
    durable_cv: Condvar,
    pending_bytes: AtomicU64,
    healthy: AtomicBool,
    /// (first offset of an append group, cumulative log bytes before it).
    groups: Mutex<VecDeque<(u64, u64)>>,
    cum_bytes: AtomicU64,
    checkpoint: AtomicU64,
}

/// The local file log.
pub struct FileLog {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What opening the log found.
pub struct Opened {
    /// The log.
    pub log: Arc<FileLog>,
    /// Idempotency records of the last segment, to re-insert (they may have been
    /// durable in the log but not yet in the state database at a crash).
    pub recent_idempotency: Vec<IdempotencyRecord>,
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, repairing a torn tail. `checkpoint` is the
    /// writer's checkpoint, used as the first offset of an empty log.
    pub fn open(
        dir: &Path,
        checkpoint: u64,
        segment_bytes: u64,
        hook: IdempotencyHook,
    ) -> Result<Opened, LogError> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let (file, path_first, len, next, recent) = match segments.last() {
            Some(&first) => {
                let path = segment_path(dir, first);
                let scan = scan_segment(&path, first)?;
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                if file.metadata()?.len() != scan.valid_len {
                    tracing::warn!(segment = %path.display(), kept = scan.valid_len, "cutting torn log tail");
                    file.set_len(scan.valid_len)?;
                    file.sync_all()?;
                }
                (file, first, scan.valid_len, scan.next, scan.idempotency)
            }
            None => {
                let path = segment_path(dir, checkpoint);
                let file = create_segment(dir, &path)?;
                (file, checkpoint, 0, checkpoint, Vec::new())
            }
        };
        let before: u64 = segments
            .iter()
            .filter(|&&s| s != path_first)
            .map(|&s| {
                fs::metadata(segment_path(dir, s))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            durable: Mutex::new(next),
            durable_cv: Condvar::new(),
            pending_bytes: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            groups: Mutex::new(VecDeque::from([(checkpoint, 0)])),
            cum_bytes: AtomicU64::new(before + len),
            checkpoint: AtomicU64::new(checkpoint),
        });
        let (tx, rx) = mpsc::channel();
        let mut state = Writer {
            shared: shared.clone(),
            file,
            len,
            next,
            segment_bytes,
            hook,
            broken: false,
        };
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || state.run(rx))?;
        Ok(Opened {
            log: Arc::new(FileLog {
                shared,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
            recent_idempotency: recent,
        })
    }
}

impl Broker for FileLog {
    fn append(
        &self,
        records: Vec<Record>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u64, String>>, LogError> {
        let bytes: u64 = records.iter().map(record_size).sum();
        let pending = self.shared.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        if pending > MAX_PENDING_BYTES {
            self.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Overloaded);
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let tx = lock(&self.tx);
        let sent = tx
            .as_ref()
            .map(|tx| {
                tx.send(Msg::Append {
                    records,
                    bytes,
                    done,
                })
                .is_ok()
            })
            .unwrap_or(false);
        if !sent {
            self.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Closed);
        }
        Ok(rx)
    }

    fn lag_bytes(&self) -> u64 {
        if self.shared.checkpoint.load(Ordering::Acquire) >= self.durable_end() {
            return 0;
        }
        let base = lock(&self.shared.groups).front().map(|g| g.1).unwrap_or(0);
        self.shared
            .cum_bytes
            .load(Ordering::Acquire)
            .saturating_sub(base)
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    fn close(&self) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(Msg::Stop);
        }
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Log for FileLog {
    fn durable_end(&self) -> u64 {
        *lock(&self.shared.durable)
    }

    fn reader(&self, offset: u64) -> Result<Box<dyn LogReader>, LogError> {
        Ok(Box::new(FileReader::open(self.shared.clone(), offset)?))
    }

    fn truncate_below(&self, offset: u64) -> Result<(), LogError> {
        self.shared.checkpoint.store(offset, Ordering::Release);
        {
            let mut groups = lock(&self.shared.groups);
            while groups.len() >= 2 && groups[1].0 <= offset {
                groups.pop_front();
            }
        }
        let segments = list_segments(&self.shared.dir)?;
        // A segment may go when the next one starts at or below the checkpoint.
        for pair in segments.windows(2) {
            if pair[1] <= offset {
                fs::remove_file(segment_path(&self.shared.dir, pair[0]))?;
            }
        }
        Ok(())
    }
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    len: u64,
    next: u64,
    segment_bytes: u64,
    hook: IdempotencyHook,
    /// Set when a failed append could not be cut off durably.
    broken: bool,
}

/// An append waiting in the log thread: records, their size, who to tell.
type Pending = (
    Vec<Record>,
    u64,
    tokio::sync::oneshot::Sender<Result<u64, String>>,
);

type Waiter = (
    tokio::sync::oneshot::Sender<Result<u64, String>>,
    u64,
    usize,
);

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let mut stop = false;
        while !stop {
            let Ok(first) = rx.recv() else { break };
            let mut group = Vec::new();
            match first {
                Msg::Append {
                    records,
                    bytes,
                    done,
                } => group.push((records, bytes, done)),
                Msg::Stop => break,
            }
            let mut size: u64 = group[0].1;
            while size < MAX_GROUP_BYTES as u64 {
                match rx.try_recv() {
                    Ok(Msg::Append {
                        records,
                        bytes,
                        done,
                    }) => {
                        size += bytes;
                        group.push((records, bytes, done));
                    }
                    Ok(Msg::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        // Drain anything still queued behind a Stop so no caller waits forever.
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Append {
                records,
                bytes,
                done,
            } = msg
            {
                self.commit_group(vec![(records, bytes, done)]);
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        let total: u64 = group.iter().map(|g| g.1).sum();
        let mut buf = Vec::with_capacity(total as usize);
        let mut waiters: Vec<Waiter> = Vec::with_capacity(group.len());
        let mut offset = self.next;
        let mut idem = Vec::new();
        for (records, _, _) in &group {
            for r in records {
                encode(&mut buf, offset, r);
                offset += 1;
            }
        }
        let group_first = self.next;
        let result = self.write(&buf);
        self.shared.pending_bytes.fetch_sub(total, Ordering::AcqRel);
        let mut first = group_first;
        for (records, _, done) in group {
            waiters.push((done, first, records.len()));
            first += records.len() as u64;
            for r in records {
                if let Record::Idempotency(i) = r {
                    idem.push(i);
                }
            }
        }
        match result {
            Ok(()) => {
                self.shared.healthy.store(true, Ordering::Release);
                if !idem.is_empty() {
                    let refs: Vec<&IdempotencyRecord> = idem.iter().collect();
                    (self.hook)(&refs);
                }
                let before = self
                    .shared
                    .cum_bytes
                    .fetch_add(buf.len() as u64, Ordering::AcqRel);
                lock(&self.shared.groups).push_back((group_first, before));
                self.next = offset;
                *lock(&self.shared.durable) = offset;
                self.shared.durable_cv.notify_all();
                for (done, first, _) in waiters {
                    let _ = done.send(Ok(first));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log append failed; answering 503 until it works again");
                self.shared.healthy.store(false, Ordering::Release);
                for (done, _, _) in waiters {
                    let _ = done.send(Err(e.to_string()));
                }
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError::Io(std::io::Error::other(
                "an earlier failed append could not be cut off the log; restart the server",
            )));
        }
        if self.len >= self.segment_bytes {
            let path = segment_path(&self.shared.dir, self.next);
            self.file = create_segment(&self.shared.dir, &path)?;
            self.len = 0;
        }
        let res = self
            .file
            .write_all_at(buf, self.len)
            .and_then(|()| self.file.sync_data());
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part did land, durably: records answered 503 must
                // not come back after a crash. If even that fails, the tail is in an
                // unknown state, so the log refuses every append from now on.
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_all());
                if let Err(cut) = cut {
                    tracing::error!(error = %cut, "cannot cut a failed append off the log; refusing appends until restart");
                    self.broken = true;
                }
                Err(LogError::Io(e))
            }
        }
    }
}

fn create_segment(dir: &Path, path: &Path) -> Result<File, LogError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // Make the new name durable too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(n) = stem.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn record_size(r: &Record) -> u64 {
    let body = match r {
        Record::Event(e) => {
            8 + 1 + 8 + 2 + e.source.len() + 2 + e.message_id.len() + 4 + e.json.len()
        }
        Record::Idempotency(i) => 8 + 1 + 8 + 2 + i.key.len() + 2 + 16 + 4 + i.body.len(),
    };
    (body + 8) as u64
}

fn encode(buf: &mut Vec<u8>, offset: u64, r: &Record) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.extend_from_slice(&offset.to_le_bytes());
    match r {
        Record::Event(e) => {
            buf.push(1);
            buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
            put_str16(buf, &e.source);
            put_str16(buf, &e.message_id);
            buf.extend_from_slice(&(e.json.len() as u32).to_le_bytes());
            buf.extend_from_slice(&e.json);
        }
        Record::Idempotency(i) => {
            buf.push(3);
            buf.extend_from_slice(&i.seen_at_ms.to_le_bytes());
            put_str16(buf, &i.key);
            buf.extend_from_slice(&i.status.to_le_bytes());
            buf.extend_from_slice(&i.fingerprint.unwrap_or_default());
            buf.extend_from_slice(&(i.body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&i.body);
        }
    }
    let body_len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    // Callers bound these strings (source names, ids, keys) far below 64 KiB.
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    buf.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    buf.extend_from_slice(bytes);
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.b.len() < n {
            return Err(LogError::Corrupt("record shorter than its fields".into()));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u64(&mut self) -> Result<u64, LogError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn u32(&mut self) -> Result<u32, LogError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u16(&mut self) -> Result<u16, LogError> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(a))
    }
    fn str16(&mut self) -> Result<String, LogError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| LogError::Corrupt("bad utf-8".into()))
    }
}

/// Decodes a frame body. An event's JSON (most of the frame) reuses the body's
/// buffer instead of being copied into a new one.
fn decode_owned(mut body: Vec<u8>) -> Result<(u64, Record), LogError> {
    let mut c = Cursor { b: &body };
    let offset = c.u64()?;
    let kind = c.take(1)?[0];
    let record = match kind {
        1 => {
            let received_at_ms = c.u64()? as i64;
            let source = c.str16()?;
            let message_id = c.str16()?;
            let n = c.u32()? as usize;
            c.take(n)?;
            let start = body.len() - c.b.len() - n;
            body.truncate(start + n);
            body.drain(..start);
            Record::Event(EventRecord {
                received_at_ms,
                source,
                message_id,
                json: body,
            })
        }
        // 2: without a fingerprint (older logs); 3: with one.
        2 | 3 => {
            let seen_at_ms = c.u64()? as i64;
            let key = c.str16()?;
            let status = c.u16()?;
            let fingerprint = match kind {
                3 => Some(c.take(16)?.try_into().unwrap_or_default()),
                _ => None,
            };
            let n = c.u32()? as usize;
            Record::Idempotency(IdempotencyRecord {
                key,
                seen_at_ms,
                status,
                fingerprint,
                body: c.take(n)?.to_vec(),
            })
        }
        k => return Err(LogError::Corrupt(format!("unknown record kind {k}"))),
    };
    Ok((offset, record))
}

/// Reads one framed record; `Ok(None)` at a clean end of file.
fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, LogError> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(LogError::Corrupt("torn record header".into()));
        }
        got += n;
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > 64 * 1024 * 1024 {
        return Err(LogError::Corrupt("record length out of range".into()));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|_| LogError::Corrupt("torn record body".into()))?;
    if crc32fast::hash(&body) != crc {
        return Err(LogError::Corrupt("checksum mismatch".into()));
    }
    Ok(Some(body))
}

struct Scan {
    valid_len: u64,
    next: u64,
    idempotency: Vec<IdempotencyRecord>,
}

fn scan_segment(path: &Path, first: u64) -> Result<Scan, LogError> {
    let mut r = BufReader::new(File::open(path)?);
    let mut scan = Scan {
        valid_len: 0,
        next: first,
        idempotency: Vec::new(),
    };
    loop {
        let body = match read_frame(&mut r) {
            Ok(Some(b)) => b,
            Ok(None) | Err(LogError::Corrupt(_)) => break,
            Err(e) => return Err(e),
        };
        let len = body.len() as u64;
        match decode_owned(body) {
            Ok((offset, record)) if offset == scan.next => {
                scan.valid_len += 8 + len;
                scan.next += 1;
                if let Record::Idempotency(i) = record {
                    scan.idempotency.push(i);
                }
            }
            _ => break,
        }
    }
    Ok(scan)
}

struct FileReader {
    shared: Arc<Shared>,
    reader: BufReader<File>,
    next: u64,
    /// Byte position of record `next` in the current file.
    pos: u64,
}

impl FileReader {
    fn open(shared: Arc<Shared>, offset: u64) -> Result<Self, LogError> {
        let segments = list_segments(&shared.dir)?;
        let first = segments
            .iter()
            .rev()
            .find(|&&s| s <= offset)
            .copied()
            .or_else(|| segments.first().copied())
            .unwrap_or(offset);
        let mut reader =
            BufReader::with_capacity(1 << 20, File::open(segment_path(&shared.dir, first))?);
        let mut next = first;
        let mut pos = 0;
        // Skip records below `offset` (the checkpoint may be mid-segment).
        while next < offset {
            match read_frame(&mut reader)? {
                Some(b) => {
                    next += 1;
                    pos += 8 + b.len() as u64;
                }
                None => break,
            }
        }
        Ok(Self {
            shared,
            reader,
            next,
            pos,
        })
    }
}

impl FileReader {
    /// Reads the frame at `pos`. The buffer may hold bytes read ahead from a write
    /// that later failed and was cut off; on a bad frame, drop the buffer and
    /// read again from the file once.
    fn read_current(&mut self) -> Result<Option<Vec<u8>>, LogError> {
        match read_frame(&mut self.reader) {
            Err(LogError::Corrupt(_)) => {
                self.reader.seek(SeekFrom::Start(self.pos))?;
                read_frame(&mut self.reader)
            }
            other => other,
        }
    }
}

impl LogReader for FileReader {
    fn next(&mut self, timeout: Duration) -> Result<Option<(u64, Record)>, LogError> {
        let durable = *lock(&self.shared.durable);
        if durable <= self.next {
            let guard = lock(&self.shared.durable);
            let (guard, _) = self
                .shared
                .durable_cv
                .wait_timeout_while(guard, timeout, |d| *d <= self.next)
                .unwrap_or_else(|e| e.into_inner());
            if *guard <= self.next {
                return Ok(None);
            }
        }
        let body = match self.read_current() {
            Ok(Some(b)) => b,
            Ok(None) => {
                // The durable record is not in this file: it starts the next segment.
                let path = segment_path(&self.shared.dir, self.next);
                self.reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
                self.pos = 0;
                self.read_current()?.ok_or_else(|| {
                    LogError::Corrupt(format!("durable offset {} missing", self.next))
                })?
            }
            Err(e) => return Err(e),
        };
        self.pos += 8 + body.len() as u64;
        let (offset, record) = decode_owned(body)?;
        if offset != self.next {
            return Err(LogError::Corrupt(format!(
                "expected offset {}, found {offset}",
                self.next
            )));
        }
        self.next += 1;
        Ok(Some((offset, record)))
    }

    fn position(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Record {
        Record::Event(EventRecord {
            received_at_ms: i as i64,
            source: "s".into(),
            message_id: format!("m{i}"),
            json: format!("{{\"i\":{i}}}").into_bytes(),
        })
    }

    #[test]
    fn append_read_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let opened = FileLog::open(dir.path(), 0, 200, Box::new(|_| {})).unwrap();
        let log = opened.log;
        for i in 0..10 {
            let rx = log.append(vec![ev(i)]).unwrap();
            assert_eq!(rt.block_on(rx).unwrap().unwrap(), i);
        }
        let mut r = log.reader(3).unwrap();
        for i in 3..10 {
            let (o, rec) = r.next(Duration::from_millis(10)).unwrap().unwrap();
            assert_eq!(o, i);
            assert_eq!(rec, ev(i));
        }
        assert!(r.next(Duration::from_millis(10)).unwrap().is_none());
        log.truncate_below(8).unwrap();
        log.close();
        // Tear the tail: append garbage.
        let last = *list_segments(dir.path()).unwrap().last().unwrap();
        let p = segment_path(dir.path(), last);
        let mut bytes = fs::read(&p).unwrap();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        fs::write(&p, bytes).unwrap();
        let log = FileLog::open(dir.path(), 8, 200, Box::new(|_| {}))
            .unwrap()
            .log;
        assert_eq!(log.durable_end(), 10);
        let mut r = log.reader(8).unwrap();
        assert_eq!(r.next(Duration::ZERO).unwrap().unwrap().0, 8);
        log.close();
    }
}
