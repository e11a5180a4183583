//! The push notification that a worker builds and sends through
//! [`gateway::send_push`](crate::gateway::send_push).

use crate::bindings::herald::worker::gateway as wit;
use crate::template::TemplateRef;

/// A push notification to one device, sent through a push gateway.
///
/// Build it with [`Push::new`] and the chained setters. The token is the
/// registration token that the app received from the push service on the
/// device. `title` and `body` are shown to the user, and `data` reaches the
/// app as string key-value pairs.
///
/// ```
/// use herald_sdk::Push;
///
/// let push = Push::new()
///     .token("fcm-registration-token")
///     .title("Order shipped")
///     .body("Your order 1042 is on its way.")
///     .data("order_id", "1042")
///     .data("screen", "orders");
///
/// assert_eq!(push.title.as_deref(), Some("Order shipped"));
/// assert_eq!(push.data.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Push {
    /// The device's registration token.
    pub token: String,
    /// Title shown in the notification.
    pub title: Option<String>,
    /// Text shown in the notification.
    pub body: Option<String>,
    /// Key-value data delivered to the app, in the order it was added.
    pub data: Vec<(String, String)>,
    /// The stored template that the text was rendered from, recorded in the
    /// delivery log.
    pub template: Option<TemplateRef>,
    /// Key that makes the send idempotent for this worker. With `None` the
    /// host derives one from the message id, the channel and the token, so a
    /// second notification to the same device for the same message is
    /// suppressed as a duplicate. Give each such notification its own key.
    pub idempotency_key: Option<String>,
}

impl Push {
    /// Creates a notification with no token, no text and no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the device's registration token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Sets the title shown in the notification.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the text shown in the notification.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Adds one key-value pair to the data delivered to the app.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.push((key.into(), value.into()));
        self
    }

    /// Sets the stored template that the text was rendered from, which the
    /// host records in the delivery log.
    pub fn template(mut self, template: TemplateRef) -> Self {
        self.template = Some(template);
        self
    }

    /// Sets the key that makes the send idempotent. A second send with the
    /// same key by the same worker returns the first receipt instead of
    /// sending again, even from another message.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl From<&Push> for wit::Push {
    fn from(push: &Push) -> Self {
        wit::Push {
            token: push.token.clone(),
            title: push.title.clone(),
            body: push.body.clone(),
            data: push.data.clone(),
            template: push.template.as_ref().map(Into::into),
            idempotency_key: push.idempotency_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_template() -> TemplateRef {
        TemplateRef {
            name: "order-shipped".to_string(),
            version: 1,
        }
    }

    #[test]
    fn new_push_is_empty() {
        let push = Push::new();

        assert_eq!(push.token, "");
        assert_eq!(push.title, None);
        assert_eq!(push.body, None);
        assert!(push.data.is_empty());
        assert_eq!(push.template, None);
        assert_eq!(push.idempotency_key, None);
    }

    #[test]
    fn builder_sets_every_field() {
        let push = Push::new()
            .token("device-1")
            .title("Order shipped")
            .body("On its way")
            .data("order_id", "1042")
            .template(shipped_template())
            .idempotency_key("shipped-1042");

        assert_eq!(push.token, "device-1");
        assert_eq!(push.title.as_deref(), Some("Order shipped"));
        assert_eq!(push.body.as_deref(), Some("On its way"));
        assert_eq!(push.data, [("order_id".to_string(), "1042".to_string())]);
        assert_eq!(push.template, Some(shipped_template()));
        assert_eq!(push.idempotency_key.as_deref(), Some("shipped-1042"));
    }

    #[test]
    fn data_accumulates_in_order() {
        let push = Push::new().data("b", "2").data("a", "1").data("b", "3");

        let keys: Vec<&str> = push.data.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn into_wit_copies_fields() {
        let push = Push::new()
            .token("device-1")
            .title("Order shipped")
            .body("On its way")
            .data("order_id", "1042")
            .template(shipped_template())
            .idempotency_key("shipped-1042");

        let wit_push = wit::Push::from(&push);

        assert_eq!(wit_push.token, push.token);
        assert_eq!(wit_push.title, push.title);
        assert_eq!(wit_push.body, push.body);
        assert_eq!(wit_push.data, push.data);
        let template = wit_push.template.expect("template is copied");
        assert_eq!(template.name, "order-shipped");
        assert_eq!(template.version, 1);
        assert_eq!(wit_push.idempotency_key, push.idempotency_key);
    }
}
