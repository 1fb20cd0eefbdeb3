//! Keys that sort as bytes, values that travel compactly, and their text form.
//!
//! The framework never deserializes a key to sort or group: every key type encodes to an
//! *order-preserving* byte string ([`EncodeKey`]) so that comparing two encodings with
//! `memcmp` gives the same order as comparing the values. The rules:
//!
//! - unsigned integers: big-endian, fixed width;
//! - signed integers: big-endian with the sign bit flipped (so -1 < 0 < 1 as bytes);
//! - `f64`: IEEE bits, all flipped for negatives, sign flipped for positives;
//! - strings and byte strings: the raw bytes when nothing follows them in the key (the
//!   common single-string key costs nothing); inside a tuple, `0x00` is escaped as
//!   `00 FF` and the value ends with `00 01`, so a prefix sorts first and the next field
//!   can never be mistaken for part of the string;
//! - tuples: the fields' encodings one after another.
//!
//! Values are serialized with serde through `postcard` (varint integers, length-prefixed
//! strings): compact, fast, and schema-free, which is all a value needs since it is never
//! compared. [`Blob`] / [`BlobBuf`] carry raw bytes as a single length-prefixed run rather
//! than as a sequence of `u8`s.
//!
//! [`ToText`] is how keys and values appear in text output (`key<TAB>value`).

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// A type whose values encode to bytes that sort in the value's order.
pub trait EncodeKey {
    /// Appends the encoding to `out`; `last` is true when nothing follows this value in
    /// the key, which lets variable-length values skip their terminator.
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool);

    /// Appends the encoding of this value as a whole key.
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.encode_key_into(out, true);
    }

    /// The encoding of this value as a whole key.
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_key(&mut v);
        v
    }
}

/// A key type that can be rebuilt from its encoding.
pub trait DecodeKey: Sized {
    /// Decodes one value from the front of `input`, advancing it; `last` as in
    /// [`EncodeKey::encode_key_into`].
    ///
    /// # Errors
    /// [`Error::Decode`] if the bytes are not an encoding of this type.
    fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self>;

    /// Decodes a whole key.
    ///
    /// # Errors
    /// [`Error::Decode`] if the bytes are not exactly one encoding of this type.
    fn decode_key(bytes: &[u8]) -> Result<Self> {
        let mut input = bytes;
        let v = Self::decode_key_from(&mut input, true)?;
        if !input.is_empty() {
            return Err(Error::Decode(format!("key: {} trailing bytes", input.len())));
        }
        Ok(v)
    }
}

/// How a key or value is written in text output.
pub trait ToText {
    /// Appends the text form to `out`.
    fn write_text(&self, out: &mut Vec<u8>);
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(Error::Decode(format!("key: {what} needs {n} bytes, {} left", input.len())));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>, last: bool) {
    if last {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

fn decode_bytes(input: &mut &[u8], last: bool) -> Result<Vec<u8>> {
    if last {
        let v = input.to_vec();
        *input = &[];
        return Ok(v);
    }
    let mut out = Vec::new();
    let mut i = 0;
    let src = *input;
    loop {
        let Some(at) = memchr::memchr(0, &src[i..]) else {
            return Err(Error::Decode("key: unterminated string in a tuple".into()));
        };
        out.extend_from_slice(&src[i..i + at]);
        match src.get(i + at + 1) {
            Some(0xFF) => {
                out.push(0);
                i += at + 2;
            }
            Some(1) => {
                *input = &src[i + at + 2..];
                return Ok(out);
            }
            _ => return Err(Error::Decode("key: bad escape in a string".into())),
        }
    }
}

impl EncodeKey for [u8] {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }
}

impl EncodeKey for Vec<u8> {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }
}

impl DecodeKey for Vec<u8> {
    fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self> {
        decode_bytes(input, last)
    }
}

impl EncodeKey for str {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self.as_bytes(), out, last);
    }
}

impl EncodeKey for String {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self.as_bytes(), out, last);
    }
}

impl DecodeKey for String {
    fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self> {
        String::from_utf8(decode_bytes(input, last)?)
            .map_err(|_| Error::Decode("key: string is not UTF-8".into()))
    }
}

impl<T: EncodeKey + ?Sized> EncodeKey for &T {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        (**self).encode_key_into(out, last);
    }
}

/// A reducer key type that decodes nothing, for reducers that ignore the key or take
/// its encoded bytes from [`Values::raw_key`](crate::api::Values::raw_key): it saves a
/// decode, and for byte-string keys an allocation, per key group. Use it only as the
/// whole key (it takes every remaining byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawKey;

impl DecodeKey for RawKey {
    fn decode_key_from(input: &mut &[u8], _last: bool) -> Result<Self> {
        *input = &[];
        Ok(RawKey)
    }
}

impl EncodeKey for () {
    fn encode_key_into(&self, _out: &mut Vec<u8>, _last: bool) {}
}

impl DecodeKey for () {
    fn decode_key_from(_input: &mut &[u8], _last: bool) -> Result<Self> {
        Ok(())
    }
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl EncodeKey for $t {
            fn encode_key_into(&self, out: &mut Vec<u8>, _last: bool) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
        impl DecodeKey for $t {
            fn decode_key_from(input: &mut &[u8], _last: bool) -> Result<Self> {
                let b = take(input, std::mem::size_of::<$t>(), stringify!($t))?;
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                Ok(<$t>::from_be_bytes(a))
            }
        }
        impl ToText for $t {
            fn write_text(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl EncodeKey for $t {
            fn encode_key_into(&self, out: &mut Vec<u8>, _last: bool) {
                // Flipping the sign bit maps MIN..=MAX onto 0..=MAX of the unsigned type.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
        }
        impl DecodeKey for $t {
            fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self> {
                let u = <$u>::decode_key_from(input, last)?;
                Ok((u ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
        impl ToText for $t {
            fn write_text(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
signed_key!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl EncodeKey for f64 {
    fn encode_key_into(&self, out: &mut Vec<u8>, _last: bool) {
        let bits = self.to_bits();
        let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
        out.extend_from_slice(&ordered.to_be_bytes());
    }
}

impl DecodeKey for f64 {
    fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self> {
        let o = u64::decode_key_from(input, last)?;
        let bits = if o >> 63 == 1 { o & !(1 << 63) } else { !o };
        Ok(f64::from_bits(bits))
    }
}

impl EncodeKey for bool {
    fn encode_key_into(&self, out: &mut Vec<u8>, _last: bool) {
        out.push(u8::from(*self));
    }
}

impl DecodeKey for bool {
    fn decode_key_from(input: &mut &[u8], _last: bool) -> Result<Self> {
        match take(input, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::Decode(format!("key: {b} is not a bool"))),
        }
    }
}

macro_rules! tuple_key {
    ($($name:ident)+ ; $lastname:ident) => {
        impl<$($name: EncodeKey,)+ $lastname: EncodeKey> EncodeKey for ($($name,)+ $lastname) {
            #[allow(non_snake_case)]
            fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
                let ($($name,)+ $lastname) = self;
                $($name.encode_key_into(out, false);)+
                $lastname.encode_key_into(out, last);
            }
        }
        impl<$($name: DecodeKey,)+ $lastname: DecodeKey> DecodeKey for ($($name,)+ $lastname) {
            fn decode_key_from(input: &mut &[u8], last: bool) -> Result<Self> {
                Ok(($($name::decode_key_from(input, false)?,)+ $lastname::decode_key_from(input, last)?))
            }
        }
        impl<$($name: ToText,)+ $lastname: ToText> ToText for ($($name,)+ $lastname) {
            #[allow(non_snake_case)]
            fn write_text(&self, out: &mut Vec<u8>) {
                let ($($name,)+ $lastname) = self;
                $($name.write_text(out); out.push(b'\t');)+
                $lastname.write_text(out);
            }
        }
    };
}
tuple_key!(A; B);
tuple_key!(A B; C);
tuple_key!(A B C; D);

impl ToText for str {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl ToText for String {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl ToText for [u8] {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl ToText for Vec<u8> {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl ToText for f64 {
    fn write_text(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{self}");
    }
}

impl ToText for bool {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl ToText for () {
    fn write_text(&self, _out: &mut Vec<u8>) {}
}

impl<T: ToText + ?Sized> ToText for &T {
    fn write_text(&self, out: &mut Vec<u8>) {
        (**self).write_text(out);
    }
}

/// Borrowed raw bytes as a value: serialized as one length-prefixed run (serde would
/// otherwise write `[u8]` as a sequence of single bytes, one call each).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Blob([u8]);

impl Blob {
    /// Views `bytes` as a [`Blob`] (no copy).
    pub fn new(bytes: &[u8]) -> &Blob {
        // SAFETY: `Blob` is `repr(transparent)` over `[u8]`, so the layouts and pointer
        // metadata are identical.
        unsafe { &*(bytes as *const [u8] as *const Blob) }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl ToText for Blob {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl EncodeKey for Blob {
    fn encode_key_into(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(&self.0, out, last);
    }
}

/// Owned raw bytes as a value; the owned counterpart of [`Blob`] (same encoding).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobBuf(pub Vec<u8>);

impl Serialize for BlobBuf {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for BlobBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<BlobBuf, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlobBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<BlobBuf, E> {
                Ok(BlobBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<BlobBuf, E> {
                Ok(BlobBuf(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<BlobBuf, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(BlobBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl ToText for BlobBuf {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

/// Serializes a value (postcard) onto the end of `out`.
///
/// # Errors
/// [`Error::Encode`] if serde refuses the value (e.g. a map with non-string keys is fine,
/// but a serializer error from a custom impl is passed on).
pub fn encode_value<V: Serialize + ?Sized>(value: &V, out: &mut Vec<u8>) -> Result<()> {
    postcard::to_io(value, &mut *out).map(|_| ()).map_err(|e| Error::Encode(format!("value: {e}")))
}

/// Deserializes a value written by [`encode_value`].
///
/// # Errors
/// [`Error::Decode`] if the bytes are not such a value.
pub fn decode_value<V: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode(format!("value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for property-style tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn bytes(&mut self) -> Vec<u8> {
            let len = (self.next() % 6) as usize;
            // A tiny alphabet with 0x00, 0x01 and 0xFF makes prefixes and escapes common.
            (0..len).map(|_| [0u8, 1, 2, 0xFF, b'a'][(self.next() % 5) as usize]).collect()
        }
        fn int(&mut self) -> i64 {
            match self.next() % 4 {
                0 => (self.next() % 5) as i64 - 2,
                1 => i64::MIN + (self.next() % 3) as i64,
                2 => i64::MAX - (self.next() % 3) as i64,
                _ => self.next() as i64,
            }
        }
    }

    fn check_order<T: EncodeKey + DecodeKey + PartialOrd + std::fmt::Debug>(values: &[T]) {
        for a in values {
            let ea = a.to_key_bytes();
            assert_eq!(T::decode_key(&ea).unwrap().partial_cmp(a), Some(std::cmp::Ordering::Equal));
            for b in values {
                let eb = b.to_key_bytes();
                assert_eq!(a.partial_cmp(b), Some(ea.cmp(&eb)), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn integers_sort_as_bytes() {
        let mut r = Rng(1);
        let v: Vec<i64> = (0..300).map(|_| r.int()).collect();
        check_order(&v);
        let u: Vec<u32> = (0..300).map(|_| r.next() as u32).collect();
        check_order(&u);
        check_order(&[i8::MIN, -1, 0, 1, i8::MAX]);
    }

    #[test]
    fn floats_sort_as_bytes() {
        let v = [f64::NEG_INFINITY, -1e300, -2.5, -0.0001, 0.0, 1e-300, 3.5, 1e300, f64::INFINITY];
        check_order(&v);
    }

    #[test]
    fn strings_and_bytes_sort_as_bytes() {
        let mut r = Rng(2);
        let v: Vec<Vec<u8>> = (0..200).map(|_| r.bytes()).collect();
        check_order(&v);
        let s: Vec<String> =
            ["", "a", "a\0", "a\0b", "ab", "b", "\u{e9}"].iter().map(|s| s.to_string()).collect();
        check_order(&s);
    }

    #[test]
    fn tuples_sort_field_by_field() {
        let mut r = Rng(3);
        let v: Vec<(Vec<u8>, i64)> = (0..200).map(|_| (r.bytes(), r.int())).collect();
        check_order(&v);
        let w: Vec<(Vec<u8>, Vec<u8>, u8)> =
            (0..150).map(|_| (r.bytes(), r.bytes(), r.next() as u8)).collect();
        check_order(&w);
        let x: Vec<(i64, String)> =
            (0..100).map(|_| (r.int(), format!("{}", r.next() % 7))).collect();
        check_order(&x);
    }

    #[test]
    fn a_single_string_key_is_its_bytes() {
        assert_eq!("word".to_key_bytes(), b"word");
        assert_eq!(("a", 1u8).to_key_bytes(), [b'a', 0, 1, 1]);
        assert!(String::decode_key(&[0xff, 0xfe]).is_err());
        assert!(<(String, u8)>::decode_key(b"abc").is_err());
        assert!(u32::decode_key(&[1, 2]).is_err());
    }

    #[test]
    fn values_round_trip() {
        let mut buf = Vec::new();
        encode_value(&(7u64, "x".to_string()), &mut buf).unwrap();
        let back: (u64, String) = decode_value(&buf).unwrap();
        assert_eq!(back, (7, "x".to_string()));
        let mut a = Vec::new();
        encode_value(Blob::new(b"raw"), &mut a).unwrap();
        let mut b = Vec::new();
        encode_value(&b"raw"[..], &mut b).unwrap();
        assert_eq!(a, b, "a blob encodes like a byte slice");
        assert_eq!(decode_value::<BlobBuf>(&a).unwrap().0, b"raw");
        assert!(decode_value::<u64>(&[0xff]).is_err());
    }

    #[test]
    fn text_forms() {
        let mut out = Vec::new();
        ("w", 3u64).write_text(&mut out);
        assert_eq!(out, b"w\t3");
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proto::alloc_probe::largest_allocation;
    use serde::de::DeserializeOwned;

    use super::*;

    /// Round-trips `v`, and checks that any bytes decoding as a `T` are exactly the
    /// encoding of what they decode to: a key has one encoding, so a damaged one decodes
    /// to nothing rather than to another key.
    fn check_key<T>(v: &T, hostile: &[u8]) -> std::result::Result<(), TestCaseError>
    where
        T: EncodeKey + DecodeKey + std::fmt::Debug,
    {
        let enc = v.to_key_bytes();
        let back = T::decode_key(&enc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.to_key_bytes(), enc);
        if let Ok(w) = T::decode_key(hostile) {
            prop_assert_eq!(w.to_key_bytes(), hostile.to_vec(), "{:?}", w);
        }
        Ok(())
    }

    /// Bytes made mostly of the ones the escapes use.
    fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()], 0..24)
    }

    fn check_value<T>(v: &T, hostile: &[u8]) -> std::result::Result<(), TestCaseError>
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut enc = Vec::new();
        encode_value(v, &mut enc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &decode_value::<T>(&enc).map_err(|e| TestCaseError::fail(e.to_string()))?,
            v
        );
        let (_, largest) = largest_allocation(|| decode_value::<T>(hostile));
        prop_assert!(
            largest <= (1 << 20) + 64 * hostile.len(),
            "{} bytes allocated {}",
            hostile.len(),
            largest
        );
        Ok(())
    }

    /// Values as they may arrive: random, or with a length prefix claiming 2^40 items.
    fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..32),
            (
                prop::collection::vec(any::<u8>(), 0..4),
                prop_oneof![Just(1u64 << 40), Just(u64::MAX), Just(1 << 31)],
                prop::collection::vec(any::<u8>(), 0..8)
            )
                .prop_map(|(head, len, tail)| {
                    let mut b = head;
                    crate::run::put_varint(&mut b, len);
                    b.extend(tail);
                    b
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn keys_round_trip_and_have_one_encoding(
            s in ".{0,8}",
            b in key_bytes(),
            i in any::<i64>(),
            u in any::<u32>(),
            f in any::<u64>().prop_map(f64::from_bits),
            flag in any::<bool>(),
            hostile in key_bytes(),
        ) {
            check_key(&s, &hostile)?;
            check_key(&b, &hostile)?;
            check_key(&i, &hostile)?;
            check_key(&u, &hostile)?;
            check_key(&f, &hostile)?;
            check_key(&flag, &hostile)?;
            check_key(&(b.clone(), i), &hostile)?;
            check_key(&(s.clone(), b.clone(), flag), &hostile)?;
            check_key(&(b.clone(), s.clone(), u, i), &hostile)?;
            check_key(&(i, s), &hostile)?;
        }

        /// Values carry no checksum (the shuffle's CRC covers them), so damaged bytes may
        /// decode to some value; they must never panic or make the decoder allocate for
        /// a length they cannot hold.
        #[test]
        fn values_round_trip_and_decode_hostile_bytes_cheaply(
            n in any::<u64>(),
            s in ".{0,8}",
            blob in prop::collection::vec(any::<u8>(), 0..32),
            list in prop::collection::vec(any::<u32>(), 0..8),
            hostile in value_bytes(),
        ) {
            check_value(&n, &hostile)?;
            check_value(&(n, s.clone()), &hostile)?;
            check_value(&BlobBuf(blob), &hostile)?;
            check_value(&list, &hostile)?;
            check_value(&(s, list.clone(), vec![list]), &hostile)?;
        }
    }
}
