//! Enums whose variants have names outside Rust: the stored text (`as_db`/`from_db`) and, for
//! some, a separate REST spelling. [`named_enum!`] declares such an enum from one table per
//! spelling, so that each name is written once and both directions of a mapping, and the list
//! of variants (`ALL`), always agree.

/// Declares a plain value enum (`Debug, Clone, Copy, PartialEq, Eq, Hash`; further attributes
/// such as `#[derive(Default)]` go before `pub enum`) with `ALL` (every variant, in declaration
/// order) and, per table, a `to(self) -> &'static str` and a `from(&str) -> Option<Self>`:
///
/// ```ignore
/// named_enum! {
///     pub enum Kind {
///         Threshold = "THRESHOLD",
///         Count = "COUNT",
///     }
///     // optional further tables, each a pair of method names
///     api_name / from_api {
///         Threshold => "threshold",
///         Count => "count",
///     }
/// }
/// ```
///
/// The names in the enum body are the stored ones (`as_db`/`from_db`, and [`Named`]).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $db:literal ),+ $(,)?
        }
        $( $(#[$tmeta:meta])* $to:ident / $from:ident { $( $tv:ident => $ts:literal ),+ $(,)? } )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];

            $crate::domain::names::named_enum!(@table as_db / from_db { $( $variant => $db ),+ });
            $( $crate::domain::names::named_enum!(@table $(#[$tmeta])* $to / $from { $( $tv => $ts ),+ }); )*
        }

        impl $crate::domain::names::Named for $name {
            fn all() -> &'static [Self] {
                &Self::ALL
            }

            fn name(self) -> &'static str {
                self.as_db()
            }

            fn from_name(s: &str) -> Option<Self> {
                Self::from_db(s)
            }
        }
    };
    (@table $(#[$tmeta:meta])* $to:ident / $from:ident { $( $v:ident => $s:literal ),+ }) => {
        $(#[$tmeta])*
        pub fn $to(self) -> &'static str {
            match self {
                $( Self::$v => $s ),+
            }
        }

        /// The variant of a name; `None` for a name no variant has.
        pub fn $from(s: &str) -> Option<Self> {
            match s {
                $( $s => Some(Self::$v), )+
                _ => None,
            }
        }
    };
}

pub(crate) use named_enum;

/// The stored names of a [`named_enum!`] enum, for code that reads any of them.
pub trait Named: Sized + Copy + 'static {
    /// Every variant, in declaration order.
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self>;

    /// The REST spelling where it is the stored name in lower case (statuses, §9.1).
    fn api_name(self) -> String {
        self.name().to_ascii_lowercase()
    }
}
