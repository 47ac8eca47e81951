//! Against Rails' own code (`tests/ruby/rails.rb`, Debian's ruby-actioncable 6.1 and its Redis
//! adapter) on a real Redis: 127.0.0.1:6379, which the test machine runs, each test with a
//! channel prefix of its own.

use crate::support::{rails, start, unique_prefix};
use cable_test_support::{Connect, mint_hs256, unix_now};
use serde_json::json;

const JWT_SECRET: &str = "the cable's JWT secret, thirty-two bytes at least";
const REDIS_URL: &str = "redis://127.0.0.1:6379/1";

/// `ActionCable.server.remote_connections.where(current_user: user).disconnect` in Rails closes
/// the connection here whose AnyCable token names that user: the identity is Rails'
/// `connection_identifier` (a record's `to_gid_param`), and the disconnect comes over Redis on
/// Rails' internal channel. Another user's connection stays.
#[tokio::test]
async fn a_rails_remote_disconnect_closes_the_users_jwt_connection() {
    let prefix = unique_prefix("remote-disconnect");
    let server = start(&[
        ("CABLE_ADAPTER", "redis"),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", &prefix),
        ("CABLE_JWT_SECRET", JWT_SECRET),
    ]);
    let jid = |user: &str| {
        mint_hs256(
            JWT_SECRET.as_bytes(),
            &json!({
                "ext": json!({ "current_user": format!("gid://interop/User/{user}") }).to_string(),
                "exp": unix_now() + 300,
            }),
        )
    };
    let mut bob = server
        .client(Connect::new().path(&format!("/cable?jid={}", jid("bob"))))
        .await;
    let mut alice = server
        .client(Connect::new().path(&format!("/cable?jid={}", jid("alice"))))
        .await;
    let env = [
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let param = rails(
        &env,
        &["disconnect", "current_user", "gid://interop/User/bob"],
    );
    assert_eq!(
        param, "Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg",
        "GlobalID's to_gid_param"
    );
    // Rails 6.1 sends no `reconnect`: the consumer's default, reconnecting, applies.
    bob.expect_disconnect("remote", true).await;
    alice.expect_silence(cable_test_support::SILENCE).await;
    alice.close().await;
}
