//! The Socket.IO Admin UI's settings (`ADMIN_UI_*`), flattened into [`super::Config`]. Off
//! unless both credentials are set; the `admin` module serves it with them.

use std::str::FromStr;

use super::ConfigError;

/// Paths the server already answers; the UI may not be served under them.
const TAKEN: [&str; 8] = ["/socket.io", "/api", "/app", "/health", "/ready", "/metrics", "/dev", "/favicon.ico"];

/// The Admin UI: the `/admin` namespace the official `@socket.io/admin-ui` front end speaks
/// to, and the copy of that front end the server serves.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminUiConfig {
    /// User name to sign in to the Admin UI with; with ADMIN_UI_PASSWORD_HASH it turns the
    /// Admin UI on.
    #[arg(long, env = "ADMIN_UI_USERNAME")]
    pub admin_ui_username: Option<String>,

    /// bcrypt hash of the Admin UI password (`$2b$10$…`, as Node's admin-ui takes it).
    #[arg(long, env = "ADMIN_UI_PASSWORD_HASH", hide_env_values = true)]
    pub admin_ui_password_hash: Option<String>,

    /// Read-only Admin UI: it shows the fleet, and refuses disconnect, join and leave.
    #[arg(long, env = "ADMIN_UI_READONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub admin_ui_readonly: bool,

    /// Path the server serves the Admin UI's page at (with a trailing slash).
    #[arg(long, env = "ADMIN_UI_PATH", default_value = "/admin/")]
    pub admin_ui_path: String,
}

impl AdminUiConfig {
    /// True when both credentials are set.
    pub fn enabled(&self) -> bool {
        self.admin_ui_username.is_some() && self.admin_ui_password_hash.is_some()
    }

    /// The page's path without its trailing slash (`/admin`); assets are under it.
    pub fn base_path(&self) -> &str {
        self.admin_ui_path.trim_end_matches('/')
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting, reason: &str| Err(ConfigError { setting, reason: reason.into() });
        match (&self.admin_ui_username, &self.admin_ui_password_hash) {
            (Some(_), None) => return err("ADMIN_UI_PASSWORD_HASH", "required with ADMIN_UI_USERNAME"),
            (None, Some(_)) => return err("ADMIN_UI_USERNAME", "required with ADMIN_UI_PASSWORD_HASH"),
            _ => {}
        }
        if let Some(user) = &self.admin_ui_username
            && (user.chars().count() > 64 || user.chars().any(char::is_control))
        {
            return err("ADMIN_UI_USERNAME", "1 to 64 characters, no control characters");
        }
        if let Some(hash) = &self.admin_ui_password_hash
            && bcrypt::HashParts::from_str(hash).is_err()
        {
            return err("ADMIN_UI_PASSWORD_HASH", "not a bcrypt hash (such as $2b$10$ followed by 53 characters)");
        }
        let path = &self.admin_ui_path;
        let base = self.base_path();
        if !path.starts_with('/')
            || base.is_empty()
            || path.contains("//")
            || path.split('/').any(|part| part == "." || part == "..")
            || !path.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
        {
            return err("ADMIN_UI_PATH", "a path such as /admin/: letters, digits, - _ . ~ and /, not the root");
        }
        if TAKEN.iter().any(|taken| base == *taken || base.starts_with(&format!("{taken}/"))) {
            return err("ADMIN_UI_PATH", &format!("must not be under a route the server has ({})", TAKEN.join(", ")));
        }
        Ok(())
    }
}
