//! The earliest and latest time of each block of log positions in a read
//! model's table, so that a `since`/`until` query starts and stops at the
//! blocks that can hold a match instead of walking the table from its first
//! row (with a million rows, a window that matches late or nothing took
//! hundreds of milliseconds). Correct whatever order the times come in: a
//! block whose latest time is before `since` holds no row at or after it.

use super::query::Filter;
use super::tables::Tables;
use crate::sql::{SqlDb, SqlError, SqlValue, Statement};
use crate::sql_params;
use crate::store::Position;

/// Positions per block: 512. A window's scan starts at most a block before
/// its first match (a few hundred row lookups, ~3 ms on SQLite), and the
/// ranges table has one row per 512 log positions.
const BLOCK_BITS: u32 = 9;

/// Widens the block of `position` to cover `time`. `upsert` is the table's
/// template from `time_ranges_upsert!`. Idempotent, so replays leave it as it was.
pub fn record(t: &Tables, upsert: &'static str, position: Position, time: i64) -> Statement {
    Statement::new(t.sql(upsert), sql_params![position.0 >> BLOCK_BITS, time, time])
}

/// What every time-ranges upsert contains (see `time_ranges_upsert!`).
const UPSERT_MARKER: &str = " (block, earliest, latest) VALUES (?, ?, ?) ON CONFLICT (block)";

/// Folds a batch's time-range upserts into one per table and block. They
/// commute (a minimum and a maximum), so they may all go last; the other
/// statements keep their order. A batch of a rebuild holds thousands of them
/// for a handful of blocks.
pub fn fold(statements: Vec<Statement>) -> Vec<Statement> {
    let mut others = Vec::with_capacity(statements.len());
    let mut folded: Vec<Statement> = Vec::new();
    for statement in statements {
        let block_and_times = match statement.params.as_slice() {
            [SqlValue::Int(block), SqlValue::Int(earliest), SqlValue::Int(latest)]
                if statement.sql.contains(UPSERT_MARKER) =>
            {
                Some((*block, *earliest, *latest))
            }
            _ => None,
        };
        let Some((block, earliest, latest)) = block_and_times else {
            others.push(statement);
            continue;
        };
        let same = folded
            .iter_mut()
            .find(|f| f.sql == statement.sql && matches!(f.params.first(), Some(SqlValue::Int(b)) if *b == block));
        match same.map(|f| f.params.as_mut_slice()) {
            Some([_, SqlValue::Int(e), SqlValue::Int(l)]) => {
                *e = (*e).min(earliest);
                *l = (*l).max(latest);
            }
            _ => folded.push(statement),
        }
    }
    others.append(&mut folded);
    others
}

/// `CREATE TABLE` template of a time-ranges table called `name`.
macro_rules! time_ranges_table {
    ($name:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS {p}",
            $name,
            " (block BIGINT PRIMARY KEY, earliest BIGINT NOT NULL, latest BIGINT NOT NULL)"
        )
    };
}

/// The upsert template of the time-ranges table called `name`.
macro_rules! time_ranges_upsert {
    ($name:literal) => {
        concat!(
            "INSERT INTO {p}",
            $name,
            " (block, earliest, latest) VALUES (?, ?, ?) ON CONFLICT (block) DO UPDATE SET ",
            "earliest = CASE WHEN excluded.earliest < {p}",
            $name,
            ".earliest THEN excluded.earliest ELSE {p}",
            $name,
            ".earliest END, latest = CASE WHEN excluded.latest > {p}",
            $name,
            ".latest THEN excluded.latest ELSE {p}",
            $name,
            ".latest END WHERE excluded.earliest < {p}",
            $name,
            ".earliest OR excluded.latest > {p}",
            $name,
            ".latest"
        )
    };
}
pub(crate) use {time_ranges_table, time_ranges_upsert};

/// The positions a query for times in `[since, until)` can match: `Some((from,
/// to))` with `from` inclusive and `to` exclusive (either open), or `None`
/// when no row can match. `table` is the time-ranges table's live name.
pub async fn positions_between(
    db: &SqlDb,
    table: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Option<(Option<u64>, Option<u64>)>, SqlError> {
    let mut from = None;
    if let Some(since) = since {
        let rows = db.query(&format!("SELECT MIN(block) FROM {table} WHERE latest >= ?"), sql_params![since]).await?;
        match rows.first().map(|r| r.get::<Option<u64>>(0)).transpose()?.flatten() {
            Some(block) => from = Some(block << BLOCK_BITS),
            None => return Ok(None),
        }
    }
    let mut to = None;
    if let Some(until) = until {
        let rows = db.query(&format!("SELECT MAX(block) FROM {table} WHERE earliest < ?"), sql_params![until]).await?;
        match rows.first().map(|r| r.get::<Option<u64>>(0)).transpose()?.flatten() {
            Some(block) => to = Some((block + 1) << BLOCK_BITS),
            None => return Ok(None),
        }
    }
    Ok(Some((from, to)))
}

/// The page's positions (after the cursor `after`) and `since`/`until` on a
/// read model that keeps its times per block of positions (`ranges`): the
/// time filter on `column`, plus the positions outside which no row can
/// match, so that a page never walks the table from its first row. One lower
/// bound on `position`: SQLite's planner uses only one of several.
/// `Ok(false)`: no row can match at all.
pub async fn positions_and_time_window(
    db: &SqlDb,
    filter: &mut Filter,
    after: u64,
    (column, ranges): (&str, &str),
    since: Option<i64>,
    until: Option<i64>,
) -> Result<bool, SqlError> {
    let (mut after, mut before) = (after, None);
    if since.is_some() || until.is_some() {
        let Some((from, to)) = positions_between(db, ranges, since, until).await? else {
            return Ok(false);
        };
        after = after.max(from.map_or(0, |from| from.saturating_sub(1)));
        before = to;
    }
    filter.and("position > ?", after);
    filter.and_some("position < ?", before);
    filter.time_range(column, since, until);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_one_upsert_per_table_and_block_with_the_widest_range() {
        const A: &str = time_ranges_upsert!("a_time_ranges");
        const B: &str = time_ranges_upsert!("b_time_ranges");
        let t = Tables::live();
        let other = |n: i64| Statement::new("INSERT INTO x VALUES (?)", sql_params![n]);
        let statements = vec![
            other(1),
            record(&t, A, Position(5), 50),
            record(&t, A, Position(6), 20),
            other(2),
            record(&t, B, Position(7), 70),
            record(&t, A, Position(1000), 10),
            record(&t, A, Position(1020), 90),
        ];
        let folded: Vec<(String, Vec<SqlValue>)> =
            fold(statements).into_iter().map(|s| (s.sql.into_owned(), s.params)).collect();
        let a = A.replace("{p}", "");
        let b = B.replace("{p}", "");
        assert_eq!(
            folded,
            vec![
                ("INSERT INTO x VALUES (?)".to_owned(), sql_params![1]),
                ("INSERT INTO x VALUES (?)".to_owned(), sql_params![2]),
                (a.clone(), sql_params![0, 20, 50]),
                (b, sql_params![0, 70, 70]),
                (a, sql_params![1, 10, 90]),
            ]
        );
    }
}
