//! Sort: `key<TAB>value` lines sorted by key (key/value text input; a line without a tab
//! is all key). Each part file is sorted; with `--reducers 1` the whole output is.

use mapred::{
    Context, Input, Job, KeyValueTextInput, Mapper, Reducer, Result, Values, WithReducer,
};

/// Emits each line as its key and value.
#[derive(Debug, Default)]
pub struct Split;

impl Mapper for Split {
    type Key = [u8];
    type Value = [u8];

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], [u8]>) -> Result<()> {
        ctx.emit(input.raw_key(), input.bytes())
    }
}

/// Writes every value of a key, in the order they came.
#[derive(Debug, Default)]
pub struct Identity;

impl Reducer for Identity {
    type KeyIn = Vec<u8>;
    type ValueIn = Vec<u8>;
    type KeyOut = [u8];
    type ValueOut = [u8];

    fn reduce(
        &mut self,
        key: Vec<u8>,
        values: &mut Values<'_, Vec<u8>>,
        ctx: &mut Context<'_, [u8], [u8]>,
    ) -> Result<()> {
        for v in values {
            ctx.emit(&key, &v)?;
        }
        Ok(())
    }
}

/// The `sort` job.
pub fn job() -> Job<Split, WithReducer> {
    Job::new("sort", "sort key<TAB>value lines by key", |_| Ok(Split))
        .input_format(KeyValueTextInput)
        .reducer(|_| Ok(Identity))
}
