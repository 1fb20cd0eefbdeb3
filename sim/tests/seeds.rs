//! The simulator in CI: a few hundred seeds of a faulty cluster, each with invariants
//! checked after every step, and the promise that a seed replays exactly.

/// Faulty steps per seed here (the `sim` binary defaults to more).
const STEPS: u64 = 1000;

fn run_seeds(seeds: std::ops::Range<u64>) {
    for seed in seeds {
        if let Err(f) = sim::run(seed, STEPS) {
            panic!("{f}");
        }
    }
}

#[test]
fn seeds_0_to_99_keep_every_invariant() {
    run_seeds(0..100);
}

#[test]
fn seeds_100_to_199_keep_every_invariant() {
    run_seeds(100..200);
}

#[test]
fn seeds_200_to_299_keep_every_invariant() {
    run_seeds(200..300);
}

#[test]
fn a_seed_replays_exactly() {
    let a = sim::run(9, STEPS).expect("seed 9");
    let b = sim::run(9, STEPS).expect("seed 9 again");
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    // A seed that exercises what the others might not: recoveries, crashes, lost bytes.
    assert!(
        a.acked_files > 0 && a.pipeline_recoveries > 0 && a.master_crashes > 0 && a.kills > 0,
        "{a:?}"
    );
}
