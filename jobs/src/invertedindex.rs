//! Inverted index: for each word, the sorted list of documents (input file names)
//! containing it, as `word<TAB>doc1,doc2,...`.

use mapred::{Context, Input, Job, Mapper, Reducer, Result, Values, WithReducer};

/// Emits `(word, document)` once per distinct word of a line.
#[derive(Debug, Default)]
pub struct Index {
    doc: Option<String>,
    seen: Vec<Vec<u8>>,
}

impl Mapper for Index {
    type Key = [u8];
    type Value = str;

    fn setup(&mut self, ctx: &mut Context<'_, [u8], str>) -> Result<()> {
        let path = ctx.task().input_path.clone().unwrap_or_default();
        self.doc = Some(path.rsplit('/').next().unwrap_or_default().to_owned());
        Ok(())
    }

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], str>) -> Result<()> {
        let doc = self.doc.as_deref().unwrap_or_default();
        self.seen.clear();
        for word in input.line().split(|b| b.is_ascii_whitespace()) {
            if !word.is_empty() && !self.seen.iter().any(|s| s == word) {
                self.seen.push(word.to_vec());
                ctx.emit(word, doc)?;
            }
        }
        Ok(())
    }
}

/// Collects the distinct documents of a word, sorted, comma-separated.
#[derive(Debug, Default)]
pub struct Postings;

impl Reducer for Postings {
    type KeyIn = Vec<u8>;
    type ValueIn = String;
    type KeyOut = [u8];
    type ValueOut = str;

    fn reduce(
        &mut self,
        key: Vec<u8>,
        values: &mut Values<'_, String>,
        ctx: &mut Context<'_, [u8], str>,
    ) -> Result<()> {
        let mut docs: Vec<String> = values.collect();
        docs.sort();
        docs.dedup();
        ctx.emit(&key, &docs.join(","))
    }
}

/// The `invertedindex` job.
pub fn job() -> Job<Index, WithReducer> {
    Job::new("invertedindex", "list the documents holding each word", |_| Ok(Index::default()))
        .reducer(|_| Ok(Postings))
}
