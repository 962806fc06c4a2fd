use std::fmt;

/// A value that must not be printed, logged or stored (an API key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Name fragments that mark an environment variable as a secret, matched anywhere.
const SECRET_PARTS: [&str; 6] = ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL"];

/// Whether an environment variable name looks like it holds a secret.
///
/// Case-insensitive. True when the name contains `KEY`, `SECRET`, `TOKEN`, `PASSWORD`,
/// `PASSWD` or `CREDENTIAL` anywhere (`OPENAI_API_KEY`, `GITHUB_TOKEN`, `PGPASSWORD`), or
/// when one of its `_`-separated words is exactly `AUTH` (`AUTH`, `NPM_CONFIG__AUTH`,
/// `SSH_AUTH_SOCK`), but not for a longer word such as `GIT_AUTHOR_NAME`.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_PARTS.iter().any(|part| upper.contains(part)) || upper.split('_').any(|w| w == "AUTH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_match_documented_rules() {
        for name in [
            "OPENAI_API_KEY",
            "anthropic_api_key",
            "MY_SECRET",
            "GITHUB_TOKEN",
            "AWS_SESSION_TOKEN",
            "PGPASSWORD",
            "SMTP_PASSWD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AUTH",
            "NPM_CONFIG__AUTH",
            "SSH_AUTH_SOCK",
            "auth_header",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
        for name in [
            "PATH",
            "HOME",
            "GIT_AUTHOR_NAME",
            "AUTHOR",
            "LANG",
            "PYTHONPATH",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }
}
