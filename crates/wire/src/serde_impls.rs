//! Serde forms of the types configuration files and the API carry: a MAC address as its
//! text (`"02:00:00:00:00:01"`), a VLAN id as a number checked on the way in (1..=4094),
//! so an invalid value stops a load with a message instead of being taken.

use core::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{MacAddr, Vid};

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MacAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address like \"02:00:00:00:00:01\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MacAddr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Vid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.get())
    }
}

impl<'de> Deserialize<'de> for Vid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Vid, D::Error> {
        let v = u16::deserialize(d)?;
        Vid::new(v).map_err(|_| de::Error::custom(format!("VLAN id {v} is invalid: use 1..=4094")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, "\"02:00:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&s).unwrap(), m);
        assert!(serde_json::from_str::<MacAddr>("\"zz\"").is_err());
        assert_eq!(
            serde_json::from_str::<Vid>("10").unwrap(),
            Vid::new(10).unwrap()
        );
        let e = serde_json::from_str::<Vid>("5000").unwrap_err().to_string();
        assert!(e.contains("5000"), "{e}");
    }
}
