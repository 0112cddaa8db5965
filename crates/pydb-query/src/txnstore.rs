//! The [`Store`] over a `pydb-txn` transaction: tables, indexes and the
//! catalog as keys and values of one [`Transaction`].
//!
//! Everything a statement does, rows, index entries and DDL alike, is a
//! write buffered in the same transaction, so a rolled-back statement or
//! transaction leaves nothing behind, and a `CREATE TABLE` becomes
//! visible to other sessions exactly when its transaction commits. Where
//! each kind of data lives is in [`layout`]; how the catalog is written,
//! in [`records`]; how values become bytes, in
//! [`encoding`](crate::encoding).
//!
//! # Constraints
//!
//! - NOT NULL: checked on every insert and update.
//! - PRIMARY KEY: the row key *is* the primary key, so a duplicate is
//!   found by a point read of that key, and two concurrent inserts of one
//!   key write the same engine key: the transaction layer's write-write
//!   check refuses the second committer (SQLSTATE 40001).
//! - UNIQUE: a unique index entry without NULLs is keyed by the values
//!   alone (see [`layout`]), which gives the same two guarantees. Rows with
//!   a NULL in the key never collide, as SQL says.
//!
//! # The catalog cache
//!
//! Decoding every table definition for every statement would cost a scan
//! per statement, so the [`Database`](crate::Database) keeps the last
//! decoded catalog, tagged with the commit timestamp of the newest version
//! of the catalog version key (every DDL writes that key). A statement asks
//! the transaction when that key last changed *in its own snapshot*
//! ([`Transaction::last_modified`]): if the cache has that tag it is
//! exactly the catalog this transaction sees; otherwise the catalog is read
//! from the engine and, unless this transaction changed it itself, cached.
//! Commit timestamps are unique, so a stale cache can never be mistaken
//! for a fresh one.
//!
//! The table statistics that ANALYZE stores are catalog records too (one
//! per table, under the table's name), decoded with the catalog and
//! cached with it: ANALYZE bumps the catalog version like DDL does, and
//! DROP TABLE deletes the table's statistics. A statistics record that
//! does not decode does not stop the catalog from loading (statistics
//! only guide the optimizer): the damage is kept, reported as
//! [`Error::Corrupted`] by [`Store::table_stats`] and by the verifier.
//!
//! # Hidden row ids
//!
//! A table without PRIMARY KEY keys its rows by an increasing row id. The
//! ids come from an allocator in memory ([`Shared`]), not from a counter
//! key in the transaction, which would make every two concurrent inserts
//! into the table conflict. An id taken by a rolled-back transaction is
//! never used; after a restart the allocator starts above the largest id
//! stored.
//!
//! # What the store does not do (yet)
//!
//! A table scan streams: it pulls the visible versions from the
//! transaction layer's `scan_in` one at a time and decodes each row as the
//! operator above asks for it (only the columns its query reads, see
//! `Store::scan_columns`), the Volcano model down to the engine. It asks
//! the transaction layer for the values alone, lent
//! (`TxnScan::next_values_with`): the operators above a scan never read a
//! row's key, so none is built, and a row is decoded inside the
//! transaction layer's walk of the engine, from the bytes the engine
//! lends, into a batch of rows (`RowBatch`) that the scan then hands up
//! one at a time: a row's bytes are never copied on their way to the
//! decoder.
//! A filter right above the scan hands it the integer ranges its leading
//! comparisons allow (`IntegerBound`): a row outside them is dropped in
//! the batch where it was decoded, and never reaches the filter (q6 keeps
//! 2% of `lineitem`). The filter still tests every row the scan keeps.
//! A hash join's key bits (`KeyBits`) drop rows the same way. Each test
//! is asked as soon as its column is decoded, and a rejected row is not
//! decoded further (q3 drops most of `lineitem` at its second column).
//! A filter drops a row while its bytes are still in the CPU cache, and no
//! list of the whole table is built first (that list, 60,000 rows for
//! TPC-H's `lineitem` at scale 0.01, made a scan cost about twice as
//! much: every row allocated, kept, then freed in bulk). Index scans still read their
//! range of entries at once. A statement that scans a table again (a
//! correlated subquery) decodes it once more, then reuses those rows until
//! it writes. REINDEX (in the executor) drops and recreates an index.
//! There is no ALTER TABLE, or descending index.

mod covering;
pub(crate) mod layout;
pub(crate) mod records;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pydb_txn::{
    ByteArena, Concurrency, Isolation, Keyspace, SpacedKey, Transaction, TxnManager, TxnOptions,
};

use crate::catalog::{Index, Table, View};
use crate::encoding::{
    decode_key, decode_row_columns_into, decode_row_columns_tested_into, encode_key,
    encode_key_value, encode_row_into, encoded_key_len,
};
use crate::error::{Error, Result};
use crate::plan::stats::TableStats;
use crate::store::{
    CatalogToken, IndexRange, IntegerBound, KeyBits, RowCursor, RowCursorBox, RowIter, RowKey,
    RowsIter, Store,
};
use crate::value::{Row, Value};

use layout::{CATALOG, CATALOG_STATS, CATALOG_TABLE, CATALOG_VIEW, INDEXES, ROWS};

// ------------------------------------------------------------ keyspace

// Every SQL key lives in the transaction layer's `Keyspace::Sql`, so SQL
// data and the key-value commands never meet, and `pydb-txn` can tell them
// apart (in `KEYS`, `DBSIZE`, and its own verifier).

/// Reads `key` of the SQL space.
pub(crate) fn space_get(tx: &Transaction, key: &[u8]) -> Result<Option<Bytes>> {
    Ok(tx.get_in(Keyspace::Sql, key)?)
}

/// Reads `key` of the SQL space that the transaction is about to write:
/// under locking, the exclusive lock is taken right away, so that two
/// transactions checking and then writing one key queue up instead of
/// deadlocking on the upgrade from a shared lock.
pub(crate) fn space_get_for_update(tx: &Transaction, key: &[u8]) -> Result<Option<Bytes>> {
    Ok(tx.get_for_update_in(Keyspace::Sql, key)?)
}

/// Writes `key` of the SQL space.
pub(crate) fn space_set(tx: &mut Transaction, key: &[u8], value: &[u8]) -> Result<()> {
    Ok(tx.set_in(Keyspace::Sql, key, value)?)
}

/// Writes `key` of the SQL space with a value built for it: the
/// transaction keeps `value`'s bytes instead of copying them.
pub(crate) fn space_set_owned(tx: &mut Transaction, key: &[u8], value: Bytes) -> Result<()> {
    Ok(tx.set_owned_in(Keyspace::Sql, key, value)?)
}

/// A key of the SQL space built in place (`pydb_txn::SpacedKey`), with
/// room for `capacity` bytes.
pub(crate) fn space_key(capacity: usize) -> SpacedKey {
    SpacedKey::new(Keyspace::Sql, capacity)
}

/// Writes `key` (of the SQL space, [`space_key`]) with `value` if the
/// transaction sees no value there (`None`); otherwise writes nothing and
/// returns the value it sees. An INSERT's primary-key check and row write
/// in one step, which spares the transaction an SSI read-set entry (see
/// `Transaction::insert_owned_in`).
pub(crate) fn space_insert_owned(
    tx: &mut Transaction,
    key: &SpacedKey,
    value: Bytes,
) -> Result<Option<Bytes>> {
    Ok(tx.insert_spaced(key, value)?)
}

/// Writes `key` (of the SQL space, [`space_key`]), a dependent of the
/// row whose key is the concatenation of `owner` (an index entry): when
/// this transaction's last INSERT created that row, garbage collection
/// need not walk `key` (see `Transaction::set_dependent_owned_in`).
pub(crate) fn space_set_dependent(
    tx: &mut Transaction,
    key: &SpacedKey,
    value: Bytes,
    owner: &[&[u8]],
) -> Result<()> {
    Ok(tx.set_dependent_spaced(key, value, owner)?)
}

/// Deletes `key` of the SQL space.
pub(crate) fn space_delete(tx: &mut Transaction, key: &[u8]) -> Result<()> {
    Ok(tx.delete_in(Keyspace::Sql, key)?)
}

/// The keys of the SQL space in `range`, with their values, ascending,
/// read whole.
pub(crate) fn space_scan(
    tx: &Transaction,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
) -> Result<Vec<(Bytes, Bytes)>> {
    Ok(tx
        .scan_in(Keyspace::Sql, range)?
        .collect::<pydb_txn::Result<Vec<_>>>()?)
}

/// The last commit that wrote the catalog version key, as this
/// transaction sees it (`u64::MAX`: this transaction wrote it).
fn catalog_tag(tx: &Transaction) -> Result<u64> {
    Ok(tx
        .last_modified_in(Keyspace::Sql, &layout::CATALOG_VERSION)?
        .unwrap_or(0))
}

/// The value of the counter `key` (a missing counter is 0).
fn decode_counter(key: &[u8], value: Option<Bytes>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(value) => {
            let bytes: [u8; 8] = value[..].try_into().map_err(|_| {
                Error::Corrupted(format!("SQL counter {key:?} has {} bytes", value.len()))
            })?;
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

// ------------------------------------------------------------- catalog

/// Every table and view, as one transaction sees them.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Tables by name.
    pub(crate) tables: BTreeMap<String, Arc<Table>>,
    /// Views by name.
    pub(crate) views: BTreeMap<String, Arc<View>>,
    /// The statistics of analyzed tables, by table name; a record that
    /// did not decode is kept as the reason why.
    pub(crate) stats: BTreeMap<String, std::result::Result<Arc<TableStats>, String>>,
}

impl Catalog {
    /// Reads the catalog records of the transaction.
    pub(crate) fn load(tx: &Transaction) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for (key, value) in space_scan(tx, layout::prefix_range(vec![CATALOG]))? {
            let (kind, name) = match &key[..] {
                [_, kind, name @ ..] => (*kind, name),
                _ => return Err(Error::Corrupted(format!("catalog key {key:?} too short"))),
            };
            let name = std::str::from_utf8(name)
                .map_err(|_| Error::Corrupted(format!("catalog key {key:?} is not UTF-8")))?;
            match kind {
                CATALOG_TABLE => {
                    let table = records::decode_table(name, &value)?;
                    catalog.tables.insert(name.to_owned(), Arc::new(table));
                }
                CATALOG_VIEW => {
                    let view = records::decode_view(name, &value)?;
                    catalog.views.insert(name.to_owned(), Arc::new(view));
                }
                // Table records sort before stats records, so the table
                // is known here if it exists.
                CATALOG_STATS => {
                    let stats = match catalog.tables.get(name) {
                        Some(table) => records::decode_stats(table, &value)
                            .map(Arc::new)
                            .map_err(|e| format!("stats record {key:?}: {e}")),
                        None => Err(format!("stats record {key:?} of no table")),
                    };
                    catalog.stats.insert(name.to_owned(), stats);
                }
                other => {
                    return Err(Error::Corrupted(format!(
                        "catalog key {key:?} of unknown kind {other}"
                    )));
                }
            }
        }
        Ok(catalog)
    }

    fn index(&self, name: &str) -> Option<(&Arc<Table>, &Index)> {
        self.tables.values().find_map(|t| {
            t.indexes
                .iter()
                .find(|i| i.name.eq_ignore_ascii_case(name))
                .map(|i| (t, i))
        })
    }
}

/// The catalog most recently decoded: see [`Shared`].
#[derive(Debug)]
struct CachedCatalog {
    /// The commit timestamp of the catalog version key it was read at.
    tag: u64,
    catalog: Arc<Catalog>,
    /// A snapshot whose visible catalog version key has this tag: a
    /// transaction at the same snapshot sees the same version, so a read
    /// that needs no tracking (see [`TxnStore::catalog`]) can skip it.
    snapshot: u64,
}

/// A catalog and the value of the catalog version key it goes with: see
/// [`Shared::read_latest_row`].
#[derive(Debug)]
struct LatestCatalog {
    /// The catalog version key's value (every DDL commit adds one).
    version: u64,
    /// The key had that value at every commit from `since` to `until`.
    since: u64,
    /// See `since`.
    until: u64,
    /// The catalog of those commits.
    catalog: CatalogToken,
}

/// A session's own copy of what [`Shared::read_latest_row`] last proved:
/// the catalog `.0` is the latest commit's catalog at every commit from
/// `.1` to `.2` (both included).
///
/// These are facts about commits already published, so they never go
/// stale; keeping them with the session lets its point selects check
/// their plan's catalog without taking the shared record's lock (an
/// atomic read-modify-write to take it and one to release it) while
/// nothing commits. The token is kept, not its address, so that the
/// catalog it stands for stays alive and its address names it alone.
#[derive(Debug, Default)]
pub(crate) struct KnownLatest(Option<(CatalogToken, u64, u64)>);

impl KnownLatest {
    /// Whether `catalog` is known to be the catalog at commit `at`.
    fn covers(&self, catalog: &CatalogToken, at: u64) -> bool {
        self.0.as_ref().is_some_and(|(known, since, until)| {
            known.same(catalog) && (*since..=*until).contains(&at)
        })
    }
}

/// A session's buffers for [`Shared::read_latest_row`]: the row key it
/// builds and the stored row the engine copies out. Kept between point
/// selects, so that once they have grown to a row's size a point select
/// allocates neither (the row is decoded from `value` and the bytes
/// stay for the next read).
#[derive(Debug, Default)]
pub(crate) struct PointBuffers {
    key: Vec<u8>,
    value: Vec<u8>,
}

/// What a database's sessions share: the catalog most recently decoded,
/// and the hidden row id allocators.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The transaction manager.
    mgr: Arc<TxnManager>,
    /// The catalog version key's commit timestamp, what it says, and the
    /// newest snapshot known to see exactly that version.
    last: Mutex<Option<CachedCatalog>>,
    /// A catalog known to be the latest commit's, for reads outside any
    /// transaction (see [`Shared::read_latest_row`]).
    latest: Mutex<Option<LatestCatalog>>,
    /// The next hidden row id of each table without PRIMARY KEY that was
    /// inserted into since the database was opened.
    row_ids: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    /// Nothing cached yet, over `mgr`.
    pub(crate) fn new(mgr: Arc<TxnManager>) -> Self {
        Shared {
            mgr,
            last: Mutex::new(None),
            latest: Mutex::new(None),
            row_ids: Mutex::new(HashMap::new()),
        }
    }

    /// The row of `table` with primary key `pk` as of the latest commit,
    /// read outside any transaction, if `catalog` is the latest commit's
    /// catalog; `None` when that is not known (the caller then reads in a
    /// transaction).
    ///
    /// An autocommit point select is a transaction that reads one row and
    /// ends. Reading that row at the latest commit
    /// (`TxnManager::get_latest_into`: no snapshot registered, no SSI
    /// tracking) gives what such a transaction would return at any
    /// isolation level: it sees whole commits only, never an uncommitted
    /// write, and a transaction that reads a single key can always be
    /// placed in the serial order right after the commit that wrote the
    /// version it read. The statement's plan must be valid for the
    /// catalog of that commit, which is the other thing this checks, from
    /// the catalog version key, which every DDL commit increases:
    ///
    /// ```text
    ///   S1 = published;  catalog version at S1 is `version` (known, or read now)
    ///   row = newest version of the row at the latest commit S2 >= S1
    ///   S3 = published;  S3 == S1, or the version read now is still `version`
    /// ```
    ///
    /// The version key only grows, so the same value at S1 and after S3
    /// means no DDL committed between them: the row was read at a commit
    /// with the plan's catalog. While nothing commits (`S3 == S1` and
    /// `S1` is a commit already checked), the check reads nothing.
    ///
    /// The row found is returned as stored, borrowed from `buffers` (the
    /// caller decodes it, with [`decode_table_columns_into`], into a row it
    /// keeps): `Some(None)` when there is no such row.
    pub(crate) fn read_latest_row<'v, 'b>(
        &self,
        known: &mut KnownLatest,
        buffers: &'b mut PointBuffers,
        catalog: &CatalogToken,
        table: &Table,
        pk: impl IntoIterator<Item = &'v Value>,
    ) -> Result<Option<Option<&'b [u8]>>> {
        let before = self.mgr.last_commit();
        if !self.catalog_is_latest_at(known, catalog, before)? {
            return Ok(None);
        }
        layout::row_key_into(table.id, pk, &mut buffers.key);
        let stored = self
            .mgr
            .get_latest_into(Keyspace::Sql, &buffers.key, &mut buffers.value)?;
        let after = self.mgr.last_commit();
        if after != before && !self.catalog_is_latest_at(known, catalog, after)? {
            return Ok(None);
        }
        Ok(Some(stored))
    }

    /// Whether `catalog` is the catalog at the published commit `at`,
    /// answered from `known` (the caller's own record, read without a
    /// lock) when it covers `at`, else by [`Shared::catalog_is_latest`],
    /// whose answer `known` then keeps.
    fn catalog_is_latest_at(
        &self,
        known: &mut KnownLatest,
        catalog: &CatalogToken,
        at: u64,
    ) -> Result<bool> {
        if known.covers(catalog, at) {
            return Ok(true);
        }
        Ok(match self.catalog_is_latest(catalog, at)? {
            Some((since, until)) => {
                known.0 = Some((catalog.clone(), since, until));
                true
            }
            None => false,
        })
    }

    /// Whether `catalog` is the catalog at the published commit `at`: if
    /// so, the commits (`since`, `until`, both included, `at` among them)
    /// at which it is known to be.
    fn catalog_is_latest(&self, catalog: &CatalogToken, at: u64) -> Result<Option<(u64, u64)>> {
        let version = {
            let latest = self.latest.lock();
            match latest.as_ref() {
                Some(l) if l.catalog.same(catalog) && l.since <= at => {
                    if at <= l.until {
                        return Ok(Some((l.since, l.until)));
                    }
                    l.version
                }
                _ => return Ok(None),
            }
        };
        // Read after `at` was published: the value it had at `since`,
        // then, as the key only grows, means the same value at `at`.
        let now = decode_counter(
            &layout::CATALOG_VERSION,
            self.mgr
                .get_latest_in(Keyspace::Sql, &layout::CATALOG_VERSION)?,
        )?;
        if now != version {
            return Ok(None);
        }
        let mut latest = self.latest.lock();
        Ok(Some(
            match latest
                .as_mut()
                .filter(|l| l.version == version && l.catalog.same(catalog))
            {
                Some(l) => {
                    l.until = l.until.max(at);
                    (l.since, l.until)
                }
                None => (at, at),
            },
        ))
    }

    /// Notes that the catalog version key was `version` at the commit
    /// `snapshot`, whose catalog is `catalog`.
    fn note_latest(&self, version: u64, snapshot: u64, catalog: CatalogToken) {
        let mut latest = self.latest.lock();
        match latest.as_mut() {
            Some(l) if l.version == version && l.catalog.same(&catalog) => {
                l.since = l.since.min(snapshot);
                l.until = l.until.max(snapshot);
            }
            Some(l) if l.version > version => {}
            _ => {
                *latest = Some(LatestCatalog {
                    version,
                    since: snapshot,
                    until: snapshot,
                    catalog,
                });
            }
        }
    }

    /// Takes the next hidden row id of `table`.
    ///
    /// Row ids are not allocated inside the transaction, where a counter key
    /// would make every two concurrent inserts into one table conflict, but
    /// here, like PostgreSQL's sequences: an id taken by a transaction that
    /// rolls back is simply never used. The first allocation for a table
    /// after the database opens starts after the largest id committed (one
    /// scan of the table's keys, in a transaction of its own); every later
    /// row of this process went through this allocator, so that start
    /// stays above them. After a restart, the ids of deleted rows at the
    /// end of the table may be taken again, as in SQLite without
    /// AUTOINCREMENT.
    fn next_row_id(&self, table: &Table) -> Result<i64> {
        let mut row_ids = self.row_ids.lock();
        let next = match row_ids.get(&table.id) {
            Some(&next) => next,
            None => self.largest_row_id(table)? + 1,
        };
        let id = i64::try_from(next)
            .map_err(|_| Error::Invalid(format!("table {} ran out of row ids", table.name)))?;
        row_ids.insert(table.id, next + 1);
        Ok(id)
    }

    fn largest_row_id(&self, table: &Table) -> Result<u64> {
        let options = TxnOptions::new(Isolation::Snapshot)
            .read_only()
            .concurrency(Concurrency::Mvcc);
        let tx = self.mgr.begin_with(options)?;
        let rows = space_scan(
            &tx,
            layout::prefix_range(layout::object_prefix(ROWS, table.id)),
        )?;
        tx.rollback();
        let Some((key, _)) = rows.last() else {
            return Ok(0);
        };
        match decode_key(&key[9..])?.as_slice() {
            [Value::Integer(id)] if *id > 0 => Ok(id.unsigned_abs()),
            other => Err(Error::Corrupted(format!(
                "table {} has a row under the key {other:?}, not a row id",
                table.name
            ))),
        }
    }
}

// --------------------------------------------------------------- store

/// The state of one open transaction that outlives a statement.
#[derive(Debug)]
pub(crate) struct OpenTxn {
    /// The transaction.
    pub(crate) tx: Transaction,
    /// Whether it changed the catalog (then the shared cache is not its
    /// catalog).
    pub(crate) wrote_catalog: bool,
    /// The catalog its earlier statements saw, while it has not changed
    /// the catalog itself. Its snapshot never moves (read committed runs
    /// as snapshot isolation, see `session`), so every statement sees the
    /// same catalog: later statements skip even the version key read.
    catalog: Option<Arc<Catalog>>,
    /// The buffer rows and row keys are encoded into before they are
    /// copied into `arena` (see `encoding::encode_row_into`), kept from
    /// row to row.
    encoded_row: Vec<u8>,
    /// The buffer a row's engine key and its index entries' keys are
    /// built in, one after the other (the transaction copies each into
    /// its own arena), kept from row to row once an INSERT made it (taken
    /// while a key is built in it).
    key: Option<SpacedKey>,
    /// Where the encoded rows, row keys and index entries' values of this
    /// transaction's writes are kept, as shares of a few chunks
    /// (`pydb_txn::ByteArena`).
    ///
    /// Why: an INSERT hands the write buffer bytes it made for that row
    /// alone (the encoded row, and for each index entry a copy of the row
    /// key as its value), and each was an allocation of its own, freed
    /// when the commit dropped the buffer (the commit copies every value
    /// into its group's buffer). In an arena, each is a copy and a
    /// reference count.
    arena: ByteArena,
}

impl OpenTxn {
    /// A fresh transaction's state.
    pub(crate) fn new(tx: Transaction) -> Self {
        OpenTxn {
            tx,
            wrote_catalog: false,
            catalog: None,
            encoded_row: Vec::new(),
            key: None,
            arena: ByteArena::new(),
        }
    }

    /// `row` encoded, in the transaction's arena.
    fn encode_row(&mut self, row: &[Value]) -> Bytes {
        encode_row_into(row, &mut self.encoded_row);
        self.arena.copy(&self.encoded_row)
    }

    /// The row key of a table with a primary key (as [`pk_row_key`]), in
    /// the transaction's arena.
    fn pk_row_key(&mut self, table: &Table, row: &Row) -> RowKey {
        self.encoded_row.clear();
        pk_key_into(table, row, &mut self.encoded_row);
        RowKey(self.arena.copy(&self.encoded_row))
    }
}

/// A table's rows, decoded once per statement.
type ScannedRows = Arc<Vec<Row>>;

/// The length of the prefix of a row's storage key before its [`RowKey`]:
/// the `ROWS` tag and the table id (`layout::object_prefix`).
const ROW_KEY_PREFIX_LEN: usize = 9;

/// A scan of one statement: the table's id and the columns it decodes
/// (empty: all of them).
type ScanId = (u64, Vec<bool>);

/// A [`Store`] over one open transaction.
pub(crate) struct TxnStore<'a> {
    open: &'a mut OpenTxn,
    shared: &'a Shared,
    catalog: RefCell<Option<Arc<Catalog>>>,
    /// Tables already scanned by this statement, by table id and the
    /// columns decoded (empty: all): `None` after the first scan, the
    /// decoded rows from the second on (a correlated subquery scans its
    /// table once per outer row). The first scan hands its rows out
    /// without keeping a copy, so a statement that scans a table once
    /// (most do) pays no clone per row. Emptied by every write, so a scan
    /// always sees the statement's own writes.
    scanned: RefCell<HashMap<ScanId, Option<ScannedRows>>>,
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl<'a> TxnStore<'a> {
    /// A store over `open`, with the database's `shared` state.
    pub(crate) fn new(open: &'a mut OpenTxn, shared: &'a Shared) -> Self {
        let catalog = if open.wrote_catalog {
            None
        } else {
            open.catalog.clone()
        };
        TxnStore {
            open,
            shared,
            catalog: RefCell::new(catalog),
            scanned: RefCell::new(HashMap::new()),
        }
    }

    /// Ends the statement, handing the catalog it saw to the
    /// transaction's next statements (unless the transaction changed it).
    pub(crate) fn keep_catalog(self) {
        if self.open.wrote_catalog {
            return;
        }
        if let Some(catalog) = self.catalog.into_inner() {
            self.open.catalog = Some(catalog);
        }
    }

    fn tx(&self) -> &Transaction {
        &self.open.tx
    }

    /// Hands the catalog this statement saw to point reads outside any
    /// transaction ([`Shared::read_latest_row`]), with the catalog version
    /// key's value at this transaction's snapshot (one more read, made
    /// only when that catalog is not already the one they know).
    pub(crate) fn share_latest_catalog(&self) -> Result<()> {
        if self.open.wrote_catalog {
            return Ok(());
        }
        let Some(catalog) = self.catalog.borrow().clone() else {
            return Ok(());
        };
        let catalog = CatalogToken(catalog);
        let known = self
            .shared
            .latest
            .lock()
            .as_ref()
            .is_some_and(|l| l.catalog.same(&catalog));
        if known {
            return Ok(());
        }
        let version = decode_counter(
            &layout::CATALOG_VERSION,
            space_get(self.tx(), &layout::CATALOG_VERSION)?,
        )?;
        self.shared
            .note_latest(version, self.tx().snapshot(), catalog);
        Ok(())
    }

    /// The catalog this transaction sees.
    fn catalog(&self) -> Result<Arc<Catalog>> {
        if let Some(catalog) = self.catalog.borrow().as_ref() {
            return Ok(catalog.clone());
        }
        let tx = self.tx();
        let catalog = if self.open.wrote_catalog {
            Arc::new(Catalog::load(tx)?)
        } else if let Some(catalog) = self.catalog_at_same_snapshot() {
            catalog
        } else {
            let tag = catalog_tag(tx)?;
            let mut last = self.shared.last.lock();
            let cached = last.as_mut().filter(|c| c.tag == tag).map(|c| {
                c.snapshot = c.snapshot.max(tx.snapshot());
                c.catalog.clone()
            });
            drop(last);
            match cached {
                Some(catalog) => catalog,
                None => {
                    let catalog = Arc::new(Catalog::load(tx)?);
                    if tag != u64::MAX {
                        *self.shared.last.lock() = Some(CachedCatalog {
                            tag,
                            catalog: catalog.clone(),
                            snapshot: tx.snapshot(),
                        });
                    }
                    catalog
                }
            }
        };
        *self.catalog.borrow_mut() = Some(catalog.clone());
        Ok(catalog)
    }

    /// The cached catalog, without reading the catalog version key, when
    /// that read would need no bookkeeping and the cache is known to hold
    /// what this transaction's snapshot sees: a read-only MVCC transaction
    /// that SSI does not track (no lock to take, no read to record) at the
    /// snapshot the cache was checked at. A loop of autocommitted queries
    /// on a quiet database then reads one key fewer per statement.
    fn catalog_at_same_snapshot(&self) -> Option<Arc<Catalog>> {
        let tx = self.tx();
        let untracked = tx.is_read_only()
            && tx.concurrency() == Concurrency::Mvcc
            && matches!(
                tx.isolation(),
                Isolation::Snapshot | Isolation::Serializable
            )
            && !tx.is_tracked();
        if !untracked {
            return None;
        }
        self.shared
            .last
            .lock()
            .as_ref()
            .filter(|c| c.snapshot == tx.snapshot())
            .map(|c| c.catalog.clone())
    }

    /// Notes a catalog change: bumps the version key (so other sessions'
    /// caches miss, and concurrent DDL conflicts) and forgets the catalog.
    fn catalog_changed(&mut self) -> Result<()> {
        let version = self.read_counter(&layout::CATALOG_VERSION)?;
        self.write_counter(&layout::CATALOG_VERSION, version + 1)?;
        self.open.wrote_catalog = true;
        *self.catalog.borrow_mut() = None;
        Ok(())
    }

    fn read_counter(&self, key: &[u8]) -> Result<u64> {
        decode_counter(key, space_get_for_update(self.tx(), key)?)
    }

    fn write_counter(&mut self, key: &[u8], value: u64) -> Result<()> {
        space_set(&mut self.open.tx, key, &value.to_le_bytes())
    }

    /// Takes the next id for a table or index.
    fn next_id(&mut self) -> Result<u64> {
        let id = self.read_counter(&layout::NEXT_ID)?.max(1);
        self.write_counter(&layout::NEXT_ID, id + 1)?;
        Ok(id)
    }

    fn write_table(&mut self, table: &Table) -> Result<()> {
        let key = layout::catalog_key(CATALOG_TABLE, &table.name);
        space_set(&mut self.open.tx, &key, &records::encode_table(table))
    }

    fn check_name_free(&self, catalog: &Catalog, name: &str) -> Result<()> {
        if catalog.tables.contains_key(name) {
            return Err(Error::Duplicate {
                kind: "table",
                name: name.to_owned(),
                what: "already exists",
            });
        }
        if catalog.views.contains_key(name) {
            return Err(Error::Duplicate {
                kind: "view",
                name: name.to_owned(),
                what: "already exists",
            });
        }
        Ok(())
    }

    fn check_index_name_free(catalog: &Catalog, name: &str) -> Result<()> {
        if catalog.index(name).is_some() {
            return Err(Error::Duplicate {
                kind: "index",
                name: name.to_owned(),
                what: "already exists",
            });
        }
        Ok(())
    }

    /// Deletes every key with `prefix`.
    fn delete_prefix(&mut self, prefix: Vec<u8>) -> Result<()> {
        for (key, _) in space_scan(self.tx(), layout::prefix_range(prefix))? {
            space_delete(&mut self.open.tx, &key)?;
        }
        Ok(())
    }

    /// The row key of `row`: its primary key, or a new hidden row id.
    fn new_row_key(&mut self, table: &Table, row: &Row) -> Result<RowKey> {
        if table.primary_key.is_empty() {
            // The allocator is only as good as the process's knowledge: a
            // second `Database` over the same manager has its own. A taken
            // id that this transaction can see sends the allocator back to
            // the table; one it cannot see (committed after its snapshot,
            // or not yet) is the same engine key, and the write-write
            // check refuses one of the two commits. Never an overwrite.
            for _ in 0..8 {
                let id = self.shared.next_row_id(table)?;
                let key = encode_key(&[Value::Integer(id)]);
                if space_get_for_update(self.tx(), &layout::row_key(table.id, &key))?.is_none() {
                    return Ok(RowKey(Bytes::from(key)));
                }
                self.shared.row_ids.lock().remove(&table.id);
            }
            Err(Error::Invalid(format!(
                "no free row id found in table {}",
                table.name
            )))
        } else {
            Ok(self.open.pk_row_key(table, row))
        }
    }

    fn check_row(table: &Table, row: &Row) -> Result<()> {
        if row.len() != table.columns.len() {
            return Err(Error::Invalid(format!(
                "a row of {} values for table {} of {} columns",
                row.len(),
                table.name,
                table.columns.len()
            )));
        }
        for (i, (column, value)) in table.columns.iter().zip(row).enumerate() {
            if value.is_null() && (!column.nullable || table.primary_key.contains(&i)) {
                return Err(Error::Constraint {
                    constraint: "NOT NULL",
                    detail: format!("{}.{}", table.name, column.name),
                });
            }
        }
        Ok(())
    }

    /// Adds `row`'s entry to `index`, refusing a duplicate in a UNIQUE one;
    /// `row_key` is the row's engine key (`layout::row_key` of `key`).
    fn add_entry(
        &mut self,
        table: &Table,
        index: &Index,
        key: &RowKey,
        row_key: &[&[u8]],
        row: &Row,
    ) -> Result<()> {
        let values = index
            .columns
            .iter()
            .map(|&c| row.get(c).unwrap_or(&Value::Null));
        let mut entry = self.open.key.take().unwrap_or_else(|| space_key(0));
        entry.clear();
        entry.append_with(|entry| {
            layout::index_key_into(index.id, index.unique, values.clone(), &key.0, entry);
        });
        // A unique entry without NULLs is keyed by its values alone (any
        // row may own it); every other entry's key ends with its row's.
        let keyed_by_values = index.unique && !values.clone().any(Value::is_null);
        let added = self.add_built_entry(table, index, key, row_key, &entry, keyed_by_values);
        self.open.key = Some(entry);
        added
    }

    /// [`TxnStore::add_entry`] of the entry `entry`, built.
    fn add_built_entry(
        &mut self,
        table: &Table,
        index: &Index,
        key: &RowKey,
        row_key: &[&[u8]],
        entry: &SpacedKey,
        keyed_by_values: bool,
    ) -> Result<()> {
        if keyed_by_values
            && space_get_for_update(&self.open.tx, entry.user_key())?
                .is_some_and(|existing| existing != key.0)
        {
            return Err(Error::Constraint {
                constraint: "UNIQUE",
                detail: index
                    .columns
                    .iter()
                    .map(|&c| format!("{}.{}", table.name, table.columns[c].name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        // The entry's value is the row key: a share of it when it is in
        // the transaction's arena (a reference count), a copy into the
        // arena otherwise, since a clone of a `Bytes` that owns its vector
        // gives it a shared header (an allocation as dear as the copy).
        let value = if key.0.is_unique() {
            self.open.arena.copy(&key.0)
        } else {
            key.0.clone()
        };
        if keyed_by_values {
            return space_set_owned(&mut self.open.tx, entry.user_key(), value);
        }
        // An entry keyed by its row's key has a value exactly while that
        // row does (with these values): every commit that writes or
        // deletes a row writes or deletes its entries, and index ids are
        // never reused. That makes it the row's dependent.
        space_set_dependent(&mut self.open.tx, entry, value, row_key)
    }

    fn remove_entry(&mut self, index: &Index, key: &RowKey, row: &Row) -> Result<()> {
        let values = index
            .columns
            .iter()
            .map(|&c| row.get(c).unwrap_or(&Value::Null));
        space_delete(
            &mut self.open.tx,
            &layout::index_key_of(index.id, index.unique, values, &key.0),
        )
    }

    fn fetch_row(&self, table: &Table, key: &[u8]) -> Result<Option<Row>> {
        match space_get(self.tx(), &layout::row_key(table.id, key))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_table_row(table, &bytes)?)),
        }
    }
}

/// The values of `index`'s columns in `row`.
pub(crate) fn index_values(index: &Index, row: &Row) -> Vec<Value> {
    index
        .columns
        .iter()
        .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
        .collect()
}

/// The row key of a table with a primary key: its primary key values,
/// encoded straight from the row into a vector of exactly their length,
/// which `Bytes` owns as it is (a vector with room to spare is shared
/// through a header of its own: a second allocation, kept as long as any
/// clone).
pub(crate) fn pk_row_key(table: &Table, row: &Row) -> RowKey {
    let len = table
        .primary_key
        .iter()
        .map(|&c| encoded_key_len(row.get(c).unwrap_or(&Value::Null)))
        .sum();
    let mut key = Vec::with_capacity(len);
    pk_key_into(table, row, &mut key);
    debug_assert_eq!(key.len(), len);
    RowKey(Bytes::from(key))
}

/// `row`'s primary key columns of `table` encoded as a key, appended to
/// `out` (the bytes of [`pk_row_key`]).
fn pk_key_into(table: &Table, row: &Row, out: &mut Vec<u8>) {
    for &c in &table.primary_key {
        encode_key_value(row.get(c).unwrap_or(&Value::Null), out);
    }
}

/// Decodes a stored row of `table`, checking its width.
pub(crate) fn decode_table_row(table: &Table, bytes: &[u8]) -> Result<Row> {
    decode_table_columns(table, bytes, &[])
}

/// [`decode_table_row`] building only the values `columns` marks (an empty
/// `columns`: all of them), NULL in place of the others.
fn decode_table_columns(table: &Table, bytes: &[u8], columns: &[bool]) -> Result<Row> {
    let mut row = Vec::new();
    decode_table_columns_into(table, bytes, columns, &mut row)?;
    Ok(row)
}

/// [`decode_table_columns`] into `row`: its values are overwritten (a
/// TEXT value equal to the one it replaces keeps its allocation), its
/// allocation is kept.
pub(crate) fn decode_table_columns_into(
    table: &Table,
    bytes: &[u8],
    columns: &[bool],
    row: &mut Row,
) -> Result<()> {
    decode_row_columns_into(bytes, columns, row)?;
    check_width(table, row)
}

/// [`decode_table_columns_into`] with a scan's tests
/// (`decode_row_columns_tested_into`): `Ok(false)` for a row a test
/// rejected, of which only the columns up to the rejecting one were
/// decoded.
fn decode_table_columns_tested_into(
    table: &Table,
    bytes: &[u8],
    columns: &[bool],
    row: &mut Row,
    tests: &RowTests,
) -> Result<bool> {
    let kept = decode_row_columns_tested_into(bytes, columns, row, &tests.stops, |stop, value| {
        tests.rejects(stop, value)
    })?;
    check_width(table, row)?;
    Ok(kept)
}

/// A decoded row must have a value for each of its table's columns.
fn check_width(table: &Table, row: &Row) -> Result<()> {
    if row.len() != table.columns.len() {
        return Err(Error::Corrupted(format!(
            "a row of table {} has {} values, the table {} columns",
            table.name,
            row.len(),
            table.columns.len()
        )));
    }
    Ok(())
}

/// The rows of a table scan ([`TxnStore::table_cursor`]).
#[expect(
    clippy::large_enum_variant,
    reason = "one cursor per scan, boxed by its caller: its size costs nothing per row"
)]
enum TableCursor<'s> {
    /// Decoded from the transaction's scan a batch at a time.
    Stream {
        versions: pydb_txn::TxnScan<'s>,
        table: Table,
        wanted: Vec<bool>,
        /// Rows these reject are dropped where they were decoded.
        tests: RowTests,
        batch: RowBatch,
    },
    /// Copied from the rows an earlier scan of the statement kept.
    Kept { rows: ScannedRows, next: usize },
}

/// The tests a table scan runs on its rows where it decodes them, to
/// drop the rows the operators above would reject unseen: the filter's
/// integer bounds and a hash join's key bits, gathered into one test a
/// column. Each is only a necessary condition of what it stands for (see
/// [`IntegerBound`], [`KeyBits`]), so a row is dropped only when its
/// column holds an INTEGER that one of them rejects.
#[derive(Default)]
struct RowTests {
    /// The columns tested, ascending, each once: where the decoder asks
    /// (`decode_row_columns_tested_into`), so that a row rejected by an
    /// early column is not decoded further.
    stops: Vec<usize>,
    /// The test of each column of `stops`.
    tests: Vec<ColumnTest>,
}

/// The test of one column ([`RowTests`]): an INTEGER outside `low..=high`,
/// or absent from any of `keys`, is rejected.
struct ColumnTest {
    low: i64,
    high: i64,
    keys: Vec<KeyBits>,
}

impl RowTests {
    fn new(bounds: &[IntegerBound]) -> Self {
        let mut tests = RowTests::default();
        for bound in bounds {
            let test = tests.test_of(bound.column);
            test.low = test.low.max(bound.low);
            test.high = test.high.min(bound.high);
        }
        tests
    }

    fn add_keys(&mut self, column: usize, bits: KeyBits) {
        self.test_of(column).keys.push(bits);
    }

    /// The test of `column`, a new one (keeping every integer) if none.
    fn test_of(&mut self, column: usize) -> &mut ColumnTest {
        let at = match self.stops.binary_search(&column) {
            Ok(at) => at,
            Err(at) => {
                self.stops.insert(at, column);
                let keep_all = ColumnTest {
                    low: i64::MIN,
                    high: i64::MAX,
                    keys: Vec::new(),
                };
                self.tests.insert(at, keep_all);
                at
            }
        };
        &mut self.tests[at]
    }

    /// Whether the test of the `stop`th column of `stops` rejects
    /// `value`, that column's value.
    #[inline]
    fn rejects(&self, stop: usize, value: &Value) -> bool {
        match (value, self.tests.get(stop)) {
            (&Value::Integer(n), Some(test)) => {
                n < test.low || n > test.high || test.keys.iter().any(|k| !k.may_hold(n))
            }
            _ => false,
        }
    }

    /// Whether a test rejects `row`, decoded whole.
    fn rejects_row(&self, row: &[Value]) -> bool {
        self.stops.iter().enumerate().any(|(stop, &column)| {
            row.get(column)
                .is_some_and(|value| self.rejects(stop, value))
        })
    }
}

/// A table scan's batch of decoded rows: each row is decoded inside the
/// transaction layer's walk of the engine, from the bytes the engine
/// lends (`TxnScan::next_values_with`), so a row's bytes are never copied
/// on their way to the decoder; the rows are then handed out one by one.
///
/// The first batch is small (a scan under a LIMIT or a join that stops
/// early reads little) and each next one twice as large, up to
/// [`BATCH_VALUES`] values (rows times columns), so that the batch stays
/// in the CPU's cache while the operators above read it. A row handed out
/// is swapped with the caller's buffer, whose allocation the batch reuses
/// for a later row.
struct RowBatch {
    /// The decoded rows; the first `len` are this batch's.
    rows: Vec<Row>,
    len: usize,
    /// The next row to hand out.
    next: usize,
    /// How many rows the next batch takes.
    size: usize,
    /// A decoding error met after the batch's rows: returned after them.
    pending: Option<Error>,
}

/// The rows of a table scan's first batch.
const FIRST_BATCH: usize = 16;
/// A batch's largest number of values (rows times the table's columns).
const BATCH_VALUES: usize = 1024;

impl RowBatch {
    fn new() -> Self {
        RowBatch {
            rows: Vec::new(),
            len: 0,
            next: 0,
            size: FIRST_BATCH,
            pending: None,
        }
    }

    /// Moves the next row of the batch into `row`, refilling the batch
    /// from `versions` when it is used up; `false` at the end.
    fn next_into(
        &mut self,
        versions: &mut pydb_txn::TxnScan<'_>,
        table: &Table,
        wanted: &[bool],
        tests: &RowTests,
        row: &mut Row,
    ) -> Result<bool> {
        if self.next == self.len {
            if let Some(err) = self.pending.take() {
                return Err(err);
            }
            self.refill(versions, table, wanted, tests)?;
        }
        match self
            .rows
            .get_mut(self.next)
            .filter(|_| self.next < self.len)
        {
            Some(next) => {
                std::mem::swap(row, next);
                self.next += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Decodes the next batch of rows (none: the scan is over). A row
    /// that `tests` reject is decoded up to the rejecting column (damage
    /// up to there is still an error) and not kept: the next row is
    /// decoded into its place. A batch whose every row was rejected is
    /// followed by the next at once, so that an empty batch means the end.
    fn refill(
        &mut self,
        versions: &mut pydb_txn::TxnScan<'_>,
        table: &Table,
        wanted: &[bool],
        tests: &RowTests,
    ) -> Result<()> {
        loop {
            let rows = &mut self.rows;
            let mut len = 0;
            let mut failed = None;
            let asked = self.size;
            let handed = versions.next_values_with(asked, |value| {
                // Into a row of an earlier batch (its allocations reused), or
                // a new one at the end (the rows up to `len` are this batch's).
                let decoded = match rows.get_mut(len) {
                    Some(row) => decode_table_columns_tested_into(table, value, wanted, row, tests),
                    None => decode_table_columns(table, value, wanted).map(|row| {
                        let kept = !tests.rejects_row(&row);
                        rows.push(row);
                        kept
                    }),
                };
                match decoded {
                    Ok(kept) => {
                        len += usize::from(kept);
                        std::ops::ControlFlow::Continue(())
                    }
                    Err(err) => {
                        failed = Some(err);
                        std::ops::ControlFlow::Break(())
                    }
                }
            });
            self.len = len;
            self.next = 0;
            let largest = (BATCH_VALUES / table.columns.len().max(1)).max(FIRST_BATCH);
            self.size = (self.size * 2).min(largest);
            let failed = match handed {
                Ok(handed) if failed.is_none() && len == 0 && handed == asked => continue,
                Ok(_) => failed,
                Err(err) => failed.or(Some(err.into())),
            };
            return match failed {
                None => Ok(()),
                Some(err) => {
                    if len > 0 {
                        // The rows decoded before the error first.
                        self.pending = Some(err);
                        Ok(())
                    } else {
                        Err(err)
                    }
                }
            };
        }
    }
}

impl RowCursor for TableCursor<'_> {
    fn next_into(&mut self, row: &mut Row) -> Result<bool> {
        match self {
            TableCursor::Stream {
                versions,
                table,
                wanted,
                tests,
                batch,
            } => batch.next_into(versions, table, wanted, tests, row),
            TableCursor::Kept { rows, next } => match rows.get(*next) {
                Some(kept) => {
                    *next += 1;
                    row.clone_from(kept);
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }

    fn drop_absent_keys(&mut self, column: usize, bits: KeyBits) {
        // Kept rows are copied as they are: the hint is only a hint.
        if let TableCursor::Stream { tests, .. } = self {
            tests.add_keys(column, bits);
        }
    }
}

impl TxnStore<'_> {
    /// A table scan of the statement ([`Store::scan_columns`]). The first
    /// scan of a table (with these columns) streams: each row is decoded
    /// as it is pulled, so a filter above drops it while its bytes are
    /// still in cache, and no list of the table's keys and values is ever
    /// built. Only the values are asked for: the keys, which nobody above
    /// reads, are never built. A second scan (a correlated subquery's)
    /// keeps the decoded rows for the scans after it.
    fn table_cursor(
        &self,
        table: &Table,
        columns: &[bool],
        bounds: &[IntegerBound],
    ) -> Result<TableCursor<'_>> {
        let columns = if columns.contains(&false) {
            columns
        } else {
            &[]
        };
        let id = (table.id, columns.to_vec());
        let seen = self.scanned.borrow().get(&id).cloned();
        if let Some(Some(rows)) = seen {
            return Ok(TableCursor::Kept { rows, next: 0 });
        }
        let versions = self.tx().scan_in(
            Keyspace::Sql,
            layout::prefix_range(layout::object_prefix(ROWS, table.id)),
        )?;
        let mut cursor = TableCursor::Stream {
            versions,
            table: table.clone(),
            wanted: columns.to_vec(),
            // Not when the rows are kept for later scans, which may not
            // have the same filter.
            tests: RowTests::new(if seen.is_none() { bounds } else { &[] }),
            batch: RowBatch::new(),
        };
        if seen.is_none() {
            self.scanned.borrow_mut().insert(id, None);
            return Ok(cursor);
        }
        let mut rows = Vec::new();
        let mut row = Vec::new();
        while cursor.next_into(&mut row)? {
            rows.push(std::mem::take(&mut row));
        }
        let rows = Arc::new(rows);
        self.scanned.borrow_mut().insert(id, Some(rows.clone()));
        Ok(TableCursor::Kept { rows, next: 0 })
    }
}

impl Store for TxnStore<'_> {
    fn table(&self, name: &str) -> Result<Option<Arc<Table>>> {
        Ok(self.catalog()?.tables.get(&lower(name)).cloned())
    }

    fn view(&self, name: &str) -> Result<Option<Arc<View>>> {
        Ok(self.catalog()?.views.get(&lower(name)).cloned())
    }

    fn tables(&self) -> Result<Vec<Arc<Table>>> {
        Ok(self.catalog()?.tables.values().cloned().collect())
    }

    fn views(&self) -> Result<Vec<Arc<View>>> {
        Ok(self.catalog()?.views.values().cloned().collect())
    }

    fn create_table(&mut self, mut table: Table) -> Result<Arc<Table>> {
        self.scanned.get_mut().clear();
        let catalog = self.catalog()?;
        table.name = lower(&table.name);
        self.check_name_free(&catalog, &table.name)?;
        if table.columns.is_empty() {
            return Err(Error::Invalid(format!(
                "table {} has no columns",
                table.name
            )));
        }
        let width = table.columns.len();
        if let Some(bad) = table
            .primary_key
            .iter()
            .chain(table.indexes.iter().flat_map(|i| i.columns.iter()))
            .find(|&&c| c >= width)
        {
            return Err(Error::Invalid(format!(
                "column position {bad} in a table of {width} columns"
            )));
        }
        for (i, column) in table.columns.iter().enumerate() {
            if table.columns[..i]
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&column.name))
            {
                return Err(Error::Duplicate {
                    kind: "column",
                    name: column.name.clone(),
                    what: "already exists",
                });
            }
        }
        table.id = self.next_id()?;
        for i in 0..table.indexes.len() {
            let name = lower(&table.indexes[i].name);
            Self::check_index_name_free(&catalog, &name)?;
            if table.indexes[..i].iter().any(|x| x.name == name) {
                return Err(Error::Duplicate {
                    kind: "index",
                    name,
                    what: "already exists",
                });
            }
            let id = self.next_id()?;
            let index = &mut table.indexes[i];
            index.name = name;
            index.id = id;
            index.table = table.name.clone();
        }
        self.write_table(&table)?;
        self.catalog_changed()?;
        Ok(Arc::new(table))
    }

    fn drop_table(&mut self, name: &str) -> Result<()> {
        self.scanned.get_mut().clear();
        let name = lower(name);
        let table = self.table(&name)?.ok_or_else(|| Error::Undefined {
            kind: "table",
            name: name.clone(),
        })?;
        self.delete_prefix(layout::object_prefix(ROWS, table.id))?;
        for index in &table.indexes {
            self.delete_prefix(layout::object_prefix(INDEXES, index.id))?;
        }
        space_delete(
            &mut self.open.tx,
            &layout::catalog_key(CATALOG_TABLE, &table.name),
        )?;
        space_delete(
            &mut self.open.tx,
            &layout::catalog_key(CATALOG_STATS, &table.name),
        )?;
        self.catalog_changed()
    }

    fn create_index(&mut self, mut index: Index) -> Result<()> {
        self.scanned.get_mut().clear();
        let catalog = self.catalog()?;
        index.name = lower(&index.name);
        Self::check_index_name_free(&catalog, &index.name)?;
        let table = catalog
            .tables
            .get(&lower(&index.table))
            .ok_or_else(|| Error::Undefined {
                kind: "table",
                name: index.table.clone(),
            })?
            .clone();
        if let Some(bad) = index.columns.iter().find(|&&c| c >= table.columns.len()) {
            return Err(Error::Invalid(format!(
                "column position {bad} in table {} of {} columns",
                table.name,
                table.columns.len()
            )));
        }
        index.table = table.name.clone();
        index.id = self.next_id()?;
        let rows = self.scan(&table)?.collect::<Result<Vec<_>>>()?;
        for (key, row) in &rows {
            let row_key = layout::row_key(table.id, &key.0);
            self.add_entry(&table, &index, key, &[&row_key], row)?;
        }
        let mut updated = (*table).clone();
        updated.indexes.push(index);
        self.write_table(&updated)?;
        self.catalog_changed()
    }

    fn drop_index(&mut self, name: &str) -> Result<()> {
        self.scanned.get_mut().clear();
        let catalog = self.catalog()?;
        let (table, index) = catalog.index(name).ok_or_else(|| Error::Undefined {
            kind: "index",
            name: name.to_owned(),
        })?;
        let mut updated = (**table).clone();
        updated.indexes.retain(|i| i.id != index.id);
        self.delete_prefix(layout::object_prefix(INDEXES, index.id))?;
        self.write_table(&updated)?;
        self.catalog_changed()
    }

    fn create_view(&mut self, mut view: View) -> Result<()> {
        let catalog = self.catalog()?;
        view.name = lower(&view.name);
        self.check_name_free(&catalog, &view.name)?;
        let key = layout::catalog_key(CATALOG_VIEW, &view.name);
        space_set(&mut self.open.tx, &key, &records::encode_view(&view))?;
        self.catalog_changed()
    }

    fn drop_view(&mut self, name: &str) -> Result<()> {
        let name = lower(name);
        if self.view(&name)?.is_none() {
            return Err(Error::Undefined { kind: "view", name });
        }
        space_delete(&mut self.open.tx, &layout::catalog_key(CATALOG_VIEW, &name))?;
        self.catalog_changed()
    }

    fn scan(&self, table: &Table) -> Result<RowIter<'_>> {
        let versions = self.tx().scan_in(
            Keyspace::Sql,
            layout::prefix_range(layout::object_prefix(ROWS, table.id)),
        )?;
        let table = table.clone();
        Ok(Box::new(versions.map(move |item| {
            let (key, value) = item?;
            let row = decode_table_row(&table, &value)?;
            Ok((RowKey(key.slice(ROW_KEY_PREFIX_LEN..)), row))
        })))
    }

    fn scan_columns(&self, table: &Table, columns: &[bool]) -> Result<RowsIter<'_>> {
        let mut cursor = self.table_cursor(table, columns, &[])?;
        Ok(Box::new(std::iter::from_fn(move || {
            let mut row = Vec::new();
            match cursor.next_into(&mut row) {
                Ok(true) => Some(Ok(row)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })))
    }

    fn scan_cursor(
        &self,
        table: &Table,
        columns: &[bool],
        bounds: &[IntegerBound],
    ) -> Result<RowCursorBox<'_>> {
        Ok(Box::new(self.table_cursor(table, columns, bounds)?))
    }

    fn index_scan(&self, table: &Table, index: &Index, range: &IndexRange) -> Result<RowIter<'_>> {
        let items = space_scan(
            self.tx(),
            layout::index_range(index.id, &range.start, &range.end),
        )?;
        let table = table.clone();
        Ok(Box::new(items.into_iter().map(move |(entry, row_key)| {
            let row = self.fetch_row(&table, &row_key)?.ok_or_else(|| {
                Error::Corrupted(format!(
                    "index {} entry {entry:?} points to a missing row of {}",
                    index_name_of(&table, &entry),
                    table.name
                ))
            })?;
            Ok((RowKey(row_key), row))
        })))
    }

    fn index_only_scan(
        &self,
        table: &Table,
        index: &Index,
        range: &IndexRange,
        reverse: bool,
    ) -> Result<RowIter<'_>> {
        covering::index_only_rows(self.tx(), table, index, range, reverse)
    }

    fn get_by_pk(&self, table: &Table, pk: &[Value]) -> Result<Option<(RowKey, Row)>> {
        if table.primary_key.is_empty() {
            return Err(Error::Invalid(format!(
                "table {} has no primary key",
                table.name
            )));
        }
        let key = RowKey(Bytes::from(encode_key(pk)));
        Ok(self.fetch_row(table, &key.0)?.map(|row| (key, row)))
    }

    fn insert(&mut self, table: &Table, row: Row) -> Result<RowKey> {
        self.scanned.get_mut().clear();
        Self::check_row(table, &row)?;
        let key = self.new_row_key(table, &row)?;
        // The row's engine key, held as its table's prefix and row key:
        // built once into the buffer the transaction keeps, and named in
        // those two pieces as its index entries' owner.
        let prefix = layout::row_prefix(table.id);
        let encoded = self.open.encode_row(&row);
        let mut engine_key = self.open.key.take().unwrap_or_else(|| space_key(0));
        engine_key.clear();
        engine_key.append_with(|engine_key| {
            engine_key.extend_from_slice(&prefix);
            engine_key.extend_from_slice(&key.0);
        });
        let seen = if table.primary_key.is_empty() {
            // `new_row_key` found the id free.
            space_set_owned(&mut self.open.tx, engine_key.user_key(), encoded).map(|()| None)
        } else {
            space_insert_owned(&mut self.open.tx, &engine_key, encoded)
        };
        self.open.key = Some(engine_key);
        if seen?.is_some() {
            return Err(pk_violation(table));
        }
        // The row is written before its index entries; a UNIQUE violation
        // below leaves it in the write buffer, which is harmless: a failed
        // statement's transaction is never committed (see `session`).
        for index in &table.indexes {
            self.add_entry(table, index, &key, &[&prefix, &key.0], &row)?;
        }
        Ok(key)
    }

    fn update(&mut self, table: &Table, key: &RowKey, old: &Row, new: Row) -> Result<RowKey> {
        self.scanned.get_mut().clear();
        Self::check_row(table, &new)?;
        let new_key = if table.primary_key.is_empty() {
            key.clone()
        } else {
            pk_row_key(table, &new)
        };
        let new_row_key = layout::row_key(table.id, &new_key.0);
        if new_key != *key {
            if space_get_for_update(self.tx(), &new_row_key)?.is_some() {
                return Err(pk_violation(table));
            }
            space_delete(&mut self.open.tx, &layout::row_key(table.id, &key.0))?;
        }
        for index in &table.indexes {
            // An entry whose key and values stay is left as it is
            // (compared in place: most updates change no indexed column).
            if new_key == *key && index.columns.iter().all(|&c| old.get(c) == new.get(c)) {
                continue;
            }
            self.remove_entry(index, key, old)?;
            self.add_entry(table, index, &new_key, &[&new_row_key], &new)?;
        }
        let encoded = self.open.encode_row(&new);
        space_set_owned(&mut self.open.tx, &new_row_key, encoded)?;
        Ok(new_key)
    }

    fn delete(&mut self, table: &Table, key: &RowKey, row: &Row) -> Result<()> {
        self.scanned.get_mut().clear();
        for index in &table.indexes {
            self.remove_entry(index, key, row)?;
        }
        space_delete(&mut self.open.tx, &layout::row_key(table.id, &key.0))
    }

    fn catalog_token(&self) -> Result<Option<CatalogToken>> {
        // A catalog this transaction changed is decoded again at each
        // statement: a fresh token each time, so no plan outlives it.
        Ok(Some(CatalogToken(self.catalog()?)))
    }

    fn table_stats(&self, table: &Table) -> Result<Option<Arc<TableStats>>> {
        match self.catalog()?.stats.get(&table.name) {
            None => Ok(None),
            Some(Ok(stats)) => Ok(Some(stats.clone())),
            Some(Err(damage)) => Err(Error::Corrupted(damage.clone())),
        }
    }

    fn set_table_stats(&mut self, table: &Table, stats: TableStats) -> Result<()> {
        let current = self.table(&table.name)?.ok_or_else(|| Error::Undefined {
            kind: "table",
            name: table.name.clone(),
        })?;
        if current.id != table.id || stats.columns.len() != current.columns.len() {
            return Err(Error::Invalid(format!(
                "statistics of {} columns do not describe table {}",
                stats.columns.len(),
                table.name
            )));
        }
        let key = layout::catalog_key(CATALOG_STATS, &current.name);
        space_set(
            &mut self.open.tx,
            &key,
            &records::encode_stats(current.id, &stats),
        )?;
        self.catalog_changed()
    }
}

fn pk_violation(table: &Table) -> Error {
    Error::Constraint {
        constraint: "PRIMARY KEY",
        detail: table
            .primary_key
            .iter()
            .map(|&c| format!("{}.{}", table.name, table.columns[c].name))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn index_name_of(table: &Table, entry: &[u8]) -> String {
    let id = entry
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes);
    table
        .indexes
        .iter()
        .find(|i| Some(i.id) == id)
        .map_or_else(|| "?".to_owned(), |i| i.name.clone())
}

#[cfg(test)]
mod tests;
