//! Offline breached-password filter, built from a Have I Been Pwned download.
//!
//! The download is text, one `SHA1HEX:COUNT` line per breached password.
//! [`build`] keeps the first 8 bytes of each SHA-1 (as a big-endian `u64`) and
//! stores them in binary fuse filters (crate `xorf`): about 2.25 bytes per
//! hash and a false-positive rate near 2^-16, so a good password is wrongly
//! refused about once in 65,000 tries and a breached one is never missed.
//! The keys are split into 256 shards by their first byte so that building
//! never needs more than one shard's working memory on top of the keys
//! themselves (8 bytes a hash: a full download of about a billion hashes
//! needs ~8–16 GB to build and ~2 GB to hold once opened).
//!
//! File layout (all integers little-endian), version 1:
//! - header: magic `LKBREACH`, version `u32`, shard count `u32` (256),
//!   total keys `u64`;
//! - per shard: keys `u64`, seed `u64`, segment length `u32`, segment length
//!   mask `u32`, segment count length `u32`, fingerprint count `u64`, then the
//!   fingerprints as `u16`s. An empty shard has every field zero.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};
use xorf::{BinaryFuse16, Descriptor, Filter};

use crate::config::{ConfigError, Settings, BREACHED_PASSWORDS_VAR};

const MAGIC: [u8; 8] = *b"LKBREACH";
const VERSION: u32 = 1;
const SHARDS: usize = 256;
const HEADER_LEN: u64 = 8 + 4 + 4 + 8;
const SHARD_HEADER_LEN: usize = 8 + 8 + 4 + 4 + 4 + 8;
/// An HIBP line is about 50 bytes; a much longer one means a wrong file, and
/// the cap keeps a file without newlines from being read whole into memory.
const MAX_LINE_BYTES: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum BreachedError {
    #[error("reading the hash list at line {line}: {source}")]
    Read { line: u64, source: io::Error },
    #[error("line {line} of the hash list: {reason}")]
    BadLine { line: u64, reason: &'static str },
    #[error("the hash list holds no hashes")]
    Empty,
    #[error("building the filter failed: {0}")]
    Build(&'static str),
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("reading {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{} is not a latchkey breached-password filter", path.display())]
    NotAFilter { path: PathBuf },
    #[error(
        "{} is a breached-password filter of format version {found}; this build reads version {VERSION}: import the hash list again",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{} is damaged ({reason}): import the hash list again", path.display())]
    Corrupt { path: PathBuf, reason: &'static str },
}

/// Builds the filter file `out` from a Have I Been Pwned SHA-1 list and returns
/// how many distinct hashes it holds.
///
/// Lines are `SHA1HEX:COUNT` (hex of either case, LF or CRLF endings); blank
/// lines are skipped, anything else is an error naming its line. The file is
/// written next to `out` and renamed over it only when complete, so a server
/// never opens half a filter and a failed import leaves the old one in place.
pub fn build(mut reader: impl BufRead, out: &Path) -> Result<usize, BreachedError> {
    let mut keys = Vec::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(|source| BreachedError::Read {
                line: number,
                source,
            })?;
        if read == 0 {
            break;
        }
        let text = match line.strip_suffix(b"\n") {
            Some(text) => text,
            None if read as u64 >= MAX_LINE_BYTES => {
                return Err(BreachedError::BadLine {
                    line: number,
                    reason: "line too long for a HASH:COUNT line",
                })
            }
            None => &line,
        };
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        let key = parse_line(text).map_err(|reason| BreachedError::BadLine {
            line: number,
            reason,
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(BreachedError::Empty);
    }
    // Sorted, the keys of one shard are one run; distinct, as xorf requires.
    keys.sort_unstable();
    keys.dedup();
    write_atomically(out, |w| write_filter(w, &keys, out))?;
    Ok(keys.len())
}

/// The first 16 hex digits of the hash as a big-endian `u64`.
fn parse_line(text: &[u8]) -> Result<u64, &'static str> {
    let colon = text
        .iter()
        .position(|&b| b == b':')
        .ok_or("expected HASH:COUNT")?;
    let (hash, count) = (&text[..colon], &text[colon + 1..]);
    if hash.len() != 40 || !hash.iter().all(u8::is_ascii_hexdigit) {
        return Err("the hash is not 40 hex digits (a SHA-1 list is needed, not NTLM)");
    }
    if count.is_empty() || !count.iter().all(u8::is_ascii_digit) {
        return Err("the count after ':' is not a number");
    }
    Ok(hash[..16]
        .iter()
        .fold(0u64, |key, &digit| key << 4 | u64::from(hex_value(digit))))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0, // unreachable: checked by is_ascii_hexdigit
    }
}

fn shard_of(key: u64) -> usize {
    (key >> 56) as usize
}

/// Writes the header, then each shard's filter, built one at a time so only
/// one shard's working memory is held. `keys` is sorted and distinct.
fn write_filter(w: &mut impl Write, keys: &[u64], out: &Path) -> Result<(), BreachedError> {
    let write_err = |source| BreachedError::Write {
        path: out.to_owned(),
        source,
    };
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(SHARDS as u32).to_le_bytes());
    header.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    w.write_all(&header).map_err(write_err)?;
    let mut rest = keys;
    for shard in 0..SHARDS {
        let end = rest.partition_point(|&key| shard_of(key) == shard);
        let (these, after) = rest.split_at(end);
        rest = after;
        if these.is_empty() {
            w.write_all(&[0; SHARD_HEADER_LEN]).map_err(write_err)?;
            continue;
        }
        let filter = BinaryFuse16::try_from(these).map_err(BreachedError::Build)?;
        let d = &filter.descriptor;
        let mut bytes = Vec::with_capacity(SHARD_HEADER_LEN + 2 * filter.fingerprints.len());
        bytes.extend_from_slice(&(these.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&d.seed.to_le_bytes());
        bytes.extend_from_slice(&d.segment_length.to_le_bytes());
        bytes.extend_from_slice(&d.segment_length_mask.to_le_bytes());
        bytes.extend_from_slice(&d.segment_count_length.to_le_bytes());
        bytes.extend_from_slice(&(filter.fingerprints.len() as u64).to_le_bytes());
        bytes.extend(filter.fingerprints.iter().flat_map(|f| f.to_le_bytes()));
        w.write_all(&bytes).map_err(write_err)?;
    }
    Ok(())
}

/// Writes `out` through a temporary file in the same directory, renamed over
/// `out` once synced; on any failure the temporary file is removed.
fn write_atomically(
    out: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), BreachedError>,
) -> Result<(), BreachedError> {
    let write_err = |source| BreachedError::Write {
        path: out.to_owned(),
        source,
    };
    let name = out.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output path names no file",
        ))
    })?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp.{}.{nanos}", std::process::id()));
    let temp_path = out.with_file_name(temp_name);

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let file = options.open(&temp_path).map_err(write_err)?;
    let mut temp = TempFile(Some(temp_path));
    let mut writer = BufWriter::new(file);
    fill(&mut writer)?;
    writer
        .flush()
        .and_then(|()| writer.get_ref().sync_all())
        .map_err(write_err)?;
    drop(writer);
    if let Some(path) = temp.0.take() {
        if let Err(source) = fs::rename(&path, out) {
            temp.0 = Some(path);
            return Err(write_err(source));
        }
    }
    // Make the rename itself durable. Best effort: not every filesystem lets a
    // directory be synced, and the new file is complete either way.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Removes the temporary file when an import fails part-way; emptied once
/// the file has been renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// The filter `LATCHKEY_BREACHED_PASSWORDS` names, opened (`None` when unset).
/// Opened once by whoever sets passwords (the server at start, a CLI command),
/// so a missing or damaged file stops it with one line naming the variable.
pub fn load(settings: &Settings) -> Result<Option<BreachedFilter>, ConfigError> {
    settings
        .breached_passwords
        .as_deref()
        .map(|path| {
            BreachedFilter::open(path).map_err(|err| ConfigError {
                var: BREACHED_PASSWORDS_VAR,
                reason: err.to_string(),
            })
        })
        .transpose()
}

/// A filter file opened into memory: [`contains`](Self::contains) answers
/// whether a password is in the breached list it was built from.
pub struct BreachedFilter {
    /// Exactly `SHARDS` entries; `None` for a shard that holds no key.
    shards: Vec<Option<BinaryFuse16>>,
    len: u64,
}

impl BreachedFilter {
    /// Reads and checks a file made by [`build`]. A file of another kind, of
    /// another format version, truncated or inconsistent is refused with an
    /// error saying so, never half-loaded.
    pub fn open(path: &Path) -> Result<Self, BreachedError> {
        let open_err = |source| BreachedError::Open {
            path: path.to_owned(),
            source,
        };
        let corrupt = |reason| BreachedError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        // Input checks lengths before reading, so running short is damage.
        let read_err = |source: io::Error| match source.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("truncated"),
            _ => open_err(source),
        };
        let file = File::open(path).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        let mut input = Input {
            reader: BufReader::new(file),
            remaining: size,
        };

        if size < MAGIC.len() as u64 || input.bytes(MAGIC.len()).map_err(open_err)? != MAGIC {
            return Err(BreachedError::NotAFilter {
                path: path.to_owned(),
            });
        }
        let version = input.u32().map_err(read_err)?;
        if version != VERSION {
            return Err(BreachedError::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
            });
        }
        if input.u32().map_err(read_err)? != SHARDS as u32 {
            return Err(corrupt("wrong shard count"));
        }
        let len = input.u64().map_err(read_err)?;

        let mut shards = Vec::with_capacity(SHARDS);
        let mut keys_seen = 0u64;
        for _ in 0..SHARDS {
            let keys = input.u64().map_err(read_err)?;
            let descriptor = Descriptor {
                seed: input.u64().map_err(read_err)?,
                segment_length: input.u32().map_err(read_err)?,
                segment_length_mask: input.u32().map_err(read_err)?,
                segment_count_length: input.u32().map_err(read_err)?,
            };
            let count = input.u64().map_err(read_err)?;
            if keys == 0 {
                let blank = Descriptor {
                    seed: 0,
                    segment_length: 0,
                    segment_length_mask: 0,
                    segment_count_length: 0,
                };
                if count != 0 || descriptor != blank {
                    return Err(corrupt("an empty shard holds data"));
                }
                shards.push(None);
                continue;
            }
            if !layout_is_sound(&descriptor, count) {
                return Err(corrupt("inconsistent shard layout"));
            }
            let byte_len = count
                .checked_mul(2)
                .filter(|&n| n <= input.remaining)
                .ok_or_else(|| corrupt("truncated"))?;
            let bytes = input
                .bytes(usize::try_from(byte_len).map_err(|_| corrupt("shard too large"))?)
                .map_err(read_err)?;
            let fingerprints = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            keys_seen = keys_seen.saturating_add(keys);
            shards.push(Some(BinaryFuse16 {
                descriptor,
                fingerprints,
            }));
        }
        if input.remaining != 0 {
            return Err(corrupt("trailing bytes after the last shard"));
        }
        if keys_seen != len {
            return Err(corrupt("the shard key counts do not add up"));
        }
        Ok(Self { shards, len })
    }

    /// True when the password's SHA-1 is (very probably) in the breached list.
    pub fn contains(&self, password: &str) -> bool {
        let digest = Sha1::digest(password.as_bytes());
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&digest[..8]);
        let key = u64::from_be_bytes(prefix);
        matches!(self.shards.get(shard_of(key)), Some(Some(filter)) if filter.contains(&key))
    }

    /// How many distinct hashes the filter was built from.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for BreachedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreachedFilter")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The shape `xorf` builds (arity 3: `segment_count_length` plus two more
/// segments of fingerprints). `contains` indexes the fingerprints from these
/// numbers, so a damaged file that passed this check could still give wrong
/// answers but never an out-of-bounds index.
fn layout_is_sound(d: &Descriptor, fingerprints: u64) -> bool {
    let length = u64::from(d.segment_length);
    d.segment_length.is_power_of_two()
        && d.segment_length_mask == d.segment_length - 1
        && d.segment_count_length > 0
        && u64::from(d.segment_count_length) % length == 0
        && fingerprints == u64::from(d.segment_count_length) + 2 * length
}

/// A reader that knows how many bytes the file has left, so a damaged length
/// field is caught before anything is allocated for it.
struct Input<R> {
    reader: R,
    remaining: u64,
}

impl<R: Read> Input<R> {
    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        if n as u64 > self.remaining {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        self.remaining -= n as u64;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        if N as u64 > self.remaining {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut buf = [0; N];
        self.reader.read_exact(&mut buf)?;
        self.remaining -= N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> io::Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> io::Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sha1_hex(password: &str) -> String {
        hex::encode_upper(Sha1::digest(password.as_bytes()))
    }

    fn hibp(passwords: &[&str]) -> String {
        passwords
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}:{}\r\n", sha1_hex(p), i + 1))
            .collect()
    }

    fn build_from(text: &str) -> (tempfile::TempDir, PathBuf, Result<usize, BreachedError>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("breached.filter");
        let result = build(Cursor::new(text.as_bytes().to_vec()), &out);
        (dir, out, result)
    }

    #[test]
    fn built_filter_finds_its_passwords_and_not_others() {
        let text = hibp(&["hunter2horse", "password", "letmein", "Tr0ub4dor&3"]);
        let (_dir, out, result) = build_from(&text);
        assert_eq!(result.expect("build"), 4);
        let filter = BreachedFilter::open(&out).expect("open");
        assert_eq!(filter.len(), 4);
        assert!(!filter.is_empty());
        for p in ["hunter2horse", "password", "letmein", "Tr0ub4dor&3"] {
            assert!(filter.contains(p), "{p}");
        }
        for p in [
            "hunter2",
            "Hunter2horse",
            "correct horse battery staple",
            "",
        ] {
            assert!(!filter.contains(p), "{p}");
        }
    }

    #[test]
    fn lowercase_hex_lf_blank_lines_and_duplicates_are_fine() {
        let hash = sha1_hex("hunter2horse").to_lowercase();
        let text = format!("{hash}:3\n\n{hash}:3\r\n{}:1", sha1_hex("other"));
        let (_dir, out, result) = build_from(&text);
        assert_eq!(result.expect("build"), 2);
        let filter = BreachedFilter::open(&out).expect("open");
        assert!(filter.contains("hunter2horse"));
        assert!(filter.contains("other"));
    }

    #[test]
    fn many_keys_no_false_negatives_few_false_positives() {
        let passwords: Vec<String> = (0..20_000).map(|i| format!("breached-{i}")).collect();
        let refs: Vec<&str> = passwords.iter().map(String::as_str).collect();
        let (_dir, out, result) = build_from(&hibp(&refs));
        assert_eq!(result.expect("build"), 20_000);
        let filter = BreachedFilter::open(&out).expect("open");
        assert!(passwords.iter().all(|p| filter.contains(p)));
        let false_positives = (0..20_000)
            .filter(|i| filter.contains(&format!("fresh-{i}")))
            .count();
        // Expected about 0.3 at 2^-16.
        assert!(false_positives <= 3, "{false_positives} false positives");
    }

    #[test]
    fn bad_lines_are_refused_by_number() {
        let good = sha1_hex("a");
        let cases = [
            (
                format!("{good}:1\n{good}:1\nnot a hash line\n"),
                3,
                "HASH:COUNT",
            ),
            (format!("{good}:1\n{}:1\n", &good[..32]), 2, "40 hex"),
            (format!("{}:1\n", good.replace('A', "G")), 1, "40 hex"),
            (format!("{good}:\n"), 1, "count"),
            (format!("{good}:12x\n"), 1, "count"),
            (format!("{good}:1\n{}\n", "F".repeat(400)), 2, "too long"),
        ];
        for (text, line, words) in cases {
            let (dir, out, result) = build_from(&text);
            match result {
                Err(err @ BreachedError::BadLine { line: got, .. }) => {
                    assert_eq!(got, line, "{text}");
                    let message = err.to_string();
                    assert!(message.contains(&format!("line {line}")), "{message}");
                    assert!(message.contains(words), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(!out.exists());
            assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 0);
        }
    }

    #[test]
    fn non_utf8_input_is_a_bad_line_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("f");
        let err = build(Cursor::new(b"\xff\xfe:1\n".to_vec()), &out).expect_err("garbage");
        assert!(
            matches!(err, BreachedError::BadLine { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_input_is_refused() {
        let (_dir, out, result) = build_from("\r\n\n");
        assert!(matches!(result, Err(BreachedError::Empty)));
        assert!(!out.exists());
    }

    #[test]
    fn rebuilding_replaces_the_file_and_leaves_no_temp_files() {
        let (dir, out, result) = build_from(&hibp(&["first"]));
        result.expect("first build");
        let again = build(Cursor::new(hibp(&["second"]).into_bytes()), &out).expect("rebuild");
        assert_eq!(again, 1);
        let filter = BreachedFilter::open(&out).expect("open");
        assert!(filter.contains("second"));
        assert!(!filter.contains("first"));
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("breached.filter")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&out).expect("meta").permissions().mode();
            assert_eq!(mode & 0o022, 0, "not writable by others: {mode:o}");
        }
    }

    #[test]
    fn an_unwritable_output_is_a_write_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("no-such-dir").join("breached.filter");
        let err = build(Cursor::new(hibp(&["x"]).into_bytes()), &out).expect_err("no dir");
        assert!(matches!(err, BreachedError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[test]
    fn garbage_files_are_not_filters() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, content) in [
            ("empty", &b""[..]),
            ("short", &b"LKBR"[..]),
            (
                "text",
                &b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3861493\n"[..],
            ),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, content).expect("write");
            let err = BreachedFilter::open(&path).expect_err(name);
            assert!(
                matches!(err, BreachedError::NotAFilter { .. }),
                "{name}: {err:?}"
            );
            assert!(err
                .to_string()
                .contains("not a latchkey breached-password filter"));
        }
        let missing = BreachedFilter::open(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(missing, BreachedError::Open { .. }));
    }

    #[test]
    fn damaged_filters_are_refused() {
        let (dir, out, result) = build_from(&hibp(&["hunter2horse", "a", "b", "c"]));
        result.expect("build");
        let good = fs::read(&out).expect("read");
        let check = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, bytes).expect("write");
            BreachedFilter::open(&path).expect_err(name)
        };

        for cut in [12, HEADER_LEN as usize, good.len() / 2, good.len() - 1] {
            let err = check("cut", &good[..cut]);
            assert!(
                matches!(err, BreachedError::Corrupt { .. }),
                "cut {cut}: {err:?}"
            );
        }

        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            check("longer", &longer),
            BreachedError::Corrupt { .. }
        ));

        let mut version = good.clone();
        version[8..12].copy_from_slice(&2u32.to_le_bytes());
        let err = check("version", &version);
        assert!(
            matches!(err, BreachedError::UnsupportedVersion { found: 2, .. }),
            "{err:?}"
        );

        // Any single damaged byte is either refused or harmless: never a
        // panic, never an out-of-bounds read.
        for at in 0..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0x5a;
            let path = dir.path().join("flip");
            fs::write(&path, &bytes).expect("write");
            if let Ok(filter) = BreachedFilter::open(&path) {
                let _ = filter.contains("hunter2horse");
            }
        }
    }

    #[test]
    fn errors_name_their_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wrong.bin");
        fs::write(&path, b"definitely not a filter file").expect("write");
        let message = BreachedFilter::open(&path).expect_err("wrong").to_string();
        assert!(message.contains("wrong.bin"), "{message}");
    }
}
