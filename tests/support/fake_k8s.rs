//! A fake Kubernetes API server for tests. No cluster can run on this machine, so this serves the
//! REST paths, JSON shapes, `Status` errors and watch streams of kube-apiserver for the kinds
//! codex-k8s uses, from memory, plus a minimal Job controller. The real `kube` client talks to it
//! over HTTP through a generated kubeconfig, so tests send the requests production code sends.
//! Test code only: production code must keep working against a real cluster.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many change events are kept for watches that resume from an older resourceVersion.
const EVENT_RETENTION: usize = 10_000;

/// One served resource type; every one of them is at version v1 of its group.
struct Kind {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// DELETE answers with the object (pods, jobs, namespaces) or else with a success `Status`.
    returns_object: bool,
}

impl Kind {
    const fn new(group: &'static str, plural: &'static str, kind: &'static str, ns: bool) -> Self {
        let returns_object = false;
        Kind {
            group,
            plural,
            kind,
            namespaced: ns,
            returns_object,
        }
    }

    const fn returning_object(self) -> Self {
        Kind {
            returns_object: true,
            ..self
        }
    }

    fn api_version(&self) -> String {
        match self.group {
            "" => "v1".to_owned(),
            group => format!("{group}/v1"),
        }
    }

    /// "jobs.batch": how the real server names a resource in its messages.
    fn qualified(&self) -> String {
        match self.group {
            "" => self.plural.to_owned(),
            group => format!("{}.{group}", self.plural),
        }
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";
static NAMESPACES: Kind = Kind::new("", "namespaces", "Namespace", false).returning_object();
static PODS: Kind = Kind::new("", "pods", "Pod", true).returning_object();
static JOBS: Kind = Kind::new("batch", "jobs", "Job", true).returning_object();
static KINDS: [&Kind; 10] = [
    &NAMESPACES,
    &Kind::new("", "serviceaccounts", "ServiceAccount", true),
    &Kind::new("", "secrets", "Secret", true),
    &PODS,
    &Kind::new("", "resourcequotas", "ResourceQuota", true),
    &Kind::new("", "limitranges", "LimitRange", true),
    &Kind::new(RBAC, "roles", "Role", true),
    &Kind::new(RBAC, "rolebindings", "RoleBinding", true),
    &Kind::new(
        "networking.k8s.io",
        "networkpolicies",
        "NetworkPolicy",
        true,
    ),
    &JOBS,
];

fn find_kind(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    let found = KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural);
    found.copied().filter(|_| version == "v1")
}

/// For the test-facing methods, which name resources by plural; a typo there is a test bug.
fn kind_named(plural: &str) -> &'static Kind {
    let found = KINDS.iter().find(|k| k.plural == plural);
    found
        .copied()
        .unwrap_or_else(|| panic!("fake_k8s does not serve {plural:?}"))
}

fn same(a: &Kind, b: &Kind) -> bool {
    std::ptr::eq(a, b)
}

// ---------------------------------------------------------------------------------------------
// Errors: every failure is a `Status` object, which kube turns into `Error::Api`.

struct ApiError(Value);

fn failure(code: u16, reason: &str, message: String) -> ApiError {
    let failure = "Failure";
    ApiError(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": failure,
        "message": message, "reason": reason, "code": code}),
    )
}

impl ApiError {
    fn about(mut self, kind: &Kind, name: &str) -> Self {
        self.0["details"] = json!({"name": name, "kind": kind.plural});
        if !kind.group.is_empty() {
            self.0["details"]["group"] = json!(kind.group);
        }
        self
    }
}

fn not_found(kind: &Kind, name: &str) -> ApiError {
    let message = format!("{} \"{name}\" not found", kind.qualified());
    failure(404, "NotFound", message).about(kind, name)
}

fn already_exists(kind: &Kind, name: &str) -> ApiError {
    let message = format!("{} \"{name}\" already exists", kind.qualified());
    failure(409, "AlreadyExists", message).about(kind, name)
}

fn conflict(kind: &Kind, name: &str) -> ApiError {
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again",
        kind.qualified()
    );
    failure(409, "Conflict", message).about(kind, name)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    failure(400, "BadRequest", message.into())
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let json = header::HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}

// ---------------------------------------------------------------------------------------------
// Selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated. Field selectors such as
// `metadata.name=x` use the same syntax on paths into the object.

enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

fn parse_selector(text: Option<&str>) -> Result<Vec<Requirement>, ApiError> {
    let terms = text
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty());
    terms.map(parse_requirement).collect()
}

fn parse_requirement(term: &str) -> Result<Requirement, ApiError> {
    let word = |s: &str| {
        let s = s.trim();
        let bad = s.contains(|c: char| c.is_whitespace() || "=!()".contains(c));
        (!bad).then(|| s.to_owned())
    };
    let requirement = if let Some((key, value)) = term.split_once("!=") {
        word(key)
            .zip(word(value))
            .map(|(k, v)| Requirement::NotEquals(k, v))
    } else if let Some((key, value)) = term.split_once('=') {
        let value = value.strip_prefix('=').unwrap_or(value);
        word(key)
            .zip(word(value))
            .map(|(k, v)| Requirement::Equals(k, v))
    } else if let Some(key) = term.strip_prefix('!') {
        word(key).map(Requirement::Absent)
    } else {
        word(term).map(Requirement::Exists)
    };
    let valid = requirement.filter(|r| match r {
        Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => !k.is_empty(),
        Requirement::Exists(k) | Requirement::Absent(k) => !k.is_empty(),
    });
    valid.ok_or_else(|| bad_request(format!("unable to parse requirement: {term:?}")))
}

fn selects(requirements: &[Requirement], lookup: impl Fn(&str) -> Option<String>) -> bool {
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => lookup(k).as_ref() == Some(v),
        Requirement::NotEquals(k, v) => lookup(k).as_ref() != Some(v),
        Requirement::Exists(k) => lookup(k).is_some(),
        Requirement::Absent(k) => lookup(k).is_none(),
    })
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn label(obj: &Value, key: &str) -> Option<String> {
    let labels = obj.get("metadata")?.get("labels")?;
    labels.get(key)?.as_str().map(str::to_owned)
}

/// The value at a field selector path such as `status.phase`, as a string.
fn field(obj: &Value, path: &str) -> Option<String> {
    match path.split('.').try_fold(obj, |v, part| v.get(part))? {
        Value::String(s) => Some(s.clone()),
        Value::Null | Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

/// Which objects a list or a watch wants.
struct Filter {
    kind: &'static Kind,
    namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Filter {
    fn all(kind: &'static Kind, namespace: Option<&str>) -> Self {
        let namespace = namespace.map(str::to_owned);
        Filter {
            kind,
            namespace,
            labels: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        let ns = meta_str(obj, "namespace");
        self.namespace
            .as_deref()
            .is_none_or(|want| ns == Some(want))
            && selects(&self.labels, |k| label(obj, k))
            && selects(&self.fields, |k| field(obj, k))
    }
}

// ---------------------------------------------------------------------------------------------
// Object helpers.

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Five characters from the alphabet Kubernetes uses for generated name suffixes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let pick = |b: &u8| ALPHABET[usize::from(*b) % ALPHABET.len()] as char;
    bytes[..5].iter().map(pick).collect()
}

fn phase(pod: &Value) -> Option<&str> {
    pod.get("status")?.get("phase")?.as_str()
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// The object at `path`, created where missing; None when something else is in the way, so
/// malformed input is skipped instead of panicking in serde_json's `IndexMut`.
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut current = value;
    for key in path {
        let next = current.as_object_mut()?.entry(*key).or_insert(Value::Null);
        if next.is_null() {
            *next = json!({});
        }
        current = next;
    }
    current.as_object_mut()
}

/// Decodes `obj` as the k8s-openapi type of its kind, as strictly as the real server decodes a
/// body (wrong kind or apiVersion, labels that are not strings, a Job without a pod template).
fn decode(kind: &Kind, obj: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::{batch::v1 as batch, core::v1 as core, networking::v1 as net};
    fn check<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), String> {
        T::deserialize(obj).map(drop).map_err(|e| e.to_string())
    }
    if !obj.is_object() {
        return Err(bad_request("the body of the request must be a JSON object"));
    }
    let checked = match kind.plural {
        "namespaces" => check::<core::Namespace>(obj),
        "serviceaccounts" => check::<core::ServiceAccount>(obj),
        "secrets" => check::<core::Secret>(obj),
        "pods" => check::<core::Pod>(obj),
        "resourcequotas" => check::<core::ResourceQuota>(obj),
        "limitranges" => check::<core::LimitRange>(obj),
        "roles" => check::<rbac::Role>(obj),
        "rolebindings" => check::<rbac::RoleBinding>(obj),
        "networkpolicies" => check::<net::NetworkPolicy>(obj),
        _ => check::<batch::Job>(obj),
    };
    let name = kind.kind;
    let problem = |e| format!("{name} in version \"v1\" cannot be handled as a {name}: {e}");
    checked.map_err(|e| bad_request(problem(e)))
}

/// RFC 7386 JSON merge patch; strategic merge patches are applied the same way.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Some(fields) = target.as_object_mut() else {
        return;
    };
    for (key, value) in changes {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store: objects, one global resourceVersion counter, and the event log watches replay.

/// (plural, namespace or "" for cluster-scoped kinds, name)
type Key = (&'static str, String, String);

struct LogEntry {
    rv: u64,
    kind: &'static Kind,
    event: &'static str,
    object: Value,
    /// The object before a MODIFIED change, so that a filtered watch can report an object
    /// entering or leaving its selection as ADDED or DELETED, as the real server does.
    previous: Option<Value>,
}

struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<LogEntry>,
    /// Watches from a resourceVersion older than this missed events: they get 410 Expired.
    compacted: u64,
    auto_complete: Option<Duration>,
    /// Carries the latest resourceVersion; open watches wait on it.
    changes: watch::Sender<u64>,
    /// For the tasks that complete pods later; weak, so dropping the fake frees everything.
    shared: Weak<Shared>,
}

fn key(kind: &'static Kind, ns: Option<&str>, name: &str) -> Key {
    let ns = ns.filter(|_| kind.namespaced).unwrap_or("");
    (kind.plural, ns.to_owned(), name.to_owned())
}

fn key_of(kind: &'static Kind, obj: &Value) -> Key {
    key(
        kind,
        meta_str(obj, "namespace"),
        meta_str(obj, "name").unwrap_or(""),
    )
}

impl Store {
    fn get(&self, kind: &'static Kind, ns: Option<&str>, name: &str) -> Option<&Value> {
        self.objects.get(&key(kind, ns, name))
    }

    fn list(&self, filter: &Filter) -> Vec<Value> {
        let of_kind = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == filter.kind.plural);
        of_kind
            .map(|(_, o)| o)
            .filter(|o| filter.matches(o))
            .cloned()
            .collect()
    }

    /// Stores `obj` (None: removes the object at `key`) under the next resourceVersion and
    /// logs the change for watches. No controller runs here.
    fn commit(&mut self, kind: &'static Kind, key: Key, obj: Option<Value>) -> Option<Value> {
        let previous = self.objects.remove(&key);
        let (event, mut object, previous) = match (obj, previous) {
            (Some(obj), None) => ("ADDED", obj, None),
            (Some(obj), Some(previous)) => ("MODIFIED", obj, Some(previous)),
            // A deletion is a change too: DELETED carries a fresh resourceVersion.
            (None, previous) => ("DELETED", previous?, None),
        };
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if event != "DELETED" {
            self.objects.insert(key, object.clone());
        }
        let (rv, object_logged) = (self.rv, object.clone());
        let entry = LogEntry {
            rv,
            kind,
            event,
            object: object_logged,
            previous,
        };
        self.log.push_back(entry);
        while self.log.len() > EVENT_RETENTION {
            self.compacted = self.log.pop_front().map_or(self.compacted, |e| e.rv);
        }
        self.changes.send_replace(self.rv);
        Some(object)
    }

    fn write(&mut self, kind: &'static Kind, obj: Value) -> Value {
        let key = key_of(kind, &obj);
        self.commit(kind, key, Some(obj.clone())).unwrap_or(obj)
    }

    /// POST, or `insert` from a test (`seed`): a seed keeps the uid and creationTimestamp it
    /// carries, may name a namespace that does not exist, and starts no controller.
    fn create(
        &mut self,
        kind: &'static Kind,
        ns: Option<&str>,
        mut obj: Value,
        seed: bool,
    ) -> Result<Value, ApiError> {
        decode(kind, &obj)?;
        let meta = object_at(&mut obj, &["metadata"]).ok_or_else(|| bad_request("no metadata"))?;
        let ns = match (
            kind.namespaced,
            ns,
            meta.get("namespace").and_then(Value::as_str),
        ) {
            (false, _, _) => None,
            (true, Some(path), Some(body)) if path != body => {
                let message = "the namespace of the provided object does not match the namespace sent on the request";
                return Err(bad_request(message));
            }
            (true, path, body) => Some(path.or(body).unwrap_or("default").to_owned()),
        };
        if let Some(ns) = &ns {
            if !seed && self.get(&NAMESPACES, None, ns).is_none() {
                return Err(not_found(&NAMESPACES, ns));
            }
            meta.insert("namespace".into(), json!(ns));
        }
        let name = match (meta.get("name"), meta.get("generateName")) {
            (Some(Value::String(name)), _) if !name.is_empty() => name.clone(),
            (_, Some(Value::String(prefix))) => format!("{prefix}{}", random_suffix()),
            _ => {
                let message = format!(
                    "{} \"\" is invalid: metadata.name: Required value",
                    kind.kind
                );
                return Err(failure(422, "Invalid", message));
            }
        };
        if self.get(kind, ns.as_deref(), &name).is_some() {
            return Err(already_exists(kind, &name));
        }
        meta.insert("name".into(), json!(name));
        if !seed || !meta.contains_key("uid") {
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        if !seed || !meta.contains_key("creationTimestamp") {
            meta.insert("creationTimestamp".into(), json!(now()));
        }
        obj["kind"] = json!(kind.kind);
        obj["apiVersion"] = json!(kind.api_version());
        if !seed {
            default_fields(kind, &mut obj);
        }
        let stored = self.write(kind, obj);
        if !seed && same(kind, &JOBS) && stored["spec"]["suspend"] != true {
            self.spawn_job_pod(&stored);
        }
        if !seed && same(kind, &PODS) {
            self.maybe_auto_complete(&stored);
        }
        Ok(stored)
    }

    /// PUT (`merge` false) or PATCH of an existing object. `/status` is served as the object
    /// itself, and a PUT without `status` keeps the stored one.
    fn update(
        &mut self,
        kind: &'static Kind,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        merge: bool,
    ) -> Result<Value, ApiError> {
        let old = self
            .get(kind, ns, name)
            .cloned()
            .ok_or_else(|| not_found(kind, name))?;
        if meta_str(body, "name").is_some_and(|n| n != name) {
            return Err(bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let rv = meta_str(body, "resourceVersion");
        if rv.is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion")) {
            return Err(conflict(kind, name));
        }
        let mut new = body.clone();
        if merge {
            new = old.clone();
            merge_patch(&mut new, body);
        } else if body.get("status").is_none() && old.get("status").is_some() && new.is_object() {
            new["status"] = old["status"].clone();
        }
        decode(kind, &new)?;
        // What the client may not change: identity and server-set metadata.
        new["kind"] = old["kind"].clone();
        new["apiVersion"] = old["apiVersion"].clone();
        let meta = object_at(&mut new, &["metadata"]).ok_or_else(|| bad_request("no metadata"))?;
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match old["metadata"].get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        Ok(self.write(kind, new))
    }

    /// DELETE: a namespace takes its objects along, and a Job its pods unless told to orphan.
    fn delete(
        &mut self,
        kind: &'static Kind,
        ns: Option<&str>,
        name: &str,
        orphan: bool,
    ) -> Result<Value, ApiError> {
        let key = key(kind, ns, name);
        let mut deleted = self
            .commit(kind, key.clone(), None)
            .ok_or_else(|| not_found(kind, name))?;
        let uid = meta_str(&deleted, "uid").unwrap_or("").to_owned();
        let namespace = same(kind, &NAMESPACES);
        // On a cluster Jobs orphan their pods by default; these tests want them gone.
        let job = same(kind, &JOBS) && !orphan;
        let doomed: Vec<(&'static Kind, Key)> = (self.objects.iter())
            .filter(|((_, ns, _), o)| {
                (namespace && *ns == name)
                    || (job && *ns == key.1 && controller_uid(o) == Some(&uid))
            })
            .map(|(k, _)| (kind_named(k.0), k.clone()))
            .collect();
        for (kind, key) in doomed {
            self.commit(kind, key, None);
        }
        if !kind.returns_object {
            let mut done = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": kind.plural, "uid": uid}});
            if !kind.group.is_empty() {
                done["details"]["group"] = json!(kind.group);
            }
            return Ok(done);
        }
        deleted["metadata"]["deletionTimestamp"] = json!(now());
        if namespace {
            deleted["status"] = json!({"phase": "Terminating"});
        }
        Ok(deleted)
    }

    fn set_pod_status(&mut self, ns: &str, name: &str, mut status: Value) -> Option<Value> {
        let mut pod = self.get(&PODS, Some(ns), name)?.clone();
        fit_container_statuses(&mut status, &pod);
        pod["status"] = status;
        Some(self.write(&PODS, pod))
    }

    /// The pod the Job controller creates: `<job>-<suffix>` from the Job's pod template, owned
    /// by the Job. (Job status, retries and deadlines are not simulated.)
    fn spawn_job_pod(&mut self, job: &Value) {
        let (Some(ns), Some(name)) = (meta_str(job, "namespace"), meta_str(job, "name")) else {
            return;
        };
        let template = &job["spec"]["template"];
        let uid = meta_str(job, "uid").unwrap_or("");
        let owner = json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
            "controller": true, "blockOwnerDeletion": true});
        let mut metadata = json!({"name": format!("{name}-{}", random_suffix()), "namespace": ns,
            "generateName": format!("{name}-"), "labels": template["metadata"]["labels"],
            "ownerReferences": [owner]});
        if let Some(labels) = object_at(&mut metadata, &["labels"]) {
            labels.extend(job_labels(name, uid));
        }
        if template["metadata"]["annotations"].is_object() {
            metadata["annotations"] = template["metadata"]["annotations"].clone();
        }
        let spec = template
            .get("spec")
            .cloned()
            .unwrap_or_else(|| json!({"containers": []}));
        let pod = json!({"metadata": metadata, "spec": spec});
        let ns = ns.to_owned();
        let _ = self.create(&PODS, Some(&ns), pod, false);
    }

    /// With `complete_pods_after` set, a new pod runs at once and succeeds after the delay.
    fn maybe_auto_complete(&mut self, pod: &Value) {
        let Some(after) = self.auto_complete else {
            return;
        };
        let ns = meta_str(pod, "namespace").unwrap_or("").to_owned();
        let name = meta_str(pod, "name").unwrap_or("").to_owned();
        let uid = meta_str(pod, "uid").map(str::to_owned);
        self.set_pod_status(&ns, &name, pod_running());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut store = shared.store();
            let Some(pod) = store.get(&PODS, Some(&ns), &name) else {
                return;
            };
            // Only the very pod the timer was set for, and only if nothing finished it meanwhile.
            if meta_str(pod, "uid").map(str::to_owned) == uid && !is_terminal(pod) {
                store.set_pod_status(&ns, &name, pod_succeeded());
            }
        });
    }
}

fn job_labels(name: &str, uid: &str) -> Map<String, Value> {
    let pairs = [("job-name", name), ("controller-uid", uid)];
    let with_prefix = pairs.map(|(k, v)| (format!("batch.kubernetes.io/{k}"), json!(v)));
    let plain = pairs.map(|(k, v)| (k.to_owned(), json!(v)));
    plain.into_iter().chain(with_prefix).collect()
}

/// What the API server and its admission chain fill in on create; status is the server's.
fn default_fields(kind: &'static Kind, obj: &mut Value) {
    let name = meta_str(obj, "name").unwrap_or("").to_owned();
    let uid = meta_str(obj, "uid").unwrap_or("").to_owned();
    if same(kind, &NAMESPACES) {
        if let Some(labels) = object_at(obj, &["metadata", "labels"]) {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    } else if same(kind, &JOBS) {
        if let Some(labels) = object_at(obj, &["spec", "template", "metadata", "labels"]) {
            labels.extend(job_labels(&name, &uid));
        }
        obj["status"] = json!({});
    } else if same(kind, &PODS) {
        obj["status"] = json!({"phase": "Pending"});
    }
}

fn controller_uid(obj: &Value) -> Option<&str> {
    let refs = obj.get("metadata")?.get("ownerReferences")?.as_array()?;
    let controller = refs.iter().find(|r| r["controller"] == true)?;
    controller["uid"].as_str()
}

/// A single container status (what the helpers build) is applied to every container of the
/// pod, under that container's name and image, so the helpers need not know the pod's spec.
fn fit_container_statuses(status: &mut Value, pod: &Value) {
    let Some(containers) = pod["spec"]["containers"].as_array() else {
        return;
    };
    let Some([template]) = status["containerStatuses"].as_array().map(Vec::as_slice) else {
        return;
    };
    let fit = |c: &Value| {
        let mut fitted = template.clone();
        fitted["name"] = c["name"].clone();
        fitted["image"] = c["image"].clone();
        fitted
    };
    if template.is_object() && !containers.is_empty() {
        status["containerStatuses"] = containers.iter().map(fit).collect();
    }
}

// ---------------------------------------------------------------------------------------------
// Pod statuses shaped like the kubelet's and the scheduler's.

fn pod_condition(kind: &str, ok: bool, reason: Option<&str>, at: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let mut condition = json!({"type": kind, "status": status, "lastProbeTime": null,
        "lastTransitionTime": at});
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    condition
}

/// The status of a pod on a node, its one container in `state`; `not_ready` gives the reason
/// the Ready conditions are False, or None for a running pod.
fn on_node(phase: &str, not_ready: Option<&str>, state: Value) -> Value {
    let at = now();
    let ok = not_ready.is_none();
    let image = "docker.io/library/busybox:1.36";
    let digest = "sha256:768e5c6f5cb6db0794eec98dc7a967f40631746c32232b78a3105fb946f3ab83";
    let container_id = format!("containerd://{}", uuid::Uuid::new_v4().simple());
    json!({
        "phase": phase,
        "conditions": [
            pod_condition("PodReadyToStartContainers", ok, None, &at),
            pod_condition("Initialized", true, None, &at),
            pod_condition("Ready", ok, not_ready, &at),
            pod_condition("ContainersReady", ok, not_ready, &at),
            pod_condition("PodScheduled", true, None, &at),
        ],
        "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": "10.244.1.23", "podIPs": [{"ip": "10.244.1.23"}],
        "startTime": at, "qosClass": "Burstable",
        "containerStatuses": [{"name": "main", "image": image,
            "imageID": format!("docker.io/library/busybox@{digest}"), "containerID": container_id,
            "ready": ok, "started": ok, "restartCount": 0, "lastState": {}, "state": state}],
    })
}

fn terminated(exit_code: i32, reason: &str) -> Value {
    let at = now();
    json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": at,
        "finishedAt": at, "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple())}})
}

pub fn pod_running() -> Value {
    on_node("Running", None, json!({"running": {"startedAt": now()}}))
}

pub fn pod_succeeded() -> Value {
    on_node(
        "Succeeded",
        Some("PodCompleted"),
        terminated(0, "Completed"),
    )
}

pub fn pod_failed_exit(code: i32) -> Value {
    on_node("Failed", Some("PodFailed"), terminated(code, "Error"))
}

pub fn pod_oom_killed() -> Value {
    on_node("Failed", Some("PodFailed"), terminated(137, "OOMKilled"))
}

/// Killed by the kubelet for running longer than `activeDeadlineSeconds`.
pub fn pod_deadline_exceeded() -> Value {
    let mut status = on_node("Failed", Some("PodFailed"), terminated(137, "Error"));
    status["reason"] = json!("DeadlineExceeded");
    status["message"] = json!("Pod was active on the node longer than the specified deadline");
    status
}

pub fn pod_image_pull_backoff() -> Value {
    let message = "Back-off pulling image \"docker.io/library/busybox:1.36\"";
    let waiting = json!({"waiting": {"reason": "ImagePullBackOff", "message": message}});
    let mut status = on_node("Pending", Some("ContainersNotReady"), waiting);
    status["conditions"][0]["status"] = json!("True");
    status["containerStatuses"][0]["imageID"] = json!("");
    if let Some(container) = status["containerStatuses"][0].as_object_mut() {
        container.remove("containerID");
    }
    status
}

/// What the scheduler writes when no node fits the pod.
pub fn pod_unschedulable() -> Value {
    let mut scheduled = pod_condition("PodScheduled", false, Some("Unschedulable"), &now());
    scheduled["message"] = json!(
        "0/3 nodes are available: 3 Insufficient cpu. preemption: \
        0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    json!({"phase": "Pending", "conditions": [scheduled], "qosClass": "Burstable"})
}

// ---------------------------------------------------------------------------------------------
// Watches: a stream that replays logged events after the client's resourceVersion, then waits.

struct WatchStream {
    shared: Arc<Shared>,
    filter: Filter,
    cursor: u64,
    /// Lines to send before looking at the log (the initial ADDED events).
    queued: String,
    changes: watch::Receiver<u64>,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    bookmarks: bool,
    done: bool,
}

enum Wake {
    Changed,
    Closed,
    TimedOut,
}

fn event_line(event: &str, object: &Value) -> String {
    format!("{}\n", json!({"type": event, "object": object}))
}

impl WatchStream {
    fn bookmark(&self) -> String {
        let metadata = json!({"resourceVersion": self.cursor.to_string()});
        let (kind, api_version) = (self.filter.kind.kind, self.filter.kind.api_version());
        let object = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        event_line("BOOKMARK", &object)
    }

    /// New events for this watch, or a 410 ERROR if some were dropped before it read them.
    fn collect(&mut self) -> String {
        let store = self.shared.store();
        if self.cursor < store.compacted {
            self.done = true;
            let message = format!(
                "too old resource version: {} ({})",
                self.cursor, store.compacted
            );
            return event_line("ERROR", &failure(410, "Expired", message).0);
        }
        let mut out = std::mem::take(&mut self.queued);
        let start = store.log.partition_point(|e| e.rv <= self.cursor);
        let entries = store
            .log
            .range(start..)
            .filter(|e| same(e.kind, self.filter.kind));
        for entry in entries {
            let now = self.filter.matches(&entry.object);
            let before = entry
                .previous
                .as_ref()
                .is_some_and(|p| self.filter.matches(p));
            let event = match (entry.event, before, now) {
                ("MODIFIED", false, true) => "ADDED",
                ("MODIFIED", true, false) => "DELETED",
                (_, _, false) => continue,
                (event, _, true) => event,
            };
            out.push_str(&event_line(event, &entry.object));
        }
        self.cursor = self.cursor.max(store.rv);
        out
    }

    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        // A dropped watch ends before it reports anything more: the client has to resume.
        while !self.done && !self.cancel.is_cancelled() {
            let lines = self.collect();
            if !lines.is_empty() {
                return Some((Ok(Bytes::from(lines)), self));
            }
            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                biased;
                () = self.cancel.cancelled() => Wake::Closed,
                changed = self.changes.changed() => match changed {
                    Ok(()) => Wake::Changed,
                    Err(_) => Wake::Closed,
                },
                () = timeout => Wake::TimedOut,
            };
            match wake {
                Wake::Changed => {}
                Wake::Closed => return None,
                // Like the real server, tell the client how far it got before the watch closes.
                Wake::TimedOut if self.bookmarks => {
                    self.done = true;
                    let last = Bytes::from(self.bookmark());
                    return Some((Ok(last), self));
                }
                Wake::TimedOut => return None,
            }
        }
        None
    }
}

fn start_watch(shared: &Arc<Shared>, filter: Filter, query: &Query) -> Result<Response, ApiError> {
    let from = match query.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| bad_request("invalid resourceVersion"))?,
        ),
    };
    let store = shared.store();
    let deadline = query
        .timeout_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut stream = WatchStream {
        shared: shared.clone(),
        cursor: from.unwrap_or(store.rv),
        queued: String::new(),
        changes: store.changes.subscribe(),
        cancel: shared.watch_token(),
        deadline,
        bookmarks: query.bookmarks,
        done: false,
        filter,
    };
    if from.is_none() {
        // Without a resourceVersion a watch begins with the current state as ADDED events.
        let current = store.list(&stream.filter);
        stream.queued = current.iter().map(|o| event_line("ADDED", o)).collect();
    }
    drop(store);
    let body = Body::from_stream(futures::stream::unfold(stream, WatchStream::next_chunk));
    let mut response = Response::new(body);
    let json = header::HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// HTTP: the API server's paths and verbs.

#[derive(Default)]
struct Query {
    watch: bool,
    resource_version: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    timeout_seconds: Option<u64>,
    bookmarks: bool,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut q = Query::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "watch" => q.watch = value == "true" || value == "1",
                "resourceVersion" => q.resource_version = Some(value),
                "labelSelector" => q.label_selector = Some(value),
                "fieldSelector" => q.field_selector = Some(value),
                "timeoutSeconds" => q.timeout_seconds = value.parse().ok(),
                "allowWatchBookmarks" => q.bookmarks = value == "true",
                _ => {}
            }
        }
        q
    }

    fn filter(&self, kind: &'static Kind, namespace: Option<&str>) -> Result<Filter, ApiError> {
        let mut filter = Filter::all(kind, namespace);
        filter.labels = parse_selector(self.label_selector.as_deref())?;
        filter.fields = parse_selector(self.field_selector.as_deref())?;
        Ok(filter)
    }
}

/// What a path names: a collection (namespace None = all namespaces or cluster-scoped) or an
/// object (name Some). `/status` subresources are served as the object.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, mut rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if let [front @ .., _, "status"] = rest
        && !front.is_empty()
    {
        rest = &rest[..front.len() + 1];
    }
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return None,
    };
    let kind = find_kind(group, version, plural)?;
    // A cluster-scoped kind has no namespaced path; a namespaced one is only listed without one.
    let fits = if kind.namespaced {
        namespace.is_some() || name.is_none()
    } else {
        namespace.is_none()
    };
    let (namespace, name) = (namespace.map(str::to_owned), name.map(str::to_owned));
    fits.then_some(Target {
        kind,
        namespace,
        name,
    })
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    let parsed = serde_json::from_slice(body);
    parsed.map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))
}

fn list_body(store: &Store, filter: &Filter) -> Value {
    let (kind, items) = (filter.kind, store.list(filter));
    let metadata = json!({"resourceVersion": store.rv.to_string()});
    // `limit` is ignored: everything fits in one page, which is a valid answer without `continue`.
    json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": metadata, "items": items})
}

/// Merge and strategic merge patches are merged; server-side apply is approximated by a merge
/// patch of its (JSON) body that creates the object when it is missing.
fn patch(
    store: &mut Store,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content_type = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let (kind, ns) = (target.kind, target.namespace.as_deref());
    match content_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {}
        "application/apply-patch+yaml" if store.get(kind, ns, name).is_none() => {
            let mut obj = parse_body(body)?;
            let meta =
                object_at(&mut obj, &["metadata"]).ok_or_else(|| bad_request("no metadata"))?;
            meta.insert("name".into(), json!(name));
            return Ok((201, store.create(kind, ns, obj, false)?));
        }
        "application/apply-patch+yaml" => {}
        other => {
            let message = format!("the body of the request was in an unknown format: {other}");
            return Err(failure(415, "UnsupportedMediaType", message));
        }
    }
    Ok((200, store.update(kind, ns, name, &parse_body(body)?, true)?))
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    target: Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (kind, ns) = (target.kind, target.namespace.as_deref());
    let reply = |(code, value): (u16, Value)| Ok(json_response(code, &value));
    let Some(name) = target.name.as_deref() else {
        return match *method {
            Method::GET if query.watch => start_watch(shared, query.filter(kind, ns)?, query),
            Method::GET => reply((200, list_body(&shared.store(), &query.filter(kind, ns)?))),
            Method::POST if ns.is_some() || !kind.namespaced => reply((
                201,
                shared.store().create(kind, ns, parse_body(body)?, false)?,
            )),
            _ => Err(failure(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed here"),
            )),
        };
    };
    let mut store = shared.store();
    match *method {
        Method::GET => reply((
            200,
            store
                .get(kind, ns, name)
                .cloned()
                .ok_or_else(|| not_found(kind, name))?,
        )),
        Method::PUT => reply((
            200,
            store.update(kind, ns, name, &parse_body(body)?, false)?,
        )),
        Method::PATCH => reply(patch(&mut store, &target, name, headers, body)?),
        Method::DELETE => {
            let options = if body.is_empty() {
                json!({})
            } else {
                parse_body(body)?
            };
            let orphan = options["propagationPolicy"] == "Orphan";
            reply((200, store.delete(kind, ns, name, orphan)?))
        }
        _ => Err(failure(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed here"),
        )),
    }
}

fn version_info() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "fake",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64"})
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    shared.requests().push(format!("{method} {request}"));
    if uri.path() == "/version" {
        return json_response(200, &version_info());
    }
    let query = Query::parse(uri.query());
    let result = match route(uri.path()) {
        Some(target) => dispatch(&shared, &method, target, &query, &headers, &body),
        None => Err(failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )),
    };
    result.unwrap_or_else(|error| {
        let code = error.0["code"].as_u64().and_then(|c| u16::try_from(c).ok());
        json_response(code.unwrap_or(500), &error.0)
    })
}

// ---------------------------------------------------------------------------------------------
// The handle tests use.

struct Shared {
    store: Mutex<Store>,
    /// Cancelled by `drop_watches`, then replaced for the watches that follow.
    watches: Mutex<CancellationToken>,
    requests: Mutex<Vec<String>>,
}

/// Locks ignoring poison: a test that panicked while holding a lock must not wedge the server.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn requests(&self) -> MutexGuard<'_, Vec<String>> {
        lock(&self.requests)
    }

    fn watch_token(&self) -> CancellationToken {
        lock(&self.watches).clone()
    }
}

/// A fake API server on 127.0.0.1, running on the current tokio runtime until dropped.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    /// Starts the server with the `default` namespace in place, as on a fresh cluster.
    pub async fn start() -> FakeKube {
        let shared = Arc::new_cyclic(|weak| {
            let (objects, log) = (BTreeMap::new(), VecDeque::new());
            let changes = watch::Sender::new(0);
            let store = Store {
                rv: 0,
                objects,
                log,
                compacted: 0,
                auto_complete: None,
                changes,
                shared: weak.clone(),
            };
            let watches = Mutex::new(CancellationToken::new());
            Shared {
                store: Mutex::new(store),
                watches,
                requests: Mutex::new(Vec::new()),
            }
        });
        let default = json!({"metadata": {"name": "default"}});
        let created = shared.store().create(&NAMESPACES, None, default, false);
        assert!(created.is_ok(), "fake_k8s: default namespace");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.expect("fake_k8s: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake_k8s: local address");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKube {
            addr,
            shared,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One cluster, one user with a dummy token (the fake checks no credentials), one context.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        let url = self.url();
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user:\n    token: fake-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n"
        )
    }

    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml(namespace)).expect("fake_k8s: write kubeconfig");
        path
    }

    /// A real client over HTTP, through the kubeconfig; its default namespace is `default`.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml("default"));
        let kubeconfig = kubeconfig.expect("fake_k8s: kubeconfig parses");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await;
        kube::Client::try_from(config.expect("fake_k8s: kubeconfig loads"))
            .expect("fake_k8s: client")
    }

    /// `resource` is the plural of the URL: "pods", "jobs", "namespaces", ...
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.shared
            .store()
            .get(kind_named(resource), namespace, name)
            .cloned()
    }

    /// Every object of `resource` in `namespace`, or in all namespaces with None.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.shared
            .store()
            .list(&Filter::all(kind_named(resource), namespace))
    }

    /// Seeds an object as if it had been there: it keeps the uid and creationTimestamp it
    /// carries, watches see ADDED, and no controller runs (a seeded Job gets no pod).
    pub fn insert(&self, resource: &str, object: Value) -> Value {
        let created = self
            .shared
            .store()
            .create(kind_named(resource), None, object, true);
        created.unwrap_or_else(|e| panic!("fake_k8s: insert into {resource}: {}", e.0))
    }

    /// Deletes as the API would (namespaces and Jobs cascade) and emits DELETED. For a pod
    /// this is a pod lost with its node: a Job whose pod had not finished becomes Failed.
    pub fn delete_object(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.shared
            .store()
            .delete(kind_named(resource), namespace, name, false)
            .ok()
    }

    pub fn pods_of_job(&self, namespace: &str, job: &str) -> Vec<Value> {
        let mut filter = Filter::all(&PODS, Some(namespace));
        filter
            .labels
            .push(Requirement::Equals("job-name".into(), job.into()));
        self.shared.store().list(&filter)
    }

    /// Replaces the pod's status (see the `pod_*` helpers) and emits MODIFIED; its Job follows.
    /// Panics if there is no such pod.
    pub fn set_pod_status(&self, namespace: &str, pod: &str, status: Value) {
        let updated = self.shared.store().set_pod_status(namespace, pod, status);
        assert!(updated.is_some(), "fake_k8s: no pod {namespace}/{pod}");
    }

    /// With `Some(delay)` every pod created from now on turns Running at once and Succeeded
    /// `delay` later; None stops that for pods created afterwards.
    pub fn complete_pods_after(&self, delay: Option<Duration>) {
        self.shared.store().auto_complete = delay;
    }

    /// Ends every open watch stream now, as an API server restart or a load balancer would.
    pub fn drop_watches(&self) {
        let mut token = lock(&self.shared.watches);
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Forgets all past events, as etcd compaction does: a watch resuming from an older
    /// resourceVersion gets 410 Expired and has to list again.
    pub fn compact_events(&self) {
        let mut store = self.shared.store();
        store.log.clear();
        store.compacted = store.rv;
    }

    /// "METHOD /path?query" of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests().clone()
    }

    pub fn reset_requests(&self) {
        self.shared.requests().clear();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.drop_watches();
        self.server.abort();
    }
}
