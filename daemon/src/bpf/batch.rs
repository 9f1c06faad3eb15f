//! Reads a whole hash map or array, per-CPU or not, in a few syscalls with `BPF_MAP_LOOKUP_BATCH` (Linux >= 5.6),
//! which aya 0.14 does not expose. Walking the map entry by entry costs two syscalls per entry
//! (next key, lookup) and an allocation for each entry's per-CPU values: at 10,000 clients,
//! 20,000 syscalls every poll. A batch read copies up to [`BatchReader`]'s chunk of entries per
//! syscall into buffers that are kept from one poll to the next. Read-only; no side effects.

use std::{
    io,
    marker::PhantomData,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (uapi linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr` (uapi linux/bpf.h), the part the batch commands
/// read. The kernel takes a shorter `bpf_attr` and treats the rest as zero.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    /// Where the previous call stopped; 0 (NULL) for the first call.
    in_batch: u64,
    /// Where this call stopped, written by the kernel.
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: room for this many entries; out: entries written.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}
const _: () = assert!(size_of::<BatchAttr>() == 56);

/// The kernel's position token between calls: for hash maps a `u32` bucket index, but the
/// kernel may write up to the key size there, so it gets the room of a generous key.
const TOKEN_LEN: usize = 64;

/// Reads maps of `K` to `V` (hash maps and arrays, per-CPU or not) in chunks, reusing its
/// buffers.
pub struct BatchReader<K, V> {
    /// Entries per syscall. Grows if one hash bucket holds more (`ENOSPC`).
    chunk: usize,
    /// Possible CPUs: the kernel writes that many values per entry.
    cpus: usize,
    keys: Vec<K>,
    /// `chunk * cpus` values, entry by entry, CPU by CPU.
    values: Vec<V>,
    _types: PhantomData<(K, V)>,
}

impl<K: Pod + Default, V: Pod + Default> BatchReader<K, V> {
    /// A reader of `chunk` entries per syscall for a kernel with `cpus` possible CPUs; with
    /// `cpus` = 1 it reads a plain (not per-CPU) hash map, whose values are one per entry.
    ///
    /// `V` must be a whole number of 8-byte words: the kernel lays per-CPU values out at
    /// 8-byte strides, so only then are they a plain `[V]`.
    pub fn new(chunk: usize, cpus: usize) -> Result<Self, BatchError> {
        if !size_of::<V>().is_multiple_of(8) || size_of::<V>() == 0 || size_of::<K>() > TOKEN_LEN {
            return Err(BatchError::Layout {
                key_len: size_of::<K>(),
                value_len: size_of::<V>(),
            });
        }
        let (chunk, cpus) = (chunk.max(1), cpus.max(1));
        Ok(Self {
            chunk,
            cpus,
            keys: vec![K::default(); chunk],
            values: vec![V::default(); chunk * cpus],
            _types: PhantomData,
        })
    }

    /// Calls `each` with every entry of the map: its key and its values, one per possible
    /// CPU. An entry added or removed during the read may or may not be seen; every other
    /// entry is seen exactly once.
    pub fn read(
        &mut self,
        map: BorrowedFd<'_>,
        each: impl FnMut(&K, &[V]),
    ) -> Result<(), BatchError> {
        self.read_first(map, usize::MAX, each)
    }

    /// As [`read`](Self::read), but stops after the first `entries` entries: for an array,
    /// whose entries come in index order, the slots below `entries`.
    pub fn read_first(
        &mut self,
        map: BorrowedFd<'_>,
        entries: usize,
        mut each: impl FnMut(&K, &[V]),
    ) -> Result<(), BatchError> {
        let map_fd = u32::try_from(map.as_raw_fd()).map_err(|_| BatchError::BadFd)?;
        let mut remaining = entries;
        if remaining == 0 {
            return Ok(());
        }
        let mut token_in = [0u8; TOKEN_LEN];
        let mut token_out = [0u8; TOKEN_LEN];
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    token_in.as_mut_ptr() as u64
                },
                out_batch: token_out.as_mut_ptr() as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: u32::try_from(self.chunk.min(remaining)).unwrap_or(u32::MAX),
                map_fd,
                ..BatchAttr::default()
            };
            // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_MAP_LOOKUP_BATCH; every
            // pointer in it is to a live buffer of the size the kernel writes: `count` keys,
            // `count * cpus` values at 8-byte strides (checked in `new`), and a token of at
            // least the key size. The kernel writes nothing past them.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &raw mut attr,
                    size_of::<BatchAttr>(),
                )
            };
            let error = (result < 0).then(io::Error::last_os_error);
            match error.as_ref().and_then(io::Error::raw_os_error) {
                None | Some(libc::ENOENT) => {
                    // ENOENT: the end of the map; `count` still says what this call filled.
                    let filled = usize::try_from(attr.count)
                        .unwrap_or(0)
                        .min(self.chunk)
                        .min(remaining);
                    for (key, values) in self.keys[..filled]
                        .iter()
                        .zip(self.values.chunks_exact(self.cpus))
                    {
                        each(key, values);
                    }
                    remaining -= filled;
                    if error.is_some() || remaining == 0 {
                        return Ok(());
                    }
                    token_in = token_out;
                    first = false;
                }
                Some(libc::ENOSPC) if attr.count == 0 => {
                    // One bucket holds more entries than a chunk: retry the same position
                    // with room for twice as many.
                    self.chunk *= 2;
                    self.keys.resize(self.chunk, K::default());
                    self.values.resize(self.chunk * self.cpus, V::default());
                }
                Some(libc::EINVAL | libc::ENOTSUP) => {
                    return Err(BatchError::Unsupported);
                }
                _ => {
                    return Err(BatchError::Syscall(
                        error.unwrap_or_else(io::Error::last_os_error),
                    ));
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("this kernel cannot read maps in batches (Linux 5.6 or later can)")]
    Unsupported,
    #[error(
        "batch reads need values of whole 8-byte words and keys of at most {TOKEN_LEN} bytes (key {key_len} bytes, value {value_len} bytes)"
    )]
    Layout { key_len: usize, value_len: usize },
    #[error("the map's file descriptor is negative")]
    BadFd,
    #[error("BPF_MAP_LOOKUP_BATCH failed")]
    Syscall(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_must_be_whole_words() {
        assert!(matches!(
            BatchReader::<u64, u32>::new(16, 2),
            Err(BatchError::Layout { value_len: 4, .. })
        ));
        assert!(BatchReader::<u64, [u64; 3]>::new(16, 2).is_ok());
    }

    #[test]
    fn a_closed_fd_is_an_error_not_the_end_of_the_map() {
        let mut reader = BatchReader::<u64, u64>::new(16, 2).unwrap();
        // SAFETY: fd 1_000_000 is not open in a test process; the kernel answers EBADF.
        let fd = unsafe { BorrowedFd::borrow_raw(1_000_000) };
        let read = reader.read(fd, |_, _| panic!("no entries"));
        assert!(matches!(read, Err(BatchError::Syscall(_))), "{read:?}");
    }
}
