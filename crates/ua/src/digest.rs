//! Digest authentication for requests a UA sends (RFC 3261 §22.4, RFC 2617, RFC 7616/8760):
//! MD5 and SHA-256, with `qop=auth` when the challenge offers it.

use md5::Md5;
use rollover_sip::Auth;
use sha2::{Digest, Sha256};

/// A username and password for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(sha256: bool, text: &str) -> String {
    if sha256 {
        hex(&Sha256::digest(text.as_bytes()))
    } else {
        hex(&Md5::digest(text.as_bytes()))
    }
}

/// The `Authorization` (or `Proxy-Authorization`) value answering `challenge` for a request
/// with this method and Request-URI; `None` for a scheme or algorithm we cannot do.
pub fn authorization(
    challenge: &Auth<'_>,
    creds: &Credentials,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    if !challenge.scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let realm = challenge.param("realm")?;
    let nonce = challenge.param("nonce")?;
    let algorithm = challenge.param("algorithm").map(|a| a.to_ascii_uppercase());
    let sha256 = match algorithm.as_deref() {
        None | Some("MD5") => false,
        Some("SHA-256") => true,
        _ => return None,
    };
    let qop_auth = challenge
        .param("qop")
        .is_some_and(|q| q.split(',').any(|v| v.trim().eq_ignore_ascii_case("auth")));
    let ha1 = hash(
        sha256,
        &format!("{}:{realm}:{}", creds.username, creds.password),
    );
    let ha2 = hash(sha256, &format!("{method}:{uri}"));
    let nc = "00000001";
    let response = if qop_auth {
        hash(sha256, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        hash(sha256, &format!("{ha1}:{nonce}:{ha2}"))
    };
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
        creds.username,
        if sha256 { "SHA-256" } else { "MD5" }
    );
    if qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = challenge.param("opaque") {
        v.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(v: &str) -> &str {
        v.split("response=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
    }

    #[test]
    fn rfc2617_md5_example() {
        let c = Auth::parse(r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#).unwrap();
        let creds = Credentials {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
        };
        let v = authorization(&c, &creds, "GET", "/dir/index.html", "0a4f113b").unwrap();
        assert_eq!(response_of(&v), "6629fae49393a05397450978507c4ef1");
        assert!(v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn rfc7616_sha256_example() {
        let c = Auth::parse(r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#).unwrap();
        let creds = Credentials {
            username: "Mufasa".into(),
            password: "Circle of Life".into(),
        };
        let v = authorization(
            &c,
            &creds,
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        .unwrap();
        assert_eq!(
            response_of(&v),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn unknown_algorithm_or_scheme_is_declined() {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let c = Auth::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#).unwrap();
        assert!(authorization(&c, &creds, "INVITE", "sip:a@b", "c").is_none());
        let c = Auth::parse(r#"Basic realm="r""#).unwrap();
        assert!(authorization(&c, &creds, "INVITE", "sip:a@b", "c").is_none());
    }
}
