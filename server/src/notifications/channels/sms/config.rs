//! The SMPP settings (`SMPP_*`, declared in `config::smpp`) checked into the account the
//! session binds with.

pub use crate::config::{BindMode, SmppConfig};

/// The validated credentials and sender.
#[derive(Debug, Clone)]
pub struct Account {
    /// `host:port`.
    pub address: String,
    /// `system_id`.
    pub system_id: String,
    /// Password.
    pub password: String,
    /// `source_addr`.
    pub source: String,
}

impl SmppConfig {
    /// The account when `SMPP_ADDRESS` is set; the error names the setting.
    pub fn account(&self) -> Result<Option<Account>, (&'static str, String)> {
        let Some(address) = self.smpp_address.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        if address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            return Err(("SMPP_ADDRESS", format!("{address:?} is not host:port")));
        }
        let system_id = self.smpp_system_id.clone().unwrap_or_default();
        if system_id.is_empty() || system_id.len() > 15 || !system_id.is_ascii() {
            return Err(("SMPP_SYSTEM_ID", "1 to 15 ASCII characters, required with SMPP_ADDRESS".into()));
        }
        let password = match (&self.smpp_password, &self.smpp_password_file) {
            (Some(_), Some(_)) => {
                return Err(("SMPP_PASSWORD_FILE", "set SMPP_PASSWORD or SMPP_PASSWORD_FILE, not both".into()));
            }
            (Some(password), None) => password.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| ("SMPP_PASSWORD_FILE", format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None) => String::new(),
        };
        if password.len() > 8 || !password.is_ascii() {
            return Err(("SMPP_PASSWORD", "at most 8 ASCII characters (SMPP 3.4)".into()));
        }
        if self.smpp_system_type.len() > 12 {
            return Err(("SMPP_SYSTEM_TYPE", "at most 12 characters".into()));
        }
        let source = self.smpp_source_addr.clone().unwrap_or_default();
        let numeric = source.strip_prefix('+').is_some_and(|d| super::phone::e164(&source).is_ok() && !d.is_empty());
        let alphanumeric =
            (1..=11).contains(&source.len()) && source.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
        if !numeric && !alphanumeric {
            return Err((
                "SMPP_SOURCE_ADDR",
                "an E.164 number or 1 to 11 letters and digits, required with SMPP_ADDRESS".into(),
            ));
        }
        Ok(Some(Account { address: address.to_owned(), system_id, password, source }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        smpp: SmppConfig,
    }

    fn config(args: &[&str]) -> SmppConfig {
        let mut argv = vec!["s"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().smpp
    }

    #[test]
    fn the_channel_is_off_without_an_address_and_each_bad_setting_is_named() {
        assert!(config(&[]).account().unwrap().is_none());
        let ok = config(&["--smpp-address", "smsc:2775", "--smpp-system-id", "sy", "--smpp-source-addr", "Switchyard"]);
        let a = ok.account().unwrap().unwrap();
        assert_eq!((a.address.as_str(), a.system_id.as_str(), a.password.as_str()), ("smsc:2775", "sy", ""));
        let with = |change: &dyn Fn(&mut SmppConfig)| {
            let mut c = ok.clone();
            change(&mut c);
            c.account().unwrap_err()
        };
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(with(&|c| c.smpp_address = some("smsc")), ("SMPP_ADDRESS", "\"smsc\" is not host:port".into()));
        assert_eq!(with(&|c| c.smpp_system_id = some("a-very-long-system-id")).0, "SMPP_SYSTEM_ID");
        assert_eq!(
            with(&|c| c.smpp_password = some("123456789")),
            ("SMPP_PASSWORD", "at most 8 ASCII characters (SMPP 3.4)".into())
        );
        assert_eq!(with(&|c| c.smpp_source_addr = some("Much-too-long-sender")).0, "SMPP_SOURCE_ADDR");
        assert_eq!(with(&|c| c.smpp_source_addr = some("+0123")).0, "SMPP_SOURCE_ADDR");
        let err = with(&|c| c.smpp_password_file = Some("/nonexistent/smpp".into()));
        assert_eq!(err.0, "SMPP_PASSWORD_FILE");
        assert!(err.1.starts_with("cannot read /nonexistent/smpp: "), "{}", err.1);
        assert_eq!(
            with(&|c| {
                c.smpp_password = some("x");
                c.smpp_password_file = Some("/p".into());
            }),
            ("SMPP_PASSWORD_FILE", "set SMPP_PASSWORD or SMPP_PASSWORD_FILE, not both".into())
        );
    }

    #[test]
    fn the_password_file_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("smpp-password-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let file = path.to_str().unwrap();
        let a = config(&[
            "--smpp-address",
            "127.0.0.1:2775",
            "--smpp-system-id",
            "sy",
            "--smpp-source-addr",
            "+4930123456",
            "--smpp-password-file",
            file,
        ])
        .account()
        .unwrap()
        .unwrap();
        assert_eq!(a.password, "s3cret");
        std::fs::remove_file(path).unwrap();
    }
}
