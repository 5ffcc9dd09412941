//! RocketMQ ACL 1.0 on the broker (`broker.acl_enable`): the accounts file in `plain_acl.yml`
//! format, its reloads, and the check every request passes before its handler runs.
//!
//! The check, in RocketMQ's order:
//! 1. a peer matching `globalWhiteRemoteAddresses` passes;
//! 2. the request must name an account (`AccessKey`) that the file has;
//! 3. a peer matching the account's `whiteRemoteAddress` passes;
//! 4. the `Signature` must be the account's HMAC-SHA1 of the request ([`ramjet_core::acl`]);
//! 5. admin-only requests (topic create/delete, ...) need `admin: true`;
//! 6. the topic and the group the request names need PUB or SUB in `topicPerms` /
//!    `groupPerms`, else `defaultTopicPerm` / `defaultGroupPerm` (DENY when absent). An admin
//!    account without any perms lists may do everything.
//!
//! A refused request is answered SYSTEM_ERROR with `AclException: <reason>` (what a 4.x
//! broker's clients see) and counted in `ramjet.aclDenied`.
//!
//! Each shard loads the file itself and looks at its modification time and size every
//! `broker.acl_reload_interval_ms`; a changed file that does not parse is logged and the
//! accounts already loaded stay in force.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use ramjet_core::acl::{self, perm, AddressPattern, Signer, SortedFields};
use ramjet_core::remoting::body::{fastjson, HeartbeatData};
use ramjet_core::remoting::{CommandView, RequestCode, RETRY_GROUP_TOPIC_PREFIX};

/// Largest accounts file read (a file of 10,000 accounts is ~2 MB).
pub const MAX_ACL_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// RocketMQ's least key length plus one: access and secret keys are longer than 6.
const MIN_KEY_LEN: usize = 7;

/// One account of the file.
#[derive(Debug)]
struct Account {
    signer: Signer,
    white: AddressPattern,
    admin: bool,
    default_topic: u8,
    default_group: u8,
    topics: HashMap<String, u8>,
    /// By group name (RocketMQ keys them by `%RETRY%<group>`; a bare name needs no
    /// allocation to look up).
    groups: HashMap<String, u8>,
}

/// The parsed accounts file.
#[derive(Debug, Default)]
pub struct AclPolicy {
    global_white: Vec<AddressPattern>,
    accounts: HashMap<String, Account>,
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_list(v: Option<&serde_yaml::Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(serde_yaml::Value::Null) => Ok(Vec::new()),
        Some(serde_yaml::Value::Sequence(items)) => items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| scalar(i).ok_or_else(|| format!("{what}: every entry is a string")))
            .collect(),
        Some(other) => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| format!("{what}: expected a list of strings")),
    }
}

fn resource_perms(list: Vec<String>, what: &str) -> Result<HashMap<String, u8>, String> {
    let mut out = HashMap::with_capacity(list.len());
    for item in list {
        let (name, p) = item
            .split_once('=')
            .ok_or_else(|| format!("{what}: {item:?} is not NAME=PERM"))?;
        let p = perm::parse(p).map_err(|e| format!("{what}: {item:?}: {e}"))?;
        out.insert(name.trim().to_string(), p);
    }
    Ok(out)
}

impl AclPolicy {
    /// Parses a `plain_acl.yml` text.
    pub fn parse(text: &str) -> Result<AclPolicy, String> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let map = match &doc {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => return Err("the file is empty".into()),
            _ => return Err("expected a mapping with accounts".into()),
        };
        let mut policy = AclPolicy::default();
        for p in string_list(
            map.get("globalWhiteRemoteAddresses"),
            "globalWhiteRemoteAddresses",
        )? {
            policy.global_white.push(AddressPattern::parse(&p)?);
        }
        let accounts = match map.get("accounts") {
            None | Some(serde_yaml::Value::Null) => &[][..],
            Some(serde_yaml::Value::Sequence(s)) => s.as_slice(),
            Some(_) => return Err("accounts: expected a list".into()),
        };
        for (i, a) in accounts.iter().enumerate() {
            let at = |why: String| format!("accounts[{i}]: {why}");
            let m = a
                .as_mapping()
                .ok_or_else(|| at("expected a mapping".into()))?;
            let get = |k: &str| m.get(k).and_then(scalar);
            let ak = get("accessKey").unwrap_or_default();
            let sk = get("secretKey").unwrap_or_default();
            if ak.len() < MIN_KEY_LEN || sk.len() < MIN_KEY_LEN {
                return Err(at(format!(
                    "accessKey {ak:?} and its secretKey must both be longer than 6 characters"
                )));
            }
            let white = AddressPattern::parse(&get("whiteRemoteAddress").unwrap_or_default())
                .map_err(at)?;
            let admin = match m.get("admin") {
                None | Some(serde_yaml::Value::Null) => false,
                Some(serde_yaml::Value::Bool(b)) => *b,
                Some(v) => match scalar(v).as_deref() {
                    Some("true") => true,
                    Some("false") => false,
                    _ => return Err(at("admin: expected true or false".into())),
                },
            };
            let default_perm = |k: &str| -> Result<u8, String> {
                match get(k) {
                    None => Ok(perm::DENY),
                    Some(s) => perm::parse(&s).map_err(|e| at(format!("{k}: {e}"))),
                }
            };
            let account = Account {
                signer: Signer::new(&sk),
                white,
                admin,
                default_topic: default_perm("defaultTopicPerm")?,
                default_group: default_perm("defaultGroupPerm")?,
                topics: resource_perms(
                    string_list(m.get("topicPerms"), "topicPerms").map_err(at)?,
                    "topicPerms",
                )
                .map_err(at)?,
                groups: resource_perms(
                    string_list(m.get("groupPerms"), "groupPerms").map_err(at)?,
                    "groupPerms",
                )
                .map_err(at)?,
            };
            if policy.accounts.insert(ak.clone(), account).is_some() {
                return Err(at(format!("accessKey {ak:?} appears twice")));
            }
        }
        Ok(policy)
    }

    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// Whether `peer` may make `req`; the reason when not.
    pub fn check(&self, peer: IpAddr, req: &CommandView<'_>) -> Result<(), String> {
        if self.global_white.iter().any(|p| p.matches(peer)) {
            return Ok(());
        }
        // One pass over the header: everything below looks fields up in this sorted copy.
        let mut fields = SortedFields::new();
        fields.fill(req.ext.iter()).map_err(|e| e.to_string())?;
        let Some(ak) = fields.get(acl::ACCESS_KEY) else {
            return Err("No accessKey is configured".into());
        };
        let Some(account) = self.accounts.get(ak) else {
            return Err(format!("No acl config for {ak}"));
        };
        if account.white.matches(peer) {
            return Ok(());
        }
        let expected = account.signer.sign_fields(&fields, req.body);
        if !expected.matches(fields.get(acl::SIGNATURE).unwrap_or("")) {
            return Err(format!("Check signature failed for accessKey={ak}"));
        }
        if perm::needs_admin(req.code) && !account.admin {
            return Err(format!(
                "Need admin permission for request code={}, but accessKey={ak} is not",
                req.code
            ));
        }
        if account.admin && account.topics.is_empty() && account.groups.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        for_each_need(req.code, &fields, req.body, &mut |need| {
            if result.is_ok() {
                result = account.grant(need);
            }
        });
        result
    }
}

/// A resource a request touches and the permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need<'a> {
    Topic(&'a str, u8),
    Group(&'a str, u8),
}

impl Account {
    fn grant(&self, need: Need<'_>) -> Result<(), String> {
        let (owned, needed, what, name) = match need {
            Need::Topic(t, p) => (
                self.topics.get(t).copied().unwrap_or(self.default_topic),
                p,
                "topic",
                t,
            ),
            Need::Group(g, p) => (
                self.groups.get(g).copied().unwrap_or(self.default_group),
                p,
                "group",
                g,
            ),
        };
        if perm::check(needed, owned) {
            Ok(())
        } else {
            Err(format!(
                "No {} permission for {what} {name} (has {})",
                perm::name(needed),
                perm::name(owned)
            ))
        }
    }
}

/// A topic, or the group a retry topic stands for.
fn topic_need(topic: &str, p: u8) -> Need<'_> {
    match topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
        Some(group) => Need::Group(group, perm::SUB),
        None => Need::Topic(topic, p),
    }
}

/// A topic a pop request names: the pop retry topic of `group` stands for its topic.
fn pop_topic_need<'a>(topic: &'a str, group: &str) -> Need<'a> {
    let origin = topic
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
        .and_then(|rest| rest.strip_prefix(group))
        .and_then(|rest| rest.strip_prefix('_').or_else(|| rest.strip_prefix('+')));
    match origin {
        Some(t) if !group.is_empty() => Need::Topic(t, perm::SUB),
        _ => topic_need(topic, perm::SUB),
    }
}

/// The resources of `req` (RocketMQ's `PlainAccessResource.parse`, plus batch and lite pulls,
/// which name their topic the same way).
///
/// An empty group or topic names nothing: the C++ client's producer unregisters with
/// `consumerGroup` = "" (Java's with none), which the Java broker checks as group "".
fn for_each_need(code: i32, fields: &SortedFields<'_>, body: &[u8], f: &mut dyn FnMut(Need<'_>)) {
    let ext = |k: &str| fields.get(k).filter(|v| !v.is_empty());
    match code {
        // A reply needs PUB on the reply topic, as a send does.
        RequestCode::SEND_MESSAGE | RequestCode::SEND_REPLY_MESSAGE => {
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::PUB));
            }
        }
        RequestCode::SEND_MESSAGE_V2
        | RequestCode::SEND_BATCH_MESSAGE
        | RequestCode::SEND_REPLY_MESSAGE_V2 => {
            if let Some(t) = ext("b").or_else(|| ext("topic")) {
                f(topic_need(t, perm::PUB));
            }
        }
        RequestCode::CONSUMER_SEND_MSG_BACK => {
            if let Some(g) = ext("group") {
                f(Need::Group(g, perm::SUB));
            }
            if let Some(t) = ext("originTopic") {
                f(topic_need(t, perm::PUB));
            }
        }
        RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::SUB));
            }
            if let Some(g) = ext("consumerGroup") {
                f(Need::Group(g, perm::SUB));
            }
        }
        // POP consumption (and its reads: peek, notification, polling info): the group reads
        // the topic. An ack names the pop retry topic
        // `%RETRY%<group>_<topic>` of a retried message: checked as the topic it stands for.
        RequestCode::POP_MESSAGE
        | RequestCode::ACK_MESSAGE
        | RequestCode::CHANGE_MESSAGE_INVISIBLETIME
        | RequestCode::PEEK_MESSAGE
        | RequestCode::NOTIFICATION
        | RequestCode::POLLING_INFO => {
            let g = ext("consumerGroup");
            if let Some(t) = ext("topic") {
                f(pop_topic_need(t, g.unwrap_or("")));
            }
            if let Some(g) = g {
                f(Need::Group(g, perm::SUB));
            }
        }
        RequestCode::QUERY_ASSIGNMENT => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                if let Some(g) = v["consumerGroup"].as_str().filter(|g| !g.is_empty()) {
                    f(Need::Group(g, perm::SUB));
                }
                if let Some(t) = v["topic"].as_str().filter(|t| !t.is_empty()) {
                    f(topic_need(t, perm::SUB));
                }
            }
        }
        RequestCode::BATCH_ACK_MESSAGE => {
            // A body that does not parse names nothing; the handler answers the parse error.
            if let Ok((_, acks)) = ramjet_core::remoting::pop::parse_batch_ack(body) {
                for a in &acks {
                    f(pop_topic_need(&a.topic, &a.consumer_group));
                    f(Need::Group(&a.consumer_group, perm::SUB));
                }
            }
        }
        RequestCode::QUERY_MESSAGE => {
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::SUB));
            }
        }
        RequestCode::UNREGISTER_CLIENT | RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
            if let Some(g) = ext("consumerGroup") {
                f(Need::Group(g, perm::SUB));
            }
        }
        RequestCode::UPDATE_CONSUMER_OFFSET => {
            if let Some(g) = ext("consumerGroup") {
                f(Need::Group(g, perm::SUB));
            }
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::SUB));
            }
        }
        // A recall takes back what the account published (RocketMQ 5's ACL asks PUB).
        RequestCode::RECALL_MESSAGE => {
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::PUB));
            }
        }
        // ramjet's addition: a reset moves a group's offsets as a commit does.
        RequestCode::INVOKE_BROKER_TO_RESET_OFFSET => {
            if let Some(g) = ext("group") {
                f(Need::Group(g, perm::SUB));
            }
            if let Some(t) = ext("topic") {
                f(topic_need(t, perm::SUB));
            }
        }
        RequestCode::HEART_BEAT => {
            // A body that does not parse names no resources here; the heartbeat handler
            // answers it with the parse error.
            if let Ok(hb) = fastjson::from_slice::<HeartbeatData>(body, "HeartbeatData") {
                for cd in &hb.consumer_data_set {
                    f(Need::Group(&cd.group_name, perm::SUB));
                    for sd in &cd.subscription_data_set {
                        f(topic_need(&sd.topic, perm::SUB));
                    }
                }
            }
        }
        _ => {}
    }
}

/// The file's identity for reloads: modification time and length.
type Stamp = (Option<SystemTime>, u64);

fn read_policy(path: &Path) -> Result<(AclPolicy, Stamp), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_ACL_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes; the limit is {MAX_ACL_FILE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let policy = AclPolicy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((policy, (meta.modified().ok(), meta.len())))
}

/// One shard's ACL: the policy in force, the file it came from, counters.
#[derive(Debug)]
pub struct Acl {
    path: PathBuf,
    policy: RefCell<Rc<AclPolicy>>,
    stamp: Cell<Stamp>,
    /// Requests refused.
    pub denied: Cell<u64>,
    /// Successful loads after the first.
    pub reloads: Cell<u64>,
    /// Changed files that did not load (the previous accounts stayed in force).
    pub reload_failures: Cell<u64>,
    denied_log: ramjet_core::ratelog::LogEvery,
}

impl Acl {
    /// Loads `path`; an error says what is wrong with it.
    pub fn open(path: PathBuf) -> Result<Acl, String> {
        let (policy, stamp) = read_policy(&path)?;
        Ok(Acl {
            path,
            policy: RefCell::new(Rc::new(policy)),
            stamp: Cell::new(stamp),
            denied: Cell::new(0),
            reloads: Cell::new(0),
            reload_failures: Cell::new(0),
            denied_log: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn accounts(&self) -> usize {
        self.policy.borrow().accounts()
    }

    /// Checks `req` from `peer`; a refusal is counted and logged (at most once per 10 s).
    pub fn check(&self, peer: IpAddr, req: &CommandView<'_>) -> Result<(), String> {
        let r = self.policy.borrow().check(peer, req);
        if let Err(why) = &r {
            self.denied.set(self.denied.get() + 1);
            if let Some(n) = self.denied_log.due() {
                tracing::warn!(
                    "ACL refused request code {} from {peer}: {why} ({n} refusals since the last line)",
                    req.code
                );
            }
        }
        r
    }

    /// Loads the file again if its modification time or size changed; true if it did.
    pub fn reload_if_changed(&self) -> bool {
        let now = std::fs::metadata(&self.path)
            .map(|m| (m.modified().ok(), m.len()))
            .ok();
        if now.is_none() || now == Some(self.stamp.get()) {
            return false;
        }
        match read_policy(&self.path) {
            Ok((policy, stamp)) => {
                self.stamp.set(stamp);
                tracing::info!(
                    "ACL: loaded {} again ({} accounts)",
                    self.path.display(),
                    policy.accounts()
                );
                *self.policy.borrow_mut() = Rc::new(policy);
                self.reloads.set(self.reloads.get() + 1);
                true
            }
            Err(e) => {
                // Remember the broken file so that it is reported once, not every interval.
                if let Some(s) = now {
                    self.stamp.set(s);
                }
                self.reload_failures.set(self.reload_failures.get() + 1);
                tracing::error!("ACL: {e}; the accounts loaded before stay in force");
                false
            }
        }
    }
}

/// One ACL admin request's change to the file (RocketMQ's `PlainAccessConfig`): fields left
/// `None` keep their value in an existing account.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    pub access_key: String,
    pub secret_key: Option<String>,
    pub white_remote_address: Option<String>,
    pub admin: bool,
    pub default_topic_perm: Option<String>,
    pub default_group_perm: Option<String>,
    /// `NAME=PERM` entries (the request carries them comma-separated).
    pub topic_perms: Option<Vec<String>>,
    pub group_perms: Option<Vec<String>>,
}

/// The file edits of all shards of this process go one at a time: each reads the file, changes
/// it and renames the new one over it. (Admin requests only; never on a message's path.)
static FILE_EDIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn yaml_key(k: &str) -> serde_yaml::Value {
    serde_yaml::Value::String(k.to_string())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl AccountUpdate {
    /// From an UPDATE_AND_CREATE_ACL_CONFIG request's fields.
    pub fn from_request(req: &CommandView<'_>) -> Result<AccountUpdate, String> {
        let get = |k: &str| req.ext_get(k).filter(|v| !v.is_empty()).map(str::to_string);
        Ok(AccountUpdate {
            access_key: get("accessKey").ok_or("the request names no accessKey")?,
            secret_key: get("secretKey"),
            white_remote_address: get("whiteRemoteAddress"),
            admin: req.ext_get("admin") == Some("true"),
            default_topic_perm: get("defaultTopicPerm"),
            default_group_perm: get("defaultGroupPerm"),
            topic_perms: get("topicPerms").map(|s| split_list(&s)),
            group_perms: get("groupPerms").map(|s| split_list(&s)),
        })
    }
}

impl Acl {
    /// Reads the file, applies `edit` to its document, checks that the result loads, writes it
    /// (to a temporary file renamed over the old one) and loads it on this shard; the others
    /// load it at their next look (`broker.acl_reload_interval_ms`).
    fn edit_file(
        &self,
        edit: impl FnOnce(&mut serde_yaml::Mapping) -> Result<(), String>,
    ) -> Result<(), String> {
        let _one_at_a_time = FILE_EDIT.lock().unwrap_or_else(|p| p.into_inner());
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("{} is not YAML: {e}", self.path.display()))?;
        if doc.is_null() {
            doc = serde_yaml::Value::Mapping(Default::default());
        }
        let map = doc
            .as_mapping_mut()
            .ok_or_else(|| format!("{} is not a mapping", self.path.display()))?;
        edit(map)?;
        let new_text = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
        let policy = AclPolicy::parse(&new_text)?;
        let tmp = self.path.with_extension("yml.tmp");
        std::fs::write(&tmp, &new_text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let meta = std::fs::metadata(&self.path).ok();
        self.stamp.set((
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.map_or(0, |m| m.len()),
        ));
        *self.policy.borrow_mut() = Rc::new(policy);
        self.reloads.set(self.reloads.get() + 1);
        tracing::info!("ACL: {} changed by an admin request", self.path.display());
        Ok(())
    }

    /// UPDATE_AND_CREATE_ACL_CONFIG: creates the account or changes the fields given.
    pub fn update_account(&self, u: &AccountUpdate) -> Result<(), String> {
        if u.access_key.len() < MIN_KEY_LEN {
            return Err(format!(
                "accessKey {:?} must be longer than 6 characters",
                u.access_key
            ));
        }
        self.edit_file(|map| {
            let accounts = map
                .entry(yaml_key("accounts"))
                .or_insert_with(|| serde_yaml::Value::Sequence(Vec::new()));
            if accounts.is_null() {
                *accounts = serde_yaml::Value::Sequence(Vec::new());
            }
            let list = accounts.as_sequence_mut().ok_or("accounts is not a list")?;
            let pos = list.iter().position(|a| {
                a.get("accessKey").and_then(scalar).as_deref() == Some(u.access_key.as_str())
            });
            let account = match pos {
                Some(i) => &mut list[i],
                None => {
                    if u.secret_key.is_none() {
                        return Err(format!(
                            "account {} does not exist; a new one needs a secretKey",
                            u.access_key
                        ));
                    }
                    list.push(serde_yaml::Value::Mapping(Default::default()));
                    list.last_mut().expect("just pushed")
                }
            };
            let a = account
                .as_mapping_mut()
                .ok_or("an account is not a mapping")?;
            let s = |v: &str| serde_yaml::Value::String(v.to_string());
            a.insert(yaml_key("accessKey"), s(&u.access_key));
            if let Some(v) = &u.secret_key {
                a.insert(yaml_key("secretKey"), s(v));
            }
            if let Some(v) = &u.white_remote_address {
                a.insert(yaml_key("whiteRemoteAddress"), s(v));
            }
            a.insert(yaml_key("admin"), serde_yaml::Value::Bool(u.admin));
            if let Some(v) = &u.default_topic_perm {
                a.insert(yaml_key("defaultTopicPerm"), s(v));
            }
            if let Some(v) = &u.default_group_perm {
                a.insert(yaml_key("defaultGroupPerm"), s(v));
            }
            let list_of =
                |l: &Vec<String>| serde_yaml::Value::Sequence(l.iter().map(|x| s(x)).collect());
            if let Some(l) = &u.topic_perms {
                a.insert(yaml_key("topicPerms"), list_of(l));
            }
            if let Some(l) = &u.group_perms {
                a.insert(yaml_key("groupPerms"), list_of(l));
            }
            Ok(())
        })
    }

    /// DELETE_ACL_CONFIG. Deleting an account the file does not have succeeds without a
    /// change: the shards of a process share the file, and an admin tool asks every one.
    pub fn delete_account(&self, access_key: &str) -> Result<(), String> {
        self.edit_file(|map| {
            if let Some(list) = map.get_mut("accounts").and_then(|v| v.as_sequence_mut()) {
                list.retain(|a| a.get("accessKey").and_then(scalar).as_deref() != Some(access_key));
            }
            Ok(())
        })
    }

    /// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: replaces `globalWhiteRemoteAddresses`.
    pub fn set_global_white(&self, addrs: &[String]) -> Result<(), String> {
        self.edit_file(|map| {
            map.insert(
                yaml_key("globalWhiteRemoteAddresses"),
                serde_yaml::Value::Sequence(
                    addrs
                        .iter()
                        .map(|a| serde_yaml::Value::String(a.clone()))
                        .collect(),
                ),
            );
            Ok(())
        })
    }

    /// GET_BROKER_CLUSTER_ACL_CONFIG's body (RocketMQ's `AclConfig`), from the file as it is.
    pub fn config_json(&self) -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
        let list = |v: Option<&serde_yaml::Value>| -> Vec<String> {
            string_list(v, "").unwrap_or_default()
        };
        let accounts: Vec<serde_json::Value> = doc
            .get("accounts")
            .and_then(|v| v.as_sequence())
            .map(|s| s.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let g = |k: &str| a.get(k).and_then(scalar);
                serde_json::json!({
                    "accessKey": g("accessKey"),
                    "secretKey": g("secretKey"),
                    "whiteRemoteAddress": g("whiteRemoteAddress"),
                    "admin": g("admin").as_deref() == Some("true"),
                    "defaultTopicPerm": g("defaultTopicPerm"),
                    "defaultGroupPerm": g("defaultGroupPerm"),
                    "topicPerms": list(a.get("topicPerms")),
                    "groupPerms": list(a.get("groupPerms")),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "globalWhiteAddrs": list(doc.get("globalWhiteRemoteAddresses")),
            "plainAccessConfigs": accounts,
        }))
    }

    /// The version of the accounts in force (RocketMQ's `DataVersion` JSON): the file's
    /// modification time and the loads so far.
    pub fn version_json(&self) -> String {
        let (mtime, _) = self.stamp.get();
        let ms = mtime
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        format!(
            "{{\"counter\":{},\"timestamp\":{ms}}}",
            self.reloads.get() + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramjet_core::remoting::{decode_command, RemotingCommand, SerializeType};

    const FILE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: "87654321"
    whiteRemoteAddress: 192.168.1.*
    admin: true
"#;

    fn signed(code: i32, fields: &[(&str, &str)], ak: &str, sk: &str, body: &[u8]) -> Vec<u8> {
        let mut cmd = RemotingCommand::request(code, 7)
            .with_serialize_type(SerializeType::RocketMq)
            .with_body(body.to_vec());
        for (k, v) in fields {
            cmd = cmd.with_ext(*k, *v);
        }
        cmd = cmd.with_ext(acl::ACCESS_KEY, ak);
        let sig = Signer::new(sk)
            .sign(
                cmd.ext_fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &cmd.body,
            )
            .unwrap();
        cmd = cmd.with_ext(acl::SIGNATURE, sig.as_str());
        let mut out = Vec::new();
        cmd.encode(&mut out).unwrap();
        out
    }

    fn check(p: &AclPolicy, peer: &str, frame: &[u8]) -> Result<(), String> {
        let view = decode_command(&frame[4..], &Default::default()).unwrap();
        p.check(peer.parse().unwrap(), &view)
    }

    #[test]
    fn parses_rocketmq_example_file() {
        let p = AclPolicy::parse(FILE).unwrap();
        assert_eq!(p.accounts(), 2);
        let a = &p.accounts["RocketMQ"];
        assert_eq!(a.default_topic, perm::DENY);
        assert_eq!(a.default_group, perm::SUB);
        assert_eq!(a.topics["topicB"], perm::PUB | perm::SUB);
        assert_eq!(a.groups["groupA"], perm::DENY);
        assert!(p.accounts["rocketmq2"].admin);
    }

    #[test]
    fn bad_files_say_why() {
        for (text, want) in [
            ("accounts:\n  - accessKey: short\n    secretKey: 12345678\n", "longer than 6"),
            (
                "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    topicPerms: [a=PUB,SUB]\n",
                "SUB",
            ),
            (
                "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    defaultTopicPerm: ALL\n",
                "defaultTopicPerm",
            ),
            (
                "accounts:\n  - {accessKey: RocketMQ, secretKey: 12345678}\n  - {accessKey: RocketMQ, secretKey: 12345678}\n",
                "twice",
            ),
            ("globalWhiteRemoteAddresses: [300.1.1.1]\n", "300.1.1.1"),
            ("", "empty"),
            ("accounts: [\n", "not YAML"),
        ] {
            let e = AclPolicy::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn signature_and_permissions() {
        let p = AclPolicy::parse(FILE).unwrap();
        let send = |topic: &str, ak: &str, sk: &str| {
            signed(
                RequestCode::SEND_MESSAGE_V2,
                &[("a", "pg"), ("b", topic), ("c", "TBW102"), ("e", "0")],
                ak,
                sk,
                b"body",
            )
        };
        let peer = "127.0.0.1";
        assert_eq!(
            check(&p, peer, &send("topicB", "RocketMQ", "12345678")),
            Ok(())
        );
        let e = check(&p, peer, &send("topicB", "RocketMQ", "wrong-secret")).unwrap_err();
        assert_eq!(e, "Check signature failed for accessKey=RocketMQ");
        let e = check(&p, peer, &send("topicA", "RocketMQ", "12345678")).unwrap_err();
        assert_eq!(e, "No PUB permission for topic topicA (has DENY)");
        let e = check(&p, peer, &send("topicC", "RocketMQ", "12345678")).unwrap_err();
        assert_eq!(e, "No PUB permission for topic topicC (has SUB)");
        // Not listed: defaultTopicPerm DENY.
        assert!(check(&p, peer, &send("other", "RocketMQ", "12345678")).is_err());
        let e = check(&p, peer, &send("topicB", "nobody-here", "12345678")).unwrap_err();
        assert_eq!(e, "No acl config for nobody-here");
        // Global white list: no key needed at all.
        let mut plain = Vec::new();
        RemotingCommand::request(RequestCode::SEND_MESSAGE_V2, 1)
            .with_ext("b", "topicA")
            .encode(&mut plain)
            .unwrap();
        assert_eq!(check(&p, "10.10.103.9", &plain), Ok(()));
        assert_eq!(
            check(&p, peer, &plain).unwrap_err(),
            "No accessKey is configured"
        );
        // The account's own white list skips the signature check.
        assert_eq!(
            check(&p, "192.168.1.5", &send("x", "rocketmq2", "bad-secret")),
            Ok(())
        );
        // A body changed after signing fails.
        let mut f = send("topicB", "RocketMQ", "12345678");
        let last = f.len() - 1;
        f[last] ^= 1;
        assert!(check(&p, peer, &f).is_err());

        // Pull: topic SUB and group SUB (groupA DENY, default SUB).
        let pull = |topic: &str, group: &str| {
            signed(
                RequestCode::PULL_MESSAGE,
                &[("topic", topic), ("consumerGroup", group), ("queueId", "0")],
                "RocketMQ",
                "12345678",
                b"",
            )
        };
        assert_eq!(check(&p, peer, &pull("topicC", "groupB")), Ok(()));
        assert_eq!(check(&p, peer, &pull("topicC", "anyGroup")), Ok(()));
        assert_eq!(
            check(&p, peer, &pull("topicC", "groupA")).unwrap_err(),
            "No SUB permission for group groupA (has DENY)"
        );
        // A retry topic is its group.
        assert!(check(&p, peer, &pull("%RETRY%groupA", "groupB")).is_err());
        assert_eq!(check(&p, peer, &pull("%RETRY%groupB", "groupB")), Ok(()));

        // Admin-only codes.
        let create = |ak, sk| {
            signed(
                RequestCode::UPDATE_AND_CREATE_TOPIC,
                &[("topic", "t1")],
                ak,
                sk,
                b"",
            )
        };
        assert!(check(&p, peer, &create("RocketMQ", "12345678"))
            .unwrap_err()
            .starts_with("Need admin permission for request code=17"));
        assert_eq!(check(&p, peer, &create("rocketmq2", "87654321")), Ok(()));
    }

    #[test]
    fn heartbeat_names_groups_and_topics() {
        let p = AclPolicy::parse(FILE).unwrap();
        let hb = |group: &str, topic: &str| {
            let body = format!(
                r#"{{"clientID":"c1","consumerDataSet":[{{"groupName":"{group}","subscriptionDataSet":[{{"topic":"{topic}","subString":"*"}}]}}],"producerDataSet":[]}}"#
            );
            signed(
                RequestCode::HEART_BEAT,
                &[],
                "RocketMQ",
                "12345678",
                body.as_bytes(),
            )
        };
        assert_eq!(check(&p, "127.0.0.1", &hb("groupB", "topicC")), Ok(()));
        assert!(check(&p, "127.0.0.1", &hb("groupA", "topicC")).is_err());
        assert!(check(&p, "127.0.0.1", &hb("groupB", "topicA")).is_err());
    }

    #[test]
    fn reload_keeps_old_policy_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, FILE).unwrap();
        let acl = Acl::open(path.clone()).unwrap();
        assert_eq!(acl.accounts(), 2);
        assert!(!acl.reload_if_changed());
        std::fs::write(&path, "accounts: [oops\n").unwrap();
        assert!(!acl.reload_if_changed());
        assert_eq!(acl.reload_failures.get(), 1);
        assert_eq!(acl.accounts(), 2);
        // Reported once, not again while unchanged.
        assert!(!acl.reload_if_changed());
        assert_eq!(acl.reload_failures.get(), 1);
        std::fs::write(
            &path,
            "accounts:\n  - {accessKey: onlyone1, secretKey: secret99}\n",
        )
        .unwrap();
        assert!(acl.reload_if_changed());
        assert_eq!(acl.accounts(), 1);
        assert_eq!(acl.reloads.get(), 1);
    }

    #[test]
    fn admin_edits_rewrite_the_file_and_take_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(&path, FILE).unwrap();
        let acl = Acl::open(path.clone()).unwrap();
        let u = AccountUpdate {
            access_key: "newuser01".into(),
            secret_key: Some("new-secret".into()),
            topic_perms: Some(vec!["orders=PUB".into()]),
            ..Default::default()
        };
        acl.update_account(&u).unwrap();
        assert_eq!(acl.accounts(), 3);
        // Change one field of an existing account; the others stay.
        acl.update_account(&AccountUpdate {
            access_key: "RocketMQ".into(),
            default_topic_perm: Some("SUB".into()),
            ..Default::default()
        })
        .unwrap();
        let p = AclPolicy::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(p.accounts["RocketMQ"].default_topic, perm::SUB);
        assert_eq!(
            p.accounts["RocketMQ"].topics["topicB"],
            perm::PUB | perm::SUB
        );
        assert_eq!(p.accounts["newuser01"].topics["orders"], perm::PUB);
        // A change that would not load is refused and the file stays as it was.
        let before = std::fs::read_to_string(&path).unwrap();
        let e = acl
            .update_account(&AccountUpdate {
                access_key: "RocketMQ".into(),
                default_group_perm: Some("ALL".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("unknown permission"), "{e}");
        let e = acl
            .update_account(&AccountUpdate {
                access_key: "nosecret1".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("needs a secretKey"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        acl.set_global_white(&["10.0.0.*".into()]).unwrap();
        acl.delete_account("newuser01").unwrap();
        acl.delete_account("newuser01").unwrap();
        assert_eq!(acl.accounts(), 2);
        let cfg = acl.config_json().unwrap();
        assert_eq!(cfg["globalWhiteAddrs"], serde_json::json!(["10.0.0.*"]));
        assert_eq!(cfg["plainAccessConfigs"].as_array().unwrap().len(), 2);
        assert_eq!(cfg["plainAccessConfigs"][0]["accessKey"], "RocketMQ");
        assert_eq!(
            cfg["plainAccessConfigs"][0]["topicPerms"],
            serde_json::json!(["topicA=DENY", "topicB=PUB|SUB", "topicC=SUB"])
        );
        // Another shard sees the file changed and loads it.
        let other = Acl::open(path.clone()).unwrap();
        assert_eq!(other.accounts(), 2);
    }
}
