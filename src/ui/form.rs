//! Form bodies (`application/x-www-form-urlencoded`), read into zeroizing
//! buffers: a form may carry a secret's value, which must not linger in
//! freed memory, and is never logged, echoed or put in an error.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use zeroize::Zeroizing;

use super::guard::UiError;

/// The largest form the UI accepts (a value is at most 64 KiB; a form
/// holds a value plus a few short fields).
pub const MAX_FORM_BYTES: usize = 96 * 1024;

/// A parsed form. Its fields are wiped on drop; `Debug` names the keys only.
pub struct UiForm {
    fields: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for UiForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.fields.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("UiForm").field("keys", &keys).finish()
    }
}

impl UiForm {
    /// Parse a form body.
    pub fn parse(body: &[u8]) -> Self {
        let fields = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
            .collect();
        Self { fields }
    }

    /// The first value of `key`, trimmed, if it is not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The first value of `key` as sent (values are not trimmed: spaces
    /// may be part of a secret).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (repeated key/value rows).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Is a checkbox `key` checked?
    pub fn checked(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<S: Send + Sync> FromRequest<S> for UiForm {
    type Rejection = UiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(UiError::bad_request(
                "forms must be sent as application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| UiError::bad_request("the form is too large or could not be read"))?;
        // The buffer may hold a value: parse it, then wipe our copy.
        let buf = Zeroizing::new(bytes.to_vec());
        drop(bytes);
        Ok(Self::parse(&buf))
    }
}

#[cfg(test)]
mod tests {
    use super::UiForm;

    #[test]
    fn fields_and_debug() {
        let f = UiForm::parse(b"a=+1+&b=&k=x&k=y&value=s3cret%21");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.raw("a"), Some(" 1 "));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.all("k"), vec!["x", "y"]);
        assert_eq!(f.raw("value"), Some("s3cret!"));
        assert!(!format!("{f:?}").contains("s3cret"));
    }
}
