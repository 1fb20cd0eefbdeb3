//! Replica placement and replica ordering by network distance.
//!
//! The policy is HDFS's default: the first replica on the writer's own host if it runs a
//! chunkserver (else a lightly loaded one), the second on another rack, the third on the
//! second's rack but another host; any further replicas spread over the racks holding the
//! fewest so far. Among equally good candidates the choice is "the better of two picked
//! at random" by free space and current writes, which spreads load without herding every
//! writer onto the single emptiest server. A candidate without room for a whole chunk is
//! never chosen. Everything here is pure: the caller passes the candidates and the RNG.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::cluster::Chunkserver;
use crate::ids::ServerIdx;

/// A chunkserver that could take a replica.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its index in the cluster table.
    pub idx: ServerIdx,
    /// Its host address.
    pub host: &'a str,
    /// Its rack.
    pub rack: &'a str,
    /// Bytes it may use in all.
    pub capacity: u64,
    /// Bytes still free.
    pub remaining: u64,
    /// Writes in progress.
    pub active_writes: u32,
}

impl<'a> Candidate<'a> {
    /// The candidate view of chunkserver `idx`, from its latest heartbeat figures.
    pub fn of(idx: ServerIdx, s: &'a Chunkserver) -> Candidate<'a> {
        Candidate {
            idx,
            host: &s.host,
            rack: &s.rack,
            capacity: s.load.capacity,
            remaining: s.load.remaining,
            active_writes: s.load.active_writes,
        }
    }

    /// Higher is a better target: free fraction, discounted by writes in progress.
    fn score(&self) -> f64 {
        let free = self.remaining as f64 / self.capacity.max(1) as f64;
        free / (1.0 + f64::from(self.active_writes))
    }
}

/// Chooses up to `replicas` distinct chunkservers for a new chunk of `chunk_size` bytes,
/// in pipeline order. Fewer are returned only when fewer candidates have room.
pub fn choose_targets(
    candidates: &[Candidate<'_>],
    writer_host: Option<&str>,
    replicas: usize,
    chunk_size: u64,
    rng: &mut impl Rng,
) -> Vec<ServerIdx> {
    let eligible: Vec<&Candidate<'_>> =
        candidates.iter().filter(|c| c.remaining >= chunk_size).collect();
    let mut chosen: Vec<&Candidate<'_>> = Vec::with_capacity(replicas);
    let free =
        |chosen: &[&Candidate<'_>], c: &Candidate<'_>| !chosen.iter().any(|x| x.idx == c.idx);
    while chosen.len() < replicas.min(eligible.len()) {
        let pool: Vec<&Candidate<'_>> =
            eligible.iter().copied().filter(|c| free(&chosen, c)).collect();
        let pick = match chosen.len() {
            0 => writer_host
                .and_then(|h| pool.iter().copied().find(|c| c.host == h))
                .or_else(|| better_of_two(&pool, rng)),
            1 => {
                let first = chosen[0].rack;
                prefer(&pool, |c| c.rack != first, rng)
            }
            2 => {
                let (first, second) = (chosen[0], chosen[1]);
                if first.rack == second.rack {
                    // Only one rack so far (the cluster has just one): any other host will do.
                    prefer(&pool, |c| c.host != first.host && c.host != second.host, rng)
                } else {
                    prefer(&pool, |c| c.rack == second.rack && c.host != second.host, rng)
                }
            }
            _ => {
                let fewest =
                    pool.iter().map(|c| chosen.iter().filter(|x| x.rack == c.rack).count()).min();
                prefer(
                    &pool,
                    |c| Some(chosen.iter().filter(|x| x.rack == c.rack).count()) == fewest,
                    rng,
                )
            }
        };
        match pick {
            Some(c) => chosen.push(c),
            None => break,
        }
    }
    chosen.into_iter().map(|c| c.idx).collect()
}

/// Chooses up to `count` more chunkservers for a chunk that already has replicas on the
/// racks in `existing` (re-replication, balancing). Candidates are assumed to hold no
/// replica of it. Each pick goes to a rack holding the fewest replicas so far, so a chunk
/// whose replicas all sit on one rack regains a second rack first; ties go to the better
/// of two random candidates by free space and load, as for new chunks.
pub fn choose_more(
    candidates: &[Candidate<'_>],
    existing: &[&str],
    count: usize,
    chunk_size: u64,
    rng: &mut impl Rng,
) -> Vec<ServerIdx> {
    let mut racks: Vec<&str> = existing.to_vec();
    let mut pool: Vec<&Candidate<'_>> =
        candidates.iter().filter(|c| c.remaining >= chunk_size).collect();
    let mut chosen = Vec::with_capacity(count);
    while chosen.len() < count && !pool.is_empty() {
        let on = |rack: &str| racks.iter().filter(|r| **r == rack).count();
        let fewest = pool.iter().map(|c| on(c.rack)).min().unwrap_or(0);
        let Some(pick) = prefer(&pool, |c| on(c.rack) == fewest, rng) else { break };
        let idx = pick.idx;
        racks.push(pick.rack);
        chosen.push(idx);
        pool.retain(|c| c.idx != idx);
    }
    chosen
}

/// The better of two random candidates satisfying `want`, or of all candidates if none do.
fn prefer<'a, 'b>(
    pool: &[&'b Candidate<'a>],
    want: impl Fn(&Candidate<'a>) -> bool,
    rng: &mut impl Rng,
) -> Option<&'b Candidate<'a>> {
    let wanted: Vec<&Candidate<'a>> = pool.iter().copied().filter(|c| want(c)).collect();
    if wanted.is_empty() { better_of_two(pool, rng) } else { better_of_two(&wanted, rng) }
}

fn better_of_two<'a, 'b>(
    pool: &[&'b Candidate<'a>],
    rng: &mut impl Rng,
) -> Option<&'b Candidate<'a>> {
    match pool.len() {
        0 => None,
        1 => Some(pool[0]),
        n => {
            let a = pool[rng.random_range(0..n)];
            let b = pool[rng.random_range(0..n)];
            Some(if b.score() > a.score() { b } else { a })
        }
    }
}

/// Network distance tiers, as HDFS's topology counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Distance {
    /// Same host as the client.
    Local,
    /// Same rack.
    Rack,
    /// Anywhere else.
    Remote,
}

/// Distance from a client at `client_host` (on `client_rack`, if it is a chunkserver
/// host) to a replica at `host` on `rack`.
pub fn distance(client_host: &str, client_rack: Option<&str>, host: &str, rack: &str) -> Distance {
    if host == client_host {
        Distance::Local
    } else if client_rack == Some(rack) {
        Distance::Rack
    } else {
        Distance::Remote
    }
}

/// Sorts items nearest first, shuffling those at equal distance so readers spread out.
pub fn sort_by_distance<T>(items: &mut [T], dist: impl Fn(&T) -> Distance, rng: &mut impl Rng) {
    items.shuffle(rng);
    items.sort_by_key(|t| dist(t));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const HOSTS: [&str; 6] =
        ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"];

    fn cands(racks: &[&'static str]) -> Vec<Candidate<'static>> {
        racks
            .iter()
            .enumerate()
            .map(|(i, rack)| Candidate {
                idx: ServerIdx(i as u32),
                host: HOSTS[i],
                rack,
                capacity: 100,
                remaining: 100,
                active_writes: 0,
            })
            .collect()
    }

    fn racks_of<'a>(c: &[Candidate<'a>], chosen: &[ServerIdx]) -> HashSet<&'a str> {
        chosen.iter().map(|i| c[i.0 as usize].rack).collect()
    }

    #[test]
    fn three_replicas_span_two_racks_on_distinct_servers() {
        let c = cands(&["/a", "/b", "/a", "/b"]);
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let t = choose_targets(&c, None, 3, 10, &mut rng);
            assert_eq!(t.len(), 3);
            let distinct: HashSet<_> = t.iter().collect();
            assert_eq!(distinct.len(), 3, "seed {seed}: {t:?}");
            assert_eq!(racks_of(&c, &t).len(), 2, "seed {seed}: {t:?}");
            // Second and third share a rack, the first is on the other.
            assert_eq!(c[t[1].0 as usize].rack, c[t[2].0 as usize].rack);
            assert_ne!(c[t[0].0 as usize].rack, c[t[1].0 as usize].rack);
        }
    }

    #[test]
    fn writer_host_gets_the_first_replica() {
        let c = cands(&["/a", "/b", "/a", "/b"]);
        let mut rng = StdRng::seed_from_u64(1);
        for (i, host) in HOSTS.iter().take(4).enumerate() {
            let t = choose_targets(&c, Some(host), 3, 10, &mut rng);
            assert_eq!(t[0], ServerIdx(i as u32));
        }
    }

    #[test]
    fn full_servers_are_never_chosen() {
        let mut c = cands(&["/a", "/b", "/a", "/b"]);
        c[1].remaining = 9;
        c[2].remaining = 0;
        for seed in 0..100 {
            let mut rng = StdRng::seed_from_u64(seed);
            let t = choose_targets(&c, Some(HOSTS[1]), 3, 10, &mut rng);
            assert_eq!(t.len(), 2, "only two have room");
            assert!(!t.contains(&ServerIdx(1)) && !t.contains(&ServerIdx(2)));
        }
    }

    #[test]
    fn one_rack_and_too_few_servers() {
        let c = cands(&["/a", "/a"]);
        let mut rng = StdRng::seed_from_u64(3);
        let t = choose_targets(&c, None, 3, 10, &mut rng);
        assert_eq!(t.len(), 2);
        assert_ne!(t[0], t[1]);
        assert!(choose_targets(&[], None, 3, 10, &mut rng).is_empty());
    }

    #[test]
    fn more_replicas_than_three_spread_over_racks() {
        let c = cands(&["/a", "/b", "/c", "/a", "/b", "/c"]);
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let t = choose_targets(&c, None, 6, 10, &mut rng);
            assert_eq!(t.iter().collect::<HashSet<_>>().len(), 6);
            let t4 = choose_targets(&c, None, 4, 10, &mut rng);
            assert_eq!(racks_of(&c, &t4).len(), 3, "seed {seed}");
        }
    }

    #[test]
    fn load_steers_choices() {
        let mut c = cands(&["/a", "/a", "/a", "/a"]);
        for x in &mut c[1..] {
            x.active_writes = 50;
        }
        let mut rng = StdRng::seed_from_u64(9);
        let firsts = (0..200)
            .filter(|_| choose_targets(&c, None, 1, 10, &mut rng)[0] == ServerIdx(0))
            .count();
        // A uniform pick would choose server 0 a quarter of the time; two-choice picks it
        // whenever it is one of the two sampled (7/16).
        assert!(firsts > 70, "idle server chosen {firsts} of 200 times");
    }

    #[test]
    fn more_replicas_restore_rack_spread() {
        let c = cands(&["/a", "/b", "/a", "/b"]);
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            // Two replicas on /a elsewhere: the next one goes to /b.
            let t = choose_more(&c, &["/a", "/a"], 1, 10, &mut rng);
            assert_eq!(c[t[0].0 as usize].rack, "/b", "seed {seed}");
            let t = choose_more(&c, &["/a"], 2, 10, &mut rng);
            assert_eq!(t.len(), 2);
            assert!(racks_of(&c, &t).contains("/b"), "seed {seed}: {t:?}");
        }
        assert!(choose_more(&c, &[], 1, 1000, &mut StdRng::seed_from_u64(1)).is_empty());
    }

    #[test]
    fn distance_order() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut items = vec![("h3", "/b"), ("h2", "/a"), ("h1", "/a")];
        sort_by_distance(&mut items, |(h, r)| distance("h1", Some("/a"), h, r), &mut rng);
        assert_eq!(items, vec![("h1", "/a"), ("h2", "/a"), ("h3", "/b")]);
        assert_eq!(distance("x", None, "h1", "/a"), Distance::Remote);
    }
}
