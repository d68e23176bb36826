//! Files that will be `fsync`ed when complete, written so that the `fsync` finds little
//! left to do: [`start_writeback`], and [`Writeback`], a writer that calls it as it goes.
//!
//! A run's journal and its file sinks are made durable at the end of the run (`fsync`,
//! then rename). Left to the kernel, the pages of a 20 MB file are still dirty then, and
//! that `fsync` writes them all while the run waits (15–30 ms per file measured on the
//! development machine). Here the writing of each megabyte to the disk is started as
//! soon as it is written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait),
//! so the disk works while the run computes. Durability is unchanged: only the final
//! `fsync` promises anything, and its errors are the ones reported.

use std::fs::File;
use std::io::{self, Write};

/// How many bytes are written between two starts of writeback.
const EVERY: u64 = 1 << 20;

/// A file whose written bytes start on their way to the disk every [`EVERY`] bytes.
#[derive(Debug)]
pub struct Writeback {
    file: File,
    /// Bytes written through this writer.
    written: u64,
    /// Bytes written when writeback was last started.
    started: u64,
}

/// Start writing `file`'s dirty pages to the disk, without waiting for them (those
/// already on their way are left alone). Advisory: nothing is promised and no error is
/// reported (the final `fsync` reports what matters); a no-op off Linux.
pub fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is
        // `file`'s, open for the whole call. Offset 0 and length 0: the whole file.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl Writeback {
    /// Write through to `file`, from its current end.
    pub fn new(file: File) -> Writeback {
        Writeback { file, written: 0, started: 0 }
    }

    /// The file.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    fn start_writeback(&mut self) {
        start_writeback(&self.file);
        self.started = self.written;
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= EVERY {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bytes_arrive_whole_and_in_order_across_writebacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = Writeback::new(File::create(&path).unwrap());
        let mut expected = Vec::new();
        for i in 0..3000u32 {
            let line = format!("{i:0>1000}\n");
            w.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        assert!(w.started > 0 && w.started <= w.written, "writeback was started");
        assert_eq!(w.written, expected.len() as u64);
        w.get_ref().sync_all().unwrap();
        let mut got = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut got).unwrap();
        assert!(got == expected);
    }
}
