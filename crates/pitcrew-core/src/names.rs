//! String enums shared by the CLI, the stores and the JSON output: one spelling each, parsed
//! with an error that lists the valid values.

/// A value that is not one of a fixed set of names; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; valid values: {}", .valid.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub valid: Vec<String>,
}

/// Defines a `Copy` enum whose variants have one snake_case name each, with `as_str`, `ALL`,
/// `Display`, `FromStr` (accepting `-` for `_`) and serde in the same spelling; with the
/// `openapi` feature, an OpenAPI schema listing the same names. Exported for pitcrew's other
/// crates (they need `serde` as a dependency).
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == normalized)
                    .ok_or_else(|| $crate::UnknownName {
                        what: $what,
                        given: s.to_string(),
                        valid: Self::ALL.iter().map(|v| v.as_str().to_string()).collect(),
                    })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        $crate::__named_enum_schema!($name, $($text),+);
    };
}

/// The OpenAPI schema of a [`named_enum!`]: a string, one of its names. Chosen by this crate's
/// `openapi` feature, so crates using `named_enum!` need no feature of their own.
#[cfg(feature = "openapi")]
#[doc(hidden)]
#[macro_export]
macro_rules! __named_enum_schema {
    ($name:ident, $($text:literal),+) => {
        impl $crate::__utoipa::PartialSchema for $name {
            fn schema() -> $crate::__utoipa::openapi::RefOr<$crate::__utoipa::openapi::schema::Schema> {
                $crate::__utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type($crate::__utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl $crate::__utoipa::ToSchema for $name {}
    };
}

#[cfg(not(feature = "openapi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __named_enum_schema {
    ($($ignored:tt)*) => {};
}
