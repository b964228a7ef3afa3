//! How weft's checked types appear in JSON, for the API and the state file alike: a VNI
//! is a number, a MAC is `aa:bb:cc:dd:ee:ff`. A value that does not check is refused while
//! decoding, so nothing inward of the decoder ever sees an unchecked one.
//!
//! Use with `#[serde(with = "crate::api::codec::vni")]` (or `vni_opt`, `mac`, `mac_opt`).

use tunnel::Vni;

/// Why a number is not the VNI of a weft network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid VNI {0}: must be 1-16777215")]
pub(crate) struct InvalidVni(pub u64);

/// The VNI of a weft network: 1 ..= 2^24 − 1. Zero is refused (tools read it as "no
/// VNI"), and so is anything that does not fit the VXLAN header's 24 bits.
pub(crate) fn network_vni(value: u64) -> Result<Vni, InvalidVni> {
    u32::try_from(value)
        .ok()
        .filter(|&v| v != 0)
        .and_then(Vni::new)
        .ok_or(InvalidVni(value))
}

/// A VNI constant, checked when the program is compiled: use it only to initialise a
/// `const` (a bad value then fails the build, never a running router).
#[allow(
    clippy::panic,
    reason = "evaluated at compile time when used in a const: a bad constant fails the build"
)]
pub(crate) const fn const_vni(value: u32) -> Vni {
    match Vni::new(value) {
        Some(v) if value != 0 => v,
        _ => panic!("not the VNI of a weft network"),
    }
}

/// Parses a VNI from a command-line argument (clap's `value_parser`).
pub(crate) fn parse_vni(text: &str) -> Result<Vni, String> {
    let value: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    network_vni(value).map_err(|e| e.to_string())
}

/// A [`Vni`] as a JSON number.
pub(crate) mod vni {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use tunnel::Vni;

    /// Writes the number.
    pub(crate) fn serialize<S: Serializer>(vni: &Vni, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(vni.get())
    }

    /// Reads and checks the number.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vni, D::Error> {
        super::network_vni(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An optional [`Vni`] as a JSON number or null.
pub(crate) mod vni_opt {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use tunnel::Vni;

    /// Writes the number, or null.
    pub(crate) fn serialize<S: Serializer>(vni: &Option<Vni>, s: S) -> Result<S::Ok, S::Error> {
        match vni {
            Some(v) => s.serialize_some(&v.get()),
            None => s.serialize_none(),
        }
    }

    /// Reads and checks the number, if any.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vni>, D::Error> {
        Option::<u64>::deserialize(d)?
            .map(super::network_vni)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

/// A [`wire::Mac`] as `aa:bb:cc:dd:ee:ff`.
pub(crate) mod mac {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes the text form.
    pub(crate) fn serialize<S: Serializer>(mac: &wire::Mac, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    /// Reads and checks the text form.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<wire::Mac, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An optional [`wire::Mac`] as `aa:bb:cc:dd:ee:ff` or null.
pub(crate) mod mac_opt {
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes the text form, or null.
    pub(crate) fn serialize<S: Serializer>(
        mac: &Option<wire::Mac>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.collect_str(m),
            None => s.serialize_none(),
        }
    }

    /// Reads and checks the text form, if any.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<wire::Mac>, D::Error> {
        Option::<std::borrow::Cow<'_, str>>::deserialize(d)?
            .map(|t| t.parse())
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Both {
        #[serde(with = "vni")]
        vni: Vni,
        #[serde(with = "vni_opt", default)]
        other: Option<Vni>,
        #[serde(with = "mac")]
        mac: wire::Mac,
        #[serde(with = "mac_opt", default)]
        maybe: Option<wire::Mac>,
    }

    #[test]
    fn vnis_and_macs_round_trip_and_bad_ones_are_refused_while_decoding() {
        let text =
            r#"{"vni":77,"other":null,"mac":"02:00:00:00:00:01","maybe":"02:00:00:00:00:02"}"#;
        let both: Both = serde_json::from_str(text).unwrap();
        assert_eq!(both.vni.get(), 77);
        assert_eq!(serde_json::to_string(&both).unwrap(), text);
        for bad in [
            r#"{"vni":0,"mac":"02:00:00:00:00:01"}"#,
            r#"{"vni":16777216,"mac":"02:00:00:00:00:01"}"#,
            r#"{"vni":-1,"mac":"02:00:00:00:00:01"}"#,
            r#"{"vni":1,"other":99999999999,"mac":"02:00:00:00:00:01"}"#,
            r#"{"vni":1,"mac":"02:00:00:00:01"}"#,
            r#"{"vni":1,"mac":"02:00:00:00:00:01","maybe":"x"}"#,
        ] {
            assert!(serde_json::from_str::<Both>(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_vni("16777215").unwrap().get(), 0xff_ffff);
        assert!(parse_vni("0").is_err());
        assert!(parse_vni("blue").is_err());
    }
}
