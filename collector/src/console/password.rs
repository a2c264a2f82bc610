//! Console passwords: argon2id hashes in PHC format, checked in constant
//! time by the argon2 crate.

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (bounds the hashing work per sign-in).
pub const MAX_LEN: usize = 256;

/// Checks a new password's shape; `Err` says what is wrong.
pub fn check(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("password: at least {MIN_LEN} characters are needed ({n} given)"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("password: at most {MAX_LEN} bytes"));
    }
    if password.chars().any(char::is_control) {
        return Err("password: control characters (new lines, tabs) are not allowed".into());
    }
    Ok(())
}

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored PHC string (false for "" or a
/// malformed one).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("x", ""));
        assert!(check("short").unwrap_err().contains("at least 12"));
        assert!(check("twelve chars!").is_ok());
        assert!(check("with a\nnew line").is_err());
    }
}
