//! Mode arguments of `dfs chmod`, as `hdfs dfs -chmod` and POSIX `chmod` take them: octal
//! (`755`, `1777`) or symbolic clauses separated by commas (`u+x,go-w`, `a=r`, `+t`,
//! `g=u` is not supported). A symbolic mode changes the current bits of each path, so it
//! is applied per path with [`ModeSpec::apply`].

/// The sticky bit.
const STICKY: u16 = 0o1000;

/// A parsed mode argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSpec {
    /// Octal bits, set as they are.
    Octal(u16),
    /// Clauses applied in order to the current bits.
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who, then operations (`ug+rw-x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of the classes named (`u` = 0o700, ...); all of them when none is named.
    who: u16,
    /// Operations and their permission letters.
    ops: Vec<(Op, Perms)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Perms {
    /// `rwx` as 0o7.
    rwx: u16,
    /// `X`: execute if a directory or already executable by someone.
    cond_x: bool,
    /// `t`.
    sticky: bool,
}

impl ModeSpec {
    /// Parses `755`, `01777`, `u+x,go-w`, `a=r`, `+t`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<ModeSpec, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return u16::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o1777)
                .map(ModeSpec::Octal)
                .ok_or_else(|| format!("mode {s:?} is not an octal number up to 1777"));
        }
        let bad = |why: &str| format!("mode {s:?}: {why}");
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o700,
                    'g' => 0o070,
                    'o' => 0o007,
                    'a' => 0o777,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(c) = chars.next() {
                let op = match c {
                    '+' => Op::Add,
                    '-' => Op::Remove,
                    '=' => Op::Set,
                    _ => return Err(bad("expected + - or = after u g o a")),
                };
                let mut p = Perms::default();
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => p.rwx |= 4,
                        'w' => p.rwx |= 2,
                        'x' => p.rwx |= 1,
                        'X' => p.cond_x = true,
                        't' => p.sticky = true,
                        '+' | '-' | '=' => break,
                        _ => return Err(bad(&format!("unknown permission {c:?}"))),
                    }
                    chars.next();
                }
                ops.push((op, p));
            }
            if ops.is_empty() {
                return Err(bad("a clause needs an operation (+, - or =)"));
            }
            clauses.push(Clause { who: if who == 0 { 0o777 } else { who }, ops });
        }
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// The bits a path with `current` bits gets.
    pub fn apply(&self, current: u16, is_dir: bool) -> u16 {
        let clauses = match self {
            ModeSpec::Octal(m) => return *m,
            ModeSpec::Symbolic(c) => c,
        };
        let mut mode = current & 0o1777;
        for c in clauses {
            for &(op, p) in &c.ops {
                let x = p.cond_x && (is_dir || mode & 0o111 != 0);
                let rwx = p.rwx | u16::from(x);
                // rwx repeated in every class, kept where `who` names it.
                let bits = (rwx << 6 | rwx << 3 | rwx) & c.who;
                // The sticky bit goes with others (or everyone).
                let sticky = if p.sticky && c.who & 0o007 != 0 { STICKY } else { 0 };
                mode = match op {
                    Op::Add => mode | bits | sticky,
                    Op::Remove => mode & !(bits | sticky),
                    Op::Set => {
                        let cleared =
                            mode & !c.who & !(if c.who & 0o007 != 0 { STICKY } else { 0 });
                        cleared | bits | sticky
                    }
                };
            }
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, current: u16, is_dir: bool) -> u16 {
        ModeSpec::parse(spec).expect(spec).apply(current, is_dir)
    }

    #[test]
    fn octal_modes_are_set_as_they_are() {
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(apply("1777", 0, true), 0o1777);
        assert_eq!(apply("0640", 0o777, false), 0o640);
        assert!(ModeSpec::parse("2777").is_err());
        assert!(ModeSpec::parse("789").is_err());
    }

    #[test]
    fn symbolic_clauses_change_the_current_bits() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("go-w", 0o777, false), 0o755);
        assert_eq!(apply("u+x,go-w", 0o666, false), 0o744);
        assert_eq!(apply("a=r", 0o777, false), 0o444);
        assert_eq!(apply("=rx", 0o1777, true), 0o555);
        assert_eq!(apply("+t", 0o777, true), 0o1777);
        assert_eq!(apply("o-t", 0o1777, true), 0o777);
        assert_eq!(apply("u=rwx,g=rx,o=", 0o644, true), 0o750);
        assert_eq!(apply("a+X", 0o644, true), 0o755, "X on a directory");
        assert_eq!(apply("a+X", 0o644, false), 0o644, "X on a non-executable file");
        assert_eq!(apply("g+w-r", 0o640, false), 0o620);
    }

    #[test]
    fn bad_modes_say_why() {
        for bad in ["", "u", "u+q", "z+x", "u+x,", "8"] {
            assert!(ModeSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
