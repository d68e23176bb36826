//! The wire between the dispatcher and its workers, and the per-worker shared slot.
//!
//! Owns: the message types (postcard over `ipc-channel`: plain structs and externally
//! tagged enums only), the protocol version, and `Slot`, a few atomic words shared
//! with the worker (a memfd mapped `MAP_SHARED` in both processes) that say which task
//! it is running, since when, and which process group it must take down with it.
//! Must not: decide anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_channel::ipc::{IpcSender, IpcSharedMemory};
use serde::{Deserialize, Serialize};

use super::registry::{KindSig, TaskErrorKind};

/// Bumped whenever a message changes; both sides check it in the handshake.
pub const PROTOCOL_VERSION: u32 = 7;

/// The `argv[1]` that turns a program into a pool worker.
pub const WORKER_ARG: &str = "__jobpool-worker";

/// Parent -> worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Sent once, right after the worker's `Hello`.
    Init(Init),
    /// Run these tasks in order.
    Batch(Batch),
    /// Finish and exit.
    Shutdown,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Init {
    pub version: u32,
    pub worker: u32,
    pub context: String,
    pub task_timeout_ns: Option<u64>,
    pub grace_ns: u64,
    pub slot: IpcSharedMemory,
}

/// Tasks `base`, `base + 1`, ...: task k's argument is `blob[end(k-1)..end(k)]`, the
/// ends being little-endian `u32`s in `ends` (one byte string, copied in one go: a
/// `Vec<u32>` would be encoded and decoded one varint at a time).
#[derive(Serialize, Deserialize, Clone, Default)]
pub(crate) struct Batch {
    pub func: String,
    pub json: bool,
    pub base: u64,
    pub blob: Blob,
    pub ends: Blob,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ends.0.len() / 4
    }

    /// Close the current task's argument (everything appended to `blob` since the last).
    pub fn push_end(&mut self) {
        let end = self.blob.0.len() as u32;
        self.ends.0.extend_from_slice(&end.to_le_bytes());
    }

    pub fn tasks(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0usize;
        self.ends.0.chunks_exact(4).enumerate().map(move |(k, e)| {
            let end = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
            let s = &self.blob.0[start..end];
            start = end;
            (self.base + k as u64, s)
        })
    }
}

/// Bytes that travel as one postcard byte string (one copy, not a byte at a time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Blob, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = a.next_element()? {
                    v.push(b);
                }
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Worker -> parent.
#[derive(Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// `kinds`: the worker's registry, which must match the pool's.
    Hello {
        version: u32,
        pid: u32,
        tasks: IpcSender<ToWorker>,
        kinds: Vec<KindSig>,
    },
    Results(ResultBatch),
    /// Sent instead of `Hello` by a program started as a worker that reached
    /// `Pool::build` without calling `run_if_worker` first.
    Refused {
        pid: u32,
    },
    /// Sent by the worker zygote, not the worker, on a forked worker's channel: the
    /// worker's pid, as soon as it is forked (before or after the worker's `Hello`).
    Forked {
        pid: u32,
    },
}

/// How a task ended on the worker.
pub(crate) const CODE_OK: u8 = 0;
/// A task error of kind [`TaskErrorKind::Failed`].
pub(crate) const CODE_ERROR: u8 = 1;
pub(crate) const CODE_SKIPPED: u8 = 2;
pub(crate) const CODE_PANIC: u8 = 3;
/// A task error of kind [`TaskErrorKind::TimedOut`]: the task stopped itself at its limit.
pub(crate) const CODE_TIMED_OUT: u8 = 4;
/// A task error of kind [`TaskErrorKind::Cancelled`]: the task stopped when asked to.
pub(crate) const CODE_CANCELLED: u8 = 5;
/// Not started: the pool took it back for another worker ([`Slot::steal_from`]).
pub(crate) const CODE_STOLEN: u8 = 6;

/// The result code of a task error of `kind`.
pub(crate) fn error_code(kind: TaskErrorKind) -> u8 {
    match kind {
        TaskErrorKind::Failed => CODE_ERROR,
        TaskErrorKind::TimedOut => CODE_TIMED_OUT,
        TaskErrorKind::Cancelled => CODE_CANCELLED,
    }
}

/// Results of consecutive tasks `base`, `base + 1`, ... of one batch.
///
/// Result k's payload (the value, postcard or JSON text, on ok; the message otherwise)
/// is `blob[end(k-1)..end(k)]`, the ends being little-endian `u32`s in `ends`. `codes`
/// holds one code per result, or is empty when every result is ok (the common case: no
/// per-item metadata at all). Timing is one span for the whole message (start of its
/// first task, total duration): a task that took 1 ms or more always travels alone, so
/// its own timing is exact; faster tasks share their message's span evenly.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(crate) struct ResultBatch {
    pub base: u64,
    pub ends: Blob,
    pub blob: Blob,
    pub codes: Blob,
    pub started_ns: u64,
    pub duration_ns: u64,
    /// Error data (JSON text) by task id, for the errors that have some.
    pub data: Vec<(u64, String)>,
}

impl ResultBatch {
    pub fn with_capacity(base: u64, n: usize) -> Self {
        ResultBatch {
            base,
            ends: Blob(Vec::with_capacity(n * 4)),
            blob: Blob(Vec::with_capacity(n * 4)),
            ..ResultBatch::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ends.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.ends.0.is_empty()
    }

    /// End offset of result k's payload.
    pub fn end(&self, k: usize) -> u32 {
        end_at(&self.ends.0, k)
    }

    #[cfg(test)]
    pub fn code(&self, k: usize) -> u8 {
        self.codes.0.get(k).copied().unwrap_or(CODE_OK)
    }

    pub fn all_ok(&self) -> bool {
        self.codes.0.is_empty()
    }

    /// Record a result whose payload was already appended to `blob`.
    pub fn push_written(&mut self, code: u8) {
        if code != CODE_OK && self.codes.0.len() < self.len() {
            self.codes.0.resize(self.len(), CODE_OK);
        }
        let end = self.blob.0.len() as u32;
        self.ends.0.extend_from_slice(&end.to_le_bytes());
        if !self.codes.0.is_empty() || code != CODE_OK {
            self.codes.0.push(code);
        }
    }

    pub fn push(&mut self, id: u64, code: u8, payload: &[u8], data: Option<String>) {
        self.blob.0.extend_from_slice(payload);
        self.push_written(code);
        if let Some(d) = data {
            self.data.push((id, d));
        }
    }

    /// Move the last `m` results (0 < m < len) into a message of their own.
    pub fn split_off_last(&mut self, m: usize) -> ResultBatch {
        let n = self.len();
        assert!(m > 0 && m < n, "split {m} of {n}");
        let keep = n - m;
        let cut = self.end(keep - 1);
        let mut last = ResultBatch::with_capacity(self.base + keep as u64, m);
        last.blob.0 = self.blob.0.split_off(cut as usize);
        for k in keep..n {
            let end = self.end(k) - cut;
            last.ends.0.extend_from_slice(&end.to_le_bytes());
        }
        self.ends.0.truncate(4 * keep);
        if !self.codes.0.is_empty() {
            last.codes.0 = self.codes.0.split_off(keep);
            if last.codes.0.iter().all(|&c| c == CODE_OK) {
                last.codes.0.clear();
            }
            if self.codes.0.iter().all(|&c| c == CODE_OK) {
                self.codes.0.clear();
            }
        }
        let first_moved = self.data.partition_point(|d| d.0 < last.base);
        last.data = self.data.split_off(first_moved);
        last
    }
}

/// Decode one postcard value, inlined where it is called (`postcard::from_bytes` is not
/// inlined: a call per item costs as much as decoding a small value). A value that is
/// one integer is read here (see [`Top`]); anything else by postcard.
#[inline]
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> postcard::Result<T> {
    T::deserialize(Top(bytes))
}

/// postcard's deserializer for a whole value, with an integer of 16 to 64 bits read
/// here: postcard reads a varint in a function it does not inline, a call per value
/// (a third of the caller's CPU in a 100,000-item map of integers went to decoding the
/// values). Only a varint short enough that it cannot overflow its type is read here
/// (under 2^14, 2^28 and 2^63 for 16, 32 and 64 bits); anything else, an error
/// included, is postcard's own reading of the same bytes, so the answer is postcard's
/// (a test compares them).
struct Top<'de>(&'de [u8]);

impl Top<'_> {
    /// The varint at the start, when it ends within `max` bytes.
    #[inline(always)]
    fn short_varint(&self, max: usize) -> Option<u64> {
        let mut out = 0u64;
        for (i, &b) in self.0.iter().take(max).enumerate() {
            out |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }
}

impl<'de> Top<'de> {
    fn postcard(self) -> postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>> {
        postcard::Deserializer::from_bytes(self.0)
    }
}

/// Zigzag: 0, -1, 1, -2, ... are 0, 1, 2, 3, ...
#[inline(always)]
fn unzigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

macro_rules! top_integer {
    ($($method:ident, $visit:ident, $max:expr, $convert:expr;)*) => {$(
        #[inline]
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
            match self.short_varint($max) {
                Some(n) => visitor.$visit($convert(n)),
                None => (&mut self.postcard()).$method(visitor),
            }
        }
    )*};
}

macro_rules! top_delegate {
    ($($method:ident),*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
            (&mut self.postcard()).$method(visitor)
        }
    )*};
}

impl<'de> serde::Deserializer<'de> for Top<'de> {
    type Error = postcard::Error;

    top_integer! {
        deserialize_u16, visit_u16, 2, |n| n as u16;
        deserialize_u32, visit_u32, 4, |n| n as u32;
        deserialize_u64, visit_u64, 9, |n| n;
        deserialize_i16, visit_i16, 2, |n| unzigzag(n) as i16;
        deserialize_i32, visit_i32, 4, |n| unzigzag(n) as i32;
        deserialize_i64, visit_i64, 9, unzigzag;
    }

    top_delegate! {
        deserialize_any, deserialize_bool, deserialize_i8, deserialize_i128, deserialize_u8,
        deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char, deserialize_str,
        deserialize_string, deserialize_bytes, deserialize_byte_buf, deserialize_option,
        deserialize_unit, deserialize_seq, deserialize_map, deserialize_identifier,
        deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> postcard::Result<V::Value> {
        (&mut self.postcard()).deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Append `v`'s postcard encoding to `out`.
///
/// `postcard::to_extend` copies each varint with a `memcpy` call, which costs more than
/// a trivial task; small pieces are pushed byte by byte here, and integers are written
/// straight into `out` (see [`Fast`]).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    v.serialize(&mut Fast(postcard::Serializer { output: VecFlavor(out) }))
}

/// Encode many values one after the other into one buffer (one serializer for all).
pub(crate) struct Encoder<'a> {
    ser: Fast<'a>,
}

impl<'a> Encoder<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Encoder { ser: Fast(postcard::Serializer { output: VecFlavor(out) }) }
    }

    /// Append `v`; returns where its encoding ends.
    #[inline]
    pub fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<usize, postcard::Error> {
        v.serialize(&mut self.ser)?;
        Ok(self.ser.0.output.0.len())
    }
}

/// postcard's format, with the integers, lengths and variant indexes written here, and
/// the structure around them (options, newtypes, sequences, tuples, maps, structs): a
/// varint goes byte by byte straight into the buffer, where postcard writes it into a
/// buffer of its own first and copies that, in a function it does not inline (a map's
/// arguments and values are mostly integers: that function was 17% of a 100,000-item
/// map's CPU). Floats, 128-bit integers, characters, texts and bytes are postcard's own
/// code. The bytes are postcard's: a test compares them for every kind of value.
struct Fast<'a>(postcard::Serializer<VecFlavor<'a>>);

impl Fast<'_> {
    /// Append `v` as a varint: 7 bits a byte, the lowest first, the high bit set on all
    /// but the last (at most 10 bytes for 64 bits).
    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        let out = &mut self.0.output.0;
        out.reserve(10);
        let len = out.len();
        // SAFETY: `reserve(10)` leaves room for 10 more bytes after `len`, and a 64-bit
        // value takes at most 10 (each byte but the last takes 7 bits off `v`); the `n`
        // bytes written after `len` are initialized before `set_len`.
        unsafe {
            let dst = out.as_mut_ptr().add(len);
            let mut n = 0;
            while v >= 0x80 {
                *dst.add(n) = v as u8 | 0x80;
                v >>= 7;
                n += 1;
            }
            *dst.add(n) = v as u8;
            out.set_len(len + n + 1);
        }
    }
}

type Inner<'b, 'a> = &'b mut Fast<'a>;

impl<'b, 'a> serde::Serializer for &'b mut Fast<'a> {
    type Ok = ();
    type Error = postcard::Error;
    type SerializeSeq = Inner<'b, 'a>;
    type SerializeTuple = Inner<'b, 'a>;
    type SerializeTupleStruct = Inner<'b, 'a>;
    type SerializeTupleVariant = Inner<'b, 'a>;
    type SerializeMap = Inner<'b, 'a>;
    type SerializeStruct = Inner<'b, 'a>;
    type SerializeStructVariant = Inner<'b, 'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> postcard::Result<()> {
        self.0.output.0.push(v as u8);
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, v: i8) -> postcard::Result<()> {
        self.0.output.0.push(v as u8);
        Ok(())
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> postcard::Result<()> {
        self.varint(((v << 1) ^ (v >> 15)) as u16 as u64);
        Ok(())
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> postcard::Result<()> {
        self.varint(((v << 1) ^ (v >> 31)) as u32 as u64);
        Ok(())
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> postcard::Result<()> {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> postcard::Result<()> {
        self.0.serialize_i128(v)
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> postcard::Result<()> {
        self.0.output.0.push(v);
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> postcard::Result<()> {
        self.varint(v as u64);
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> postcard::Result<()> {
        self.varint(v as u64);
        Ok(())
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> postcard::Result<()> {
        self.varint(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> postcard::Result<()> {
        self.0.serialize_u128(v)
    }

    fn serialize_f32(self, v: f32) -> postcard::Result<()> {
        self.0.serialize_f32(v)
    }

    fn serialize_f64(self, v: f64) -> postcard::Result<()> {
        self.0.serialize_f64(v)
    }

    fn serialize_char(self, v: char) -> postcard::Result<()> {
        self.0.serialize_char(v)
    }

    fn serialize_str(self, v: &str) -> postcard::Result<()> {
        self.0.serialize_str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> postcard::Result<()> {
        self.0.serialize_bytes(v)
    }

    #[inline]
    fn serialize_none(self) -> postcard::Result<()> {
        self.0.output.0.push(0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> postcard::Result<()> {
        self.0.output.0.push(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> postcard::Result<()> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> postcard::Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> postcard::Result<()> {
        self.varint(variant_index as u64);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> postcard::Result<()> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> postcard::Result<()> {
        self.varint(variant_index as u64);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> postcard::Result<Inner<'b, 'a>> {
        self.varint(len.ok_or(postcard::Error::SerializeSeqLengthUnknown)? as u64);
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> postcard::Result<Inner<'b, 'a>> {
        Ok(self)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> postcard::Result<Inner<'b, 'a>> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> postcard::Result<Inner<'b, 'a>> {
        self.varint(variant_index as u64);
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> postcard::Result<Inner<'b, 'a>> {
        self.varint(len.ok_or(postcard::Error::SerializeSeqLengthUnknown)? as u64);
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> postcard::Result<Inner<'b, 'a>> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> postcard::Result<Inner<'b, 'a>> {
        self.varint(variant_index as u64);
        Ok(self)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> postcard::Result<()> {
        (&mut self.0).collect_str(value)
    }
}

/// The parts of a compound value, one after the other, as postcard writes them (a
/// sequence's or a map's length went first, in `serialize_seq` / `serialize_map`).
macro_rules! fast_compound {
    ($($trait:ident { $($method:ident),* })*) => {$(
        impl serde::ser::$trait for &mut Fast<'_> {
            type Ok = ();
            type Error = postcard::Error;
            $(
                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> postcard::Result<()> {
                    value.serialize(&mut **self)
                }
            )*
            fn end(self) -> postcard::Result<()> {
                Ok(())
            }
        }
    )*};
}

fast_compound! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
    SerializeMap { serialize_key, serialize_value }
}

/// The fields of a struct (their names are not written), as postcard writes them.
macro_rules! fast_fields {
    ($($trait:ident),*) => {$(
        impl serde::ser::$trait for &mut Fast<'_> {
            type Ok = ();
            type Error = postcard::Error;
            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> postcard::Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> postcard::Result<()> {
                Ok(())
            }
        }
    )*};
}

fast_fields!(SerializeStruct, SerializeStructVariant);

struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.push(b);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, b: &[u8]) -> postcard::Result<()> {
        if b.len() <= 16 {
            append_small(self.0, b);
        } else {
            self.0.extend_from_slice(b);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Append up to 16 bytes without a `memcpy` call and without a capacity check per byte
/// (a varint is 1 to 10 bytes; this runs once per value). Up to 4 bytes go one at a
/// time: postcard writes a varint byte by byte, and a wider load of those bytes would
/// wait for them (a failed store forwarding costs more than the copy). Longer pieces go
/// as two fixed-size, overlapping copies.
#[inline(always)]
fn append_small(v: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    debug_assert!(n <= 16);
    v.reserve(16);
    let len = v.len();
    // SAFETY: `reserve(16)` leaves room for 16 more bytes after `len`, and `n <= 16`.
    // Every read is inside `b`: single bytes below `n`; each pair of copies covers `b`
    // from both ends (they overlap when `n` is not twice their size), and only when `n`
    // is at least their size. The `n` bytes after `len` are initialized before `set_len`.
    unsafe {
        let (src, dst) = (b.as_ptr(), v.as_mut_ptr().add(len));
        match n {
            0 => {}
            1 => *dst = *src,
            2 => {
                *dst = *src;
                *dst.add(1) = *src.add(1);
            }
            3 => {
                *dst = *src;
                *dst.add(1) = *src.add(1);
                *dst.add(2) = *src.add(2);
            }
            4 => {
                *dst = *src;
                *dst.add(1) = *src.add(1);
                *dst.add(2) = *src.add(2);
                *dst.add(3) = *src.add(3);
            }
            5..8 => {
                std::ptr::copy_nonoverlapping(src, dst, 4);
                std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
            }
            _ => {
                std::ptr::copy_nonoverlapping(src, dst, 8);
                std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
            }
        }
        v.set_len(len + n);
    }
}

/// End offset k of a little-endian `u32` ends string.
#[inline]
pub(crate) fn end_at(ends: &[u8], k: usize) -> u32 {
    let e = &ends[4 * k..4 * k + 4];
    u32::from_le_bytes([e[0], e[1], e[2], e[3]])
}

/// Task k of n sharing a span evenly: its start and duration.
pub(crate) fn span_share(started_ns: u64, duration_ns: u64, n: usize, k: usize) -> (u64, u64) {
    let n = n.max(1) as u64;
    let each = duration_ns / n;
    (started_ns + each * k as u64, each)
}

const W_RUNNING: usize = 0; // task id + 1, 0 = idle
const W_STARTED: usize = 1; // unix time in ns
const W_PGID: usize = 2; // a process group a task tracks, 0 = none
const W_SKIP: usize = 3; // skip not-started tasks with id + 1 <= this
const W_LAST: usize = 4; // the last task started, id + 1 (not cleared when it ends)
const W_GROUP: usize = 5; // the worker's command group (process workers), 0 = none
const W_LOG_GEN: usize = 6; // bumped on every log reset
const W_LOG_COUNT: usize = 7; // results committed to the log
const W_LOG_BASE: usize = 8; // id of the first of them
const W_LOG_STARTED: usize = 9; // unix ns the first of them started
const W_LOG_UNTIL: usize = 10; // unix ns of the last clock reading when one was committed
const W_STEAL: usize = 11; // taken back by the pool: do not start tasks with id + 1 >= this (0 = none)
const W_CLAIM: usize = 12; // the worker may start tasks with id < this without looking at W_STEAL again
const HEADER_WORDS: usize = 13;
/// The whole slot: 64 KiB, most of it the log of results not yet sent. (It is a file:
/// it counts against `ulimit -f`; a test runs jobpool under an 80 KiB limit.)
const WORDS: usize = 8 * 1024;
/// A log entry of one word: a success without error data whose payload has at most
/// [`SHORT_MAX`] bytes (the flag, the length in the low byte, the payload above).
const SHORT: u64 = 1 << 63;
const SHORT_MAX: usize = 6;
const LOG_WORDS: usize = WORDS - HEADER_WORDS;

enum Backing {
    Shm(IpcSharedMemory),
    Local(Box<[AtomicU64]>),
}

/// A worker's shared status words, and its log of committed results.
///
/// The log is how a finished result survives its worker: the worker batches the
/// results of fast tasks before sending them, and commits each one here (a copy in
/// memory the pool shares) before the next task starts; it resets the log after each
/// send. When the worker dies, the pool reads the log and keeps the results it never
/// received, so a task that finished is never run again. Together with `W_LAST` (the
/// last task started) the pool knows for every task of a dead worker whether it
/// finished (a result arrived or is in the log), was running (the last started one),
/// or never started (after it): see `Dispatcher::on_gone`.
///
/// Writer protocol (one writer, the worker's batch loop): entry words first
/// (relaxed), then `W_LOG_COUNT` (release); a reset bumps `W_LOG_GEN` before it clears
/// the count, so that a reader running at the same time (thread workers) sees a torn
/// copy as a changed generation and discards it (a seqlock).
#[derive(Clone)]
pub(crate) struct Slot {
    backing: Arc<Backing>,
}

// SAFETY: the words are only accessed through atomics; the mapping lives as long as
// `backing`.
unsafe impl Send for Slot {}
unsafe impl Sync for Slot {}

/// One result for the slot's log ([`SlotView::log_push`]).
#[derive(Clone, Copy)]
pub(crate) struct LogEntry<'a> {
    pub id: u64,
    pub code: u8,
    pub payload: &'a [u8],
    /// Its error data; empty for none.
    pub data: &'a [u8],
    /// When the log's first result started (used when the log is empty) and the last
    /// clock reading, in unix ns.
    pub span: (u64, u64),
}

/// The worker's side of the log: where the next entry goes.
#[derive(Default)]
pub(crate) struct LogCursor {
    used: usize,
    count: u64,
    /// The last `W_LOG_UNTIL` stored.
    until: u64,
}

impl Slot {
    /// A slot shared with another process.
    pub fn shared() -> Self {
        Slot::from_shm(IpcSharedMemory::from_byte(0, WORDS * 8))
    }

    pub fn from_shm(shm: IpcSharedMemory) -> Self {
        assert!(shm.len() >= WORDS * 8, "slot too small");
        Slot { backing: Arc::new(Backing::Shm(shm)) }
    }

    /// A slot inside this process (thread workers, tests).
    pub fn local() -> Self {
        let words: Box<[AtomicU64]> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        Slot { backing: Arc::new(Backing::Local(words)) }
    }

    /// A second mapping of the same memory, to send to the worker.
    pub fn shm_for_worker(&self) -> Option<IpcSharedMemory> {
        match &*self.backing {
            Backing::Shm(s) => Some(s.clone()),
            Backing::Local(_) => None,
        }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words()[i]
    }

    /// All the slot's words.
    fn words(&self) -> &[AtomicU64; WORDS] {
        match &*self.backing {
            // SAFETY: mmap'd memory is page aligned, at least WORDS * 8 bytes long, and
            // shared (MAP_SHARED); it is only accessed atomically.
            Backing::Shm(s) => unsafe { &*(s.as_ptr() as *const [AtomicU64; WORDS]) },
            Backing::Local(w) => w[..WORDS].try_into().expect("WORDS words"),
        }
    }

    /// The slot's words, resolved once: what the worker's batch loop uses per task.
    #[inline]
    pub fn view(&self) -> SlotView<'_> {
        SlotView { w: self.words() }
    }

    #[cfg(test)]
    pub fn set_running(&self, id: u64, started_ns: u64) {
        self.view().set_running(id, started_ns)
    }

    /// The last task started and when, whether or not it is still running.
    pub fn last_started(&self) -> Option<(u64, u64)> {
        let r = self.word(W_LAST).load(Ordering::Acquire);
        let s = self.word(W_STARTED).load(Ordering::Relaxed);
        (r != 0).then(|| (r - 1, s))
    }

    #[cfg(test)]
    pub fn clear_running(&self) {
        self.view().clear_running()
    }

    /// The running task and when it started (unix ns).
    pub fn running(&self) -> Option<(u64, u64)> {
        let r = self.word(W_RUNNING).load(Ordering::Acquire);
        let s = self.word(W_STARTED).load(Ordering::Relaxed);
        (r != 0).then(|| (r - 1, s))
    }

    pub fn set_pgid(&self, pgid: i32) {
        self.word(W_PGID).store(pgid.max(0) as u64, Ordering::SeqCst);
    }

    pub fn pgid(&self) -> i32 {
        self.word(W_PGID).load(Ordering::SeqCst) as i32
    }

    /// Set (by the pool, before the worker starts) the process group the worker's
    /// commands join: see `Dispatcher::launch_process`.
    pub fn set_group(&self, pgid: i32) {
        self.word(W_GROUP).store(pgid.max(0) as u64, Ordering::SeqCst);
    }

    /// The worker's command group, if it has one.
    pub fn group(&self) -> Option<i32> {
        let g = self.word(W_GROUP).load(Ordering::SeqCst) as i32;
        (g > 0).then_some(g)
    }

    /// Ask the worker to skip every task with id < `below` that it has not started.
    pub fn skip_below(&self, below: u64) {
        self.word(W_SKIP).fetch_max(below, Ordering::SeqCst);
    }

    #[cfg(test)]
    pub fn should_skip(&self, id: u64) -> bool {
        self.view().should_skip(id)
    }

    /// Take back (pool side) every task with id >= `from` that the worker has not
    /// claimed; returns the worker's claim `c`: tasks with id >= `max(from, c)` will not
    /// start, those in `from..c` may or may not (their results say which: a real result,
    /// or [`CODE_STOLEN`]).
    ///
    /// Why this is exact: the worker stores its claim, then loads this word; the pool
    /// stores this word, then loads the claim; all four are `SeqCst`, so (the
    /// store-buffering pattern) at least one side sees the other's store. Either the
    /// pool sees the claim, and does not count on the claimed tasks, or the worker sees
    /// the steal before it starts any task past its previous claim, which the pool saw.
    /// Only the pool writes this word; it only lowers it while a steal is unresolved,
    /// and clears it ([`Slot::clear_steal`]) once the worker has reported every task sent
    /// before the steal, before it sends the worker anything new.
    pub fn steal_from(&self, from: u64) -> u64 {
        let cur = self.word(W_STEAL).load(Ordering::Relaxed);
        let new = if cur == 0 { from + 1 } else { cur.min(from + 1) };
        self.word(W_STEAL).store(new, Ordering::SeqCst);
        self.word(W_CLAIM).load(Ordering::SeqCst)
    }

    /// The worker's claim as the pool last saw it (a hint, for choosing what to steal).
    pub fn claimed(&self) -> u64 {
        self.word(W_CLAIM).load(Ordering::Relaxed)
    }

    /// Forget the steal (pool side): every task it concerned has been reported.
    pub fn clear_steal(&self) {
        self.word(W_STEAL).store(0, Ordering::SeqCst);
    }

    /// Commit a result to the log: see [`SlotView::log_push`].
    #[cfg(test)]
    pub fn log_push(
        &self,
        cur: &mut LogCursor,
        id: u64,
        code: u8,
        payload: &[u8],
        data: Option<&str>,
        span: (u64, u64),
    ) -> bool {
        let data = data.unwrap_or("").as_bytes();
        self.view().log_push(cur, LogEntry { id, code, payload, data, span })
    }

    /// Empty the log (its results were sent).
    #[cfg(test)]
    pub fn log_reset(&self, cur: &mut LogCursor) {
        self.view().log_reset(cur)
    }

    /// Empty the log without the worker's cursor (a test-only worker that throws its
    /// results away: `abuse.rs`); the worker's next reset puts its cursor right.
    #[cfg(debug_assertions)]
    pub(crate) fn log_forget(&self) {
        self.word(W_LOG_GEN).fetch_add(1, Ordering::AcqRel);
        self.word(W_LOG_COUNT).store(0, Ordering::Release);
    }

    /// The results committed to the log and not sent since, as one message (timing: the
    /// log's span, shared evenly); `None` when there are none or the log changed while
    /// it was read.
    pub fn log_read(&self) -> Option<ResultBatch> {
        let gen1 = self.word(W_LOG_GEN).load(Ordering::Acquire);
        let count = self.word(W_LOG_COUNT).load(Ordering::Acquire) as usize;
        if count == 0 {
            return None;
        }
        let base = self.word(W_LOG_BASE).load(Ordering::Relaxed);
        let started = self.word(W_LOG_STARTED).load(Ordering::Relaxed);
        let until = self.word(W_LOG_UNTIL).load(Ordering::Relaxed);
        let mut out = ResultBatch::with_capacity(base, count);
        out.started_ns = started;
        out.duration_ns = until.saturating_sub(started);
        let mut at = HEADER_WORDS;
        let bytes = |at: &mut usize, n: usize| -> Option<Vec<u8>> {
            let words = n.div_ceil(8);
            if *at + words > WORDS {
                return None;
            }
            let mut v = Vec::with_capacity(words * 8);
            for i in 0..words {
                v.extend_from_slice(&self.word(*at + i).load(Ordering::Relaxed).to_le_bytes());
            }
            v.truncate(n);
            *at += words;
            Some(v)
        };
        for k in 0..count {
            if at >= WORDS {
                return None;
            }
            let head = self.word(at).load(Ordering::Relaxed);
            at += 1;
            if head & SHORT != 0 {
                let len = ((head & 0xff) as usize).min(SHORT_MAX);
                out.push(base + k as u64, CODE_OK, &(head >> 8).to_le_bytes()[..len], None);
                continue;
            }
            let (len, code, dlen) =
                ((head & 0xffff_ffff) as usize, (head >> 32) as u8, (head >> 40) as usize);
            let payload = bytes(&mut at, len)?;
            let data = bytes(&mut at, dlen)?;
            let data = (dlen > 0).then(|| String::from_utf8_lossy(&data).into_owned());
            out.push(base + k as u64, code, &payload, data);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        (self.word(W_LOG_GEN).load(Ordering::Relaxed) == gen1).then_some(out)
    }
}

/// A slot's words, looked up once (the worker's batch loop runs through this: a lookup of
/// the mapping per access costs as much as a trivial task's bookkeeping).
#[derive(Clone, Copy)]
pub(crate) struct SlotView<'a> {
    w: &'a [AtomicU64; WORDS],
}

impl SlotView<'_> {
    #[inline]
    pub fn set_running(self, id: u64, started_ns: u64) {
        self.w[W_STARTED].store(started_ns, Ordering::Relaxed);
        self.w[W_LAST].store(id + 1, Ordering::Relaxed);
        self.w[W_RUNNING].store(id + 1, Ordering::Release);
    }

    #[inline]
    pub fn clear_running(self) {
        self.w[W_RUNNING].store(0, Ordering::Release);
    }

    /// See [`Slot::skip_below`].
    #[inline]
    pub fn should_skip(self, id: u64) -> bool {
        id < self.w[W_SKIP].load(Ordering::Relaxed)
    }

    /// Claim (worker side) the tasks with id < `upto`, then look for a steal (see
    /// [`Slot::steal_from`]); returns whether task `id` (the next one) was taken back.
    /// Called before starting a task at or past the last claim.
    #[inline]
    pub fn claim(self, id: u64, upto: u64) -> bool {
        self.w[W_CLAIM].store(upto, Ordering::SeqCst);
        let s = self.w[W_STEAL].load(Ordering::SeqCst);
        s != 0 && id + 1 >= s
    }

    /// Whether the pool took task `id` back (worker side, after [`SlotView::claim`]).
    #[inline]
    pub fn stolen(self, id: u64) -> bool {
        let s = self.w[W_STEAL].load(Ordering::Relaxed);
        s != 0 && id + 1 >= s
    }

    /// Commit a result to the log (`data`: its error data, empty for none): `span` is
    /// when the first result of the log started (used when the log was empty) and the
    /// last clock reading, in unix ns. Returns false when the entry does not fit: the
    /// caller must then send its results before the next task starts (and reset the
    /// log).
    ///
    /// A small success is one word ([`SHORT`]): a chunk of 4096 such results (the largest
    /// automatic one) fits the log, and travels as one message. Any other entry is a
    /// head word (payload length, code, data length) and the payload's and the data's
    /// bytes in whole words. Then the count is advanced (release): the one store a reader
    /// synchronizes on.
    ///
    /// The usual entry — a small success, in a log that has results and room, with the
    /// clock as the last entry left it — is written here, inline in the worker's loop;
    /// every other goes through [`SlotView::log_push_entry`].
    #[inline(always)]
    pub fn log_push(self, cur: &mut LogCursor, e: LogEntry<'_>) -> bool {
        if e.code == CODE_OK
            && e.data.is_empty()
            && e.payload.len() <= SHORT_MAX
            && cur.count != 0
            && cur.until == e.span.1
            && cur.used < LOG_WORDS
        {
            let word = SHORT | e.payload.len() as u64 | pack_le(e.payload) << 8;
            self.w[HEADER_WORDS + cur.used].store(word, Ordering::Relaxed);
            cur.used += 1;
            cur.count += 1;
            self.w[W_LOG_COUNT].store(cur.count, Ordering::Release);
            return true;
        }
        self.log_push_entry(cur, e)
    }

    /// [`SlotView::log_push`] for any entry.
    #[inline(never)]
    fn log_push_entry(self, cur: &mut LogCursor, e: LogEntry<'_>) -> bool {
        let LogEntry { id, code, payload, data, span: (started_ns, until_ns) } = e;
        let short = code == CODE_OK && data.is_empty() && payload.len() <= SHORT_MAX;
        let need = if short { 1 } else { 1 + payload.len().div_ceil(8) + data.len().div_ceil(8) };
        if cur.used + need > LOG_WORDS || payload.len() > u32::MAX as usize || data.len() >= 1 << 23
        {
            return false;
        }
        let w = self.w;
        if cur.count == 0 {
            w[W_LOG_BASE].store(id, Ordering::Relaxed);
            w[W_LOG_STARTED].store(started_ns, Ordering::Relaxed);
            w[W_LOG_UNTIL].store(until_ns, Ordering::Relaxed);
            cur.until = until_ns;
        } else if cur.until != until_ns {
            // The clock is read every few tasks: most entries leave it as it is.
            w[W_LOG_UNTIL].store(until_ns, Ordering::Relaxed);
            cur.until = until_ns;
        }
        let at = HEADER_WORDS + cur.used;
        if short {
            let word = SHORT | payload.len() as u64 | pack_le(payload) << 8;
            w[at].store(word, Ordering::Relaxed);
        } else {
            // `data.len() < 2^23`: the flag bit stays clear.
            let head = payload.len() as u64 | (code as u64) << 32 | (data.len() as u64) << 40;
            let entry = &w[at..at + need];
            entry[0].store(head, Ordering::Relaxed);
            let k = store_bytes(&entry[1..], payload, 1);
            if !data.is_empty() {
                store_bytes(&entry[k..], data, k);
            }
        }
        cur.used += need;
        cur.count += 1;
        w[W_LOG_COUNT].store(cur.count, Ordering::Release);
        true
    }

    /// Empty the log (its results were sent).
    #[inline]
    pub fn log_reset(self, cur: &mut LogCursor) {
        if cur.count == 0 {
            return;
        }
        self.w[W_LOG_GEN].fetch_add(1, Ordering::AcqRel);
        self.w[W_LOG_COUNT].store(0, Ordering::Release);
        *cur = LogCursor::default();
    }
}

/// Store `bytes` into the first words of `to` (the last one zero-padded); returns `k`
/// plus the words stored.
#[inline(always)]
fn store_bytes(to: &[AtomicU64], bytes: &[u8], k: usize) -> usize {
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    let mut i = 0;
    for (c, word) in chunks.zip(to) {
        word.store(u64::from_le_bytes(c.try_into().expect("8 bytes")), Ordering::Relaxed);
        i += 1;
    }
    if !rest.is_empty() {
        to[i].store(pack_le(rest), Ordering::Relaxed);
        i += 1;
    }
    k + i
}

/// Up to 8 bytes as a little-endian word, the missing high bytes zero.
///
/// Fewer than 8 are read one byte at a time, each read volatile: LLVM may otherwise turn
/// the loop into a `memcpy` call into a zeroed word and a load of that word, and that
/// load stalls (the bytes were just stored one at a time): half of the log's cost per
/// result in the worker, in an LTO build where it did. The bytes themselves were usually
/// just written one at a time by the task's encoder, so a wider load of them would stall
/// too.
#[inline]
fn pack_le(bytes: &[u8]) -> u64 {
    if let Ok(w) = <[u8; 8]>::try_from(bytes) {
        return u64::from_le_bytes(w);
    }
    let mut w = 0u64;
    for (i, b) in bytes.iter().enumerate().take(7) {
        // SAFETY: `b` is a reference to a byte of `bytes`.
        w |= (unsafe { std::ptr::read_volatile(b) } as u64) << (8 * i);
    }
    w
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub(crate) fn ns_to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_gives_postcard_s_answer_for_any_bytes() {
        // Every integer type (read here when short) and others (postcard's), from valid
        // encodings, truncated ones, overlong ones, overflowing ones and garbage.
        fn same<T>(bytes: &[u8])
        where
            T: for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug,
        {
            let ours: postcard::Result<T> = decode(bytes);
            let theirs: postcard::Result<T> = postcard::from_bytes(bytes);
            assert_eq!(ours, theirs, "{} from {bytes:02x?}", std::any::type_name::<T>());
        }
        fn all(bytes: &[u8]) {
            same::<u16>(bytes);
            same::<u32>(bytes);
            same::<u64>(bytes);
            same::<i16>(bytes);
            same::<i32>(bytes);
            same::<i64>(bytes);
            same::<u8>(bytes);
            same::<bool>(bytes);
            same::<u128>(bytes);
            same::<Option<i64>>(bytes);
            same::<(u32, i16)>(bytes);
            same::<String>(bytes);
            same::<Vec<u64>>(bytes);
        }
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0x80], vec![0xff; 12]];
        for shift in 0..64 {
            let u = 1u64 << shift;
            for v in [u, u - 1, u.wrapping_neg()] {
                let bytes = postcard::to_allocvec(&v).unwrap();
                inputs.push(bytes.clone());
                inputs.push(bytes[..bytes.len() - 1].to_vec()); // truncated
                let mut trailing = bytes.clone();
                trailing.extend([1, 2, 3]);
                inputs.push(trailing);
                inputs.push(postcard::to_allocvec(&(v as i64)).unwrap());
            }
        }
        for len in 1..=11 {
            // Overlong: `len - 1` continuation bytes, then a last byte (zero or not).
            for last in [0u8, 1, 0x0f, 0x7f] {
                let mut b = vec![0x80u8; len - 1];
                b.push(last);
                inputs.push(b);
            }
        }
        for b in &inputs {
            all(b);
        }
    }

    #[test]
    fn every_kind_of_value_encodes_as_postcard_does() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct Unit;
        #[derive(Serialize)]
        struct Newtype(i32);
        #[derive(Serialize)]
        struct Pair(u16, i16);
        #[derive(Serialize)]
        enum E {
            A,
            B(i64),
            C(u8, i8),
            D { x: u32, y: Option<i32> },
        }
        #[derive(Serialize)]
        struct All {
            b: bool,
            ints: (i8, i16, i32, i64, i128, u8, u16, u32, u64, u128),
            floats: (f32, f64),
            c: char,
            s: String,
            bytes: Blob,
            none: Option<u64>,
            some: Option<Option<i64>>,
            unit: (),
            unit_struct: Unit,
            newtype: Newtype,
            pair: Pair,
            enums: Vec<E>,
            map: BTreeMap<String, Vec<i32>>,
            nested: Vec<(u64, Option<String>, [i16; 3])>,
        }
        let extremes = |k: i64| All {
            b: k % 2 == 0,
            ints: (
                k as i8,
                k.wrapping_mul(300) as i16,
                k.wrapping_mul(70_000) as i32,
                k.wrapping_mul(1 << 40),
                (k as i128).wrapping_mul(1 << 100),
                k as u8,
                k.wrapping_mul(300) as u16,
                k.wrapping_mul(70_000) as u32,
                (k as u64).wrapping_mul(1 << 40),
                (k as u128).wrapping_mul(1 << 100),
            ),
            floats: (k as f32 / 3.0, k as f64 / 7.0),
            c: char::from_u32(0x41 + (k as u32) % 0x1000).unwrap_or('x'),
            s: "é".repeat(k.unsigned_abs() as usize % 7),
            bytes: Blob(vec![k as u8; k.unsigned_abs() as usize % 5]),
            none: None,
            some: Some(if k % 3 == 0 { None } else { Some(k.wrapping_neg()) }),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(k as i32),
            pair: Pair(u16::MAX.wrapping_sub(k as u16), i16::MIN.wrapping_add(k as i16)),
            enums: vec![
                E::A,
                E::B(k),
                E::C(k as u8, (k as i8).wrapping_neg()),
                E::D { x: k as u32, y: Some(k as i32) },
            ],
            map: (0..k.unsigned_abs() % 4)
                .map(|i| (i.to_string(), vec![i as i32, k.wrapping_neg() as i32]))
                .collect(),
            nested: vec![(k as u64, Some("x".into()), [k as i16, 0, -1]), (0, None, [0; 3])],
        };
        for k in [0, 1, -1, 2, 127, -128, 300, -70_000, i64::MAX, i64::MIN, 1 << 40] {
            let v = extremes(k);
            let mut out = Vec::new();
            encode_into(&v, &mut out).unwrap();
            assert_eq!(out, postcard::to_allocvec(&v).unwrap(), "{k}");
            let mut enc_out = Vec::new();
            let end = Encoder::new(&mut enc_out).push(&v).unwrap();
            assert_eq!((end, &enc_out), (out.len(), &out), "{k}");
        }
        // The integers at every width, at every varint length and sign.
        let mut out = Vec::new();
        let mut want = Vec::new();
        for shift in 0..64 {
            let u = 1u64 << shift;
            for v in [u, u - 1, u.wrapping_neg()] {
                let (a, b, c) = (v as u16, v as u32, v as i64);
                let values = (a, b, v, a as i16, b as i32, c, Some(c), [b, b]);
                encode_into(&values, &mut out).unwrap();
                want.extend(postcard::to_allocvec(&values).unwrap());
            }
        }
        assert_eq!(out, want);
        // A sequence of unknown length is postcard's error.
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        assert_eq!(
            encode_into(&Unsized, &mut Vec::new()).unwrap_err(),
            postcard::to_allocvec(&Unsized).unwrap_err()
        );
    }

    #[test]
    fn encoding_is_postcard_byte_for_byte() {
        // Every length of small piece (varints of every size, short strings) and more.
        let mut out = Vec::new();
        let mut want = Vec::new();
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
                encode_into(&v, &mut out).unwrap();
                want.extend(postcard::to_allocvec(&v).unwrap());
                encode_into(&(v as i64).wrapping_neg(), &mut out).unwrap();
                want.extend(postcard::to_allocvec(&(v as i64).wrapping_neg()).unwrap());
            }
        }
        encode_into(&u128::MAX, &mut out).unwrap();
        want.extend(postcard::to_allocvec(&u128::MAX).unwrap());
        for n in 0..40 {
            let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            encode_into(&text, &mut out).unwrap();
            want.extend(postcard::to_allocvec(&text).unwrap());
            let bytes = Blob(text.into_bytes());
            encode_into(&bytes, &mut out).unwrap();
            want.extend(postcard::to_allocvec(&bytes).unwrap());
        }
        assert_eq!(out, want);
        for k in 0..=16usize {
            let piece: Vec<u8> = (1..=k as u8).collect();
            let mut v = vec![9u8; 3];
            append_small(&mut v, &piece);
            assert_eq!(v[..3], [9, 9, 9]);
            assert_eq!(v[3..], piece[..], "{k} bytes");
        }
    }

    #[test]
    fn short_and_long_log_entries_read_back_the_same() {
        // Up to 6 bytes of a success without data: one word; anything else: a head word
        // and the bytes.
        let slot = Slot::local();
        let mut cur = LogCursor::default();
        let mut want = ResultBatch::with_capacity(0, 0);
        let mut id = 0;
        for n in 0..=9usize {
            for (code, data) in [(CODE_OK, None), (CODE_ERROR, None), (CODE_OK, Some("{}"))] {
                let payload: Vec<u8> = (0..n as u8).map(|b| 0xf0 | b).collect();
                assert!(slot.log_push(&mut cur, id, code, &payload, data, (5, 9)));
                want.push(id, code, &payload, data.map(String::from));
                id += 1;
            }
        }
        let got = slot.log_read().unwrap();
        assert_eq!((got.base, got.len(), got.started_ns, got.duration_ns), (0, want.len(), 5, 4));
        assert_eq!(
            (&got.ends, &got.blob, &got.codes, &got.data),
            (&want.ends, &want.blob, &want.codes, &want.data)
        );
        // Successes: 7 short (0..=6 bytes), 2 + 2 + 3 long; errors: 10 heads and 10 words
        // of bytes; successes with data: the same and 10 words of data.
        assert_eq!(cur.used, 14 + 20 + 30, "words used");
    }

    #[test]
    fn the_log_holds_a_whole_automatic_chunk_of_small_values() {
        // Otherwise a worker sends such a chunk's results in two messages, not one.
        let chunk = super::super::dispatcher::MAX_AUTO_CHUNK as u64;
        let slot = Slot::local();
        let mut cur = LogCursor::default();
        for id in 0..chunk {
            let v = (id as u32).to_le_bytes();
            assert!(slot.log_push(&mut cur, id, CODE_OK, &v[..3], None, (1, 2)), "result {id}");
        }
        let got = slot.log_read().unwrap();
        assert_eq!((got.base, got.len()), (0, chunk as usize));
        let k = chunk as usize - 1;
        assert_eq!(&got.blob.0[got.end(k - 1) as usize..], &(k as u32).to_le_bytes()[..3]);
    }

    #[test]
    fn pack_le_is_the_bytes_zero_padded() {
        for n in 0..=8usize {
            let bytes: Vec<u8> = (1..=n as u8).map(|b| b * 17).collect();
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&bytes);
            assert_eq!(pack_le(&bytes), u64::from_le_bytes(w), "{n} bytes");
        }
    }

    #[test]
    fn slot_words_are_shared_between_mappings() {
        let a = Slot::shared();
        let b = Slot::from_shm(a.shm_for_worker().unwrap());
        b.set_running(41, now_ns());
        b.set_pgid(1234);
        assert_eq!(a.running().map(|r| r.0), Some(41));
        assert_eq!(a.pgid(), 1234);
        b.clear_running();
        assert_eq!(a.running(), None);
        a.skip_below(10);
        assert!(b.should_skip(9) && !b.should_skip(10));
    }

    #[test]
    fn the_log_gives_back_committed_results_until_reset() {
        let a = Slot::shared();
        let b = Slot::from_shm(a.shm_for_worker().unwrap());
        let mut cur = LogCursor::default();
        assert!(a.log_read().is_none());
        assert!(b.log_push(&mut cur, 7, CODE_OK, b"value-7", None, (100, 150)));
        assert!(b.log_push(&mut cur, 8, CODE_ERROR, b"bad", Some("{\"x\":1}"), (0, 190)));
        assert!(b.log_push(&mut cur, 9, CODE_OK, b"", None, (0, 200)));
        let got = a.log_read().unwrap();
        assert_eq!((got.base, got.len(), got.started_ns, got.duration_ns), (7, 3, 100, 100));
        assert_eq!(got.blob.0, b"value-7bad");
        assert_eq!((got.end(0), got.end(1), got.end(2)), (7, 10, 10));
        assert_eq!((got.code(0), got.code(1), got.code(2)), (CODE_OK, CODE_ERROR, CODE_OK));
        assert_eq!(got.data, vec![(8, "{\"x\":1}".to_string())]);
        b.log_reset(&mut cur);
        assert!(a.log_read().is_none());
        // An entry bigger than the log does not fit: the worker must send instead.
        assert!(!b.log_push(&mut cur, 10, CODE_OK, &vec![1u8; WORDS * 8], None, (0, 0)));
        assert!(b.log_push(&mut cur, 10, CODE_OK, &[1u8; 9], None, (0, 0)));
        assert_eq!(a.log_read().unwrap().blob.0, vec![1u8; 9]);
    }
}
