//! Lenient field readers for bodies written by non-Java clients (numbers as strings, etc.),
//! matching fastjson's tolerance (spec §6.7).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// An i64 given as a number or a numeric string (C++ sends `subVersion` as a string).
pub fn i64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} does not fit a 64-bit integer")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e18 {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(0);
            }
            t.parse()
                .map_err(|_| E::custom(format!("{v:?} is not an integer")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// An i32 given as a number or a numeric string.
pub fn i32_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = i64_or_string(d)?;
    i32::try_from(v).map_err(|_| de::Error::custom(format!("{v} does not fit a 32-bit integer")))
}

/// A bool given as a boolean, `"true"`/`"false"`, or 0/1.
pub fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v.trim().eq_ignore_ascii_case("true"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// A list that may be given as null.
pub fn vec_or_null<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

use serde::Deserialize;

/// Declares a Java enum that fastjson writes by name and C++ writes by ordinal; reads names
/// (and aliases), ordinals and numeric strings; writes names.
macro_rules! java_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $variant:ident = $ord:literal => $jname:literal $(| $alias:literal)* ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $variant ),* }

        impl $name {
            /// Java enum name.
            pub fn name(self) -> &'static str {
                match self { $( $name::$variant => $jname ),* }
            }
            /// Java ordinal.
            pub fn ordinal(self) -> i64 {
                match self { $( $name::$variant => $ord ),* }
            }
            pub fn from_ordinal(v: i64) -> Option<Self> {
                match v { $( $ord => Some($name::$variant), )* _ => None }
            }
            pub fn from_name(v: &str) -> Option<Self> {
                $( if v.eq_ignore_ascii_case($jname) $(|| v.eq_ignore_ascii_case($alias))* {
                    return Some($name::$variant);
                } )*
                None
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or ordinal"))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        $name::from_ordinal(v).ok_or_else(|| E::custom(format!(
                            concat!("{} is not a ", stringify!($name), " ordinal"), v)))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        if let Some(x) = $name::from_name(v) {
                            return Ok(x);
                        }
                        match v.trim().parse::<i64>() {
                            Ok(n) => self.visit_i64(n),
                            Err(_) => Err(E::custom(format!(
                                concat!("{:?} is not a ", stringify!($name)), v))),
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use java_enum;
