//! What every component's store shares on top of `skiff:sql`: the errors a store reports and
//! reading typed columns out of a row. The host decodes columns by their declared type on both
//! backends, so each reader expects exactly one kind of value.

use crate::bindings::skiff::sql::types::{Error as SqlError, Value, ValueKind};

/// Why a statement failed, as the API layer needs to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A unique constraint refused the write (the constraint's name when the backend says).
    UniqueViolation(Option<String>),
    /// The database is unreachable; worth retrying.
    Unavailable(String),
    /// Anything else: a bug, a broken schema or an unexpected row.
    Internal(String),
}

impl From<SqlError> for StoreError {
    fn from(error: SqlError) -> Self {
        match error {
            SqlError::UniqueViolation(constraint) => Self::UniqueViolation(constraint),
            SqlError::ConnectionFailed(cause) => Self::Unavailable(cause),
            other => Self::Internal(format!("{other:?}")),
        }
    }
}

/// Appends `value` to a statement's `params` and returns its placeholder (`$N`), for
/// statements whose parameter count depends on the input.
pub fn bind(params: &mut Vec<Value>, value: Value) -> String {
    params.push(value);
    format!("${}", params.len())
}

/// A text parameter, or a text NULL.
pub fn text_or_null(value: Option<&str>) -> Value {
    value.map_or(Value::Null(Some(ValueKind::Text)), |text| Value::Text(text.to_owned()))
}

/// One result row, read column by column. A column of an unexpected type is an internal error
/// that shows the row (in the log, never to the client).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a>(pub &'a [Value]);

impl Row<'_> {
    fn bad(&self) -> StoreError {
        StoreError::Internal(format!("unexpected row shape: {:?}", self.0))
    }

    /// A text column.
    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.0.get(index) {
            Some(Value::Text(text)) => Ok(text.clone()),
            _ => Err(self.bad()),
        }
    }

    /// A uuid column, in its canonical text form.
    pub fn uuid(&self, index: usize) -> Result<String, StoreError> {
        match self.0.get(index) {
            Some(Value::Uuid(text)) => Ok(text.clone()),
            _ => Err(self.bad()),
        }
    }

    /// A nullable text column.
    pub fn optional_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(index) {
            Some(Value::Null(_)) => Ok(None),
            Some(Value::Text(text)) => Ok(Some(text.clone())),
            _ => Err(self.bad()),
        }
    }

    /// A timestamp column, in microseconds since the epoch.
    pub fn timestamp(&self, index: usize) -> Result<i64, StoreError> {
        self.optional_timestamp(index)?.ok_or_else(|| self.bad())
    }

    /// A nullable timestamp column.
    pub fn optional_timestamp(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(index) {
            Some(Value::Timestamp(micros)) => Ok(Some(*micros)),
            Some(Value::Null(_)) => Ok(None),
            _ => Err(self.bad()),
        }
    }

    /// An `integer` (int32) column.
    pub fn int32(&self, index: usize) -> Result<i32, StoreError> {
        match self.0.get(index) {
            Some(Value::Int32(n)) => Ok(*n),
            _ => Err(self.bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_numbers_placeholders_after_the_fixed_parameters() {
        let mut params = vec![Value::Int64(1)];
        assert_eq!(bind(&mut params, Value::Text("a".into())), "$2");
        assert_eq!(bind(&mut params, Value::Text("b".into())), "$3");
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn columns_read_their_declared_kind() {
        let row = [
            Value::Uuid("id".into()),
            Value::Timestamp(5),
            Value::Null(Some(ValueKind::Timestamp)),
            Value::Int32(2),
            Value::Text("t".into()),
        ];
        let row = Row(&row);
        assert_eq!(row.uuid(0), Ok("id".to_owned()));
        assert_eq!(row.timestamp(1), Ok(5));
        assert_eq!(row.optional_timestamp(2), Ok(None));
        assert_eq!(row.optional_text(2), Ok(None));
        assert_eq!(row.int32(3), Ok(2));
        assert_eq!(row.text(4), Ok("t".to_owned()));
    }

    #[test]
    fn unexpected_columns_are_internal_errors() {
        let row = [Value::Boolean(true), Value::Text("1970-01-01T00:00:00Z".into()), Value::Int64(2)];
        let row = Row(&row);
        assert!(matches!(row.text(0), Err(StoreError::Internal(_))));
        assert!(matches!(row.uuid(1), Err(StoreError::Internal(_))));
        assert!(matches!(row.timestamp(1), Err(StoreError::Internal(_))));
        assert!(matches!(row.timestamp(7), Err(StoreError::Internal(_))));
        assert!(matches!(row.int32(2), Err(StoreError::Internal(_))));
    }

    #[test]
    fn sql_errors_keep_what_the_caller_can_act_on() {
        assert_eq!(StoreError::from(SqlError::UniqueViolation(None)), StoreError::UniqueViolation(None));
        assert_eq!(StoreError::from(SqlError::ConnectionFailed("down".into())), StoreError::Unavailable("down".into()));
        assert!(matches!(StoreError::from(SqlError::BadQuery("x".into())), StoreError::Internal(_)));
        assert!(matches!(text_or_null(None), Value::Null(Some(ValueKind::Text))));
    }
}
