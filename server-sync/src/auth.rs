//! Bearer tokens bound to one user id, HMAC-SHA256 signed:
//! `sona1.<role>.<hex(user id)>.<expiry unix secs>.<hex(mac)>`, where the MAC
//! covers everything before the last dot. Role `user` may touch only its own
//! user's data; role `admin` may issue tokens and run maintenance.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub role: Role,
    pub user_id: String,
    pub expires: i64,
}

impl Claims {
    /// May this token read/write `user_id`'s data?
    pub fn may_access(&self, user_id: &str) -> bool {
        self.role == Role::Admin || self.user_id == user_id
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// Signs and verifies tokens with one server secret.
#[derive(Clone)]
pub struct Auth {
    key: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 32 random bytes from the OS, hex-encoded (a new server secret).
pub fn random_secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex(&b))
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        Auth {
            key: secret.to_vec(),
        }
    }

    fn mac(&self, body: &str) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(body.as_bytes());
        m
    }

    pub fn issue(&self, role: Role, user_id: &str, expires: i64) -> String {
        let body = format!(
            "sona1.{}.{}.{expires}",
            role.as_str(),
            hex(user_id.as_bytes())
        );
        let sig = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", hex(&sig))
    }

    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        let (body, sig) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let sig = unhex(sig).ok_or(AuthError::Malformed)?;
        // Constant-time comparison.
        self.mac(body)
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        let mut parts = body.split('.');
        let (Some("sona1"), Some(role), Some(user), Some(exp), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let role = match role {
            "user" => Role::User,
            "admin" => Role::Admin,
            _ => return Err(AuthError::Malformed),
        };
        let user_id = String::from_utf8(unhex(user).ok_or(AuthError::Malformed)?)
            .map_err(|_| AuthError::Malformed)?;
        let expires: i64 = exp.parse().map_err(|_| AuthError::Malformed)?;
        if now >= expires {
            return Err(AuthError::Expired);
        }
        Ok(Claims {
            role,
            user_id,
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_reject_tampering() {
        let a = Auth::new(b"secret");
        let t = a.issue(Role::User, "alice.x", 100);
        assert_eq!(
            a.verify(&t, 50),
            Ok(Claims {
                role: Role::User,
                user_id: "alice.x".into(),
                expires: 100
            })
        );
        assert_eq!(a.verify(&t, 100), Err(AuthError::Expired));
        assert_eq!(
            Auth::new(b"other").verify(&t, 50),
            Err(AuthError::BadSignature)
        );
        // Changing the user or the role breaks the MAC.
        let forged = t.replacen(&hex(b"alice.x"), &hex(b"bob"), 1);
        assert_eq!(a.verify(&forged, 50), Err(AuthError::BadSignature));
        let forged = t.replacen("user", "admin", 1);
        assert_eq!(a.verify(&forged, 50), Err(AuthError::BadSignature));
        assert_eq!(a.verify("garbage", 50), Err(AuthError::Malformed));
        assert!(a
            .verify(&a.issue(Role::Admin, "ops", 100), 0)
            .unwrap()
            .may_access("anyone"));
        assert!(!a.verify(&t, 0).unwrap().may_access("bob"));
    }
}
