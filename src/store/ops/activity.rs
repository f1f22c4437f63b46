//! Reading the activity log, `REG_LOG`, as Carbon writes it (and regfs, and other nodes):
//! newest first, paged by id.

use super::*;

/// `like`'s pattern for the paths at or below `prefix`, with `!` as the escape character.
fn below_pattern(prefix: &str) -> String {
    let escaped: String = prefix
        .chars()
        .flat_map(|c| match c {
            '!' | '%' | '_' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    if prefix == "/" {
        "/%".to_string()
    } else {
        format!("{escaped}/%")
    }
}

/// Entries of `REG_LOG` matching `q`, newest first (or, with `q.after`, the entries after it,
/// oldest first), at most `q.limit`. Paths are target paths in this database.
pub(crate) async fn activity(c: &mut Exec<'_>, t: i64, q: &LogQuery) -> Result<Vec<LogEntry>> {
    let mut sql = String::from(
        "SELECT REG_LOG_ID, REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, REG_ACTION_DATA \
         FROM REG_LOG WHERE REG_TENANT_ID = ?",
    );
    let pattern = q.below.as_deref().map(below_pattern);
    let mut args: Vec<Val<'_>> = args![t].to_vec();
    if let (Some(prefix), Some(pattern)) = (q.below.as_deref(), pattern.as_deref()) {
        sql.push_str(" AND (REG_PATH = ? OR REG_PATH LIKE ? ESCAPE '!')");
        args.extend(args![prefix, pattern]);
    }
    if let Some(since) = q.since {
        sql.push_str(" AND REG_LOGGED_TIME >= ?");
        args.extend(args![since]);
    }
    if let Some(user) = q.user.as_deref() {
        sql.push_str(" AND REG_USER_ID = ?");
        args.extend(args![user]);
    }
    let order = match (q.before, q.after) {
        (_, Some(after)) => {
            sql.push_str(" AND REG_LOG_ID > ?");
            args.extend(args![after]);
            "ASC"
        }
        (Some(before), None) => {
            sql.push_str(" AND REG_LOG_ID < ?");
            args.extend(args![before]);
            "DESC"
        }
        (None, None) => "DESC",
    };
    sql.push_str(&format!(
        " ORDER BY REG_LOG_ID {order} LIMIT {}",
        q.limit.max(1)
    ));
    let rows = c.fetch(&sql, &args).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let path = r.text(1)?.unwrap_or_default();
        // The server's collation may match more than the bytes asked for.
        if let Some(prefix) = q.below.as_deref()
            && !path::is_within(&path, prefix)
        {
            continue;
        }
        out.push(LogEntry {
            id: r.req_int(0)?,
            path,
            user: r.req_text(2)?,
            time: r.time(3)?,
            action: r.req_int(4)?,
            data: r.text(5)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::below_pattern;

    #[test]
    fn like_patterns_escape_the_wildcards_in_paths() {
        assert_eq!(below_pattern("/_system/config"), "/!_system/config/%");
        assert_eq!(below_pattern("/a%b!c"), "/a!%b!!c/%");
        assert_eq!(below_pattern("/"), "/%");
    }
}
