//! `apijobs`: a job binary written the way a user's crate is, against `mapred`'s public
//! API alone, for `tests/tests/jobapi.rs`. Each job exercises one part of the job
//! author's API:
//!
//! - `fixedwidth`: an input format of its own (fixed-width records, split on record
//!   boundaries near chunk boundaries), map-only, validated option `fixedwidth.width`.
//! - `tagjoin`: two inputs bound to two mappers and two formats (key/value text and
//!   lines), an intermediate value type with no text form, the attempt's host, worker and
//!   input path counted.
//! - `topone`: a job that needs exactly one reducer.
//! - `failing`: fails as `-D failing.how=fatal|error|panic` says.

use std::process::ExitCode;

use mapred::{
    Context, Error, Input, InputFile, InputFormat, Job, JobConf, KeyValueTextInput, Mapper,
    Reducer, Registry, Result, Split, SplitReader, TextInput, Values,
};
use serde::{Deserialize, Serialize};

/// Option holding the record width of `fixedwidth`.
const WIDTH: &str = "fixedwidth.width";

fn width(conf: &JobConf) -> Result<u64> {
    match conf.get_u64(WIDTH, 0)? {
        0 => Err(Error::InvalidArgument(format!("fixedwidth needs -D {WIDTH}=BYTES (> 0)"))),
        w => Ok(w),
    }
}

/// Records of a fixed number of bytes. A split starts and ends on a record boundary (the
/// first at or after each chunk's start), so no record is cut and no record is read
/// twice, wherever the chunks end.
struct FixedWidth;

impl InputFormat for FixedWidth {
    fn name(&self) -> &str {
        "fixedwidth"
    }

    fn split(&self, file: &InputFile, conf: &JobConf) -> Result<Vec<Split>> {
        let w = width(conf)?;
        let mut starts: Vec<u64> = file.chunks.iter().map(|c| c.offset.div_ceil(w) * w).collect();
        starts.retain(|&s| s < file.length);
        starts.dedup();
        let ends = starts.iter().skip(1).copied().chain([file.length]);
        Ok(starts.iter().zip(ends).map(|(&s, e)| file.range(s, e - s)).collect())
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let w = width(reader.conf())?;
        let split = reader.split();
        let bytes = reader.read_range(split.start, split.length)?;
        for (i, rec) in bytes.chunks(w as usize).enumerate() {
            records(Input::line_at(split.start + i as u64 * w, rec))?;
        }
        Ok(())
    }
}

/// Emits (offset, record) for every fixed-width record.
struct Offsets;

impl Mapper for Offsets {
    type Key = u64;
    type Value = str;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, u64, str>) -> Result<()> {
        ctx.emit(&input.offset(), input.text()?)
    }
}

/// One side of a join: which input a value came from. No text form: it only travels
/// from the mappers to the reducer.
#[derive(Debug, Serialize, Deserialize)]
enum Side {
    Name(String),
    Order(u64),
}

/// Counts where the attempt runs, as user code sees it.
fn count_where<K: ?Sized, V: ?Sized>(ctx: &mut Context<'_, K, V>) {
    let t = ctx.task().clone();
    ctx.count("host", &t.host, 1);
    ctx.count("worker", if t.worker.is_empty() { "unknown" } else { "known" }, 1);
    let file = t.input_path.as_deref().and_then(|p| p.rsplit('/').nth(1)).unwrap_or("none");
    ctx.count("input", file, 1);
}

/// `users/*`: `id<TAB>name` (key/value text).
struct Users;

impl Mapper for Users {
    type Key = str;
    type Value = Side;

    fn setup(&mut self, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        count_where(ctx);
        Ok(())
    }

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        ctx.emit(input.key_text()?, &Side::Name(input.text()?.to_owned()))
    }
}

/// `orders/*`: `id amount` lines.
struct Orders;

impl Mapper for Orders {
    type Key = str;
    type Value = Side;

    fn setup(&mut self, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        count_where(ctx);
        Ok(())
    }

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        let (id, amount) = input.text()?.split_once(' ').ok_or_else(|| {
            Error::Task(format!("order line at {} has no amount", input.offset()))
        })?;
        ctx.emit(id, &Side::Order(amount.parse()?))
    }
}

/// `name<TAB>total` per user with orders.
struct Total;

impl Reducer for Total {
    type KeyIn = String;
    type ValueIn = Side;
    type KeyOut = str;
    type ValueOut = u64;

    fn reduce(
        &mut self,
        _id: String,
        values: &mut Values<'_, Side>,
        ctx: &mut Context<'_, str, u64>,
    ) -> Result<()> {
        let (mut name, mut total, mut orders) = (None, 0, 0);
        for v in values {
            match v {
                Side::Name(n) => name = Some(n),
                Side::Order(a) => (total, orders) = (total + a, orders + 1),
            }
        }
        match name {
            Some(n) if orders > 0 => ctx.emit(&n, &total),
            _ => Ok(()),
        }
    }
}

/// Emits every line under one key, for `topone`.
struct All;

impl Mapper for All {
    type Key = str;
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, u64>) -> Result<()> {
        ctx.emit("lines", &1)?;
        let _ = input;
        Ok(())
    }
}

/// Sums.
struct Sum;

impl Reducer for Sum {
    type KeyIn = String;
    type ValueIn = u64;
    type KeyOut = str;
    type ValueOut = u64;

    fn reduce(
        &mut self,
        key: String,
        values: &mut Values<'_, u64>,
        ctx: &mut Context<'_, str, u64>,
    ) -> Result<()> {
        let n: u64 = values.sum();
        ctx.emit(&key, &n)
    }
}

/// Fails on its first record as `failing.how` says.
struct Failing(String);

impl Mapper for Failing {
    type Key = str;
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, u64>) -> Result<()> {
        match self.0.as_str() {
            "fatal" => Err(Error::fatal("the reference table /ref is missing")),
            "error" => Err(Error::Task(format!("bad record at byte {}", input.offset()))),
            "panic" => panic!("poison record at byte {}", input.offset()),
            _ => ctx.emit("ok", &1),
        }
    }
}

fn main() -> ExitCode {
    let fixedwidth =
        Job::new("fixedwidth", "fixed-width records with their offsets", |_| Ok(Offsets))
            .input_format(FixedWidth)
            .validate(|conf| width(conf).map(drop));
    let tagjoin = Job::new("tagjoin", "total order amount per user name", |_| Ok(Orders))
        .input("users", KeyValueTextInput, |_| Ok(Users))
        .input("orders", TextInput, |_| Ok(Orders))
        .reducer(|_| Ok(Total));
    let topone = Job::new("topone", "counts lines in one reducer", |_| Ok(All))
        .reducer(|_| Ok(Sum))
        .exact_reducers(1);
    let failing = Job::new("failing", "fails as -D failing.how says", |conf| {
        Ok(Failing(conf.get("failing.how").unwrap_or("no").to_owned()))
    })
    .reducer(|_| Ok(Sum));
    mapred::runtime::main(
        Registry::new().register(fixedwidth).register(tagjoin).register(topone).register(failing),
    )
}
