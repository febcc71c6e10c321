//! The search over one key's sub-history: Wing and Gong's depth-first
//! search for linearization points, with the entry list and the cache of
//! configurations of Lowe's algorithm (as porcupine implements it), plus
//! the register-specific pruning and ordering listed in the parent
//! module's documentation.
//!
//! Owns: the entry list, the cache, the step meter. Guarantees: the answer
//! is exact (linearizable or not) unless the meter runs out. May not touch:
//! anything outside its arguments.

use super::Budget;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// The register's value number for "absent".
pub(super) const ABSENT: u32 = 0;

/// What an operation does to the register, values as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Effect {
    /// Sets the register to this value (a put, or [`ABSENT`] for a delete).
    Write(u32),
    /// Returned this value.
    Read(u32),
    /// A compare-and-swap that swapped (or may have): accepted only when
    /// the register holds `expected` (never equal to `value`), which it
    /// replaces by `value`.
    Swap {
        /// The value it needs.
        expected: u32,
        /// The value it leaves.
        value: u32,
    },
}

impl Effect {
    /// The value the register must hold for the effect to be accepted, if
    /// any.
    pub(super) fn reads(self) -> Option<u32> {
        match self {
            Effect::Read(value)
            | Effect::Swap {
                expected: value, ..
            } => Some(value),
            Effect::Write(_) => None,
        }
    }

    /// The value the effect leaves, if it changes the register.
    pub(super) fn writes(self) -> Option<u32> {
        match self {
            Effect::Write(value) | Effect::Swap { value, .. } => Some(value),
            Effect::Read(_) => None,
        }
    }

    /// The value the register holds after the effect (given it was
    /// accepted).
    fn after(self) -> u32 {
        match self {
            Effect::Write(value) | Effect::Read(value) | Effect::Swap { value, .. } => value,
        }
    }
}

/// One operation of a key's sub-history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyOp {
    /// Invocation time.
    pub call: u64,
    /// Response time; `None` when the outcome is unknown (+infinity: it may
    /// be linearized at any point after `call`, or never).
    pub ret: Option<u64>,
    /// Its effect.
    pub effect: Effect,
}

/// Counts search steps against a [`Budget`].
pub(super) struct Meter {
    used: u64,
    max: u64,
    deadline: Option<Instant>,
}

impl Meter {
    /// A meter with nothing used yet.
    pub fn new(budget: Budget) -> Meter {
        Meter {
            used: 0,
            max: budget.max_steps,
            deadline: budget
                .max_time
                .and_then(|limit| Instant::now().checked_add(limit)),
        }
    }

    /// Steps used so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Counts one step; false once the budget is spent.
    fn tick(&mut self) -> bool {
        if self.used >= self.max {
            return false;
        }
        self.used += 1;
        if self.used % 4096 == 0
            && let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            self.max = self.used;
            return false;
        }
        true
    }
}

/// The result of searching one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Some order of the operations is legal.
    Linearizable,
    /// None is. The deepest configuration the search reached: the
    /// operations linearized (positions in the input, in order) and the
    /// value they leave.
    Illegal { prefix: Vec<usize>, state: u32 },
    /// The meter ran out.
    OutOfBudget,
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// A node of the entry list: the call or the response of an operation.
#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    call: bool,
    next: usize,
    prev: usize,
}

/// A configuration of the search, as cached: the value and the set of
/// operations linearized. The bitset is stored without its leading
/// all-ones words and trailing zero words (operations are numbered by
/// invocation, so a set is mostly "all of the first k, and a few more"),
/// inline when that leaves at most two words; the form is canonical, so
/// equal sets give equal keys.
#[derive(Debug)]
struct Config {
    state: u32,
    full_words: u32,
    words: Words,
}

/// The middle words of a [`Config`]'s bitset.
#[derive(Debug)]
enum Words {
    Inline { len: u8, words: [u64; 2] },
    Heap(Box<[u64]>),
}

impl Config {
    fn new(bits: &[u64], state: u32) -> Config {
        let full_words = bits.iter().take_while(|&&w| w == u64::MAX).count();
        let end = bits
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |last| last + 1)
            .max(full_words);
        let middle = &bits[full_words..end];
        let words = match *middle {
            [] => Words::Inline {
                len: 0,
                words: [0; 2],
            },
            [a] => Words::Inline {
                len: 1,
                words: [a, 0],
            },
            [a, b] => Words::Inline {
                len: 2,
                words: [a, b],
            },
            _ => Words::Heap(middle.into()),
        };
        Config {
            state,
            // Bitsets longer than 2^32 words would not fit in memory.
            full_words: u32::try_from(full_words).unwrap_or(u32::MAX),
            words,
        }
    }

    fn words(&self) -> &[u64] {
        match &self.words {
            Words::Inline { len, words } => &words[..usize::from(*len)],
            Words::Heap(words) => words,
        }
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Config) -> bool {
        self.state == other.state
            && self.full_words == other.full_words
            && self.words() == other.words()
    }
}

impl Eq for Config {}

impl Hash for Config {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(u64::from(self.state) << 32 | u64::from(self.full_words));
        for &word in self.words() {
            hasher.write_u64(word);
        }
    }
}

/// A small multiplicative hasher for the cache, with a final avalanche
/// (the table picks buckets from the low bits, which a multiply alone
/// leaves blind to the high bits of each word). Keys are not adversarial
/// in a way that matters: a bad history can only slow its own check, which
/// the budget bounds.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        // MurmurHash3's 64-bit finalizer.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
}

/// One linearized operation on the search stack.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Its call node.
    node: usize,
    /// The value before it.
    state: u32,
}

/// A configuration on the search path and the candidates it has left to
/// try: `candidates[next..end]` (its list starts at `start`).
#[derive(Debug, Clone, Copy)]
struct Level {
    start: usize,
    next: usize,
    end: usize,
}

struct Search<'a> {
    ops: &'a [KeyOp],
    nodes: Vec<Node>,
    /// For each op, its response node (`NIL` when unknown).
    ret_node: Vec<usize>,
    /// For each unknown write or swap, the unknown one of the same effect
    /// (value, and expected value for a swap) invoked just before it (`NIL`
    /// if none).
    previous_twin: Vec<usize>,
    linearized: Vec<u64>,
    state: u32,
    /// Acknowledged operations not yet linearized.
    remaining: usize,
    /// The operations linearized, in order (one fewer than `levels`).
    stack: Vec<Frame>,
    /// The configurations on the path, root first.
    levels: Vec<Level>,
    /// The candidate lists of `levels`, back to back (call nodes).
    candidates: Vec<usize>,
    /// Scratch space for ordering candidates.
    scratch: Vec<((u8, u64, u64, usize), usize)>,
    /// Values returned by reads that may come next (scratch).
    window_reads: Vec<u32>,
    /// Per value number: writes of it (puts, deletes, swaps of any
    /// outcome) not yet linearized.
    writes_left: Vec<u32>,
    /// Per value number: operations needing it (reads, acknowledged swaps
    /// from it; see [`needs`]) not yet linearized.
    reads_left: Vec<u32>,
    /// How many values some unplaced read or acknowledged swap needs but
    /// no unplaced write writes: unless the value is the current one, the
    /// configuration is dead.
    stranded: usize,
    cache: HashSet<Config, BuildHasherDefault<MixHasher>>,
    /// The deepest sequence linearized so far (op positions).
    best: Vec<usize>,
    best_state: u32,
    /// `stack[..best_agree]` and `best[..best_agree]` name the same ops.
    best_agree: usize,
}

/// Searches for a linearization of `ops` (one key, the register starting
/// absent). Ops are numbered by their position; numbering acknowledged ops
/// by invocation first makes the cache smallest.
pub(super) fn search(ops: &[KeyOp], meter: &mut Meter) -> Outcome {
    let remaining = ops.iter().filter(|op| op.ret.is_some()).count();
    if remaining == 0 {
        return Outcome::Linearizable;
    }
    // Events sorted by time; a call before a response at the same time
    // (equal timestamps are concurrent).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() + remaining);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        if let Some(ret) = op.ret {
            events.push((ret, true, i));
        }
    }
    events.sort_unstable();
    let mut nodes = Vec::with_capacity(events.len() + 1);
    nodes.push(Node {
        op: usize::MAX,
        call: false,
        next: if events.is_empty() { NIL } else { 1 },
        prev: NIL,
    });
    let mut ret_node = vec![NIL; ops.len()];
    for (position, &(_, is_ret, op)) in events.iter().enumerate() {
        let node = position + 1;
        if is_ret {
            ret_node[op] = node;
        }
        nodes.push(Node {
            op,
            call: !is_ret,
            next: if node == events.len() { NIL } else { node + 1 },
            prev: node - 1,
        });
    }
    let values = ops
        .iter()
        .flat_map(|op| [op.effect.reads(), op.effect.writes()])
        .flatten()
        .map(|value| value as usize + 1)
        .max()
        .unwrap_or(1);
    let mut writes_left = vec![0u32; values];
    let mut reads_left = vec![0u32; values];
    for op in ops {
        if let Some(value) = needs(op) {
            reads_left[value as usize] += 1;
        }
        if let Some(value) = op.effect.writes() {
            writes_left[value as usize] += 1;
        }
    }
    let stranded = (0..values)
        .filter(|&v| reads_left[v] > 0 && writes_left[v] == 0)
        .count();
    let mut previous_twin = vec![NIL; ops.len()];
    let mut unknown_by_call: Vec<usize> =
        (0..ops.len()).filter(|&i| ops[i].ret.is_none()).collect();
    unknown_by_call.sort_by_key(|&i| (ops[i].call, i));
    let mut last_of_value: HashMap<Effect, usize> = HashMap::new();
    for i in unknown_by_call {
        if let Some(previous) = last_of_value.insert(ops[i].effect, i) {
            previous_twin[i] = previous;
        }
    }
    let mut search = Search {
        ops,
        nodes,
        ret_node,
        previous_twin,
        linearized: vec![0; ops.len().div_ceil(64)],
        state: ABSENT,
        remaining,
        stack: Vec::new(),
        levels: Vec::new(),
        candidates: Vec::new(),
        scratch: Vec::new(),
        window_reads: Vec::new(),
        writes_left,
        reads_left,
        stranded,
        cache: HashSet::default(),
        best: Vec::new(),
        best_state: ABSENT,
        best_agree: 0,
    };
    search.run(meter)
}

/// The value `op` needs the register to hold at some point, if it must be
/// linearized (a read, an acknowledged swap): what [`Search::dead`] counts
/// as a read. A swap of unknown outcome may never happen, so it needs
/// nothing.
fn needs(op: &KeyOp) -> Option<u32> {
    match op.effect {
        Effect::Read(value) => Some(value),
        Effect::Swap { expected, .. } if op.ret.is_some() => Some(expected),
        Effect::Swap { .. } | Effect::Write(_) => None,
    }
}

impl Search<'_> {
    fn run(&mut self, meter: &mut Meter) -> Outcome {
        self.enter();
        loop {
            if !meter.tick() {
                return Outcome::OutOfBudget;
            }
            let Some(level) = self.levels.last_mut() else {
                return self.illegal();
            };
            if level.next == level.end {
                // Every candidate failed: so did this configuration.
                let start = level.start;
                self.candidates.truncate(start);
                self.levels.pop();
                if self.pop().is_none() {
                    return self.illegal();
                }
                continue;
            }
            let node = self.candidates[level.next];
            level.next += 1;
            let value = self.ops[self.nodes[node].op].effect.after();
            if self.push(node, value) {
                if self.remaining == 0 {
                    return Outcome::Linearizable;
                }
                self.enter();
            }
        }
    }

    fn illegal(&mut self) -> Outcome {
        Outcome::Illegal {
            prefix: std::mem::take(&mut self.best),
            state: self.best_state,
        }
    }

    /// Opens a level for the current configuration with its candidates:
    /// the operations that may come next (calls before the first response
    /// in the list) and fit the register. Which are tried first does not
    /// change the answer, only how fast a linearization is found:
    ///
    /// - a read returning the current value, alone: moving a read earlier
    ///   cannot hurt (it changes nothing, and everything real-time-before
    ///   it is already placed), so if the configuration has a future, it
    ///   has one starting with that read;
    /// - otherwise writes, and swaps from the current value (a read or a
    ///   swap that does not fit is no candidate), but not unknown writes
    ///   or swaps whose value nothing that may come next reads (no read
    ///   returns it, no swap, of any outcome, expects it: with no
    ///   deadline, one can always wait until just before the first
    ///   operation reading its value), nor an unknown write while one of
    ///   the same effect (the same value; for a swap, also the same
    ///   expected value) invoked earlier is unplaced (the earlier one can
    ///   stand in wherever the later one could go). First the operation of
    ///   the first response if it is a write or a swap, or the writes of
    ///   the value it reads; then writes of values other reads and swaps
    ///   that may come next need; then the rest; each group by earliest
    ///   response.
    fn enter(&mut self) {
        let start = self.candidates.len();
        if self.dead() {
            self.levels.push(Level {
                start,
                next: start,
                end: start,
            });
            return;
        }
        let mut window_reads = std::mem::take(&mut self.window_reads);
        window_reads.clear();
        let mut fitting = None;
        let mut node = self.nodes[HEAD].next;
        while node != NIL && self.nodes[node].call {
            match self.ops[self.nodes[node].op].effect {
                Effect::Read(value) if value == self.state => {
                    fitting = Some(node);
                    break;
                }
                // A swap reads its expected value too, even one of unknown
                // outcome: an unknown write of that value may be needed to
                // let it happen.
                Effect::Read(value)
                | Effect::Swap {
                    expected: value, ..
                } => window_reads.push(value),
                Effect::Write(_) => {}
            }
            node = self.nodes[node].next;
        }
        if let Some(read) = fitting {
            self.candidates.push(read);
        } else {
            // `node` is the first response (or the end of the list).
            let urgent = (node != NIL).then(|| self.nodes[node].op);
            let urgent_read = urgent.and_then(|op| self.ops[op].effect.reads());
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let mut node = self.nodes[HEAD].next;
            while node != NIL && self.nodes[node].call {
                let index = self.nodes[node].op;
                let op = &self.ops[index];
                let written = match op.effect {
                    Effect::Write(value) => Some(value),
                    Effect::Swap { expected, value } if expected == self.state => Some(value),
                    Effect::Swap { .. } | Effect::Read(_) => None,
                };
                if let Some(value) = written {
                    let read_next = window_reads.contains(&value);
                    let class = if Some(index) == urgent || urgent_read == Some(value) {
                        0
                    } else if read_next {
                        1
                    } else {
                        2
                    };
                    let twin = self.previous_twin[index];
                    let first_twin = twin == NIL || self.is_linearized(twin);
                    if op.ret.is_some() || (read_next && first_twin) {
                        let deadline = op.ret.unwrap_or(u64::MAX);
                        scratch.push(((class, deadline, op.call, index), node));
                    }
                }
                node = self.nodes[node].next;
            }
            scratch.sort_unstable();
            self.candidates
                .extend(scratch.iter().map(|&(_, node)| node));
            self.scratch = scratch;
        }
        self.window_reads = window_reads;
        self.levels.push(Level {
            start,
            next: start,
            end: self.candidates.len(),
        });
    }

    fn is_linearized(&self, op: usize) -> bool {
        self.linearized[op / 64] & (1u64 << (op % 64)) != 0
    }

    /// Whether some unplaced read (or acknowledged swap) can never be
    /// placed: it needs a value that is not the current one and that no
    /// unplaced write or swap writes.
    fn dead(&self) -> bool {
        let state = self.state as usize;
        let state_stranded = self.reads_left[state] > 0 && self.writes_left[state] == 0;
        self.stranded > usize::from(state_stranded)
    }

    /// Counts `op` as linearized (`placed`) or not for [`Search::dead`]: a
    /// swap both reads (if acknowledged) and writes.
    fn count(&mut self, op: usize, placed: bool) {
        let op = &self.ops[op];
        let (read, written) = (needs(op), op.effect.writes());
        if let Some(value) = read {
            self.adjust(value as usize, true, placed);
        }
        if let Some(value) = written {
            self.adjust(value as usize, false, placed);
        }
    }

    /// Counts one read (`read`) or write of `value` as linearized
    /// (`placed`) or not, keeping `stranded` up to date.
    fn adjust(&mut self, value: usize, read: bool, placed: bool) {
        let was = self.reads_left[value] > 0 && self.writes_left[value] == 0;
        let counter = if read {
            &mut self.reads_left[value]
        } else {
            &mut self.writes_left[value]
        };
        if placed {
            *counter -= 1;
        } else {
            *counter += 1;
        }
        let now = self.reads_left[value] > 0 && self.writes_left[value] == 0;
        match (was, now) {
            (false, true) => self.stranded += 1,
            (true, false) => self.stranded -= 1,
            _ => {}
        }
    }

    /// Linearizes the op whose call is `node`, leaving the value `value`,
    /// unless that configuration was seen before (then: false, nothing
    /// changed).
    fn push(&mut self, node: usize, value: u32) -> bool {
        let op = self.nodes[node].op;
        let (word, bit) = (op / 64, 1u64 << (op % 64));
        self.linearized[word] |= bit;
        if !self.cache.insert(Config::new(&self.linearized, value)) {
            self.linearized[word] &= !bit;
            return false;
        }
        self.stack.push(Frame {
            node,
            state: self.state,
        });
        self.state = value;
        self.lift(node);
        self.count(op, true);
        if self.ops[op].ret.is_some() {
            self.remaining -= 1;
        }
        if self.stack.len() > self.best.len() {
            self.best.truncate(self.best_agree);
            let nodes = &self.nodes;
            self.best.extend(
                self.stack[self.best_agree..]
                    .iter()
                    .map(|frame| nodes[frame.node].op),
            );
            self.best_agree = self.stack.len();
            self.best_state = value;
        }
        true
    }

    /// Undoes the last [`Search::push`].
    fn pop(&mut self) -> Option<Frame> {
        let frame = self.stack.pop()?;
        let op = self.nodes[frame.node].op;
        self.linearized[op / 64] &= !(1u64 << (op % 64));
        self.state = frame.state;
        self.unlift(frame.node);
        self.count(op, false);
        if self.ops[op].ret.is_some() {
            self.remaining += 1;
        }
        self.best_agree = self.best_agree.min(self.stack.len());
        Some(frame)
    }

    /// Takes a call and its response out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.ret_node[self.nodes[call].op];
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Puts back what [`Search::lift`] took out (in reverse order).
    fn unlift(&mut self, call: usize) {
        let ret = self.ret_node[self.nodes[call].op];
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn unlink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = node;
        if next != NIL {
            self.nodes[next].prev = node;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn linearizability_config_key_is_canonical() {
        let a = Config::new(&[u64::MAX, u64::MAX, 0b101, 0, 0], 3);
        let b = Config::new(&[u64::MAX, u64::MAX, 0b101], 3);
        assert_eq!(a, b);
        assert_ne!(a, Config::new(&[u64::MAX, 0b101, 0], 3));
        assert_ne!(a, Config::new(&[u64::MAX, u64::MAX, 0b101], 4));
        assert_ne!(
            Config::new(&[u64::MAX, u64::MAX], 0),
            Config::new(&[0, 0], 0)
        );
        assert_eq!(Config::new(&[0, 0], 0), Config::new(&[0], 0));
        // Long middles go to the heap and still compare by content.
        let long = [u64::MAX, 1, 2, 3, 0];
        assert_eq!(Config::new(&long, 1), Config::new(&long[..4], 1));
        assert_ne!(Config::new(&long, 1), Config::new(&[u64::MAX, 1, 2, 4], 1));
    }
}
