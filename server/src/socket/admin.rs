//! The `/admin` namespace the official Socket.IO Admin UI connects to, registered only when
//! the Admin UI is on (without credentials a client gets `Invalid namespace`). The sign-in,
//! the greeting and the actions; the fleet-wide work is the `admin` module's.

use std::sync::Arc;

use serde_json::Value;
use switchyard_sio::{Ack, DataError, NamespaceBuilder, Payload};

use crate::admin::{ADMIN_NS, Action, Admin};
use crate::delivery::{Conn, Socket};
use crate::error::{ApiError, ApiResult, ErrorCode, ack_json};
use crate::protocol::{MAX_ID_BYTES, NAMESPACES};

/// The `connect_error` message for a refused sign-in: the UI recognises exactly this text.
pub const INVALID_CREDENTIALS: &str = "invalid credentials";

/// The namespace and its handlers.
pub fn namespace(admin: &Arc<Admin>) -> NamespaceBuilder<Conn> {
    let (on_join, on_joined, on_leave) = (admin.clone(), admin.clone(), admin.clone());
    let builder = NamespaceBuilder::new(ADMIN_NS, move |_socket: Arc<Socket>, auth: Option<Value>| {
        let admin = on_join.clone();
        async move {
            if !admin.credentials().check(auth.as_ref()).await {
                tracing::warn!("admin UI sign-in refused");
                return Err(INVALID_CREDENTIALS.to_owned());
            }
            tracing::info!("admin UI signed in");
            admin.signed_in();
            Ok(())
        }
    })
    .on_connected(move |socket| {
        let admin = on_joined.clone();
        async move { admin.welcome(socket).await }
    })
    .on_disconnect(move |_socket, _reason| {
        let admin = on_leave.clone();
        async move { admin.signed_out() }
    });
    [("_disconnect", Kind::Disconnect), ("join", Kind::Join), ("leave", Kind::Leave)].into_iter().fold(
        builder,
        |builder, (event, kind)| {
            let admin = admin.clone();
            builder.on_payload(event, move |_socket, data, ack| {
                let admin = admin.clone();
                async move { act(&admin, kind, data, ack).await }
            })
        },
    )
}

/// Which action an event asks for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Disconnect,
    Join,
    Leave,
}

/// Runs one action of the UI, unless read-only; a client that asks for an ack hears how
/// many sockets of this node it touched, or why it was refused (the UI asks for none).
async fn act(admin: &Admin, kind: Kind, data: Result<Payload, DataError>, ack: Ack<Conn>) {
    let result: ApiResult<usize> = async {
        if admin.readonly() {
            return Err(ApiError::new(ErrorCode::Forbidden, "the admin UI is read-only"));
        }
        let args = data.map_err(|_| ApiError::invalid("arguments must be JSON"))?.args;
        Ok(admin.act(action(kind, &args)?).await)
    }
    .await;
    if let Err(e) = &result {
        tracing::info!(code = e.code.as_str(), message = e.message, "admin UI action refused");
    }
    let _ = ack.send(&ack_json(&result.map(|affected| serde_json::json!({ "affected": affected }))));
}

/// The action of `kind` with the UI's arguments: `(nsp, close, filter?)` for a disconnect,
/// `(nsp, room, filter?)` for a join or leave.
fn action(kind: Kind, args: &[Value]) -> ApiResult<Action> {
    let text = |at: usize, name: &str| -> ApiResult<Option<String>> {
        match args.get(at) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES * 2 => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(format!("{name}: must be a string of 1 to {} bytes", MAX_ID_BYTES * 2))),
        }
    };
    let ns = text(0, "nsp")?.ok_or_else(|| ApiError::invalid("nsp: required"))?;
    if !NAMESPACES.contains(&ns.as_str()) {
        return Err(ApiError::invalid(format!("nsp: must be one of {}", NAMESPACES.join(", "))));
    }
    let filter = text(2, "filter")?;
    Ok(match kind {
        Kind::Disconnect => {
            let close = match args.get(1) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(close)) => *close,
                Some(_) => return Err(ApiError::invalid("close: must be a boolean")),
            };
            Action::Disconnect { ns, close, filter }
        }
        Kind::Join | Kind::Leave => {
            let room = text(1, "room")?.ok_or_else(|| ApiError::invalid("room: required"))?;
            match kind {
                Kind::Join => Action::Join { ns, room, filter },
                _ => Action::Leave { ns, room, filter },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_ui_arguments_make_actions() {
        let args = [json!("/chat"), json!(false), json!("sid1")];
        assert_eq!(
            action(Kind::Disconnect, &args).unwrap(),
            Action::Disconnect { ns: "/chat".into(), close: false, filter: Some("sid1".into()) }
        );
        let args = [json!("/notifications"), json!("vip")];
        assert_eq!(
            action(Kind::Leave, &args).unwrap(),
            Action::Leave { ns: "/notifications".into(), room: "vip".into(), filter: None }
        );
        for (kind, args, message) in [
            (Kind::Join, vec![json!("/admin"), json!("r")], "nsp: must be one of /chat, /notifications"),
            (Kind::Join, vec![json!("/chat")], "room: required"),
            (Kind::Join, vec![json!("/chat"), json!(5)], "room: must be a string of 1 to 256 bytes"),
            (Kind::Disconnect, vec![json!("/chat"), json!("yes")], "close: must be a boolean"),
            (Kind::Disconnect, vec![], "nsp: required"),
        ] {
            assert_eq!(action(kind, &args).unwrap_err().message, message, "{args:?}");
        }
    }
}
