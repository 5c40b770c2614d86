//! Bounded memory for campaigns of any size (PRODUCT.md §7): a campaign's activity is held in
//! memory up to one part; beyond that it is spilled to temporary files (Lambda's `/tmp`) and
//! split by email into parts of about that size, each planned and applied on its own. Every
//! activity of one person lands in the same part, so each person's decision sees all of their
//! activity, exactly as in a single pass.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use chrono::{DateTime, Utc};
use mapping::activity::ActivityDetail;
use mapping::{Activity, ActivityKind};
use serde::{Deserialize, Serialize};

/// Activity collected for one campaign sync.
pub(crate) struct Spool {
    part_size: usize,
    in_memory: Vec<Activity>,
    file: Option<BufWriter<File>>,
    total: usize,
    /// The last record's encoding, kept for its capacity.
    scratch: Vec<u8>,
}

/// The parts to plan and apply one after the other.
pub(crate) enum Parts {
    /// Everything fits one part.
    Memory(Option<Vec<Activity>>),
    /// One temporary file per part, with how many activities it holds.
    Files(std::vec::IntoIter<(File, usize)>),
}

/// What decides a person's part: the same in every invocation and every build, since a
/// continuation skips the parts an earlier invocation (perhaps of an earlier deployment) applied.
fn part_key(email: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(email.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A person's part of `parts`.
fn part_of(key: u64, parts: usize) -> usize {
    (key % parts as u64) as usize
}

/// One activity as the spool's files hold it: postcard (no field names, dates as numbers, so
/// nothing is formatted or parsed), borrowing from the activity when written. A file lives for
/// one invocation: its layout is free to change between builds.
#[derive(Serialize, Deserialize)]
struct Spooled<'a> {
    kind: ActivityKind,
    #[serde(borrow)]
    email: Cow<'a, str>,
    seconds: i64,
    nanos: u32,
    #[serde(borrow)]
    list_id: Cow<'a, str>,
    #[serde(borrow)]
    detail: SpooledDetail<'a>,
}

/// [`ActivityDetail`] without its JSON tag (postcard needs the variant, not a field, to say it).
#[derive(Serialize, Deserialize)]
enum SpooledDetail<'a> {
    None,
    Click {
        #[serde(borrow)]
        url: Cow<'a, str>,
    },
    Bounce {
        #[serde(borrow)]
        bounce_type: Cow<'a, str>,
        #[serde(borrow)]
        reason: Cow<'a, str>,
    },
}

impl<'a> Spooled<'a> {
    fn of(activity: &'a Activity) -> Spooled<'a> {
        Spooled {
            kind: activity.kind,
            email: Cow::Borrowed(&activity.email),
            seconds: activity.at.timestamp(),
            nanos: activity.at.timestamp_subsec_nanos(),
            list_id: Cow::Borrowed(&activity.list_id),
            detail: match &activity.detail {
                ActivityDetail::None => SpooledDetail::None,
                ActivityDetail::Click { url } => SpooledDetail::Click {
                    url: Cow::Borrowed(url),
                },
                ActivityDetail::Bounce { bounce_type, reason } => SpooledDetail::Bounce {
                    bounce_type: Cow::Borrowed(bounce_type),
                    reason: Cow::Borrowed(reason),
                },
            },
        }
    }

    fn into_activity(self) -> std::io::Result<Activity> {
        let at = DateTime::<Utc>::from_timestamp(self.seconds, self.nanos)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "spooled date out of range"))?;
        Ok(Activity {
            kind: self.kind,
            email: self.email.into_owned(),
            at,
            list_id: self.list_id.into_owned(),
            detail: match self.detail {
                SpooledDetail::None => ActivityDetail::None,
                SpooledDetail::Click { url } => ActivityDetail::Click { url: url.into_owned() },
                SpooledDetail::Bounce { bounce_type, reason } => ActivityDetail::Bounce {
                    bounce_type: bounce_type.into_owned(),
                    reason: reason.into_owned(),
                },
            },
        })
    }
}

/// A frame: the record's length (u32, little-endian), its person's [`part_key`] (u64), the
/// record. Splitting into parts reads the key and copies the frame, never decoding the record.
const FRAME_HEAD: usize = 12;

/// Encodes `activity` (in `scratch`, kept for its capacity) and writes its frame.
fn write_frame(writer: &mut BufWriter<File>, activity: &Activity, scratch: &mut Vec<u8>) -> std::io::Result<()> {
    scratch.clear();
    let record = postcard::to_extend(&Spooled::of(activity), std::mem::take(scratch)).map_err(std::io::Error::other)?;
    let written = write_framed(writer, part_key(&activity.email), &record);
    *scratch = record;
    written
}

/// Writes a frame of an encoded record.
fn write_framed(writer: &mut BufWriter<File>, key: u64, record: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(record.len()).map_err(std::io::Error::other)?;
    writer.write_all(&length.to_le_bytes())?;
    writer.write_all(&key.to_le_bytes())?;
    writer.write_all(record)
}

/// The next frame's part key and its record (into `record`); `None` at the end of the file.
fn read_frame(reader: &mut impl BufRead, record: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut head = [0u8; FRAME_HEAD];
    reader.read_exact(&mut head)?;
    let [l0, l1, l2, l3, k @ ..] = head;
    let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    record.resize(length, 0);
    reader.read_exact(record)?;
    Ok(Some(u64::from_le_bytes(k)))
}

impl Spool {
    pub(crate) fn new(part_size: usize) -> Spool {
        Spool {
            part_size: part_size.max(1),
            in_memory: Vec::new(),
            file: None,
            total: 0,
            scratch: Vec::new(),
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
            let spilled = self.spill()?;
            self.file = Some(spilled);
        }
        match self.file.as_mut() {
            Some(writer) => write_frame(writer, &activity, &mut self.scratch),
            None => Ok(()),
        }
    }

    /// A temporary file holding what was in memory.
    fn spill(&mut self) -> std::io::Result<BufWriter<File>> {
        let mut writer = BufWriter::new(tempfile::tempfile()?);
        for held in &self.in_memory {
            write_frame(&mut writer, held, &mut self.scratch)?;
        }
        self.in_memory = Vec::new();
        Ok(writer)
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
            None => self.spill()?,
        };
        let mut spool = writer.into_inner().map_err(|e| e.into_error())?;
        spool.seek(SeekFrom::Start(0))?;
        let mut writers: Vec<BufWriter<File>> = (0..count)
            .map(|_| tempfile::tempfile().map(BufWriter::new))
            .collect::<std::io::Result<_>>()?;
        let mut held = vec![0usize; count];
        let mut reader = BufReader::new(spool);
        let mut record = std::mem::take(&mut self.scratch);
        while let Some(key) = read_frame(&mut reader, &mut record)? {
            let part = part_of(key, count);
            held[part] += 1;
            write_framed(&mut writers[part], key, &record)?;
        }
        let mut files = Vec::with_capacity(count);
        for (writer, held) in writers.into_iter().zip(held) {
            let mut file = writer.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            files.push((file, held));
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
                let Some((file, held)) = files.next() else {
                    return Ok(None);
                };
                // Sized once: a part grown by doubling copies itself, into fresh pages each time.
                let mut part = Vec::with_capacity(held);
                let mut reader = BufReader::new(file);
                let mut record = Vec::new();
                while read_frame(&mut reader, &mut record)?.is_some() {
                    let spooled: Spooled<'_> = postcard::from_bytes(&record).map_err(std::io::Error::other)?;
                    part.push(spooled.into_activity()?);
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
    fn every_kind_of_detail_and_sub_second_dates_come_back_from_the_files_as_they_went_in() {
        let mut sent = Vec::new();
        for i in 0..300usize {
            let mut activity = activity(i);
            activity.email = format!("zoë.{}+tag@例え.jp", i % 41);
            activity.at += chrono::Duration::nanoseconds(123_456_789 * (i as i64 % 7));
            activity.detail = match i % 3 {
                0 => ActivityDetail::None,
                1 => ActivityDetail::Click {
                    url: format!("https://example.com/?q={i}&x=\"quoted\",comma"),
                },
                _ => ActivityDetail::Bounce {
                    bounce_type: "Soft".into(),
                    reason: "Soft Bounce - Mailbox Full\nsecond line".into(),
                },
            };
            sent.push(activity);
        }
        let mut spool = Spool::new(50);
        for activity in &sent {
            spool.push(activity.clone()).unwrap();
        }
        let mut back: Vec<Activity> = drain(spool.into_parts(None).unwrap()).into_iter().flatten().collect();
        assert_eq!(back.len(), sent.len());
        let order = |a: &Activity| (a.at, a.email.clone());
        back.sort_by_key(order);
        sent.sort_by_key(order);
        assert_eq!(back, sent);
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
