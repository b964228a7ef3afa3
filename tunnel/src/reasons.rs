//! One table per drop-reason enum: each variant's stable counter name and its dense
//! index, so a caller can count every reason in a fixed array (no map, no string
//! lookups on the frame path) and list every reason, zeros too, in status and metrics.

/// Implements `NAMES`, `COUNT`, `name()` and `index()` for an enum from one table of
/// `Variant => "counter_name"` rows, in declaration order. Payloads are ignored:
/// `UnknownType(7)` and `UnknownType(9)` are one reason. Every variant must appear
/// exactly once (the `match` is exhaustive, so a missing row does not compile).
#[macro_export]
macro_rules! counted_reasons {
    ($ty:ident { $($variant:ident => $name:literal,)+ }) => {
        impl $ty {
            /// Every reason's counter name, in index order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// How many reasons there are: the length of a counter array.
            pub const COUNT: usize = Self::NAMES.len();

            /// A stable counter name for this reason.
            pub const fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)+
                }
            }

            /// This reason's position in [`Self::NAMES`] and in a counter array.
            pub const fn index(&self) -> usize {
                #[allow(dead_code, clippy::enum_variant_names)]
                enum Index {
                    $($variant,)+
                }
                match self {
                    $(Self::$variant { .. } => Index::$variant as usize,)+
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::crypto::TunnelDrop;
    use crate::crypto::datagram::PushError;
    use crate::crypto::session::SealError;
    use crate::{HeartbeatError, PmtuDrop, SegmentError, VxlanError};

    fn distinct(names: &[&str]) -> bool {
        let set: std::collections::HashSet<_> = names.iter().collect();
        set.len() == names.len()
    }

    #[test]
    fn every_table_has_distinct_names_in_index_order() {
        for names in [
            VxlanError::NAMES,
            TunnelDrop::NAMES,
            SegmentError::NAMES,
            SealError::NAMES,
            PushError::NAMES,
            HeartbeatError::NAMES,
            PmtuDrop::NAMES,
        ] {
            assert!(distinct(names), "{names:?}");
        }
        let samples = [
            (
                TunnelDrop::UnknownType(7).index(),
                TunnelDrop::UnknownType(7).name(),
            ),
            (
                TunnelDrop::TtlExceeded.index(),
                TunnelDrop::TtlExceeded.name(),
            ),
            (TunnelDrop::Truncated.index(), TunnelDrop::Truncated.name()),
        ];
        for (i, name) in samples {
            assert_eq!(TunnelDrop::NAMES[i], name);
        }
        assert_eq!(TunnelDrop::COUNT, 14);
        assert_eq!(
            TunnelDrop::UnknownSession(1).index(),
            TunnelDrop::UnknownSession(2).index()
        );
        assert_eq!(
            PmtuDrop::NAMES[PmtuDrop::Malformed.index()],
            "pmtu_malformed"
        );
    }
}
