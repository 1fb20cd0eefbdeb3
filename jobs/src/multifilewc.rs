//! Multi-file word count: word count over many small files, each read whole as one
//! record (whole-file input: the mapper gets the file's path and contents), with the
//! files counted per map.

use mapred::{Context, Input, Job, Mapper, Result, WholeFileInput, WithReducer};

/// Emits `(word, 1)` for every word of a file.
#[derive(Debug, Default)]
pub struct FileWords;

impl Mapper for FileWords {
    type Key = [u8];
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        ctx.count("multifilewc", "FILES", 1);
        for word in input.bytes().split(|b| b.is_ascii_whitespace()) {
            if !word.is_empty() {
                ctx.emit(word, &1)?;
            }
        }
        Ok(())
    }
}

/// The `multifilewc` job.
pub fn job() -> Job<FileWords, WithReducer> {
    Job::new("multifilewc", "count the words of many small files, each read whole", |_| {
        Ok(FileWords)
    })
    .input_format(WholeFileInput)
    .combiner(|_| crate::sum)
    .reducer(|_| Ok(crate::wordcount::Sum))
}
