//! The Redis-style commands as steps of a transaction.
//!
//! Each function here reads and writes one key through a
//! [`Transaction`] the caller holds. [`Db`](crate::Db) runs each of them
//! as a small transaction of its own (retried on a conflict); the server's
//! `MULTI`/`EXEC` runs a queue of them inside one transaction. Both go
//! through this one piece of code, so a command means the same thing
//! inside and outside `EXEC`.
//!
//! A function returns `Ok(Err(_))` for the caller's mistake (a value that is
//! not an integer): nothing was written, and running it again cannot help.
//! The outer error is the transaction's (a conflict, a failed engine).

use pydb_txn::{Result as TxnResult, Transaction};

use crate::db::{
    ExpireCondition, SetCondition, SetExpiry, SetOptions, SetOutcome, Ttl, parse_integer,
};
use crate::{Error, Result};

/// Redis's `SET` with its options: writes `value` if `options.condition`
/// holds, with the expiry `options.expiry`, and reports the old value (for
/// `SET ... GET`).
pub fn set_with(
    tx: &mut Transaction,
    key: &[u8],
    value: &[u8],
    options: SetOptions,
) -> TxnResult<SetOutcome> {
    let old = tx.get_with_deadline(key)?;
    let written = match options.condition {
        None => true,
        Some(SetCondition::IfAbsent) => old.is_none(),
        Some(SetCondition::IfPresent) => old.is_some(),
    };
    if written {
        let deadline = match options.expiry {
            SetExpiry::Clear => None,
            SetExpiry::Keep => old.as_ref().and_then(|(_, d)| *d),
            SetExpiry::At(at) => Some(at),
        };
        tx.set_with_deadline(key, value, deadline)?;
    }
    Ok(SetOutcome {
        written,
        old: old.map(|(v, _)| v),
    })
}

/// Redis's `PEXPIREAT`: gives `key` the deadline `deadline_ms` (Unix ms) if
/// every one of `conditions` holds, keeping its value; returns whether it
/// did. A missing key is left alone (`false`); a deadline at or before now
/// deletes the key at once (`true`), as Redis does.
pub fn expire_at(
    tx: &mut Transaction,
    key: &[u8],
    deadline_ms: u64,
    conditions: &[ExpireCondition],
) -> TxnResult<bool> {
    let Some((value, current)) = tx.get_with_deadline(key)? else {
        return Ok(false);
    };
    let holds = |condition: &ExpireCondition| match (*condition, current) {
        (ExpireCondition::Always, _) => true,
        (ExpireCondition::IfNone, current) => current.is_none(),
        (ExpireCondition::IfSome, current) => current.is_some(),
        (ExpireCondition::IfLater, None) => false,
        (ExpireCondition::IfLater, Some(d)) => deadline_ms > d,
        (ExpireCondition::IfEarlier, None) => true,
        (ExpireCondition::IfEarlier, Some(d)) => deadline_ms < d,
    };
    if !conditions.iter().all(holds) {
        return Ok(false);
    }
    if deadline_ms <= tx.now_ms() {
        tx.delete(key)?;
    } else {
        tx.set_with_deadline(key, &value, Some(deadline_ms))?;
    }
    Ok(true)
}

/// Redis's `PERSIST`: removes the deadline of `key`; returns whether it had
/// one.
pub fn persist(tx: &mut Transaction, key: &[u8]) -> TxnResult<bool> {
    Ok(match tx.get_with_deadline(key)? {
        Some((value, Some(_))) => {
            tx.set(key, &value)?;
            true
        }
        _ => false,
    })
}

/// Redis's `PTTL`: how long `key` has left.
pub fn ttl(tx: &Transaction, key: &[u8]) -> TxnResult<Ttl> {
    Ok(match tx.get_with_deadline(key)? {
        None => Ttl::Missing,
        Some((_, None)) => Ttl::Persistent,
        Some((_, Some(deadline))) => Ttl::Remaining(deadline.saturating_sub(tx.now_ms())),
    })
}

/// Redis's `INCRBY`: adds `delta` to the integer stored at `key` (a missing
/// key counts as 0) and returns the new value. The key keeps its expiry
/// deadline, as Redis's `INCR` does.
///
/// `Ok(Err(Error::NotAnInteger))` if the value is not the decimal text of a
/// signed 64-bit integer, `Ok(Err(Error::Overflow))` if the sum does not
/// fit; nothing is written then.
pub fn incr_by(tx: &mut Transaction, key: &[u8], delta: i64) -> TxnResult<Result<i64>> {
    let (current, deadline) = match tx.get_with_deadline(key)? {
        None => (0, None),
        Some((value, deadline)) => match parse_integer(&value) {
            Some(n) => (n, deadline),
            None => return Ok(Err(Error::NotAnInteger)),
        },
    };
    let Some(next) = current.checked_add(delta) else {
        return Ok(Err(Error::Overflow));
    };
    tx.set_with_deadline(key, next.to_string().as_bytes(), deadline)?;
    Ok(Ok(next))
}
