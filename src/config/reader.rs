use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, ConfigErrors, EnvSource};

/// Reads variables one by one, remembering every problem so they can be reported together.
pub(super) struct Reader<'a> {
    env: &'a dyn EnvSource,
    errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    pub fn new(env: &'a dyn EnvSource) -> Self {
        Self {
            env,
            errors: Vec::new(),
        }
    }

    /// A set, non-blank value; blank counts as unset so `VAR=` in a manifest does not sneak through.
    fn raw(&self, var: &str) -> Option<String> {
        self.env
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn problem(&mut self, variable: &'static str, problem: impl Into<String>) {
        self.errors.push(ConfigError {
            variable,
            problem: problem.into(),
        });
    }

    fn parse<T: FromStr>(&mut self, var: &'static str, raw: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(var, format!("is invalid ({e}): got {raw:?}"));
                None
            }
        }
    }

    /// A required value that may hold a secret: a parse error never echoes it.
    pub fn required_secret<T: FromStr>(&mut self, var: &'static str, example: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let Some(raw) = self.raw(var) else {
            self.problem(var, format!("is not set: export it, e.g. {var}={example}"));
            return None;
        };
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(var, format!("is invalid: {e}"));
                None
            }
        }
    }

    /// An optional value that holds a secret: a parse error never echoes it.
    pub fn optional_secret<T: FromStr>(&mut self, var: &'static str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.raw(var)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(var, format!("is invalid: {e}"));
                None
            }
        }
    }

    pub fn optional<T: FromStr>(&mut self, var: &'static str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.raw(var)?;
        self.parse(var, &raw)
    }

    pub fn or_default<T: FromStr>(&mut self, var: &'static str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.optional(var).unwrap_or(default)
    }

    pub fn ranged<T>(&mut self, var: &'static str, default: T, range: RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        let value = self.or_default(var, default);
        if range.contains(&value) {
            value
        } else {
            self.problem(
                var,
                format!(
                    "must be between {} and {}: got {value}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }

    /// One of a fixed set of words.
    pub fn one_of(&mut self, var: &'static str, default: &str, allowed: &[&str]) -> String {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        if !allowed.contains(&value.as_str()) {
            self.problem(
                var,
                format!("must be one of {}: got {value:?}", allowed.join(", ")),
            );
            return default.to_owned();
        }
        value
    }

    /// A comma-separated list of secrets; blanks between commas are dropped. Never echoed.
    pub fn secret_list(&mut self, var: &'static str) -> Vec<super::Secret<String>> {
        let Some(raw) = self.raw(var) else {
            return Vec::new();
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| super::Secret::new(s.to_owned()))
            .collect()
    }

    /// A duration such as `30s`, `5m` or `7days`.
    pub fn duration(&mut self, var: &'static str, default: Duration) -> Duration {
        let Some(raw) = self.raw(var) else {
            return default;
        };
        match humantime::parse_duration(&raw) {
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    var,
                    format!("is not a duration ({e}): got {raw:?}, expected e.g. 30s, 5m, 7days"),
                );
                default
            }
        }
    }

    /// A `tracing` filter directive, checked now so a typo does not silently drop logs.
    pub fn filter(&mut self, var: &'static str, default: &str) -> String {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&value) {
            self.problem(
                var,
                format!("is not a valid log filter ({e}): got {value:?}"),
            );
        }
        value
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}
