//! Two-factor sign-in with TOTP (RFC 6238: SHA-1, 6 digits, 30 s, as every authenticator app reads it;
//! `totp-rs` computes the codes) and ten single-use recovery codes. A code is accepted for the previous,
//! current or next step (clock drift), and only for a step later than the last accepted one, so a code seen
//! over a shoulder cannot be used again.

use brokeforge_core::time::now_ms;
use brokeforge_store::User;
use totp_rs::{Algorithm, TOTP};

use crate::accounts::{sha256_hex, verify_password};
use crate::{Domain, DomainError, DomainResult};

const ISSUER: &str = "BrokeForge";
const STEP_SECS: u64 = 30;
const RECOVERY_CODES: usize = 10;

/// What the user scans (or types) to set up their app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpSetup {
    /// The secret in base32, for typing it in.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    #[serde(skip)]
    pub qr_svg: String,
}

/// No skew here: each neighbouring step is checked on its own, to know which one a code was for.
fn totp(secret: &[u8]) -> DomainResult<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 0, STEP_SECS, secret.to_vec())
        .map_err(|e| DomainError::Internal(format!("totp: {e}")))
}

/// The step (of those around now) `code` is for, if it is right.
fn matching_step(secret: &[u8], code: &str) -> DomainResult<Option<i64>> {
    let t = totp(secret)?;
    let now = (now_ms() / 1000) as u64;
    for skew in [-1i64, 0, 1] {
        let step = (now / STEP_SECS) as i64 + skew;
        // totp-rs compares in constant time.
        if t.check(code, step as u64 * STEP_SECS) {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// `xxxxx-xxxxx` from an alphabet without look-alikes.
fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut b = [0u8; 10];
    getrandom::fill(&mut b).expect("the system's random source");
    let chars: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// What is compared: lower case, without spaces or dashes.
fn normalized(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Domain {
    /// Start setting up two-factor sign-in: a new secret waits for its first code.
    pub async fn begin_two_factor(&self, user: &User) -> DomainResult<TotpSetup> {
        if user.two_factor {
            return Err(DomainError::conflict(
                "two_factor_on",
                "two-factor sign-in is on already: turn it off first to set up another app",
            ));
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 20]);
        getrandom::fill(&mut secret[..]).expect("the system's random source");
        self.store.set_totp_pending(user.id, &secret[..]).await?;
        let encoded = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &secret[..]);
        let otpauth_uri = format!(
            "otpauth://totp/{}:{}?secret={encoded}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECS}",
            percent_encode(ISSUER),
            percent_encode(&user.email),
            percent_encode(ISSUER)
        );
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map_err(|e| DomainError::Internal(format!("qr: {e}")))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build();
        Ok(TotpSetup {
            secret: encoded,
            otpauth_uri,
            qr_svg,
        })
    }

    /// Confirm with the first code from the app: two-factor sign-in is on, and here are the recovery codes
    /// (shown once; only their hashes are kept).
    pub async fn confirm_two_factor(&self, user: &User, code: &str) -> DomainResult<Vec<String>> {
        let pending = self.store.totp_pending(user.id).await?.ok_or_else(|| {
            DomainError::invalid("code", "set up two-factor sign-in first (a new secret)")
        })?;
        let step = matching_step(&pending, &normalized(code))?.ok_or_else(|| {
            DomainError::invalid(
                "code",
                "that code is not right: type the current code, and check the clock of the phone",
            )
        })?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| sha256_hex(&normalized(c))).collect();
        self.store
            .enable_totp(user.id, &pending, step, &hashes)
            .await?;
        Ok(codes)
    }

    /// Turn it off: the password and a current code (or a recovery code) are asked for.
    pub async fn disable_two_factor(
        &self,
        user: &User,
        password: &str,
        code: &str,
    ) -> DomainResult<()> {
        if !user.two_factor {
            return Ok(());
        }
        if !verify_password(password, &user.password_hash).await {
            return Err(DomainError::Unauthorized("wrong password".into()));
        }
        if !self.second_factor_ok(user, code).await? {
            return Err(DomainError::Unauthorized(
                "wrong or already used code".into(),
            ));
        }
        Ok(self.store.disable_totp(user.id).await?)
    }

    /// A TOTP code (used once) or an unused recovery code (spent now).
    pub(crate) async fn second_factor_ok(&self, user: &User, code: &str) -> DomainResult<bool> {
        let code = normalized(code);
        if code.is_empty() {
            return Ok(false);
        }
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let Some((secret, last)) = self.store.totp_secret(user.id).await? else {
                return Ok(false);
            };
            return Ok(match matching_step(&secret, &code)? {
                Some(step) if step > last => self.store.use_totp_step(user.id, step).await?,
                _ => false,
            });
        }
        Ok(self
            .store
            .use_recovery_code(user.id, &sha256_hex(&code))
            .await?)
    }

    pub async fn recovery_codes_left(&self, user: &User) -> DomainResult<i64> {
        Ok(self.store.recovery_codes_left(user.id).await?)
    }
}

#[cfg(test)]
mod tests {
    /// RFC 6238's SHA-1 test vector (secret "12345678901234567890", T = 59 s: 94287082, 6 digits 287082).
    #[test]
    fn codes_are_rfc_6238() {
        let t = super::totp(b"12345678901234567890").unwrap();
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1_111_111_109), "081804");
        assert_eq!(super::normalized(" AbCde-fGhJk "), "abcdefghjk");
        let c = super::recovery_code();
        assert_eq!(c.len(), 11);
        assert_ne!(c, super::recovery_code());
    }
}
