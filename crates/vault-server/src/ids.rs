//! Random identifiers.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID from the OS CSPRNG, as lowercase hyphenated text.
pub(crate) fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// A time-ordered (version 7) UUID: the Unix time in milliseconds, then 74 random bits from the
/// OS CSPRNG, as lowercase hyphenated text.
///
/// For audit events. Their table keeps a unique index on the id, and one event is appended
/// per request: random ids put every insert on a random page of that index, ids that grow
/// with time append at its end. The time they reveal is the event's `occurred_at` anyway.
pub(crate) fn new_event_id() -> Result<String, getrandom::Error> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random)?;
    // A clock before 1970 gives 0: the id stays unique by its random bits, only not ordered.
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    Ok(uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_version_7_and_grow_with_time() {
        let first = new_event_id().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_event_id().unwrap();
        let parsed = uuid::Uuid::parse_str(&first).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(first.len(), 36);
        // Later ids sort after earlier ones (as text too: the index compares text).
        assert!(second > first, "{first} then {second}");
        assert_ne!(new_event_id().unwrap(), new_event_id().unwrap());
    }

    #[test]
    fn other_ids_are_random_version_4() {
        let id = uuid::Uuid::parse_str(&new_id().unwrap()).unwrap();
        assert_eq!(id.get_version(), Some(uuid::Version::Random));
    }
}
