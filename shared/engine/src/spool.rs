//! Bounded memory for campaigns of any size (PRODUCT.md §7): a campaign's activity is held in
//! memory up to one part; beyond that it is spilled to temporary files (Lambda's `/tmp`) and
//! split by email into parts of about that size, each planned and applied on its own. Every
//! activity of one person lands in the same part, so each person's decision sees all of their
//! activity, exactly as in a single pass.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use mapping::Activity;

/// Activity collected for one campaign sync.
pub(crate) struct Spool {
    part_size: usize,
    in_memory: Vec<Activity>,
    file: Option<BufWriter<File>>,
    total: usize,
}

/// The parts to plan and apply one after the other.
pub(crate) enum Parts {
    /// Everything fits one part.
    Memory(Option<Vec<Activity>>),
    /// One temporary file per part.
    Files(std::vec::IntoIter<File>),
}

/// A person's part: the same in every invocation and every build, since a continuation skips
/// the parts an earlier invocation (perhaps of an earlier deployment) applied.
fn part_of(email: &str, parts: usize) -> usize {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(email.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % parts as u64) as usize
}

fn write_line(writer: &mut BufWriter<File>, activity: &Activity) -> std::io::Result<()> {
    serde_json::to_writer(&mut *writer, activity)?;
    writer.write_all(b"\n")
}

impl Spool {
    pub(crate) fn new(part_size: usize) -> Spool {
        Spool {
            part_size: part_size.max(1),
            in_memory: Vec::new(),
            file: None,
            total: 0,
        }
    }

    /// Activities pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    pub(crate) fn push(&mut self, activity: Activity) -> std::io::Result<()> {
        self.total += 1;
        if self.file.is_none() && self.in_memory.len() < self.part_size {
            self.in_memory.push(activity);
            return Ok(());
        }
        if self.file.is_none() {
            let mut writer = BufWriter::new(tempfile::tempfile()?);
            for held in self.in_memory.drain(..) {
                write_line(&mut writer, &held)?;
            }
            self.in_memory.shrink_to_fit();
            self.file = Some(writer);
        }
        match self.file.as_mut() {
            Some(writer) => write_line(writer, &activity),
            None => Ok(()),
        }
    }

    /// Splits what was collected into parts of about `part_size` activities, by email, or into
    /// `count` parts (what an earlier invocation of the run split it into).
    pub(crate) fn into_parts(mut self, count: Option<usize>) -> std::io::Result<Parts> {
        let count = count.unwrap_or_else(|| self.total.div_ceil(self.part_size)).max(1);
        if count == 1 && self.file.is_none() {
            return Ok(Parts::Memory(Some(self.in_memory)));
        }
        let writer = match self.file.take() {
            Some(writer) => writer,
            None => {
                let mut writer = BufWriter::new(tempfile::tempfile()?);
                for held in self.in_memory.drain(..) {
                    write_line(&mut writer, &held)?;
                }
                writer
            }
        };
        let mut spool = writer.into_inner().map_err(|e| e.into_error())?;
        spool.seek(SeekFrom::Start(0))?;
        let mut writers: Vec<BufWriter<File>> = (0..count)
            .map(|_| tempfile::tempfile().map(BufWriter::new))
            .collect::<std::io::Result<_>>()?;
        for line in BufReader::new(spool).lines() {
            let line = line?;
            let activity: Activity = serde_json::from_str(&line).map_err(std::io::Error::other)?;
            let writer = &mut writers[part_of(&activity.email, count)];
            writer.write_all(line.as_bytes())?;
            writer.write_all(b"\n")?;
        }
        let mut files = Vec::with_capacity(count);
        for writer in writers {
            let mut file = writer.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            files.push(file);
        }
        Ok(Parts::Files(files.into_iter()))
    }
}

impl Parts {
    /// How many parts (for logs and counts).
    pub(crate) fn count(&self) -> usize {
        match self {
            Parts::Memory(_) => 1,
            Parts::Files(files) => files.len(),
        }
    }

    /// The next part's activities.
    pub(crate) fn next_part(&mut self) -> std::io::Result<Option<Vec<Activity>>> {
        match self {
            Parts::Memory(held) => Ok(held.take()),
            Parts::Files(files) => {
                let Some(file) = files.next() else {
                    return Ok(None);
                };
                let mut part = Vec::new();
                for line in BufReader::new(file).lines() {
                    part.push(serde_json::from_str(&line?).map_err(std::io::Error::other)?);
                }
                Ok(Some(part))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{TimeZone, Utc};
    use mapping::ActivityKind;
    use mapping::activity::ActivityDetail;

    fn activity(i: usize) -> Activity {
        Activity {
            kind: if i.is_multiple_of(2) {
                ActivityKind::Opened
            } else {
                ActivityKind::Clicked
            },
            email: format!("p{}@x.com", i % 37),
            at: Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap(),
            list_id: "l".into(),
            detail: ActivityDetail::None,
        }
    }

    fn drain(mut parts: Parts) -> Vec<Vec<Activity>> {
        let mut out = Vec::new();
        while let Some(part) = parts.next_part().unwrap() {
            out.push(part);
        }
        out
    }

    #[test]
    fn small_campaigns_stay_in_memory_as_one_part() {
        let mut spool = Spool::new(100);
        for i in 0..100 {
            spool.push(activity(i)).unwrap();
        }
        let parts = spool.into_parts(None).unwrap();
        assert!(matches!(parts, Parts::Memory(_)));
        assert_eq!(drain(parts), vec![(0..100).map(activity).collect::<Vec<_>>()]);
    }

    #[test]
    fn large_campaigns_are_split_by_email_losing_nothing() {
        let mut spool = Spool::new(100);
        for i in 0..1_000 {
            spool.push(activity(i)).unwrap();
        }
        assert_eq!(spool.len(), 1_000);
        let parts = drain(spool.into_parts(None).unwrap());
        assert_eq!(parts.len(), 10);
        // Each person is in exactly one part, with all of their activity, in the order read.
        let mut seen = std::collections::BTreeMap::new();
        for (n, part) in parts.iter().enumerate() {
            for a in part {
                assert_eq!(*seen.entry(a.email.clone()).or_insert(n), n, "{} in two parts", a.email);
            }
        }
        let mut all: Vec<Activity> = parts.into_iter().flatten().collect();
        all.sort_by_key(|a| a.at);
        assert_eq!(all, (0..1_000).map(activity).collect::<Vec<_>>());
    }

    #[test]
    fn a_continuation_cuts_the_same_people_into_the_same_parts() {
        // The first invocation read 1,000 activities (10 parts); its continuation reads them and
        // newer ones, fewer than a part's worth in all, yet must cut along the same lines.
        let mut first = Spool::new(100);
        for i in 0..1_000 {
            first.push(activity(i)).unwrap();
        }
        let first = drain(first.into_parts(None).unwrap());
        let mut later = Spool::new(10_000);
        for i in 0..1_050 {
            later.push(activity(i)).unwrap();
        }
        let later = drain(later.into_parts(Some(first.len())).unwrap());
        assert_eq!(later.len(), first.len());
        for (before, after) in first.iter().zip(&later) {
            let people = |part: &Vec<Activity>| {
                part.iter()
                    .map(|a| a.email.clone())
                    .collect::<std::collections::BTreeSet<_>>()
            };
            assert!(people(before).is_subset(&people(after)));
            assert!(
                after.starts_with(before),
                "the part holds what it held, then the newer activity"
            );
        }
    }
}
