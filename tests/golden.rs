//! Golden scenario tests of the raft core: each file in `tests/golden/` is a
//! script of commands, each followed by the output it must produce (see
//! `tests/golden/README.md` for the format and every command). With
//! `RINGRAFT_REWRITE_GOLDEN=1` the files are rewritten with the actual
//! output instead of compared.
//!
//! The environment is the scenario harness of `tests/support`: an in-memory
//! network of RawNodes whose Readies are handed out, persisted and
//! acknowledged only when a command says so, and whose messages travel only
//! when delivered.

mod support;

use ringraft::raft::raft::decode_conf_change;
use ringraft::raft::{Config, MemoryStorage, ReadOnlyOption, SnapshotStatus, StateRole, Storage};
use ringraft::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use support::{Network, Node};

/// Set to rewrite the golden files with the actual output.
const REWRITE_ENV: &str = "RINGRAFT_REWRITE_GOLDEN";

// ---------------------------------------------------------------------------
// The file format
// ---------------------------------------------------------------------------

/// One command of a scenario file with its comments and expected output.
#[derive(Debug, Clone)]
struct Case {
    /// `#` lines directly before the command.
    comments: Vec<String>,
    /// The command line.
    command: String,
    /// 1-based line number of the command in the file.
    line: usize,
    /// The expected output lines.
    expected: Vec<String>,
}

/// A parsed scenario file.
#[derive(Debug, Default)]
struct Script {
    cases: Vec<Case>,
    /// `#` lines after the last command.
    trailing_comments: Vec<String>,
}

/// Parses a scenario file: blocks separated by blank lines, each made of
/// `#` comment lines, one command line, `----`, and output lines up to the
/// next blank line.
fn parse(text: &str, name: &str) -> Script {
    let lines: Vec<&str> = text.lines().collect();
    let mut script = Script::default();
    let mut comments = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() {
            i += 1;
            continue;
        }
        if line.starts_with('#') {
            comments.push(line.to_string());
            i += 1;
            continue;
        }
        let command = line.to_string();
        let command_line = i + 1;
        i += 1;
        assert!(
            i < lines.len() && lines[i].trim_end() == "----",
            "{name}:{command_line}: command `{command}` must be followed by a `----` line"
        );
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim_end().is_empty() {
            expected.push(lines[i].trim_end().to_string());
            i += 1;
        }
        script.cases.push(Case {
            comments: std::mem::take(&mut comments),
            command,
            line: command_line,
            expected,
        });
    }
    script.trailing_comments = comments;
    script
}

/// The canonical text of a script whose outputs are `outputs`.
fn render(script: &Script, outputs: &[Vec<String>]) -> String {
    let mut text = String::new();
    for (case, output) in script.cases.iter().zip(outputs) {
        for comment in &case.comments {
            text.push_str(comment);
            text.push('\n');
        }
        text.push_str(&case.command);
        text.push_str("\n----\n");
        for line in output {
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
    }
    for comment in &script.trailing_comments {
        text.push_str(comment);
        text.push('\n');
    }
    while text.ends_with("\n\n") {
        text.pop();
    }
    text
}

/// A readable report of the first difference between `expected` and
/// `actual` file texts, or `None` when they are equal.
fn first_difference(name: &str, expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let at = (0..expected.len().max(actual.len()))
        .find(|&i| expected.get(i) != actual.get(i))
        .unwrap_or(0);
    let from = at.saturating_sub(6);
    let mut report = format!(
        "{name}:{}: golden output differs (rerun with {REWRITE_ENV}=1 to accept)\n",
        at + 1
    );
    // The command the difference belongs to.
    if let Some(command_line) = (0..=at.min(actual.len().saturating_sub(1)))
        .rev()
        .find(|&i| actual.get(i + 1) == Some(&"----"))
    {
        let _ = writeln!(
            report,
            "  in command at line {}: {}",
            command_line + 1,
            actual[command_line]
        );
    }
    report.push_str("  expected:\n");
    for (i, line) in expected.iter().enumerate().skip(from).take(at - from + 8) {
        let mark = if i == at { ">" } else { " " };
        let _ = writeln!(report, "  {mark}{:4} | {line}", i + 1);
    }
    if at >= expected.len() {
        report.push_str("  >     | <end of file>\n");
    }
    report.push_str("  actual:\n");
    for (i, line) in actual.iter().enumerate().skip(from).take(at - from + 8) {
        let mark = if i == at { ">" } else { " " };
        let _ = writeln!(report, "  {mark}{:4} | {line}", i + 1);
    }
    if at >= actual.len() {
        report.push_str("  >     | <end of file>\n");
    }
    Some(report)
}

// ---------------------------------------------------------------------------
// Command arguments
// ---------------------------------------------------------------------------

/// A command split into its name, positional arguments and `key=value`
/// options.
struct Args {
    name: String,
    positional: Vec<String>,
    options: BTreeMap<String, String>,
    /// Every `key=value` in the order written (for options that repeat).
    ordered: Vec<(String, String)>,
}

impl Args {
    fn parse(line: &str) -> Args {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        let mut ordered = Vec::new();
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    options.insert(key.to_string(), value.to_string());
                    ordered.push((key.to_string(), value.to_string()));
                }
                None => positional.push(word.to_string()),
            }
        }
        Args {
            name,
            positional,
            options,
            ordered,
        }
    }

    fn id(&self, position: usize) -> Result<u64, String> {
        let word = self
            .positional
            .get(position)
            .ok_or_else(|| format!("{}: missing argument {}", self.name, position + 1))?;
        parse_u64(word)
    }

    fn ids(&self) -> Result<Vec<u64>, String> {
        self.positional.iter().map(|w| parse_u64(w)).collect()
    }

    fn option_u64(&self, key: &str) -> Result<Option<u64>, String> {
        self.options.get(key).map(|v| parse_u64(v)).transpose()
    }

    fn option_bool(&self, key: &str) -> Result<Option<bool>, String> {
        self.options
            .get(key)
            .map(|v| match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("{key}: expected true or false, got {other:?}")),
            })
            .transpose()
    }

    fn option_ids(&self, key: &str) -> Result<Option<Vec<u64>>, String> {
        self.options.get(key).map(|v| parse_id_list(v)).transpose()
    }

    fn check_options(&self, allowed: &[&str]) -> Result<(), String> {
        for key in self.options.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(format!("{}: unknown option {key}", self.name));
            }
        }
        Ok(())
    }
}

fn parse_u64(word: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("expected a number, got {word:?}"))
}

/// A message type by its name, as printed (`MsgHeartbeat`).
fn parse_msg_type(name: &str) -> Result<MessageType, String> {
    (0..64)
        .filter_map(|value| MessageType::try_from(value).ok())
        .find(|t| format!("{t:?}") == name)
        .ok_or_else(|| format!("unknown message type {name:?}"))
}

/// `(1,2,3)`, `1,2,3` or `()`.
fn parse_id_list(value: &str) -> Result<Vec<u64>, String> {
    let inner = value.trim_start_matches('(').trim_end_matches(')');
    inner
        .split(',')
        .filter(|w| !w.is_empty())
        .map(parse_u64)
        .collect()
}

/// A membership change to propose, in etcd's v1 or v2 encoding.
enum ConfChangeProposal {
    V1(ConfChange),
    V2(ConfChangeV2),
}

/// `propose-conf-change ID [v1] [transition=auto|implicit|explicit]
/// add=4 remove=(2,3) learner=5 update=1 ...`: the changes in the order
/// written. No change at all is the empty ConfChangeV2 that leaves a joint
/// configuration.
fn conf_change_proposal(args: &Args) -> Result<ConfChangeProposal, String> {
    let v1 = match args.positional.get(1).map(String::as_str) {
        None => false,
        Some("v1") => true,
        Some(other) => return Err(format!("propose-conf-change: unexpected {other:?}")),
    };
    if args.positional.len() > 2 {
        return Err("propose-conf-change: too many arguments".to_string());
    }
    let mut transition = ConfChangeTransition::ConfChangeTransitionAuto;
    let mut changes = Vec::new();
    for (key, value) in &args.ordered {
        let change_type = match key.as_str() {
            "transition" => {
                transition = match value.as_str() {
                    "auto" => ConfChangeTransition::ConfChangeTransitionAuto,
                    "implicit" => ConfChangeTransition::ConfChangeTransitionJointImplicit,
                    "explicit" => ConfChangeTransition::ConfChangeTransitionJointExplicit,
                    other => {
                        return Err(format!(
                            "transition: expected auto, implicit or explicit, got {other:?}"
                        ));
                    }
                };
                continue;
            }
            "add" => ConfChangeType::ConfChangeAddNode,
            "remove" => ConfChangeType::ConfChangeRemoveNode,
            "learner" => ConfChangeType::ConfChangeAddLearnerNode,
            "update" => ConfChangeType::ConfChangeUpdateNode,
            other => return Err(format!("propose-conf-change: unknown option {other}")),
        };
        for node_id in parse_id_list(value)? {
            changes.push(ConfChangeSingle {
                change_type: change_type as i32,
                node_id,
            });
        }
    }
    if !v1 {
        return Ok(ConfChangeProposal::V2(ConfChangeV2 {
            transition: transition as i32,
            changes,
            context: Vec::new(),
        }));
    }
    if args.options.contains_key("transition") {
        return Err("propose-conf-change: a v1 change has no transition".to_string());
    }
    let [change] = changes.as_slice() else {
        return Err("propose-conf-change: a v1 change makes exactly one change".to_string());
    };
    Ok(ConfChangeProposal::V1(ConfChange {
        id: 0,
        change_type: change.change_type,
        node_id: change.node_id,
        context: Vec::new(),
    }))
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

fn fmt_ids(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("({})", ids.join(","))
}

fn fmt_data(data: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(data))
}

/// `index/term EntryType "data"`; a configuration change entry shows its
/// changes instead of its encoded data: `add=4 remove=2 learner=5
/// update=3`, then `transition=implicit|explicit` when not automatic, and
/// `leave-joint` for an empty change.
fn fmt_entry(e: &Entry) -> String {
    let entry_type = EntryType::try_from(e.entry_type).map_or_else(
        |_| format!("EntryType({})", e.entry_type),
        |t| format!("{t:?}"),
    );
    let body = match decode_conf_change(e) {
        Ok(Some(cc)) => fmt_conf_change(&cc),
        // A normal entry, or a change that does not decode.
        _ => fmt_data(&e.data),
    };
    format!("{}/{} {entry_type} {body}", e.index, e.term)
}

/// `add=4 remove=2 transition=explicit context="c"`, or `leave-joint`.
fn fmt_conf_change(cc: &ConfChangeV2) -> String {
    let mut parts: Vec<String> = cc
        .changes
        .iter()
        .map(|c| {
            let kind = match ConfChangeType::try_from(c.change_type) {
                Ok(ConfChangeType::ConfChangeAddNode) => "add".to_string(),
                Ok(ConfChangeType::ConfChangeRemoveNode) => "remove".to_string(),
                Ok(ConfChangeType::ConfChangeAddLearnerNode) => "learner".to_string(),
                Ok(ConfChangeType::ConfChangeUpdateNode) => "update".to_string(),
                Err(_) => format!("type({})", c.change_type),
            };
            format!("{kind}={}", c.node_id)
        })
        .collect();
    match ConfChangeTransition::try_from(cc.transition) {
        Ok(ConfChangeTransition::ConfChangeTransitionAuto) => {}
        Ok(ConfChangeTransition::ConfChangeTransitionJointImplicit) => {
            parts.push("transition=implicit".to_string());
        }
        Ok(ConfChangeTransition::ConfChangeTransitionJointExplicit) => {
            parts.push("transition=explicit".to_string());
        }
        Err(_) => parts.push(format!("transition({})", cc.transition)),
    }
    if parts.is_empty() {
        parts.push("leave-joint".to_string());
    }
    if !cc.context.is_empty() {
        parts.push(format!("context={}", fmt_data(&cc.context)));
    }
    parts.join(" ")
}

/// `voters=(1,4,5)&&(1,2,3) learners=(6) learners_next=(3) autoleave`: the
/// outgoing half of a joint configuration after `&&`, the other parts only
/// when non-empty (or set).
fn fmt_conf_state(cs: &ConfState) -> String {
    let mut text = format!("voters={}", fmt_ids(&cs.voters));
    if !cs.voters_outgoing.is_empty() {
        let _ = write!(text, "&&{}", fmt_ids(&cs.voters_outgoing));
    }
    if !cs.learners.is_empty() {
        let _ = write!(text, " learners={}", fmt_ids(&cs.learners));
    }
    if !cs.learners_next.is_empty() {
        let _ = write!(text, " learners_next={}", fmt_ids(&cs.learners_next));
    }
    if cs.auto_leave {
        text.push_str(" autoleave");
    }
    text
}

/// `index/term voters=(...)`, plus the data when there is any.
fn fmt_snapshot(s: &Snapshot) -> String {
    let mut text = format!(
        "{}/{} {}",
        s.metadata.index,
        s.metadata.term,
        fmt_conf_state(&s.metadata.conf_state)
    );
    if !s.data.is_empty() {
        let _ = write!(text, " data={}", fmt_data(&s.data));
    }
    text
}

fn fmt_hard_state(hs: &HardState) -> String {
    format!("term={} vote={} commit={}", hs.term, hs.vote, hs.commit)
}

/// One message on one line: `from->to Type term=T`, then what the type
/// uses: `log=index/term` (MsgApp: the entry before `entries`; votes: the
/// candidate's last entry), `index=` (MsgAppResp, MsgReadIndexResp),
/// `tick=` (heartbeats: the leader's clock, echoed for its lease),
/// `commit=`, `reject`,
/// `hint=index/term`, `context=`, `entries=[...]`, `snap=`.
fn fmt_msg(m: &Message) -> String {
    let msg_type = MessageType::try_from(m.msg_type)
        .map_or_else(|_| format!("MsgType({})", m.msg_type), |t| format!("{t:?}"));
    let mut text = format!("{}->{} {msg_type} term={}", m.from, m.to, m.term);
    let is = |t: MessageType| m.msg_type == t as i32;
    if is(MessageType::MsgAppResp) || is(MessageType::MsgReadIndexResp) {
        let _ = write!(text, " index={}", m.index);
    } else if is(MessageType::MsgHeartbeat) || is(MessageType::MsgHeartbeatResp) {
        // Heartbeats carry the leader's clock for its lease in `index`.
        let _ = write!(text, " tick={}", m.index);
    } else if m.index != 0
        || m.log_term != 0
        || is(MessageType::MsgApp)
        || is(MessageType::MsgVote)
        || is(MessageType::MsgPreVote)
    {
        let _ = write!(text, " log={}/{}", m.index, m.log_term);
    }
    if m.commit != 0 || is(MessageType::MsgApp) || is(MessageType::MsgHeartbeat) {
        let _ = write!(text, " commit={}", m.commit);
    }
    if m.reject {
        text.push_str(" reject");
        if is(MessageType::MsgAppResp) {
            let _ = write!(text, " hint={}/{}", m.reject_hint, m.log_term);
        } else if m.reject_hint != 0 {
            let _ = write!(text, " hint={}", m.reject_hint);
        }
    }
    if !m.context.is_empty() {
        let _ = write!(text, " context={}", fmt_data(&m.context));
    }
    if !m.entries.is_empty() {
        let entries: Vec<String> = m.entries.iter().map(fmt_entry).collect();
        let _ = write!(text, " entries=[{}]", entries.join(", "));
    }
    if let Some(snapshot) = &m.snapshot {
        let _ = write!(text, " snap={}", fmt_snapshot(snapshot));
    }
    text
}

/// What a state-change line compares.
#[derive(Clone, Copy, PartialEq)]
struct Summary {
    role: StateRole,
    term: u64,
    vote: u64,
    lead: u64,
    commit: u64,
}

fn summary(node: &Node) -> Summary {
    let raft = &node.raw.raft;
    Summary {
        role: raft.state,
        term: raft.term,
        vote: raft.vote,
        lead: raft.lead,
        commit: raft.raft_log.committed,
    }
}

/// `id: role A->B term A->B ...` for the fields that changed, if any.
fn fmt_change(id: u64, before: Summary, after: Summary) -> Option<String> {
    if before == after {
        return None;
    }
    let mut text = format!("{id}:");
    if before.role != after.role {
        let _ = write!(text, " role {}->{}", before.role, after.role);
    }
    let fields = [
        ("term", before.term, after.term),
        ("vote", before.vote, after.vote),
        ("lead", before.lead, after.lead),
        ("commit", before.commit, after.commit),
    ];
    for (name, old, new) in fields {
        if old != new {
            let _ = write!(text, " {name} {old}->{new}");
        }
    }
    Some(text)
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

struct Env {
    net: Network,
    configs: BTreeMap<u64, Config>,
    /// Per node, the indexes of the configuration changes it applied since
    /// it started (`compact` must not snapshot a membership newer than its
    /// index).
    conf_changes_applied: BTreeMap<u64, Vec<u64>>,
    /// Set once a command panicked: the rest of the file is not run.
    poisoned: bool,
}

impl Env {
    fn new() -> Env {
        Env {
            net: Network {
                nodes: BTreeMap::new(),
                in_flight: Default::default(),
                cut: BTreeSet::new(),
                ignored: BTreeSet::new(),
            },
            configs: BTreeMap::new(),
            conf_changes_applied: BTreeMap::new(),
            poisoned: false,
        }
    }

    fn node(&self, id: u64) -> Result<&Node, String> {
        self.net
            .nodes
            .get(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node, String> {
        self.net
            .nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn run(&mut self, line: &str) -> Vec<String> {
        if self.poisoned {
            return vec!["not run: an earlier command panicked".to_string()];
        }
        let args = Args::parse(line);
        let mut out = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| self.dispatch(&args, &mut out)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => out.push(format!("error: {error}")),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "<non-string panic>".to_string());
                out.push(format!("PANIC: {message}"));
                self.poisoned = true;
            }
        }
        if out.is_empty() {
            out.push("ok".to_string());
        }
        out
    }

    fn dispatch(&mut self, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
        match args.name.as_str() {
            "add-nodes" => self.add_nodes(args, out),
            "campaign" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                self.stepping(&[id], out, |env| {
                    env.node_mut(id)?.raw.campaign().map_err(|e| e.to_string())
                })
            }
            "propose" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let data = args
                    .positional
                    .get(1)
                    .ok_or("propose: missing DATA")?
                    .clone()
                    .into_bytes();
                self.stepping(&[id], out, |env| {
                    env.node_mut(id)?
                        .raw
                        .propose(data)
                        .map_err(|e| e.to_string())
                })
            }
            "tick" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let count = match args.positional.get(1) {
                    Some(word) => parse_u64(word)?,
                    None => 1,
                };
                self.tick(id, count, out)
            }
            "tick-all" => {
                args.check_options(&[])?;
                let count = match args.positional.first() {
                    Some(word) => parse_u64(word)?,
                    None => 1,
                };
                let ids: Vec<u64> = self.net.nodes.keys().copied().collect();
                self.stepping(&ids, out, |env| {
                    for _ in 0..count {
                        for node in env.net.nodes.values_mut() {
                            node.raw.tick();
                        }
                    }
                    Ok(())
                })
            }
            "tick-heartbeat" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let count = self.configs[&id].heartbeat_tick as u64;
                self.tick(id, count, out)
            }
            "tick-election" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let raft = &self.node(id)?.raw.raft;
                let count = if raft.state == StateRole::Leader {
                    self.configs[&id].election_tick
                } else {
                    raft.randomized_election_timeout()
                        .saturating_sub(raft.election_elapsed())
                        .max(1)
                };
                out.push(format!("ticks: {count}"));
                self.tick(id, count as u64, out)
            }
            "process-ready" => {
                args.check_options(&[])?;
                for id in self.ids_or_all(args)? {
                    self.process_ready(id, out)?;
                }
                Ok(())
            }
            "persist" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let upto = match args.positional.get(1).map(String::as_str) {
                    None | Some("all") => u64::MAX,
                    Some(word) => parse_u64(word)?,
                };
                self.persist(id, upto, true, out)
            }
            "send-early" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                self.send_early(id, out)
            }
            "deliver-msgs" => {
                args.check_options(&["drop", "type"])?;
                let ids = self.ids_or_all(args)?;
                let drop = args.option_ids("drop")?.unwrap_or_default();
                let only = args
                    .options
                    .get("type")
                    .map(|n| parse_msg_type(n))
                    .transpose()?;
                if !self.deliver(&ids, &drop, only, out)? {
                    out.push("no messages".to_string());
                }
                Ok(())
            }
            "stabilize" => {
                args.check_options(&[])?;
                let ids = self.ids_or_all(args)?;
                self.stabilize(&ids, out)
            }
            "partition" => self.partition(args),
            "heal" => {
                self.net.heal();
                Ok(())
            }
            "raft-state" => {
                for (id, node) in &self.net.nodes {
                    let raft = &node.raw.raft;
                    let mut line = format!(
                        "{id}: {} term={} vote={} lead={} commit={} applied={}",
                        raft.state,
                        raft.term,
                        raft.vote,
                        raft.lead,
                        raft.raft_log.committed,
                        raft.raft_log.applied
                    );
                    if raft.lead_transferee != 0 {
                        let _ = write!(line, " transferee={}", raft.lead_transferee);
                    }
                    if !node.unpersisted.is_empty() {
                        let _ = write!(line, " unpersisted={}", node.unpersisted.len());
                    }
                    out.push(line);
                }
                Ok(())
            }
            "election-timers" => {
                for (id, node) in &self.net.nodes {
                    let raft = &node.raw.raft;
                    out.push(format!(
                        "{id}: elapsed={} randomized-timeout={}",
                        raft.election_elapsed(),
                        raft.randomized_election_timeout()
                    ));
                }
                Ok(())
            }
            "raft-log" => {
                let id = args.id(0)?;
                self.raft_log(id, out)
            }
            "status" => {
                let id = args.id(0)?;
                let status = self.node(id)?.raw.status();
                if status.progress.is_empty() {
                    out.push(format!("{id} is not leader ({})", status.soft_state.role));
                }
                for (peer, progress) in &status.progress {
                    out.push(format!("{peer}: {progress}"));
                }
                Ok(())
            }
            "compact" => {
                let id = args.id(0)?;
                let index = args.id(1)?;
                self.compact(id, index, out)
            }
            "report-unreachable" => {
                let id = args.id(0)?;
                let peer = args.id(1)?;
                self.reporting(id, peer, out, |node| node.raw.report_unreachable(peer))
            }
            "report-snapshot" => {
                let id = args.id(0)?;
                let peer = args.id(1)?;
                let status = match args.positional.get(2).map(String::as_str) {
                    Some("ok") => SnapshotStatus::Finish,
                    Some("fail") => SnapshotStatus::Failure,
                    other => {
                        return Err(format!("report-snapshot: expected ok|fail, got {other:?}"));
                    }
                };
                self.reporting(id, peer, out, |node| node.raw.report_snapshot(peer, status))
            }
            "propose-conf-change" => {
                let id = args.id(0)?;
                let proposal = conf_change_proposal(args)?;
                self.stepping(&[id], out, |env| {
                    let raw = &mut env.node_mut(id)?.raw;
                    match &proposal {
                        ConfChangeProposal::V1(cc) => raw.propose_conf_change_v1(cc),
                        ConfChangeProposal::V2(cc) => raw.propose_conf_change(cc),
                    }
                    .map_err(|e| e.to_string())
                })
            }
            "read-index" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let context = args
                    .positional
                    .get(1)
                    .ok_or("read-index: missing CTX")?
                    .clone()
                    .into_bytes();
                self.stepping(&[id], out, |env| {
                    env.node_mut(id)?
                        .raw
                        .read_index(context)
                        .map_err(|e| e.to_string())
                })
            }
            "transfer-leader" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                let to = args.id(1)?;
                self.stepping(&[id], out, |env| {
                    env.node_mut(id)?.raw.transfer_leader(to);
                    Ok(())
                })?;
                let transferee = self.node(id)?.raw.raft.lead_transferee;
                out.push(format!("{id}: transferee={transferee}"));
                Ok(())
            }
            "forget-leader" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                self.stepping(&[id], out, |env| {
                    env.node_mut(id)?.raw.forget_leader();
                    Ok(())
                })
            }
            "restart" => {
                args.check_options(&[])?;
                let id = args.id(0)?;
                self.restart(id, out)
            }
            "membership" => {
                args.check_options(&[])?;
                for id in self.ids_or_all(args)? {
                    let raft = &self.node(id)?.raw.raft;
                    let mut line = format!("{id}: {}", fmt_conf_state(&raft.conf_state()));
                    if raft.state == StateRole::Leader && raft.pending_conf_index > 0 {
                        let _ = write!(
                            line,
                            " pending-conf-index={} applied={}",
                            raft.pending_conf_index, raft.raft_log.applied
                        );
                    }
                    out.push(line);
                }
                Ok(())
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn ids_or_all(&self, args: &Args) -> Result<Vec<u64>, String> {
        let ids = args.ids()?;
        if ids.is_empty() {
            return Ok(self.net.nodes.keys().copied().collect());
        }
        for &id in &ids {
            self.node(id)?;
        }
        Ok(ids)
    }

    fn add_nodes(&mut self, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
        args.check_options(&[
            "voters",
            "learners",
            "pre-vote",
            "check-quorum",
            "max-inflight",
            "max-inflight-bytes",
            "max-size-per-msg",
            "max-uncommitted-size",
            "index",
            "election",
            "heartbeat",
            "seed",
            "disable-forwarding",
            "read-only",
            "bootstrap",
            "join",
        ])?;
        let count = args.id(0)?;
        let first = self.net.nodes.keys().last().copied().unwrap_or(0) + 1;
        let ids: Vec<u64> = (first..first + count).collect();
        let voters = args.option_ids("voters")?.unwrap_or_else(|| ids.clone());
        let learners = args.option_ids("learners")?.unwrap_or_default();
        let bootstrap = args.option_bool("bootstrap")?.unwrap_or(false);
        let join = args.option_bool("join")?.unwrap_or(false);
        if (bootstrap || join) && (args.options.contains_key("index") || !learners.is_empty()) {
            return Err("add-nodes: bootstrap and join take no index= or learners=".to_string());
        }
        if bootstrap && join {
            return Err("add-nodes: bootstrap or join, not both".to_string());
        }
        if join && args.options.contains_key("voters") {
            return Err("add-nodes: a joining node learns the voters from the log".to_string());
        }
        let conf_state = ConfState {
            voters: voters.clone(),
            learners: learners.clone(),
            ..Default::default()
        };
        let index = args.option_u64("index")?.unwrap_or(0);
        for &id in &ids {
            let mut config = support::config(id);
            config.election_tick = 3;
            config.heartbeat_tick = 1;
            if let Some(v) = args.option_bool("pre-vote")? {
                config.pre_vote = v;
            }
            if let Some(v) = args.option_bool("check-quorum")? {
                config.check_quorum = v;
            }
            if let Some(v) = args.option_bool("disable-forwarding")? {
                config.disable_proposal_forwarding = v;
            }
            if let Some(v) = args.option_u64("max-inflight")? {
                config.max_inflight_msgs = v as usize;
            }
            if let Some(v) = args.option_u64("max-inflight-bytes")? {
                config.max_inflight_bytes = v;
            }
            if let Some(v) = args.option_u64("max-size-per-msg")? {
                config.max_size_per_msg = v;
            }
            if let Some(v) = args.option_u64("max-uncommitted-size")? {
                config.max_uncommitted_entries_size = v;
            }
            if let Some(v) = args.option_u64("election")? {
                config.election_tick = v as usize;
            }
            if let Some(v) = args.option_u64("heartbeat")? {
                config.heartbeat_tick = v as usize;
            }
            if let Some(v) = args.option_u64("seed")? {
                config.seed = v;
            }
            match args.options.get("read-only").map(String::as_str) {
                None | Some("safe") => {}
                Some("lease") => config.read_only = ReadOnlyOption::LeaseBased,
                Some(other) => {
                    return Err(format!("read-only: expected safe or lease, got {other:?}"));
                }
            }
            config.validate().map_err(|e| e.to_string())?;
            if bootstrap || join {
                let mut node = Network::node(&config, MemoryStorage::new());
                if bootstrap {
                    // As etcd: one committed ConfChangeAddNode entry per
                    // voter, persisted and applied by the node's first
                    // Ready loop (before it can campaign).
                    node.raw.bootstrap(&voters).map_err(|e| e.to_string())?;
                    while node.process_ready() {
                        assert!(node.persist_all().is_empty(), "bootstrap sends nothing");
                    }
                    self.conf_changes_applied
                        .insert(id, (1..=voters.len() as u64).collect());
                }
                self.net.nodes.insert(id, node);
                self.configs.insert(id, config);
                out.push(self.describe_node(id)?);
                continue;
            }
            let mut storage = MemoryStorage::new_with_conf_state(conf_state.clone());
            if index > 0 {
                // Start from a snapshot at index/1, as if the log up to
                // there had been compacted away.
                storage
                    .apply_snapshot(Snapshot {
                        data: Vec::new(),
                        metadata: SnapshotMetadata {
                            conf_state: conf_state.clone(),
                            index,
                            term: 1,
                        },
                    })
                    .map_err(|e| e.to_string())?;
                storage.set_hard_state(HardState {
                    term: 1,
                    vote: 0,
                    commit: index,
                });
                config.applied = index;
            }
            let node = Network::node(&config, storage);
            self.net.nodes.insert(id, node);
            self.configs.insert(id, config);
            out.push(self.describe_node(id)?);
        }
        Ok(())
    }

    /// `ID: role term=T commit=C last=index/term membership`, plus
    /// `applied=A` when it is not the commit index.
    fn describe_node(&self, id: u64) -> Result<String, String> {
        let raft = &self.node(id)?.raw.raft;
        let mut line = format!(
            "{id}: {} term={} commit={} last={}/{}",
            raft.state,
            raft.term,
            raft.raft_log.committed,
            raft.raft_log.last_index(),
            raft.raft_log.last_term(),
        );
        if raft.raft_log.applied != raft.raft_log.committed {
            let _ = write!(line, " applied={}", raft.raft_log.applied);
        }
        let _ = write!(line, " {}", fmt_conf_state(&raft.conf_state()));
        Ok(line)
    }

    /// Crashes node `id` and restarts it from its `MemoryStorage` (what it
    /// persisted): Readies handed out but not persisted are lost with the
    /// rest of its memory, and so are the messages in flight to it. It
    /// restarts with `applied` = its storage snapshot's index, so the next
    /// Ready hands the committed entries after it out again (configuration
    /// changes included), as etcd's server replays its WAL.
    fn restart(&mut self, id: u64, out: &mut Vec<String>) -> Result<(), String> {
        let node = self.node(id)?;
        let lost: Vec<u64> = node.unpersisted.iter().map(|r| r.number).collect();
        let snapshot_index = node
            .raw
            .store()
            .snapshot(0)
            .map_err(|e| e.to_string())?
            .metadata
            .index;
        match (lost.first(), lost.last()) {
            (Some(low), Some(high)) if low == high => {
                out.push(format!("> {id} crashed: Ready {low} lost (not persisted)"));
            }
            (Some(low), Some(high)) => {
                out.push(format!(
                    "> {id} crashed: Readies {low}..{high} lost (not persisted)"
                ));
            }
            _ => out.push(format!("> {id} crashed")),
        }
        for m in self.net.in_flight.iter().filter(|m| m.to == id) {
            out.push(format!("  {} (dropped: crashed)", fmt_msg(m)));
        }
        let mut config = self.configs[&id].clone();
        config.applied = snapshot_index;
        self.net.restart(id, &config);
        self.conf_changes_applied.remove(&id);
        out.push(format!("> {id} restarted:"));
        out.push(format!("  {}", self.describe_node(id)?));
        Ok(())
    }

    /// Runs `action`, then prints the state changes of `ids`.
    fn stepping(
        &mut self,
        ids: &[u64],
        out: &mut Vec<String>,
        action: impl FnOnce(&mut Env) -> Result<(), String>,
    ) -> Result<(), String> {
        let before: Vec<Summary> = ids
            .iter()
            .map(|&id| self.node(id).map(summary))
            .collect::<Result<_, _>>()?;
        let result = action(self);
        if let Err(error) = result {
            out.push(format!("error: {error}"));
        }
        for (&id, before) in ids.iter().zip(before) {
            if let Some(change) = fmt_change(id, before, summary(self.node(id)?)) {
                out.push(change);
            }
        }
        Ok(())
    }

    fn tick(&mut self, id: u64, count: u64, out: &mut Vec<String>) -> Result<(), String> {
        self.stepping(&[id], out, |env| {
            let node = env.node_mut(id)?;
            for _ in 0..count {
                node.raw.tick();
            }
            Ok(())
        })
    }

    /// Runs a report on leader `id` and prints how its view of `peer`
    /// changed.
    fn reporting(
        &mut self,
        id: u64,
        peer: u64,
        out: &mut Vec<String>,
        action: impl FnOnce(&mut Node),
    ) -> Result<(), String> {
        let progress = |node: &Node| {
            node.raw
                .raft
                .trk
                .get(peer)
                .map_or_else(|| "untracked".to_string(), |p| p.to_string())
        };
        let node = self.node_mut(id)?;
        let before = progress(node);
        let summary_before = summary(node);
        action(node);
        let after = progress(node);
        out.push(format!("{peer}: {before} -> {after}"));
        if let Some(change) = fmt_change(id, summary_before, summary(node)) {
            out.push(change);
        }
        Ok(())
    }

    /// Hands out node `id`'s next Ready (if any) and prints it.
    fn process_ready(&mut self, id: u64, out: &mut Vec<String>) -> Result<bool, String> {
        let node = self.node_mut(id)?;
        if !node.raw.has_ready() {
            out.push(format!("> {id}: no Ready"));
            return Ok(false);
        }
        let self_messages = node.raw.raft.msgs_after_append.clone();
        let before = summary(node);
        let last_before = node.raw.raft.raft_log.last_index();
        let conf_states_before = node.conf_states.len();
        node.process_ready();
        let after = summary(node);
        let last_after = node.raw.raft.raft_log.last_index();
        let ready = node
            .unpersisted
            .back()
            .expect("a Ready was just handed out");
        // The configuration changes applied with this Ready's committed
        // entries, in order, with the membership each produced.
        let conf_entries: Vec<&Entry> = ready
            .committed_entries
            .iter()
            .filter(|e| e.entry_type() != EntryType::EntryNormal)
            .collect();
        let applied_changes: Vec<String> = conf_entries
            .iter()
            .zip(&node.conf_states[conf_states_before..])
            .map(|(e, cs)| format!("  Applied {}/{}: {}", e.index, e.term, fmt_conf_state(cs)))
            .collect();
        let conf_indexes: Vec<u64> = conf_entries.iter().map(|e| e.index).collect();
        // A leader that applied the change entering an auto-leave joint
        // configuration proposes to leave it.
        let proposed_on_apply: Vec<String> = if last_after > last_before {
            node.raw
                .raft
                .raft_log
                .slice(last_before + 1, last_after + 1, u64::MAX)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|e| format!("  Proposed on apply: {}", fmt_entry(e)))
                .collect()
        } else {
            Vec::new()
        };
        out.push(format!("> {id} Ready {}:", ready.number));
        if let Some(ss) = &ready.soft_state {
            out.push(format!(
                "  SoftState lead={} role={}",
                ss.leader_id, ss.role
            ));
        }
        if let Some(hs) = &ready.hard_state {
            out.push(format!("  HardState {}", fmt_hard_state(hs)));
        }
        if !ready.entries.is_empty() {
            out.push("  Entries:".to_string());
            out.extend(
                ready
                    .entries
                    .iter()
                    .map(|e| format!("    {}", fmt_entry(e))),
            );
        }
        if let Some(snapshot) = &ready.snapshot {
            out.push(format!("  Snapshot {}", fmt_snapshot(snapshot)));
        }
        if !ready.committed_entries.is_empty() {
            out.push("  CommittedEntries:".to_string());
            out.extend(
                ready
                    .committed_entries
                    .iter()
                    .map(|e| format!("    {}", fmt_entry(e))),
            );
        }
        out.extend(applied_changes);
        if let Some(change) = fmt_change(id, before, after) {
            out.push(format!("  {change}"));
        }
        out.extend(proposed_on_apply);
        if !ready.read_states.is_empty() {
            out.push("  ReadStates:".to_string());
            for rs in &ready.read_states {
                out.push(format!(
                    "    index={} context={}",
                    rs.index,
                    fmt_data(&rs.request_ctx)
                ));
            }
        }
        out.push(format!("  must-sync={}", ready.must_sync));
        if !ready.append_messages.is_empty() || !ready.messages.is_empty() {
            out.push("  Messages:".to_string());
            for m in ready.append_messages.iter().chain(&ready.messages) {
                out.push(format!("    {}", fmt_msg(m)));
            }
        }
        if !self_messages.is_empty() {
            out.push("  OnPersisted:".to_string());
            for m in &self_messages {
                out.push(format!("    {}", fmt_msg(m)));
            }
        }
        self.conf_changes_applied
            .entry(id)
            .or_default()
            .extend(conf_indexes);
        Ok(true)
    }

    /// Persists node `id`'s handed-out Readies numbered up to `upto`,
    /// acknowledges them with one `on_persisted`, and sends their messages.
    fn persist(
        &mut self,
        id: u64,
        upto: u64,
        list_sent: bool,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        let node = self.node_mut(id)?;
        let numbers: Vec<u64> = node
            .unpersisted
            .iter()
            .map(|r| r.number)
            .take_while(|&n| n <= upto)
            .collect();
        let (Some(&low), Some(&high)) = (numbers.first(), numbers.last()) else {
            out.push(format!("> {id}: nothing to persist"));
            return Ok(());
        };
        let before = summary(node);
        let messages = node.persist(numbers.len());
        let after = summary(node);
        if low == high {
            out.push(format!(
                "> {id} persisted Ready {high}: on_persisted({high})"
            ));
        } else {
            out.push(format!(
                "> {id} persisted Readies {low}..{high}: on_persisted({high})"
            ));
        }
        if let Some(change) = fmt_change(id, before, after) {
            out.push(format!("  {change}"));
        }
        let mut sent = Vec::new();
        self.queue(messages, list_sent, &mut sent);
        if !sent.is_empty() {
            out.push("  Sent:".to_string());
            out.extend(sent.into_iter().map(|line| format!("  {line}")));
        }
        Ok(())
    }

    /// Sends the replication messages (MsgApp, MsgSnap, MsgHeartbeat) of
    /// node `id`'s handed-out, unpersisted Readies now, before the leader's
    /// own fsync (Raft thesis §10.2.1); `persist` then does not send them
    /// again.
    fn send_early(&mut self, id: u64, out: &mut Vec<String>) -> Result<(), String> {
        let node = self.node_mut(id)?;
        let mut messages = Vec::new();
        for ready in node.unpersisted.iter_mut() {
            messages.extend(std::mem::take(&mut ready.append_messages));
        }
        if messages.is_empty() {
            out.push("no messages".to_string());
        } else {
            out.push(format!("> {id} sending before its own persist:"));
        }
        self.queue(messages, true, out);
        Ok(())
    }

    /// Queues `messages` for delivery, except those on a cut link or to an
    /// unknown node, which are printed as dropped. The others are printed
    /// when `list` is set.
    fn queue(&mut self, messages: Vec<Message>, list: bool, out: &mut Vec<String>) {
        for m in messages {
            let line = fmt_msg(&m);
            if self.net.cut.contains(&(m.from, m.to)) {
                out.push(format!("  {line} (dropped: partitioned)"));
            } else if !self.net.nodes.contains_key(&m.to) {
                out.push(format!("  {line} (dropped: no such node)"));
            } else {
                if list {
                    out.push(format!("  {line}"));
                }
                self.net.in_flight.push_back(m);
            }
        }
    }

    /// Delivers the queued messages addressed to `ids` (grouped by
    /// recipient, each recipient's in order), dropping those addressed to
    /// `drop`; with `only`, just the messages of that type. Returns whether
    /// there were any.
    fn deliver(
        &mut self,
        ids: &[u64],
        drop: &[u64],
        only: Option<MessageType>,
        out: &mut Vec<String>,
    ) -> Result<bool, String> {
        let mut any = false;
        let drop_set: BTreeSet<u64> = drop.iter().copied().collect();
        let mut recipients: BTreeSet<u64> = ids.iter().copied().collect();
        recipients.extend(drop_set.iter().copied());
        for to in recipients {
            let (mine, rest): (Vec<Message>, Vec<Message>) =
                std::mem::take(&mut self.net.in_flight)
                    .into_iter()
                    .partition(|m| m.to == to && only.is_none_or(|t| m.msg_type == t as i32));
            self.net.in_flight = rest.into();
            if mine.is_empty() {
                continue;
            }
            any = true;
            if drop_set.contains(&to) {
                out.push(format!("> {to} dropping messages"));
                for m in &mine {
                    out.push(format!("  {}", fmt_msg(m)));
                }
                continue;
            }
            out.push(format!("> {to} receiving messages"));
            for m in mine {
                out.push(format!("  {}", fmt_msg(&m)));
                if self.net.cut.contains(&(m.from, m.to)) {
                    out.push("    dropped: partitioned".to_string());
                    continue;
                }
                let node = self.node_mut(to)?;
                let before = summary(node);
                if let Err(error) = node.raw.step(m) {
                    out.push(format!("    error: {error}"));
                }
                if let Some(change) = fmt_change(to, before, summary(node)) {
                    out.push(format!("    {change}"));
                }
            }
        }
        Ok(any)
    }

    /// Runs `ids` until quiet: each hands out, persists and sends its
    /// Readies one by one, then messages to them are delivered.
    fn stabilize(&mut self, ids: &[u64], out: &mut Vec<String>) -> Result<(), String> {
        for _ in 0..1000 {
            let mut moved = false;
            for &id in ids {
                if !self.node(id)?.unpersisted.is_empty() {
                    // Readies handed out earlier by process-ready.
                    moved = true;
                    self.persist(id, u64::MAX, false, out)?;
                }
                while self.node(id)?.raw.has_ready() {
                    moved = true;
                    self.process_ready(id, out)?;
                    self.persist(id, u64::MAX, false, out)?;
                }
            }
            if self.deliver(ids, &[], None, out)? {
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
        Err("did not stabilize in 1000 rounds".to_string())
    }

    /// `partition 1,2 / 3`: cuts every link between nodes of different
    /// groups. Nodes not named are each in a group of their own.
    fn partition(&mut self, args: &Args) -> Result<(), String> {
        args.check_options(&[])?;
        let joined = args.positional.join(" ");
        let mut group_of = BTreeMap::new();
        for (group, text) in joined.split('/').enumerate() {
            for id in parse_id_list(text.trim())? {
                self.node(id)?;
                group_of.insert(id, group);
            }
        }
        let ids: Vec<u64> = self.net.nodes.keys().copied().collect();
        let mut next_group = group_of.len() + 1000;
        for &id in &ids {
            group_of.entry(id).or_insert_with(|| {
                next_group += 1;
                next_group
            });
        }
        self.net.heal();
        for &a in &ids {
            for &b in &ids {
                if group_of[&a] != group_of[&b] {
                    self.net.cut.insert((a, b));
                }
            }
        }
        Ok(())
    }

    fn raft_log(&self, id: u64, out: &mut Vec<String>) -> Result<(), String> {
        let node = self.node(id)?;
        let log = &node.raw.raft.raft_log;
        let store = node.raw.store();
        let first = store.first_index().map_err(|e| e.to_string())?;
        if first > 1 {
            let snapshot = store.snapshot(0).map_err(|e| e.to_string())?;
            out.push(format!("snapshot {}", fmt_snapshot(&snapshot)));
        }
        if let Some(snapshot) = &log.unstable.snapshot {
            out.push(format!("unstable snapshot {}", fmt_snapshot(snapshot)));
        }
        let entries = log.all_entries();
        if entries.is_empty() {
            out.push("no entries".to_string());
        }
        for e in &entries {
            let mut line = fmt_entry(e);
            if e.index >= log.unstable.offset {
                line.push_str(" (unstable)");
            }
            out.push(line);
        }
        Ok(())
    }

    fn compact(&mut self, id: u64, index: u64, out: &mut Vec<String>) -> Result<(), String> {
        // The snapshot carries the current membership: it must be the
        // membership at `index`, or a restart would apply later changes
        // twice.
        let later = self
            .conf_changes_applied
            .get(&id)
            .and_then(|indexes| indexes.iter().find(|&&i| i > index).copied());
        if let Some(later) = later {
            return Err(format!(
                "cannot compact {id} at {index}: it applied a configuration change at {later}"
            ));
        }
        let node = self.node_mut(id)?;
        if index > node.applied_index {
            return Err(format!(
                "cannot compact {id} at {index}: applied only up to {}",
                node.applied_index
            ));
        }
        // The harness applies committed entries when a Ready is handed out,
        // before its HardState is durable; a snapshot past the durable
        // commit index would not survive a restart (the node layer applies
        // only after persisting).
        if index > node.durable_hard_state.commit {
            return Err(format!(
                "cannot compact {id} at {index}: its durable commit index is only {}",
                node.durable_hard_state.commit
            ));
        }
        let conf_state = node.raw.raft.conf_state();
        let storage = node.raw.store_mut();
        let snapshot = storage
            .create_snapshot(index, Some(conf_state), Vec::new())
            .map_err(|e| e.to_string())?;
        storage.compact(index).map_err(|e| e.to_string())?;
        let first = storage.first_index().map_err(|e| e.to_string())?;
        out.push(format!(
            "snapshot {}; log starts at {first}",
            fmt_snapshot(&snapshot)
        ));
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Runs one scenario file; returns a report of the first difference.
fn run_file(path: &Path, rewrite: bool) -> Option<String> {
    let name = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
    let script = parse(&text, &name);
    let mut env = Env::new();
    let outputs: Vec<Vec<String>> = script.cases.iter().map(|c| env.run(&c.command)).collect();
    let actual = render(&script, &outputs);
    if rewrite {
        if actual != text {
            std::fs::write(path, &actual).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        }
        return None;
    }
    // Compare the canonical rendering of the expected outputs first, so
    // that a difference points at a command; then the file text itself.
    let expected: Vec<Vec<String>> = script.cases.iter().map(|c| c.expected.clone()).collect();
    let expected_text = render(&script, &expected);
    first_difference(&name, &text, &expected_text)
        .map(|d| format!("{d}  (the file is not in canonical form)"))
        .or_else(|| first_difference(&name, &expected_text, &actual))
}

#[test]
fn golden_scenarios() {
    let rewrite = std::env::var_os(REWRITE_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in tests/golden");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| run_file(path, rewrite))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden files differ:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn format_round_trips() {
    let text = "# a comment\nraft-state\n----\nok\n\ncampaign 1\n----\nline one\n  line two\n";
    let script = parse(text, "inline");
    assert_eq!(script.cases.len(), 2);
    assert_eq!(script.cases[0].comments, vec!["# a comment".to_string()]);
    assert_eq!(script.cases[1].line, 6);
    let expected: Vec<Vec<String>> = script.cases.iter().map(|c| c.expected.clone()).collect();
    assert_eq!(render(&script, &expected), text);
    let changed = text.replace("line two", "line 2");
    let report = first_difference("inline", text, &changed).expect("a difference");
    assert!(report.contains("inline:9"), "{report}");
    assert!(report.contains("campaign 1"), "{report}");
}
