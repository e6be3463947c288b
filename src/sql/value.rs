use std::sync::Arc;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::SqlError;

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}
impl From<u64> for SqlValue {
    fn from(v: u64) -> Self {
        SqlValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        SqlValue::Int(v.into())
    }
}
impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Int(v.into())
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(v.into())
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// Builds a `Vec<SqlValue>` from anything convertible: `sql_params![a, b, c]`.
#[macro_export]
macro_rules! sql_params {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::sql::SqlValue::from($value)),*]
    };
}

/// One result row: its values, and the names of its statement's columns
/// (shared by every row of one query).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub Vec<SqlValue>, pub(super) Columns);

/// The column names of a statement's result, shared by its rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(Arc<[Box<str>]>);

impl Columns {
    pub(super) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Columns(names.into_iter().map(Box::from).collect())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|c| &**c == name)
    }
}

impl SqlRow {
    /// Column `index` converted to `T`.
    pub fn get<T: FromSqlValue>(&self, index: usize) -> Result<T, SqlError> {
        let value = self.0.get(index).ok_or(SqlError::Column { column: index, problem: "no such column".into() })?;
        T::from_sql_value(value).map_err(|problem| SqlError::Column { column: index, problem })
    }

    /// The column called `name` (as the statement names it: `AS` aliases
    /// included) converted to `T`. A row has a few dozen columns at most: the
    /// name is found by a scan of the statement's names, shorter than hashing.
    pub fn get_by_name<T: FromSqlValue>(&self, name: &str) -> Result<T, SqlError> {
        let index = self
            .1
            .index_of(name)
            .ok_or_else(|| SqlError::Column { column: self.0.len(), problem: format!("no column named {name}") })?;
        let value =
            self.0.get(index).ok_or_else(|| SqlError::Column { column: index, problem: "no such column".into() })?;
        T::from_sql_value(value)
            .map_err(|problem| SqlError::Column { column: index, problem: format!("{name}: {problem}") })
    }
}

pub trait FromSqlValue: Sized {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String>;
}

impl FromSqlValue for i64 {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Int(v) => Ok(*v),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromSqlValue for u64 {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        let v = i64::from_sql_value(value)?;
        u64::try_from(v).map_err(|_| format!("expected a non-negative integer, found {v}"))
    }
}
impl FromSqlValue for bool {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        Ok(i64::from_sql_value(value)? != 0)
    }
}
impl FromSqlValue for f64 {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Real(v) => Ok(*v),
            SqlValue::Int(v) => Ok(*v as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl FromSqlValue for String {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Text(v) => Ok(v.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromSqlValue for Vec<u8> {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Blob(v) => Ok(v.clone()),
            SqlValue::Text(v) => Ok(v.clone().into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromSqlValue> FromSqlValue for Option<T> {
    fn from_sql_value(value: &SqlValue) -> Result<Self, String> {
        match value {
            SqlValue::Null => Ok(None),
            other => T::from_sql_value(other).map(Some),
        }
    }
}

/// Binds to whatever PostgreSQL type the statement expects, so one value
/// type serves every column (and `NULL` binds anywhere).
impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to {ty}").into()),
            },
            SqlValue::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            SqlValue::Text(v) => v.to_sql(ty, out),
            SqlValue::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name() {
        let row = SqlRow(vec![SqlValue::Int(7), SqlValue::Text("x".into())], Columns::new(["n", "name"]));
        assert_eq!(row.get_by_name::<u64>("n").ok(), Some(7));
        assert_eq!(row.get_by_name::<String>("name").ok().as_deref(), Some("x"));
        assert!(matches!(row.get_by_name::<u64>("nam"), Err(SqlError::Column { column: 2, .. })));
        assert!(matches!(row.get_by_name::<u64>("name"), Err(SqlError::Column { column: 1, .. })));
    }
}
