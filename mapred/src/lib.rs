//! MapReduce runtime over the chunk store.
//!
//! Empty on purpose until the MapReduce issue lands: it will own the job API (Mapper,
//! Reducer, Combiner, Partitioner traits), the coordinator, the workers and the shuffle.
//! It exists now so that the workspace has its final shape.
