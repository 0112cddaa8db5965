//! EXPLAIN ANALYZE's counters: rows, loops and time per operator.
//!
//! When a statement runs under EXPLAIN ANALYZE, its
//! [`Env`](super::eval::Env) carries a [`Profile`], and
//! [`build`](super::operators::build) wraps every operator it builds in an
//! [`Instrumented`] one. The wrapper times the operator's
//! construction (a sort or an aggregation reads its whole input there) and
//! each call to `next()`, counts the rows it returns, and when the operator
//! is dropped adds that *loop* to the node's slot in the profile. Without
//! a profile nothing is wrapped: a normal query pays one `Option` check per
//! operator built.
//!
//! A slot is keyed by the address of the plan node, which the operators
//! borrow and which therefore cannot move while the statement runs: the
//! same node built again (a correlated subquery's plan, once per outer
//! row) adds loops to the same slot. As in PostgreSQL, a loop counts only
//! if the operator was pulled at least once, and the time to the first
//! row is the time at the end of the first `next()` call, whether it
//! returned a row or not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::exec::operators::{BoxedOperator, Operator};
use crate::plan::Plan;
use crate::plan::explain::Actual;
use crate::value::Row;

/// The counters of every operator of one statement (see the module docs).
#[derive(Debug, Default)]
pub struct Profile {
    nodes: RefCell<HashMap<usize, Actual>>,
}

/// The key of a plan node's slot: its address.
fn key(plan: &Plan) -> usize {
    std::ptr::from_ref(plan) as usize
}

impl Profile {
    /// An empty profile.
    pub fn new() -> Rc<Profile> {
        Rc::new(Profile::default())
    }

    /// What `plan`'s operator did, if it ever ran.
    pub fn actual(&self, plan: &Plan) -> Option<Actual> {
        self.nodes.borrow().get(&key(plan)).copied()
    }

    /// Adds one loop of `plan`'s operator: `rows` returned, `startup` to
    /// the first row, `total` to the end.
    pub fn record(&self, plan: &Plan, rows: u64, startup: Duration, total: Duration) {
        let mut nodes = self.nodes.borrow_mut();
        let slot = nodes.entry(key(plan)).or_default();
        slot.loops += 1;
        slot.rows += rows;
        slot.startup += startup;
        slot.total += total;
    }
}

/// An operator that counts what the operator inside it does.
pub struct Instrumented<'a> {
    inner: BoxedOperator<'a>,
    plan: &'a Plan,
    profile: Rc<Profile>,
    /// Time spent so far in this loop (construction included).
    elapsed: Duration,
    /// `elapsed` at the end of the first `next()`.
    first: Option<Duration>,
    rows: u64,
}

impl<'a> Instrumented<'a> {
    /// Wraps `inner`, built for `plan` since `started`.
    pub fn new(
        inner: BoxedOperator<'a>,
        plan: &'a Plan,
        profile: Rc<Profile>,
        started: Instant,
    ) -> Self {
        Instrumented {
            inner,
            plan,
            profile,
            elapsed: started.elapsed(),
            first: None,
            rows: 0,
        }
    }
}

impl Operator for Instrumented<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        let started = Instant::now();
        let row = self.inner.next();
        self.elapsed += started.elapsed();
        if self.first.is_none() {
            self.first = Some(self.elapsed);
        }
        if let Ok(Some(_)) = row {
            self.rows += 1;
        }
        row
    }
}

impl Drop for Instrumented<'_> {
    fn drop(&mut self) {
        if let Some(first) = self.first {
            self.profile
                .record(self.plan, self.rows, first, self.elapsed);
        }
    }
}
