//! The ingest log: an append-only, checksummed, fsync'ed log of the batches a
//! collector acknowledged, in `<store>.ingest/`. A batch is acknowledged once its
//! frame is on disk; the writer's loader moves frames into the DuckDB tables behind
//! it, recording the last loaded frame in `ingest_log` in the same transaction, and
//! removes log files once every frame in them is loaded. After a crash the frames
//! past that mark are loaded again (the exactly-once window drops what a crash
//! between COMMIT and answer let through).
//!
//! Layout: files `log-<first seq, 20 digits>.tsl`, each an 8-byte header and then
//! frames `magic u32 | payload length u32 | seq u64 | crc32 u32 | payload`, little
//! endian; the checksum covers the sequence number and the payload (a bincode
//! `Batch`). Sequence numbers rise by one across files and start at 1.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tailscope_model::Batch;

const FILE_MAGIC: &[u8; 8] = b"TSLOG\0\0\x01";
const FRAME_MAGIC: u32 = 0x4654_534c; // "LSTF"
const FRAME_HEADER: usize = 20;
/// A payload larger than this is damage, not data (requests are at most 64 MiB).
const MAX_PAYLOAD: u32 = 1 << 30;
/// A log file is closed and a new one started past this size.
pub(crate) const ROLL_BYTES: u64 = 64 << 20;

/// `<db>.ingest`
pub fn dir_of(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".ingest");
    PathBuf::from(s)
}

fn file_name(first_seq: u64) -> String {
    format!("log-{first_seq:020}.tsl")
}

/// The log files of `dir`, oldest first, with the first sequence number of each.
pub(crate) fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix("log-")
            .and_then(|r| r.strip_suffix(".tsl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable_by_key(|f| f.0);
    Ok(out)
}

/// bincode with variable-length integers (lengths and enum tags take a byte or
/// two rather than eight and four): the log is written at disk speed.
fn options() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

pub(crate) fn encode(batch: &Batch) -> Result<Vec<u8>, bincode::Error> {
    use bincode::Options;
    options().serialize(batch)
}

pub(crate) fn decode(payload: &[u8]) -> Result<Batch, bincode::Error> {
    use bincode::Options;
    options().deserialize(payload)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A whole log file's bytes: the file header, then `payloads` framed with sequence
/// numbers from `first_seq` (what [`LogFile::append_raw`] writes). For the fuzz
/// harness and tests.
pub fn frame_file(first_seq: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = FILE_MAGIC.to_vec();
    for (seq, p) in (first_seq..).zip(payloads) {
        out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&checksum(seq, p).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A batch as a frame's payload (bincode, as the log writes it).
pub fn encode_payload(batch: &Batch) -> Result<Vec<u8>, bincode::Error> {
    encode(batch)
}

/// Reads the log file at `path` as opening a store does: frame by frame until the
/// end, a torn tail or damage, each payload decoded. Returns (frames read, payloads
/// decoded, whether it stopped at damage). For the fuzz harness and tests.
pub fn read_back(path: &Path) -> io::Result<(usize, usize, bool)> {
    let mut r = FileReader::open(path)?;
    let (mut frames, mut decoded) = (0, 0);
    loop {
        match r.next()? {
            Ok(f) => {
                frames += 1;
                decoded += usize::from(decode(&f.payload).is_ok());
            }
            Err(Stop::End { .. }) => return Ok((frames, decoded, false)),
            Err(Stop::Damaged) => return Ok((frames, decoded, true)),
        }
    }
}

/// One frame read back.
#[derive(Debug)]
pub(crate) struct Frame {
    pub seq: u64,
    pub payload: Vec<u8>,
    /// Bytes the frame takes in its file, header included.
    pub bytes: u64,
}

/// Why reading stopped before the end of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The file ends (cleanly, or inside a frame header or payload: a torn tail).
    End { torn: bool },
    /// A frame whose magic, length or checksum is wrong.
    Damaged,
}

/// Reads the frames of one file in order.
pub(crate) struct FileReader {
    r: BufReader<File>,
    /// Offset of the next frame.
    pub at: u64,
}

impl FileReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut f = File::open(path)?;
        let mut head = [0u8; 8];
        let n = read_full(&mut f, &mut head)?;
        if n < 8 {
            // created but never written: an empty log
            return Ok(Self {
                r: BufReader::with_capacity(1 << 20, f),
                at: n as u64,
            });
        }
        if &head != FILE_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a tailscope ingest log", path.display()),
            ));
        }
        Ok(Self {
            r: BufReader::with_capacity(1 << 20, f),
            at: 8,
        })
    }

    /// The next frame, or why there is none. After `Stop::End { torn: false }` more
    /// frames may follow once the writer appends them (the log's tail).
    pub fn next(&mut self) -> io::Result<Result<Frame, Stop>> {
        if self.at < 8 {
            // re-read the header of a file that was empty when opened
            let mut head = [0u8; 8];
            self.r.seek(SeekFrom::Start(0))?;
            let n = read_full(&mut self.r, &mut head)?;
            if n < 8 {
                self.r.seek(SeekFrom::Start(0))?;
                return Ok(Err(Stop::End { torn: false }));
            }
            if &head != FILE_MAGIC {
                return Ok(Err(Stop::Damaged));
            }
            self.at = 8;
        }
        let mut h = [0u8; FRAME_HEADER];
        let n = read_full(&mut self.r, &mut h)?;
        if n < FRAME_HEADER {
            self.r.seek(SeekFrom::Start(self.at))?;
            return Ok(Err(Stop::End { torn: n > 0 }));
        }
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let seq = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        if magic != FRAME_MAGIC || len > MAX_PAYLOAD {
            self.r.seek(SeekFrom::Start(self.at))?;
            // zeros past the end are a torn tail of a preallocated or reused block
            let torn = h.iter().all(|b| *b == 0);
            return Ok(Err(if torn {
                Stop::End { torn: true }
            } else {
                Stop::Damaged
            }));
        }
        let mut payload = vec![0u8; len as usize];
        let n = read_full(&mut self.r, &mut payload)?;
        if n < payload.len() {
            self.r.seek(SeekFrom::Start(self.at))?;
            return Ok(Err(Stop::End { torn: true }));
        }
        if checksum(seq, &payload) != crc {
            self.r.seek(SeekFrom::Start(self.at))?;
            return Ok(Err(Stop::Damaged));
        }
        let bytes = (FRAME_HEADER + payload.len()) as u64;
        self.at += bytes;
        Ok(Ok(Frame {
            seq,
            payload,
            bytes,
        }))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What opening the log found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The highest sequence number in the log (0: none).
    pub last_seq: u64,
    /// Frames past `loaded_seq`, and their bytes.
    pub pending_frames: u64,
    pub pending_bytes: u64,
    /// A torn tail cut off the newest file (bytes), from a crash mid-append. Its
    /// frame was never acknowledged.
    pub torn_bytes: u64,
    /// Files set aside because a frame in them was damaged, with the frames lost.
    pub damaged: Vec<(PathBuf, u64)>,
}

/// Checks every frame of the log in `dir`: cuts a torn tail off the newest file, sets
/// a file with a damaged frame aside (`*.damaged`, keeping its intact frames readable
/// in a new file), and counts what is past `loaded_seq`.
pub(crate) fn scan(dir: &Path, loaded_seq: u64) -> io::Result<Scan> {
    let mut out = Scan::default();
    for (_, path) in &files(dir)? {
        let mut r = FileReader::open(path)?;
        let stop = loop {
            match r.next()? {
                Ok(f) => {
                    out.last_seq = out.last_seq.max(f.seq);
                    if f.seq > loaded_seq {
                        out.pending_frames += 1;
                        out.pending_bytes += f.bytes;
                    }
                }
                Err(stop) => break stop,
            }
        };
        let at = r.at;
        drop(r);
        let len = fs::metadata(path)?.len();
        match stop {
            Stop::End { torn } => {
                // Appends are acknowledged after their sync, so a torn tail was never
                // acknowledged: cut it off.
                if torn && at < len {
                    let f = OpenOptions::new().write(true).open(path)?;
                    f.set_len(at)?;
                    f.sync_all()?;
                    out.torn_bytes += len - at;
                }
            }
            Stop::Damaged => {
                // Damage inside the log: set the file aside and write its frames up to
                // the damage to a new file.
                let lost = count_frames_after(path, at).unwrap_or(0);
                let mut aside = path.as_os_str().to_owned();
                aside.push(".damaged");
                let aside = PathBuf::from(aside);
                let intact = salvage(path, at)?;
                fs::rename(path, &aside)?;
                if let Some((first, frames)) = intact {
                    let mut w = LogFile::create(dir, first)?;
                    for f in &frames {
                        w.append_raw(f.seq, &f.payload)?;
                    }
                    w.sync()?;
                }
                sync_dir(dir)?;
                out.damaged.push((aside, lost));
            }
        }
    }
    Ok(out)
}

/// The intact frames of `path` before offset `end`.
fn salvage(path: &Path, end: u64) -> io::Result<Option<(u64, Vec<Frame>)>> {
    let mut r = FileReader::open(path)?;
    let mut frames = Vec::new();
    while r.at < end {
        match r.next()? {
            Ok(f) => frames.push(f),
            Err(_) => break,
        }
    }
    Ok(frames.first().map(|f| f.seq).map(|first| (first, frames)))
}

/// A lower bound on the frames lost past a damaged offset: frames whose magic can
/// still be found further on.
fn count_frames_after(path: &Path, at: u64) -> io::Result<u64> {
    let bytes = fs::read(path)?;
    let magic = FRAME_MAGIC.to_le_bytes();
    let from = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
    Ok(bytes[from..]
        .windows(4)
        .filter(|w| *w == magic)
        .count()
        .max(1) as u64)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file frames are appended to.
pub(crate) struct LogFile {
    w: BufWriter<File>,
    /// Bytes written (header included), synced or not.
    pub len: u64,
}

impl LogFile {
    pub fn create(dir: &Path, first_seq: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(file_name(first_seq));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(FILE_MAGIC)?;
        f.sync_all()?;
        sync_dir(dir)?;
        Ok(Self {
            w: BufWriter::with_capacity(1 << 20, f),
            len: FILE_MAGIC.len() as u64,
        })
    }

    /// Appends one frame (buffered: durable after [`LogFile::sync`]); returns its bytes.
    pub fn append_raw(&mut self, seq: u64, payload: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "batch too large"))?;
        let mut h = [0u8; FRAME_HEADER];
        h[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h[8..16].copy_from_slice(&seq.to_le_bytes());
        h[16..20].copy_from_slice(&checksum(seq, payload).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(payload)?;
        let bytes = (FRAME_HEADER + payload.len()) as u64;
        self.len += bytes;
        Ok(bytes)
    }

    /// Writes what is buffered and waits until it is on disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.w.flush()?;
        self.w.get_ref().sync_data()
    }

    /// Drops frames past `len` (a group that failed to reach the disk).
    pub fn cut_back(&mut self, len: u64) -> io::Result<()> {
        // the buffer may hold part of the failed group: discard it with the file tail
        let f = self.w.get_ref().try_clone()?;
        let fresh = BufWriter::with_capacity(1 << 20, f);
        let old = std::mem::replace(&mut self.w, fresh);
        let (f, _) = old.into_parts();
        f.set_len(len)?;
        let mut f = f;
        f.seek(SeekFrom::Start(len))?;
        self.w = BufWriter::with_capacity(1 << 20, f);
        self.len = len;
        Ok(())
    }
}

/// Removes the files whose frames are all at or below `loaded_seq` (every file but
/// the newest, whose successor starts at or below `loaded_seq + 1`).
pub(crate) fn remove_loaded(dir: &Path, loaded_seq: u64) -> io::Result<usize> {
    let all = files(dir)?;
    let mut removed = 0;
    for w in all.windows(2) {
        if w[1].0 <= loaded_seq + 1 {
            fs::remove_file(&w[0].1)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes every file whose frames are all at or below `loaded_seq`, the newest
/// included (when nothing appends any more), and then the folder itself when nothing
/// is left in it (a set-aside damaged file keeps it, as does anything else in it).
pub(crate) fn remove_all_loaded(dir: &Path, loaded_seq: u64) -> io::Result<()> {
    remove_loaded(dir, loaded_seq)?;
    if let Some((_, newest)) = files(dir)?.pop() {
        if last_seq_in(&newest)?.unwrap_or(0) <= loaded_seq {
            fs::remove_file(&newest)?;
        }
    }
    // fails, and is meant to, on a folder that still holds something
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// The sequence number of the last intact frame of one file (`None`: no frame).
fn last_seq_in(path: &Path) -> io::Result<Option<u64>> {
    let mut r = FileReader::open(path)?;
    let mut last = None;
    while let Ok(f) = r.next()? {
        last = Some(f.seq);
    }
    Ok(last)
}

/// The last frame loaded into the tables (the mark in `ingest_log`).
pub(crate) fn loaded_seq(conn: &duckdb::Connection) -> Result<u64, duckdb::Error> {
    let seq: i64 = conn.query_row("SELECT max(loaded_seq) FROM ingest_log", [], |r| r.get(0))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The ingest log of the store at `db` when it holds frames its tables lack
/// (acknowledged by a collector that stopped before loading them).
pub(crate) fn pending(
    conn: &duckdb::Connection,
    db: &Path,
) -> Result<Option<PathBuf>, crate::StoreError> {
    let dir = dir_of(db);
    if !dir.exists() {
        return Ok(None);
    }
    let loaded = loaded_seq(conn)?;
    let pending = has_pending(&dir, loaded).map_err(|source| crate::StoreError::IngestLog {
        path: dir.clone(),
        source,
    })?;
    Ok(pending.then_some(dir))
}

/// Whether the log in `dir` holds frames past `loaded_seq` (reads only the newest
/// file that has frames).
fn has_pending(dir: &Path, loaded_seq: u64) -> io::Result<bool> {
    for (_, path) in files(dir)?.iter().rev() {
        if let Some(seq) = last_seq_in(path)? {
            return Ok(seq > loaded_seq);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Batch {
        let mut b = Batch::default();
        b.resources.push(tailscope_model::Resource::new(vec![]));
        b.logs = Vec::with_capacity(n);
        b
    }

    fn write_frames(dir: &Path, first: u64, n: u64) -> LogFile {
        let mut w = LogFile::create(dir, first).unwrap();
        for s in first..first + n {
            w.append_raw(s, &encode(&batch(1)).unwrap()).unwrap();
        }
        w.sync().unwrap();
        w
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let w = write_frames(dir.path(), 1, 5);
        let path = dir.path().join(file_name(1));
        drop(w);
        // a crash mid-append: half a frame at the end
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&FRAME_MAGIC.to_le_bytes()).unwrap();
        f.write_all(&[9, 0, 0]).unwrap();
        drop(f);
        let s = scan(dir.path(), 2).unwrap();
        assert_eq!(s.last_seq, 5);
        assert_eq!(s.pending_frames, 3);
        assert_eq!(s.torn_bytes, 7);
        assert!(s.damaged.is_empty());
        let mut r = FileReader::open(&path).unwrap();
        let mut seqs = Vec::new();
        while let Ok(f) = r.next().unwrap() {
            assert!(decode(&f.payload).is_ok());
            seqs.push(f.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(has_pending(dir.path(), 4).unwrap());
        assert!(!has_pending(dir.path(), 5).unwrap());
    }

    #[test]
    fn a_damaged_frame_sets_its_file_aside_and_keeps_the_frames_before_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_frames(dir.path(), 1, 4));
        drop(write_frames(dir.path(), 5, 2));
        let path = dir.path().join(file_name(1));
        let mut bytes = fs::read(&path).unwrap();
        // flip a payload byte of the third frame
        let frame = (bytes.len() - 8) / 4;
        bytes[8 + 2 * frame + FRAME_HEADER + 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let s = scan(dir.path(), 0).unwrap();
        assert_eq!(s.damaged.len(), 1, "{s:?}");
        assert!(s.damaged[0].0.exists());
        let mut seqs = Vec::new();
        for (_, p) in files(dir.path()).unwrap() {
            let mut r = FileReader::open(&p).unwrap();
            while let Ok(f) = r.next().unwrap() {
                seqs.push(f.seq);
            }
        }
        assert_eq!(seqs, vec![1, 2, 5, 6]);
    }

    #[test]
    fn loaded_files_are_removed_but_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_frames(dir.path(), 1, 3));
        drop(write_frames(dir.path(), 4, 3));
        drop(write_frames(dir.path(), 7, 3));
        assert_eq!(remove_loaded(dir.path(), 2).unwrap(), 0);
        assert_eq!(remove_loaded(dir.path(), 3).unwrap(), 1);
        assert_eq!(remove_loaded(dir.path(), 9).unwrap(), 1);
        assert_eq!(files(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_failed_group_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = write_frames(dir.path(), 1, 2);
        let len = w.len;
        w.append_raw(3, b"lost").unwrap();
        w.cut_back(len).unwrap();
        w.append_raw(3, &encode(&batch(1)).unwrap()).unwrap();
        w.sync().unwrap();
        let mut r = FileReader::open(&dir.path().join(file_name(1))).unwrap();
        let mut n = 0;
        while let Ok(f) = r.next().unwrap() {
            assert!(decode(&f.payload).is_ok());
            n += 1;
        }
        assert_eq!(n, 3);
    }
}
