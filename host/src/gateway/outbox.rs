//! The `outbox` gateway: each email becomes an `.eml` file in a folder. It is
//! the embedded default, so a demo needs no mail server.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;

use super::{GatewaySetupError, PreparedEmail, SendError, parse_from};
use crate::clock;

/// A folder that receives emails as files.
pub struct OutboxGateway {
    path: PathBuf,
    from: Mailbox,
}

impl OutboxGateway {
    /// Creates the gateway `name`, creating the folder `path` if needed.
    pub fn new(name: &str, path: PathBuf, from: &str) -> Result<Self, GatewaySetupError> {
        std::fs::create_dir_all(&path).map_err(|error| GatewaySetupError {
            name: name.to_owned(),
            message: format!(
                "failed to create outbox folder \"{}\": {error}",
                path.display()
            ),
        })?;
        Ok(Self {
            path,
            from: parse_from(name, from)?,
        })
    }

    /// Returns the folder the files go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn default_from(&self) -> &Mailbox {
        &self.from
    }

    /// Writes the email to `<ms since epoch>-<message id>.eml` and returns the
    /// Message-ID. The file appears complete or not at all: it is written
    /// under a temporary name and renamed.
    pub(super) async fn send(&self, email: &PreparedEmail) -> Result<String, SendError> {
        let stem = format!(
            "{}-{}",
            clock::now_ms(),
            email.message_id.trim_matches(['<', '>'])
        );
        let stem: String = stem
            .chars()
            .map(|character| match character {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '@' => character,
                _ => '_',
            })
            .collect();
        let temporary = self.path.join(format!(".{stem}.tmp"));
        let final_path = self.path.join(format!("{stem}.eml"));
        let write = async {
            tokio::fs::write(&temporary, &email.bytes).await?;
            tokio::fs::rename(&temporary, &final_path).await
        };
        write.await.map_err(|error| {
            SendError::Transient(format!(
                "failed to write \"{}\": {error}",
                final_path.display()
            ))
        })?;
        Ok(email.message_id.clone())
    }
}
