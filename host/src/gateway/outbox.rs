//! The `outbox` gateway: each email becomes an `.eml` file in a folder. It is
//! the embedded default, so a demo needs no mail server. Under `herald run`
//! it also takes SMS, push and webhook notifications, as `.json` files.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;

use super::{GatewaySetupError, Notification, PreparedEmail, SendContext, SendError, parse_from};
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
        self.write(&stem, "eml", &email.bytes).await?;
        Ok(email.message_id.clone())
    }

    /// Writes an SMS, push or webhook notification as
    /// `<ms since epoch>-<delivery id>.<channel>.json` and returns the
    /// delivery id as the provider id.
    pub(super) async fn send_other(
        &self,
        notification: &Notification,
        context: &SendContext,
    ) -> Result<String, SendError> {
        let body = match notification {
            Notification::Email(_) => unreachable!("emails are written as .eml"),
            Notification::Sms(sms) => serde_json::json!({
                "to": sms.to, "from": sms.from, "body": sms.body,
            }),
            Notification::Push(push) => serde_json::json!({
                "token": push.token, "title": push.title, "body": push.body,
                "data": push
                    .data
                    .iter()
                    .map(|(key, value)| (key.clone(), serde_json::Value::from(value.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
            }),
            Notification::Webhook(event) => serde_json::json!({
                "webhook_id": context.stable_id, "type": event.event_type, "data": event.data,
            }),
        };
        let mut bytes = serde_json::to_vec_pretty(&body).expect("JSON values serialize");
        bytes.push(b'\n');
        let stem = format!("{}-{}", clock::now_ms(), context.delivery_id);
        let extension = format!("{}.json", notification.channel());
        self.write(&stem, &extension, &bytes).await?;
        Ok(context.delivery_id.clone())
    }

    /// Writes `bytes` to `<stem>.<extension>`, complete or not at all: under
    /// a temporary name first, then renamed.
    async fn write(&self, stem: &str, extension: &str, bytes: &[u8]) -> Result<(), SendError> {
        let stem: String = stem
            .chars()
            .map(|character| match character {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '@' => character,
                _ => '_',
            })
            .collect();
        let temporary = self.path.join(format!(".{stem}.tmp"));
        let final_path = self.path.join(format!("{stem}.{extension}"));
        let write = async {
            tokio::fs::write(&temporary, bytes).await?;
            tokio::fs::rename(&temporary, &final_path).await
        };
        write.await.map_err(|error| {
            SendError::Transient(format!(
                "failed to write \"{}\": {error}",
                final_path.display()
            ))
        })
    }
}
