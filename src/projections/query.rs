//! What the read models' `list` queries share: a `WHERE` clause under
//! construction, and pages ordered by log position with the cursor of the
//! next one.

use crate::sql::{SqlDb, SqlError, SqlRow, SqlValue};

/// A `WHERE` clause under construction.
#[derive(Default)]
pub struct Filter {
    clauses: Vec<String>,
    pub params: Vec<SqlValue>,
}

impl Filter {
    pub fn and(&mut self, clause: &str, value: impl Into<SqlValue>) {
        self.clauses.push(clause.to_owned());
        self.params.push(value.into());
    }

    pub fn and_some(&mut self, clause: &str, value: Option<impl Into<SqlValue>>) {
        if let Some(value) = value {
            self.and(clause, value);
        }
    }

    /// `since`/`until` (microseconds since the epoch) on the micros column `column`.
    pub fn time_range(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        self.and_some(&format!("{column} >= ?"), since);
        self.and_some(&format!("{column} < ?"), until);
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// One page of a list, in log order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last item's position when the page is full: pass it as the next page's `after`.
    pub next_cursor: Option<u64>,
}

impl<T> Page<T> {
    pub fn empty() -> Self {
        Page { items: Vec::new(), next_cursor: None }
    }
}

/// Runs a list query and converts its rows: the page's items, and the cursor
/// of the next page when this one is full.
pub async fn fetch_page<T>(
    db: &SqlDb,
    sql: &str,
    params: Vec<SqlValue>,
    limit: u32,
    convert: impl Fn(&SqlRow) -> Result<T, SqlError>,
    position: impl Fn(&T) -> u64,
) -> Result<Page<T>, SqlError> {
    let rows = db.query(sql, params).await?;
    let items = rows.iter().map(convert).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_cursor(items.iter().map(position), items.len(), limit);
    Ok(Page { items, next_cursor })
}

/// The cursor of the next page: the last row's position when the page is full.
pub fn next_cursor(positions: impl DoubleEndedIterator<Item = u64>, returned: usize, limit: u32) -> Option<u64> {
    if returned == limit as usize {
        positions.last()
    } else {
        None
    }
}
