//! Test support (cargo feature `testing`; enable it in dev-dependencies only).
//!
//! - [`LocalDynamo`]: a DynamoDB-compatible server on 127.0.0.1. With
//!   `JIVA_TEST_DYNAMODB_ENDPOINT` set (e.g. `http://127.0.0.1:8000`, a dynalite or DynamoDB
//!   Local you started) it uses that; otherwise it starts moto's server (`python3`, package
//!   `moto[server]`, installed by `scripts/ensure-moto.sh`) on a free port and stops it on drop.
//!   When neither works it returns an error saying so: tests fail, they never skip.
//! - [`LocalDynamo::store`]: a [`DynamoStore`] on fresh, uniquely named tables, already created.
//! - [`IndexLag`]: an SDK interceptor that hides chosen messages from Query answers, the way a
//!   global secondary index that has not caught up yet does (moto's indexes never lag).
//! - [`RequestLog`]: an SDK interceptor that records every request a client sends, to assert
//!   on what a store asks DynamoDB for (how many Queries, with which limit, how many items
//!   DynamoDB read for them) rather than on timing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jiva_store_dynamo::testing::LocalDynamo;
//! let dynamo = LocalDynamo::shared()?; // one server for the whole test binary
//! let store = dynamo.store().await?; // own tables for this test
//! # Ok(()) }
//! ```
//!
//! This module reads one environment variable, `JIVA_TEST_DYNAMODB_ENDPOINT`; the rest of the
//! crate reads none.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    batch_get_item::BatchGetItemInput, batch_write_item::BatchWriteItemInput,
    create_table::CreateTableInput, delete_item::DeleteItemInput,
    describe_table::DescribeTableInput, get_item::GetItemInput, put_item::PutItemInput,
    query::QueryInput, query::QueryOutput, scan::ScanInput, scan::ScanOutput,
    transact_write_items::TransactWriteItemsInput, update_item::UpdateItemInput,
};
use jiva_core::StoreError;

use crate::{Config, DynamoStore};

/// The variable naming an already running DynamoDB-compatible server to test against.
pub const ENDPOINT_VAR: &str = "JIVA_TEST_DYNAMODB_ENDPOINT";

/// How long to wait for moto to start listening.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Starts moto's threaded server on a free port, prints the port, and stops when its standard
/// input closes, so the server cannot outlive the test process even if `Drop` never runs.
///
/// Before that it mends one flaw of moto's `TransactWriteItems` (seen in moto 5.2): moto backs
/// up every table a transaction touches with a deep copy (about 0.1 ms per item: 140 ms per
/// transaction on a 1,200-item table, so a cluster test's sends time out) and rolls a cancelled
/// transaction back by putting that copy in place, which also erases what other requests wrote
/// to the table meanwhile. The patch keeps the table and restores only the items the cancelled
/// transaction touched, as DynamoDB's own all-or-nothing does. A moto whose internals differ is
/// left as it is (the script says so on its standard error, in the moto log).
const MOTO_SCRIPT: &str = "\
import copy, logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger('werkzeug').setLevel(logging.ERROR)

def mend_transactions():
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table
    stock = models.DynamoDBBackend.transact_write_items
    class NoTableCopies:
        def __getattr__(self, name):
            return getattr(copy, name)
        def deepcopy(self, value, memo=None):
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)
    def transact_write_items(self, transact_items):
        touched = []
        for entry in transact_items:
            kind, op = next(iter(entry.items()))
            if kind not in ('Put', 'Delete', 'Update'):
                continue
            try:
                table = self.get_table(op['TableName'])
                if kind == 'Put':
                    key = {table.hash_key_attr: op['Item'][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op['Item'][table.range_key_attr]
                else:
                    key = op['Key']
                before = self.get_item(op['TableName'], key)
            except Exception:
                continue
            attrs = None if before is None else copy.deepcopy(before.to_json()['Attributes'])
            touched.append((op['TableName'], key, attrs))
        try:
            return stock(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(touched):
                if attrs is not None:
                    self.put_item(table_name, attrs)
                elif self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            raise
    models.copy = NoTableCopies()
    models.DynamoDBBackend.transact_write_items = transact_write_items

try:
    mend_transactions()
except Exception as e:
    print('moto transactions left unpatched:', repr(e), file=sys.stderr, flush=True)
server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
";

/// Why no local DynamoDB-compatible server could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no DynamoDB-compatible test server: {0}")]
pub struct LocalDynamoError(String);

/// A DynamoDB-compatible server on 127.0.0.1 for tests. See the [module docs](self).
#[derive(Debug)]
pub struct LocalDynamo {
    endpoint: String,
    /// The moto process we started (none when [`ENDPOINT_VAR`] named a server).
    child: Option<(Child, Option<ChildStdin>)>,
}

impl LocalDynamo {
    /// Uses [`ENDPOINT_VAR`] if set, else starts moto and waits until it listens (at most
    /// 60 s). The moto process is stopped when this value is dropped.
    pub fn start() -> Result<Self, LocalDynamoError> {
        let named = std::env::var(ENDPOINT_VAR).unwrap_or_default();
        if !named.trim().is_empty() {
            return Ok(Self {
                endpoint: named.trim().to_owned(),
                child: None,
            });
        }
        Self::start_moto()
    }

    /// One server for the whole test process, started on first use. Tests on different tokio
    /// runtimes can share it; each should make its own client (as [`LocalDynamo::store`] does).
    /// A shared moto process exits when the test process does (its stdin closes).
    pub fn shared() -> Result<&'static Self, LocalDynamoError> {
        static SHARED: OnceLock<Result<LocalDynamo, LocalDynamoError>> = OnceLock::new();
        SHARED
            .get_or_init(Self::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn start_moto() -> Result<Self, LocalDynamoError> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let log_path = std::env::temp_dir().join(format!(
            "jiva-moto-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let log = File::create(&log_path)
            .map_err(|e| LocalDynamoError(format!("cannot create {}: {e}", log_path.display())))?;
        let mut child = Command::new("python3")
            .args(["-c", MOTO_SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                LocalDynamoError(format!(
                    "cannot run python3 ({e}); install moto with scripts/ensure-moto.sh \
                     or set {ENDPOINT_VAR}"
                ))
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_DEADLINE).unwrap_or_default();
        let port = line.trim().parse::<u16>().ok().filter(|p| *p != 0);
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut stderr));
            let _ = std::fs::remove_file(&log_path);
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(5)..)
                .unwrap_or_default()
                .join(" | ");
            return Err(LocalDynamoError(format!(
                "moto's server did not start (it exited, or sent no port within {}s); is moto \
                 installed? Run scripts/ensure-moto.sh, or set {ENDPOINT_VAR}. python said: {tail}",
                START_DEADLINE.as_secs()
            )));
        };
        // Only needed to explain a failed start; moto keeps writing to the unlinked file.
        let _ = std::fs::remove_file(&log_path);
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some((child, stdin)),
        })
    }

    /// The server's URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A [`Config`] for this server with fresh, unique table names (`Chats_t…`, `Messages_t…`),
    /// region `us-east-1`, two attempts per request, short time-outs and a 60 s append deadline
    /// (a local server is much slower than DynamoDB under contention).
    pub fn config(&self) -> Config {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!(
            "t{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Config {
            chats_table: format!("Chats_{unique}"),
            messages_table: format!("Messages_{unique}"),
            endpoint_url: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            max_attempts: 2,
            operation_timeout: Duration::from_secs(30),
            // Moto answers a few hundred requests a second, shared by every test of a binary
            // running at once: contended appends wait on it far longer than on DynamoDB.
            append_deadline: Duration::from_secs(60),
            ..Config::default()
        }
    }

    /// An SDK client for `config` with static test credentials (no credential chain is read).
    pub fn client(&self, config: &Config) -> Client {
        Client::from_conf(self.client_builder(config).build())
    }

    /// Like [`LocalDynamo::client`], with a [`RequestLog`] recording every request it sends.
    pub fn client_with_log(&self, config: &Config) -> (Client, RequestLog) {
        let log = RequestLog::default();
        let client =
            Client::from_conf(self.client_builder(config).interceptor(log.clone()).build());
        (client, log)
    }

    fn client_builder(&self, config: &Config) -> aws_sdk_dynamodb::config::Builder {
        let builder = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "jiva-test"))
            .endpoint_url(&self.endpoint);
        config.apply_to(builder)
    }

    /// Like [`LocalDynamo::client`], with an [`IndexLag`] on its Query answers.
    pub fn client_with_lag(&self, config: &Config) -> (Client, IndexLag) {
        let lag = IndexLag::default();
        let client =
            Client::from_conf(self.client_builder(config).interceptor(lag.clone()).build());
        (client, lag)
    }

    /// A store on fresh tables of its own (native layout), created and `ACTIVE`.
    pub async fn store(&self) -> Result<DynamoStore, StoreError> {
        self.store_with(self.config()).await
    }

    /// A store for `config` (e.g. [`LocalDynamo::config`] with `legacy_index` set), its tables
    /// created.
    pub async fn store_with(&self, config: Config) -> Result<DynamoStore, StoreError> {
        let store = DynamoStore::from_client(self.client(&config), config);
        store.create_tables().await?;
        Ok(store)
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request a client sent, as seen by [`RequestLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation: `Query`, `Scan`, `PutItem`, `GetItem`, `BatchWriteItem`,
    /// `TransactWriteItems`, ... (`Other`
    /// for operations this log does not name).
    pub operation: &'static str,
    /// The table, for single-table operations.
    pub table: Option<String>,
    /// The index, for a Query or Scan of an index.
    pub index: Option<String>,
    /// The `Limit` of a Query or Scan.
    pub limit: Option<i32>,
    /// For a completed Query or Scan: how many items DynamoDB read (`ScannedCount`).
    pub scanned: Option<i32>,
    /// For a completed Query or Scan: how many items it returned (`Count`).
    pub returned: Option<i32>,
}

/// Records the requests of a client (an SDK interceptor). Clones share one log.
///
/// Each completed call is matched to the oldest call still waiting for its answer, which is
/// exact as long as the client sends one request at a time (as a store serving one test does).
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    state: Arc<Mutex<LogState>>,
}

#[derive(Debug, Default)]
struct LogState {
    requests: Vec<Request>,
    /// Indexes into `requests` of calls not answered yet, oldest first.
    pending: VecDeque<usize>,
}

impl RequestLog {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything recorded so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        let mut state = self.state();
        state.requests.clear();
        state.pending.clear();
    }

    /// The recorded requests of one operation.
    pub fn of(&self, operation: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.operation == operation)
            .collect()
    }

    fn push(&self, request: Request) {
        let mut state = self.state();
        let index = state.requests.len();
        state.requests.push(request);
        state.pending.push_back(index);
    }

    fn complete(&self, counts: Option<(i32, i32)>) {
        let mut state = self.state();
        let Some(index) = state.pending.pop_front() else {
            return;
        };
        if let (Some(request), Some((scanned, returned))) = (state.requests.get_mut(index), counts)
        {
            request.scanned = Some(scanned);
            request.returned = Some(returned);
        }
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "jiva-request-log"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let request = |operation, table: Option<&str>| Request {
            operation,
            table: table.map(str::to_owned),
            index: None,
            limit: None,
            scanned: None,
            returned: None,
        };
        let recorded = if let Some(q) = input.downcast_ref::<QueryInput>() {
            Request {
                index: q.index_name().map(str::to_owned),
                limit: q.limit(),
                ..request("Query", q.table_name())
            }
        } else if let Some(s) = input.downcast_ref::<ScanInput>() {
            Request {
                index: s.index_name().map(str::to_owned),
                limit: s.limit(),
                ..request("Scan", s.table_name())
            }
        } else if let Some(p) = input.downcast_ref::<PutItemInput>() {
            request("PutItem", p.table_name())
        } else if let Some(g) = input.downcast_ref::<GetItemInput>() {
            request("GetItem", g.table_name())
        } else if let Some(d) = input.downcast_ref::<DeleteItemInput>() {
            request("DeleteItem", d.table_name())
        } else if let Some(u) = input.downcast_ref::<UpdateItemInput>() {
            request("UpdateItem", u.table_name())
        } else if input.downcast_ref::<BatchWriteItemInput>().is_some() {
            request("BatchWriteItem", None)
        } else if input.downcast_ref::<BatchGetItemInput>().is_some() {
            request("BatchGetItem", None)
        } else if input.downcast_ref::<TransactWriteItemsInput>().is_some() {
            request("TransactWriteItems", None)
        } else if let Some(d) = input.downcast_ref::<DescribeTableInput>() {
            request("DescribeTable", d.table_name())
        } else if let Some(c) = input.downcast_ref::<CreateTableInput>() {
            request("CreateTable", c.table_name())
        } else {
            request("Other", None)
        };
        self.push(recorded);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let counts = match context.output_or_error() {
            Some(Ok(output)) => {
                if let Some(q) = output.downcast_ref::<QueryOutput>() {
                    Some((q.scanned_count(), q.count()))
                } else {
                    output
                        .downcast_ref::<ScanOutput>()
                        .map(|s| (s.scanned_count(), s.count()))
                }
            }
            _ => None,
        };
        self.complete(counts);
        Ok(())
    }
}

/// An SDK interceptor that removes the items of chosen messages from every Query answer, as an
/// eventually consistent index does for a message written a moment ago (a `LastEvaluatedKey`
/// naming a hidden item is moved back to the last item shown). Other operations
/// (GetItem, BatchGetItem) see every item.
#[derive(Debug, Clone, Default)]
pub struct IndexLag {
    hidden: Arc<Mutex<Vec<String>>>,
}

impl IndexLag {
    /// Hides the message `id` from Query answers from now on.
    pub fn hide(&self, id: jiva_core::MessageId) {
        self.hidden
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.to_string());
    }
}

impl Intercept for IndexLag {
    fn name(&self) -> &'static str {
        "jiva-index-lag"
    }

    fn modify_before_completion(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let hidden = self
            .hidden
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(Ok(output)) = context.output_or_error_mut() {
            if let Some(query) = output.downcast_mut::<QueryOutput>() {
                if let Some(items) = query.items.as_mut() {
                    items.retain(|item| {
                        !matches!(
                            item.get(crate::item::MESSAGE_ID),
                            Some(aws_sdk_dynamodb::types::AttributeValue::S(id)) if hidden.contains(id)
                        )
                    });
                    query.count = i32::try_from(items.len()).unwrap_or(i32::MAX);
                    // An index that does not hold an item never ends a page on it: a
                    // `LastEvaluatedKey` of a hidden item becomes the last item shown (or the
                    // end, when none is).
                    let hidden_key = query.last_evaluated_key.as_ref().is_some_and(|key| {
                        matches!(
                            key.get(crate::item::MESSAGE_ID),
                            Some(aws_sdk_dynamodb::types::AttributeValue::S(id)) if hidden.contains(id)
                        )
                    });
                    if hidden_key {
                        let names: Vec<String> = query
                            .last_evaluated_key
                            .as_ref()
                            .map(|key| key.keys().cloned().collect())
                            .unwrap_or_default();
                        query.last_evaluated_key = items.last().map(|last| {
                            names
                                .iter()
                                .filter_map(|n| last.get(n).map(|v| (n.clone(), v.clone())))
                                .collect()
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
