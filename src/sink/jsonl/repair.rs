//! Repairing the tail of an events file after a crash: a last line that was written but not
//! fsynced or acknowledged is cut off, since its event is written again whole. Must not: touch
//! complete lines.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Cuts the file after its last newline when it does not end with one.
pub(super) fn trim_partial_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if end == len && chunk[size - 1] == b'\n' {
            return Ok(());
        }
        if let Some(at) = chunk[..size].iter().rposition(|b| *b == b'\n') {
            tracing::warn!("the events file ended with a partial line (an interrupted write); cutting it off, the event is written again");
            return file.set_len(start + at as u64 + 1);
        }
        if start == 0 {
            return file.set_len(0);
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::fs::OpenOptions;

    use super::*;

    #[test]
    fn a_partial_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"seq\":1}\n{\"seq\":2}\n{\"se").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        trim_partial_line(&mut file).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"seq\":1}\n{\"seq\":2}\n"
        );
        std::fs::write(&path, "{\"se").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        trim_partial_line(&mut file).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
