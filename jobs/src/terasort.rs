//! TeraSort, as Hadoop ships it: `teragen` writes 100-byte rows (10-byte printable key,
//! then ` ` + 16-digit row id + ` ` + 71 filler letters, the format of
//! `gen_data.py records`), `terasort` sorts them into part files that are in total order
//! one after another, and `teravalidate` checks that order and checksums the rows.
//!
//! Total order comes from a range partitioner: at submit, `terasort` samples keys from
//! the input (a few windows spread over it), sorts them and takes R-1 evenly spaced cut
//! points, passed to the tasks as `-D terasort.cuts` (hex). Output is written with
//! replication 1, as TeraSort does (`mapred.output.replication`), and without a separator,
//! so each output line is an input line.

use std::sync::Arc;

use mapred::config::keys;
use mapred::{
    Blob, BlobBuf, Context, Error, GeneratedInput, Input, Job, JobConf, Mapper, Partitioner,
    RangePartitioner, RawKey, Reducer, Result, SubmitContext, Values, WithReducer,
};

/// Rows to generate (`teragen`).
pub const ROWS: &str = "teragen.rows";
/// Cut points of the range partitioner (hex, comma-separated).
pub const CUTS: &str = "terasort.cuts";
/// Bytes of one row without its newline.
pub const ROW: usize = 99;
/// Bytes of a key.
pub const KEY: usize = 10;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row `id` of the generated data set (99 bytes, no newline).
pub fn row(id: u64, out: &mut Vec<u8>) {
    let (a, b) = (splitmix(id * 2), splitmix(id * 2 + 1));
    let bytes = [a.to_le_bytes(), b.to_le_bytes()].concat();
    out.extend(bytes[..KEY].iter().map(|&x| 33 + x % 94));
    out.push(b' ');
    out.extend_from_slice(format!("{id:016}").as_bytes());
    out.push(b' ');
    out.extend(std::iter::repeat_n(b'A' + (id % 26) as u8, 71));
}

/// Generates this map's share of the rows.
#[derive(Debug)]
pub struct Generate {
    rows: u64,
}

impl Mapper for Generate {
    type Key = [u8];
    type Value = [u8];

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], [u8]>) -> Result<()> {
        let (index, maps) = input.generated_index().unwrap_or((0, 1));
        let (i, n) = (u64::from(index), u64::from(maps.max(1)));
        let (first, last) = (self.rows * i / n, self.rows * (i + 1) / n);
        let mut buf = Vec::with_capacity(ROW);
        for id in first..last {
            buf.clear();
            row(id, &mut buf);
            ctx.emit(&buf[..KEY], &buf[KEY..])?;
        }
        Ok(())
    }
}

/// The `teragen` job.
pub fn teragen() -> Job<Generate> {
    Job::new("teragen", "generate -D teragen.rows=N 100-byte rows", |c| {
        Ok(Generate { rows: c.get_u64(ROWS, 1000)? })
    })
    .input_format(GeneratedInput)
    .conf(keys::OUTPUT_SEPARATOR, "")
}

/// Splits a row into key and the rest.
#[derive(Debug, Default)]
pub struct SortMapper;

impl Mapper for SortMapper {
    type Key = [u8];
    type Value = Blob;

    #[inline]
    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], Blob>) -> Result<()> {
        let line = input.line();
        if line.len() < KEY {
            ctx.count("terasort", "SHORT_ROWS", 1);
            return Ok(());
        }
        ctx.emit(&line[..KEY], Blob::new(&line[KEY..]))
    }
}

/// Writes every row of a key back out.
#[derive(Debug, Default)]
pub struct Identity {
    /// The current group's key, copied from the merge into a buffer reused for every
    /// group (every key is distinct here: decoding one `Vec` per group would allocate
    /// once per row).
    key: Vec<u8>,
}

impl Reducer for Identity {
    type KeyIn = RawKey;
    type ValueIn = BlobBuf;
    type KeyOut = [u8];
    type ValueOut = Blob;

    #[inline]
    fn reduce(
        &mut self,
        _key: RawKey,
        values: &mut Values<'_, BlobBuf>,
        ctx: &mut Context<'_, [u8], Blob>,
    ) -> Result<()> {
        // A `[u8]` key that is the whole key is encoded as its own bytes.
        self.key.clear();
        self.key.extend_from_slice(values.raw_key());
        while let Some(raw) = values.next_raw() {
            // The value is a length-prefixed byte string: skip the varint, emit the bytes.
            let mut p = 0;
            mapred::run::get_varint(raw, &mut p)
                .ok_or_else(|| Error::Decode("terasort value".into()))?;
            ctx.emit(&self.key, Blob::new(&raw[p..]))?;
        }
        Ok(())
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(Error::InvalidArgument(format!("{CUTS}: odd hex {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| Error::InvalidArgument(format!("{CUTS}: bad hex {s:?}")))
        })
        .collect()
}

/// The range partitioner described by `terasort.cuts`.
///
/// # Errors
/// [`Error::InvalidArgument`] if the option is malformed.
pub fn partitioner(conf: &JobConf) -> Result<Arc<dyn Partitioner>> {
    let cuts = conf
        .get(CUTS)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(from_hex)
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(RangePartitioner::new(cuts)))
}

/// Picks `parts - 1` cut points from sampled keys.
pub fn cut_points(mut sample: Vec<Vec<u8>>, parts: u32) -> Vec<Vec<u8>> {
    sample.sort();
    if sample.is_empty() || parts <= 1 {
        return Vec::new();
    }
    (1..parts as usize).map(|i| sample[i * sample.len() / parts as usize].clone()).collect()
}

/// Samples keys from windows spread over the input and sets `terasort.cuts`.
fn sample(ctx: &mut SubmitContext) -> Result<()> {
    if ctx.conf.get(CUTS).is_some() || ctx.reducers <= 1 {
        return Ok(());
    }
    const WINDOWS: u64 = 20;
    const WINDOW: u64 = 256 << 10;
    let files = ctx.input_files()?;
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let mut keys = Vec::new();
    for w in 0..WINDOWS {
        let mut at = total * w / WINDOWS;
        let Some((path, len)) = files.iter().find(|(_, l)| {
            let found = at < *l;
            if !found {
                at -= l;
            }
            found
        }) else {
            continue;
        };
        let data = ctx.read(path, at, WINDOW.min(len - at))?;
        let mut lines = data.split(|&b| b == b'\n');
        if at > 0 {
            lines.next(); // a partial line
        }
        let complete: Vec<&[u8]> = lines.collect();
        let n = complete.len().saturating_sub(1); // the last may be cut short too
        keys.extend(complete[..n].iter().filter(|l| l.len() >= KEY).map(|l| l[..KEY].to_vec()));
    }
    let cuts = cut_points(keys, ctx.reducers);
    let value: Vec<String> = cuts.iter().map(|c| to_hex(c)).collect();
    ctx.conf.set(CUTS, value.join(","));
    Ok(())
}

/// The `terasort` job.
pub fn terasort() -> Job<SortMapper, WithReducer> {
    Job::new(
        "terasort",
        "sort 100-byte rows by their 10-byte key into totally ordered parts",
        |_| Ok(SortMapper),
    )
    .reducer(|_| Ok(Identity::default()))
    .partitioner(partitioner)
    .conf(keys::OUTPUT_SEPARATOR, "")
    .conf(keys::OUTPUT_REPLICATION, "1")
    .before_submit(sample)
}

/// Per-split summary: first and last key, rows, checksum, rows out of order.
#[derive(Debug, Default)]
pub struct Validate {
    first: Option<(u64, Vec<u8>)>,
    last: Vec<u8>,
    rows: u64,
    checksum: u64,
    misordered: u64,
}

impl Mapper for Validate {
    type Key = (String, u64);
    type Value = ((BlobBuf, BlobBuf), (u64, u64, u64));

    fn map(
        &mut self,
        input: Input<'_>,
        _ctx: &mut Context<'_, Self::Key, Self::Value>,
    ) -> Result<()> {
        let line = input.line();
        let key = &line[..line.len().min(KEY)];
        if self.first.is_none() {
            self.first = Some((input.offset(), key.to_vec()));
        } else if key < self.last.as_slice() {
            self.misordered += 1;
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.rows += 1;
        self.checksum = self.checksum.wrapping_add(u64::from(crc32fast::hash(line)));
        Ok(())
    }

    fn cleanup(&mut self, ctx: &mut Context<'_, Self::Key, Self::Value>) -> Result<()> {
        let Some((offset, first)) = self.first.take() else { return Ok(()) };
        let path = ctx.task().input_path.clone().unwrap_or_default();
        let v = (
            (BlobBuf(first), BlobBuf(self.last.clone())),
            (self.rows, self.checksum, self.misordered),
        );
        ctx.emit(&(path, offset), &v)
    }
}

/// Checks that consecutive splits are in order and totals everything.
#[derive(Debug, Default)]
pub struct ValidateReduce {
    last: Option<Vec<u8>>,
    rows: u64,
    checksum: u64,
    misordered: u64,
}

impl Reducer for ValidateReduce {
    type KeyIn = (String, u64);
    type ValueIn = ((BlobBuf, BlobBuf), (u64, u64, u64));
    type KeyOut = str;
    type ValueOut = String;

    fn reduce(
        &mut self,
        _key: (String, u64),
        values: &mut Values<'_, Self::ValueIn>,
        _ctx: &mut Context<'_, str, String>,
    ) -> Result<()> {
        for ((first, last), (rows, sum, bad)) in values {
            if self.last.as_ref().is_some_and(|l| first.0 < *l) {
                self.misordered += 1;
            }
            self.last = Some(last.0);
            self.rows += rows;
            self.checksum = self.checksum.wrapping_add(sum);
            self.misordered += bad;
        }
        Ok(())
    }

    fn cleanup(&mut self, ctx: &mut Context<'_, str, String>) -> Result<()> {
        ctx.emit("rows", &self.rows.to_string())?;
        ctx.emit("checksum", &format!("{:016x}", self.checksum))?;
        ctx.emit("misordered", &self.misordered.to_string())
    }
}

/// The `teravalidate` job.
pub fn teravalidate() -> Job<Validate, WithReducer> {
    Job::new("teravalidate", "check that terasort output is in total order; checksum it", |_| {
        Ok(Validate::default())
    })
    .reducer(|_| Ok(ValidateReduce::default()))
    .reducers(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_the_generator_format() {
        let mut r = Vec::new();
        row(12, &mut r);
        assert_eq!(r.len(), ROW);
        assert!(r[..KEY].iter().all(|b| (33..=126).contains(b)));
        assert_eq!(&r[KEY..KEY + 18], b" 0000000000000012 ");
        assert!(r[28..].iter().all(|&b| b == b'M'));
    }

    #[test]
    fn cuts_split_the_sample_evenly_and_round_trip() {
        let sample: Vec<Vec<u8>> = (0..100u8).rev().map(|i| vec![i]).collect();
        let cuts = cut_points(sample, 4);
        assert_eq!(cuts, vec![vec![25], vec![50], vec![75]]);
        let mut conf = JobConf::new();
        conf.set(CUTS, cuts.iter().map(|c| to_hex(c)).collect::<Vec<_>>().join(","));
        let p = partitioner(&conf).unwrap();
        assert_eq!(p.partition(&[3], 4), 0);
        assert_eq!(p.partition(&[25], 4), 1);
        assert_eq!(p.partition(&[99], 4), 3);
        assert!(cut_points(Vec::new(), 4).is_empty());
        assert!(from_hex("abc").is_err());
    }
}
