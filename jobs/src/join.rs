//! Join: a reduce-side inner join of two inputs, each read by its own mapper (Hadoop's
//! `MultipleInputs`). Inputs under a path component named `customers` hold
//! `id<TAB>name` lines, inputs under `orders` hold `id<TAB>order` lines (key/value
//! text); the output has one `name<TAB>order` line per order whose customer is known.
//!
//! ```text
//! mapred-examples submit join --input /shop/customers --input /shop/orders --output /joined
//! ```

use mapred::{
    Context, Error, Input, Job, KeyValueTextInput, Mapper, Reducer, Result, Values, WithReducer,
};
use serde::{Deserialize, Serialize};

/// A value tagged with the side it came from. It only travels from the mappers to the
/// reducer, so it needs no text form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Side {
    /// A customer's name.
    Customer(String),
    /// One of the customer's orders.
    Order(String),
}

/// `customers`: `id<TAB>name`.
#[derive(Debug, Default)]
pub struct Customers;

impl Mapper for Customers {
    type Key = str;
    type Value = Side;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        ctx.emit(input.key_text()?, &Side::Customer(input.text()?.to_owned()))
    }
}

/// `orders`: `id<TAB>order`.
#[derive(Debug, Default)]
pub struct Orders;

impl Mapper for Orders {
    type Key = str;
    type Value = Side;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        ctx.emit(input.key_text()?, &Side::Order(input.text()?.to_owned()))
    }
}

/// Any other input: a mistake that no retry mends, so the job fails at once.
#[derive(Debug, Default)]
pub struct Neither;

impl Mapper for Neither {
    type Key = str;
    type Value = Side;

    fn setup(&mut self, ctx: &mut Context<'_, str, Side>) -> Result<()> {
        let path = ctx.task().input_path.clone().unwrap_or_default();
        Err(Error::fatal(format!("{path} is under neither customers nor orders")))
    }

    fn map(&mut self, _input: Input<'_>, _ctx: &mut Context<'_, str, Side>) -> Result<()> {
        Ok(())
    }
}

/// Pairs a customer's name with each of their orders.
#[derive(Debug, Default)]
pub struct Pair;

impl Reducer for Pair {
    type KeyIn = String;
    type ValueIn = Side;
    type KeyOut = str;
    type ValueOut = str;

    fn reduce(
        &mut self,
        _id: String,
        values: &mut Values<'_, Side>,
        ctx: &mut Context<'_, str, str>,
    ) -> Result<()> {
        let (mut name, mut orders) = (None, Vec::new());
        for v in values {
            match v {
                Side::Customer(n) => name = Some(n),
                Side::Order(o) => orders.push(o),
            }
        }
        let Some(name) = name else { return Ok(()) };
        for o in &orders {
            ctx.emit(&name, o)?;
        }
        Ok(())
    }
}

/// The `join` job.
pub fn job() -> Job<Neither, WithReducer> {
    Job::new("join", "inner join of customers (id<TAB>name) and orders (id<TAB>order)", |_| {
        Ok(Neither)
    })
    .input("customers", KeyValueTextInput, |_| Ok(Customers))
    .input("orders", KeyValueTextInput, |_| Ok(Orders))
    .reducer(|_| Ok(Pair))
}
