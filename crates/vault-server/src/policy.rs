//! Access policies: path globs and the decision rule.
//!
//! A policy grants (`allow`) or refuses (`deny`) `read` and/or `write` on the secrets of one
//! vault whose path matches `secret_path_pattern`, to one user or agent. Patterns are `/`
//! separated like paths: `**` as a whole segment matches any number of segments (zero
//! included), `*` inside a segment matches any characters of that one segment (`*` alone is one
//! whole segment, `db-*` every segment starting with `db-`).
//!
//! Decision for a principal, a path and a permission: among the policies that are not expired,
//! name the permission and match the path, the highest `priority` wins; at equal priority a
//! `deny` beats an `allow`; no matching policy denies. The vault's creator is not subject to
//! policies (full access). Policies are read from storage on every request, so a change or a
//! deletion applies to the next request; tokens carry identity only, never grants.

use crate::problem::ApiError;
use crate::storage::PolicyRecord;

/// The longest pattern (the same as the longest path).
const MAX_PATTERN_LEN: usize = crate::validate::MAX_PATH_LEN;

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    Read,
    Write,
}

impl Permission {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }
}

/// Checks a pattern: segments of `A-Z a-z 0-9 - _ . *`, none empty, `**` only as a whole
/// segment.
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::Validation(format!(
            "`secret_path_pattern` {why}; use `/`-separated segments of letters, digits, `-`, \
             `_`, `.` and `*`, with `**` alone as a segment for any number of segments"
        )))
    };
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return bad(&format!("must be 1 to {MAX_PATTERN_LEN} bytes"));
    }
    for segment in pattern.split('/') {
        if segment.is_empty() {
            return bad("has an empty segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'))
        {
            return bad("has a character outside the allowed set");
        }
        if segment.contains("**") && segment != "**" {
            return bad("uses `**` inside a segment");
        }
    }
    Ok(())
}

/// Whether `pattern` matches `path` (both `/`-separated).
pub(crate) fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    // matches[j] after step i: pattern[i..] matches path[j..]. Computed from the end, one row
    // at a time: O(pattern × path) whatever the number of `**` (no backtracking blow-up).
    let mut next = vec![false; path.len() + 1];
    if let Some(last) = next.last_mut() {
        *last = true;
    }
    for segment in pattern.iter().rev() {
        let mut row = vec![false; path.len() + 1];
        for j in (0..=path.len()).rev() {
            let here = if *segment == "**" {
                next.get(j).copied().unwrap_or(false) || row.get(j + 1).copied().unwrap_or(false)
            } else {
                path.get(j)
                    .is_some_and(|part| segment_matches(segment, part))
                    && next.get(j + 1).copied().unwrap_or(false)
            };
            if let Some(cell) = row.get_mut(j) {
                *cell = here;
            }
        }
        next = row;
    }
    next.first().copied().unwrap_or(false)
}

/// `*` matches any run of characters within one segment (the classic linear wildcard match).
fn segment_matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

/// The decision for `path` and `permission` under `policies` (those of one principal in one
/// vault) at time `now` (unix milliseconds).
pub(crate) fn allows(
    policies: &[PolicyRecord],
    path: &str,
    permission: Permission,
    now: i64,
) -> bool {
    let mut best: Option<(i64, bool)> = None;
    for policy in policies {
        if policy.expires_at.is_some_and(|at| at <= now)
            || !policy.permissions.iter().any(|p| p == permission.as_str())
            || !glob_matches(&policy.secret_path_pattern, path)
        {
            continue;
        }
        let allow = policy.effect == "allow";
        best = match best {
            None => Some((policy.priority, allow)),
            Some((priority, _)) if policy.priority > priority => Some((policy.priority, allow)),
            // Deny beats allow at equal priority.
            Some((priority, current)) if policy.priority == priority => {
                Some((priority, current && allow))
            }
            keep => keep,
        };
    }
    best.is_some_and(|(_, allow)| allow)
}

/// Whether any unexpired policy could grant something: a principal with none does not see
/// the vault at all.
pub(crate) fn grants_anything(policies: &[PolicyRecord], now: i64) -> bool {
    policies
        .iter()
        .any(|p| p.effect == "allow" && p.expires_at.is_none_or(|at| at > now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pattern: &str, perms: &[&str], effect: &str, priority: i64) -> PolicyRecord {
        PolicyRecord {
            id: "p".into(),
            vault_id: "v".into(),
            secret_path_pattern: pattern.into(),
            principal_type: "agent".into(),
            principal_id: "a".into(),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
            effect: effect.into(),
            priority,
            expires_at: None,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn globs_match_segments() {
        for (pattern, path, expected) in [
            ("db/*", "db/password", true),
            ("db/*", "db/prod/password", false),
            ("db/**", "db/prod/password", true),
            ("db/**", "db", true),
            ("**", "a/b/c", true),
            ("**/password", "db/prod/password", true),
            ("**/password", "password", true),
            ("**/password", "db/passwords", false),
            ("db/*/password", "db/prod/password", true),
            ("db/*/password", "db/password", false),
            ("db-*", "db-prod", true),
            ("db-*", "db", false),
            ("*-key", "api-key", true),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "a/b/c/y", false),
            ("exact/path", "exact/path", true),
            ("exact/path", "exact/paths", false),
        ] {
            assert_eq!(glob_matches(pattern, path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let pattern = vec!["**"; 200].join("/") + "/x";
        let path = vec!["a"; 200].join("/");
        assert!(!glob_matches(&pattern, &path));
        assert!(segment_matches(&"*".repeat(100), ""));
        assert!(!segment_matches(&"*a".repeat(100), &"a".repeat(99)));
    }

    #[test]
    fn patterns_are_validated() {
        for good in ["db/*", "**", "a/**/b", "db-*.txt"] {
            assert!(validate_pattern(good).is_ok(), "{good}");
        }
        for bad in ["", "a//b", "/a", "a/", "a/**b", "a/***", "a b", "a\\b"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn priority_then_deny_then_default_deny() {
        let now = 10;
        assert!(!allows(&[], "db/x", Permission::Read, now));
        let allow = policy("db/**", &["read"], "allow", 0);
        assert!(allows(
            std::slice::from_ref(&allow),
            "db/x",
            Permission::Read,
            now
        ));
        assert!(!allows(
            std::slice::from_ref(&allow),
            "db/x",
            Permission::Write,
            now
        ));
        assert!(!allows(
            std::slice::from_ref(&allow),
            "other",
            Permission::Read,
            now
        ));
        let deny = policy("db/secret", &["read"], "deny", 0);
        assert!(!allows(
            &[allow.clone(), deny.clone()],
            "db/secret",
            Permission::Read,
            now
        ));
        assert!(allows(
            &[allow.clone(), deny.clone()],
            "db/other",
            Permission::Read,
            now
        ));
        let high = policy("db/secret", &["read"], "allow", 5);
        assert!(allows(
            &[allow.clone(), deny.clone(), high],
            "db/secret",
            Permission::Read,
            now
        ));
        let mut expired = policy("**", &["read", "write"], "allow", 9);
        expired.expires_at = Some(now);
        assert!(!allows(&[expired.clone()], "x", Permission::Write, now));
        assert!(!grants_anything(&[expired, deny], now));
    }
}
