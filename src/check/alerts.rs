//! Which of the shipped alerts (alerts/secure-channel.rules.yml) can fire
//! for each pool build, as docs/pool-signals.md explains. A test keeps this
//! table, the rules file and the doc's table in step.

use serde::Serialize;

use super::Build;

/// One shipped alert and the builds whose documents carry its signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertReach {
    pub alert: &'static str,
    pub published: bool,
    pub returning: bool,
    /// What the alert watches, or why a build cannot show it.
    pub why: &'static str,
}

/// Every alert in the shipped rules, in the rules file's order.
pub const ALERTS: &[AlertReach] = &[
    AlertReach {
        alert: "SecureChannelExporterDown",
        published: true,
        returning: true,
        why: "Prometheus' own up series: the exporter does not answer",
    },
    AlertReach {
        alert: "SecureChannelPoolDown",
        published: true,
        returning: true,
        why: "secure_channel_up: the status document is not fetched and decoded",
    },
    AlertReach {
        alert: "SecureChannelPoolCannotOpenConnections",
        published: true,
        returning: true,
        why: "the native errors_total counter rises when cleanups fail to open connections",
    },
    AlertReach {
        alert: "SecureChannelErrorBudgetFastBurn",
        published: false,
        returning: true,
        why: "operation errors are reported only by listed connections that were used; the published pool never lists a used connection",
    },
    AlertReach {
        alert: "SecureChannelErrorBudgetSlowBurn",
        published: false,
        returning: true,
        why: "operation errors are reported only by listed connections that were used; the published pool never lists a used connection",
    },
    AlertReach {
        alert: "SecureChannelOperationsP95LatencyHigh",
        published: true,
        returning: true,
        why: "the native latency histogram counts every operation and handshake",
    },
    AlertReach {
        alert: "SecureChannelConnectionFlapping",
        published: false,
        returning: true,
        why: "reconnects of checked-out connections appear in no document of the published pool; its listed ones reconnect only by hourly key rotation",
    },
    AlertReach {
        alert: "SecureChannelExporterSourceFailing",
        published: true,
        returning: true,
        why: "the exporter's own fetch failures per document",
    },
    AlertReach {
        alert: "SecureChannelConnectionsOmitted",
        published: true,
        returning: true,
        why: "the pool lists more connections than --collector.max-connections",
    },
];

/// An alert as the check reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertVerdict {
    pub alert: &'static str,
    pub why: &'static str,
}

/// The alerts that can and cannot fire for `build`. For a build the check
/// could not tell, "can fire" holds the alerts that fire for either build
/// and "cannot" those that depend on which build it is.
pub fn reach(build: Build) -> (Vec<AlertVerdict>, Vec<AlertVerdict>) {
    ALERTS
        .iter()
        .map(|a| {
            let fires = match build {
                Build::Published => a.published,
                Build::Returning => a.returning,
                Build::Unknown => a.published && a.returning,
            };
            (
                fires,
                AlertVerdict {
                    alert: a.alert,
                    why: a.why,
                },
            )
        })
        .fold(
            (Vec::new(), Vec::new()),
            |(mut can, mut cannot), (fires, v)| {
                if fires {
                    can.push(v);
                } else {
                    cannot.push(v);
                }
                (can, cannot)
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = include_str!("../../alerts/secure-channel.rules.yml");
    const SIGNALS: &str = include_str!("../../docs/pool-signals.md");

    #[test]
    fn table_lists_every_shipped_alert_in_the_rules_order() {
        let shipped: Vec<&str> = RULES
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert:"))
            .map(str::trim)
            .collect();
        let table: Vec<&str> = ALERTS.iter().map(|a| a.alert).collect();
        assert_eq!(table, shipped);
    }

    /// The doc's "Which shipped alerts can fire" table says the same as
    /// [`ALERTS`], row by row.
    #[test]
    fn table_agrees_with_the_docs() {
        let section = SIGNALS
            .split("## Which shipped alerts can fire")
            .nth(1)
            .expect("docs/pool-signals.md has a 'Which shipped alerts can fire' section");
        let rows: Vec<(String, bool, bool)> = section
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[2] == "yes",
                    cells[3] == "yes",
                )
            })
            .collect();
        let table: Vec<(String, bool, bool)> = ALERTS
            .iter()
            .map(|a| (a.alert.to_owned(), a.published, a.returning))
            .collect();
        assert_eq!(rows, table);
    }

    #[test]
    fn published_build_cannot_fire_the_burn_and_flapping_alerts() {
        let (can, cannot) = reach(Build::Published);
        let names = |v: &[AlertVerdict]| v.iter().map(|a| a.alert).collect::<Vec<_>>();
        assert_eq!(
            names(&cannot),
            [
                "SecureChannelErrorBudgetFastBurn",
                "SecureChannelErrorBudgetSlowBurn",
                "SecureChannelConnectionFlapping"
            ]
        );
        assert_eq!(can.len() + cannot.len(), ALERTS.len());
        assert!(reach(Build::Returning).1.is_empty());
        assert_eq!(reach(Build::Unknown).1, cannot);
    }
}
