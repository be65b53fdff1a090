//! The built-in risk check: allows everything except what its deny list
//! names. Terms are matched against the request's text only when some are
//! configured, so the common configuration never pays for text extraction.
//!
//! Configuration (all optional):
//! ```json
//! { "tenants": [], "users": [], "groups": [], "keys": [], "models": [],
//!   "terms": ["forbidden phrase"], "status": 403, "message": "..." }
//! ```

use serde::Deserialize;
use sluice_sdk::{Config, Denial, PluginError, Request, RequestContent, Risk, Verdict};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DenyList {
    tenants: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    keys: Vec<String>,
    models: Vec<String>,
    /// Case-insensitive phrases refused anywhere in the request's text.
    terms: Vec<String>,
    status: Option<u16>,
    message: Option<String>,
}

impl Risk for DenyList {
    fn new(config: Config) -> Result<Self, PluginError> {
        let mut list: DenyList = config.parse()?;
        if let Some(status) = list.status
            && !(400..=599).contains(&status)
        {
            return Err(PluginError::new(
                "bad_config",
                format!("status {status} is not an HTTP error status"),
            ));
        }
        for term in &mut list.terms {
            *term = term.to_lowercase();
        }
        Ok(list)
    }

    fn check(&self, request: &Request, content: &RequestContent) -> Result<Verdict, PluginError> {
        let denied_party = listed(&self.tenants, || &request.caller().tenant)
            || listed(&self.users, || &request.caller().user)
            || listed(&self.groups, || &request.caller().group)
            || listed(&self.keys, || &request.caller().key_id)
            || listed(&self.models, || request.model());
        let denied = denied_party
            || (!self.terms.is_empty() && {
                let text = content.message_text().to_lowercase();
                self.terms.iter().any(|term| text.contains(term.as_str()))
            });
        Ok(if denied {
            Verdict::Deny(Denial {
                status: self.status.unwrap_or(403),
                code: if denied_party {
                    "access_denied"
                } else {
                    "content_policy_violation"
                }
                .into(),
                message: self
                    .message
                    .clone()
                    .unwrap_or_else(|| "This request is not allowed.".into()),
            })
        } else {
            Verdict::Allow(vec![])
        })
    }
}

/// Whether `value` is in `list`; the value is fetched from the host only
/// when the list is not empty, so the common configuration reads nothing.
fn listed<'a>(list: &[String], value: impl FnOnce() -> &'a str) -> bool {
    !list.is_empty() && {
        let value = value();
        list.iter().any(|v| v == value)
    }
}

sluice_sdk::export_risk!(DenyList);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Caller, Envelope};

    fn envelope(model: &str) -> Envelope {
        Envelope {
            model: model.into(),
            stream: false,
            max_output_tokens: None,
            estimated_prompt_tokens: 10,
            inbound_protocol: "openai-chat".into(),
            tags: vec![],
            received_at_ms: 0,
            seed: 0,
        }
    }

    fn caller(user: &str) -> Caller {
        Caller {
            tenant: "t".into(),
            user: user.into(),
            group: "default".into(),
            key_id: "k".into(),
        }
    }

    fn verdict(config: &str, model: &str, user: &str, text: &str) -> Verdict {
        DenyList::new(Config::from_json(config))
            .unwrap()
            .check(
                &Request::given(envelope(model), caller(user)),
                &RequestContent::from_text(text),
            )
            .unwrap()
    }

    #[test]
    fn allows_by_default() {
        assert!(matches!(
            verdict("{}", "gpt", "u", "hello"),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn denies_listed_users_and_models() {
        let config = r#"{"users": ["mallory"], "models": ["banned"], "status": 451}"#;
        let Verdict::Deny(denial) = verdict(config, "gpt", "mallory", "") else {
            panic!()
        };
        assert_eq!(
            (denial.status, denial.code.as_str()),
            (451, "access_denied")
        );
        assert!(matches!(
            verdict(config, "banned", "u", ""),
            Verdict::Deny(_)
        ));
        assert!(matches!(verdict(config, "gpt", "u", ""), Verdict::Allow(_)));
    }

    #[test]
    fn matches_terms_case_insensitively() {
        let config = r#"{"terms": ["Secret Plan"]}"#;
        let Verdict::Deny(denial) = verdict(config, "gpt", "u", "the SECRET plan") else {
            panic!()
        };
        assert_eq!(denial.code, "content_policy_violation");
        assert!(matches!(
            verdict(config, "gpt", "u", "a public plan"),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn refuses_bad_configuration() {
        assert_eq!(
            DenyList::new(Config::from_json(r#"{"status": 200}"#))
                .err()
                .unwrap()
                .code,
            "bad_config"
        );
        assert_eq!(
            DenyList::new(Config::from_json(r#"{"userz": []}"#))
                .err()
                .unwrap()
                .code,
            "bad_config"
        );
    }
}
