//! JWTs minted the way another issuer would: with `jsonwebtoken` directly, so tests can make
//! the tokens a `JwtVerifier` itself refuses to sign (expired ones, claims without `exp`) and
//! check that verification refuses them too.

use serde_json::Value;

/// An HS256 token for `claims`, signed with `secret`, whatever the claims say.
pub fn mint_hs256(secret: &[u8], claims: &Value) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&header, claims, &key).expect("claims that serialize")
}

/// Seconds since the Unix epoch, what `exp` and `nbf` count in.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}
