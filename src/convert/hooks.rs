//! Flagger webhooks: the gates that have an equivalent become `pause: {}` steps, `event` hooks a
//! notification channel; every other hook is a finding naming it (run it yourself).

use serde_json::Value;

use super::{Notes, str_at};

/// What the webhooks of a Canary add to its plan.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hooks {
    /// A `confirm-rollout` gate: a `pause: {}` before the first step.
    pub pause_first: bool,
    /// A `confirm-promotion` gate: a `pause: {}` after the last step.
    pub pause_last: bool,
    /// Channels for `event` hooks, for the plan's `notify`.
    pub notify: Vec<String>,
}

/// Read `spec.analysis.webhooks` (a list), reporting each hook at its position.
pub(crate) fn flagger(list: Option<&Value>, id: &str, notes: &mut Notes<'_>) -> Hooks {
    let mut hooks = Hooks::default();
    let list = list.and_then(Value::as_array).into_iter().flatten();
    for (i, hook) in list.enumerate() {
        let field = format!("spec.analysis.webhooks[{i}]");
        let name = str_at(hook, &["name"]).unwrap_or("unnamed");
        // Flagger's default type is `rollout`.
        let kind = str_at(hook, &["type"]).unwrap_or("rollout");
        let url = str_at(hook, &["url"]).unwrap_or("?");
        let what = format!("webhook {name} ({kind})");
        let message = match kind {
            "confirm-rollout" => {
                hooks.pause_first = true;
                format!(
                    "{what} became a `pause: {{}}` first step: the rollout waits at 0 % for a \
                     `Tidegate: resume {id}` commit (tidegate calls no approval URL; {url} is \
                     not consulted)"
                )
            }
            "confirm-promotion" => {
                hooks.pause_last = true;
                format!(
                    "{what} became a `pause: {{}}` last step: the canary is analysed but not \
                     promoted until a `Tidegate: resume {id}` commit (tidegate calls no \
                     approval URL; {url} is not consulted)"
                )
            }
            "confirm-traffic-increase" => format!(
                "{what} has no equivalent: tidegate calls no approval URL before each weight \
                 increase; the closest is a `pause: {{}}` step before each `setWeight` you want \
                 approved (each waits for a `Tidegate: resume {id}` commit)"
            ),
            "event" => {
                let channel = channel_name(name);
                let snippet = format!(
                    "notifications: [{{name: {channel}, kind: webhook, urlFile: \
                     /etc/tidegate/notify/{channel}-url}}]"
                );
                if !hooks.notify.contains(&channel) {
                    hooks.notify.push(channel.clone());
                }
                format!(
                    "{what}: the plan notifies the channel `{channel}` (`notify: [{channel}]`); \
                     add it to the daemon configuration, with {url} in the file: {snippet} \
                     (docs/notifications.md; tidegate posts its own JSON document, not \
                     Flagger's event payload, and only on rollout transitions)"
                )
            }
            _ => format!(
                "{what} has no equivalent: {}",
                no_equivalent(kind, hook, id)
            ),
        };
        notes.add(field, message);
    }
    hooks
}

/// Why a hook tidegate cannot run has no equivalent, and what to do instead.
fn no_equivalent(kind: &str, hook: &Value, id: &str) -> String {
    let url = str_at(hook, &["url"]).unwrap_or("its URL");
    let cmd = str_at(hook, &["metadata", "cmd"]);
    let load = cmd.is_some_and(|c| {
        let tool = c.split_whitespace().next().unwrap_or("");
        ["hey", "ghz", "k6", "wrk", "vegeta", "fortio"].contains(&tool)
    });
    let run = match cmd {
        Some(cmd) => format!("`{cmd}`"),
        None => "it".to_owned(),
    };
    match kind {
        "pre-rollout" => format!(
            "tidegate runs no tests before shifting traffic; run {run} yourself before the \
             canary's release (a failing run: do not deploy), or start the plan with a \
             `pause: {{}}` step and resume once it passed"
        ),
        "rollout" if load => format!(
            "load test: tidegate generates no traffic; run {run} yourself against the canary \
             during the rollout (without requests the checks stay inconclusive and the rollout \
             holds)"
        ),
        "rollout" => format!(
            "tidegate calls no URL during the analysis; run {run} yourself, or turn what it \
             checks into a Prometheus metric of the plan's analysis"
        ),
        "post-rollout" => format!(
            "tidegate runs nothing after a rollout; run {run} yourself on the `succeeded`, \
             `rolledBack` or `aborted` notification"
        ),
        "rollback" => format!(
            "tidegate polls no URL for a rollback; the equivalent is an `abort` control commit \
             (`tidegate abort {id} -m WHY`), made by whatever decided on the rollback instead of \
             {url}"
        ),
        _ => format!("unknown webhook type; run {run} yourself"),
    }
}

/// A channel name (1–63 of a-z, 0-9, '-') from a webhook's name.
fn channel_name(hook: &str) -> String {
    let mut out: String = hook
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').chars().take(63).collect();
    if out.is_empty() {
        "flagger-events".to_owned()
    } else {
        out.trim_end_matches('-').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_channel_rules() {
        assert_eq!(channel_name("Slack_Events"), "slack-events");
        assert_eq!(channel_name("--"), "flagger-events");
        assert_eq!(channel_name(&"a".repeat(70)).len(), 63);
    }
}
