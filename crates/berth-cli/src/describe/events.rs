//! The Events section: kubectl's `DescribeEvents` table.

use super::*;

fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// kubectl's `DescribeEvents`: its own table, flushed apart from the rest.
pub(super) fn describe_events(w: &mut Writer, events: &[Event], now: Timestamp) {
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut events = events.to_vec();
    events.sort_by_key(event_time);
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in &events {
        let first = match (&e.event_time, &e.first_timestamp) {
            (Some(t), _) => since(t.0, now),
            (None, Some(t)) => since(t.0, now),
            (None, None) => "<unknown>".to_string(),
        };
        let age = if let Some(series) = &e.series {
            let last = series
                .last_observed_time
                .as_ref()
                .map_or("<unknown>".to_string(), |t| since(t.0, now));
            format!("{last} (x{} over {first})", series.count.unwrap_or(0))
        } else if e.count.unwrap_or(0) > 1 {
            let last = e
                .last_timestamp
                .as_ref()
                .map_or("<unknown>".to_string(), |t| since(t.0, now));
            format!("{last} (x{} over {first})", e.count.unwrap_or(0))
        } else {
            first
        };
        let source = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        w.write(
            1,
            &format!(
                "{}\t{}\t{age}\t{source}\t{}\n",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            ),
        );
    }
}
