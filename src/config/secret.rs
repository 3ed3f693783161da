use std::fmt;
use std::str::FromStr;

/// A value that must never be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that needs it (a signer, a connection).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// A PostgreSQL URL whose password is masked whenever it is shown.
#[derive(Clone)]
pub struct DatabaseUrl(Secret<url::Url>);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        self.0.expose().as_str()
    }

    /// The URL with its password, and any `password` query parameter, replaced by `****`.
    pub fn masked(&self) -> String {
        let mut url = self.0.expose().clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("****"));
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.masked())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Never echo the input: it may hold a password.
        let url = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "postgres" | "postgresql" => {}
            other => {
                return Err(format!(
                    "scheme must be postgres:// or postgresql://, not {other}://"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) && !url.query_pairs().any(|(k, _)| k == "host")
        {
            return Err("the URL names no host".into());
        }
        Ok(Self(Secret::new(url)))
    }
}
