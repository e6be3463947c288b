//! Fewer statements for the same effect.

use super::Statement;

/// Most parameters one coalesced statement may bind (SQLite allows 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 30_000;

/// Merges runs of the same `INSERT … VALUES (…) ON CONFLICT … DO NOTHING`
/// into multi-row inserts. Equivalent to running them one by one (a row that
/// conflicts with an earlier row of the same statement is skipped too), and
/// far fewer statements for the database to execute.
pub fn coalesce_inserts(statements: Vec<Statement>) -> Vec<Statement> {
    fn split(sql: &str) -> Option<(&str, &str, &str)> {
        if !sql.trim_end().ends_with("DO NOTHING") || sql.contains("SELECT") {
            return None;
        }
        let values = sql.find("VALUES (")? + "VALUES ".len();
        let close = values + sql[values..].find(')')? + 1;
        Some((&sql[..values], &sql[values..close], &sql[close..]))
    }
    let mut out: Vec<Statement> = Vec::with_capacity(statements.len());
    let mut run: Vec<Statement> = Vec::new();
    let flush = |run: &mut Vec<Statement>, out: &mut Vec<Statement>| {
        if run.len() <= 1 {
            out.append(run);
            return;
        }
        let Some((head, group, tail)) = split(&run[0].sql) else {
            out.append(run);
            return;
        };
        let mut sql = String::with_capacity(head.len() + tail.len() + run.len() * (group.len() + 2));
        sql.push_str(head);
        for i in 0..run.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(group);
        }
        sql.push_str(tail);
        let params = run.drain(..).flat_map(|s| s.params).collect();
        out.push(Statement::new(sql, params));
    };
    for statement in statements {
        let joins = run
            .first()
            .is_some_and(|first| first.sql == statement.sql && (run.len() + 1) * statement.params.len() <= MAX_PARAMS)
            && split(&statement.sql).is_some();
        if !joins {
            flush(&mut run, &mut out);
        }
        run.push(statement);
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{coalesce_inserts, Statement};
    use crate::sql_params;

    #[test]
    fn runs_of_the_same_insert_become_one_multi_row_insert() {
        let insert = "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO NOTHING";
        let other = "UPDATE t SET b = ? WHERE a = ?";
        let statements = vec![
            Statement::new(insert, sql_params![1, "x"]),
            Statement::new(insert, sql_params![2, "y"]),
            Statement::new(other, sql_params!["z", 1]),
            Statement::new(insert, sql_params![3, "w"]),
        ];
        let merged = coalesce_inserts(statements);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].sql, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT (a) DO NOTHING");
        assert_eq!(merged[0].params, sql_params![1, "x", 2, "y"]);
        assert_eq!(merged[1].sql, other);
        assert_eq!(merged[2].sql, insert);
    }

    #[test]
    fn upserts_are_left_alone() {
        let upsert = "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a = excluded.a";
        let merged =
            coalesce_inserts(vec![Statement::new(upsert, sql_params![1]), Statement::new(upsert, sql_params![2])]);
        assert_eq!(merged.len(), 2);
    }
}
