//! The change log's newest records in memory, as the document store committed them: a
//! consumer that keeps up reads its next records from here instead of from the
//! database, so a live frame never waits for a read of the log it was just written to.
//!
//! The tail only ever answers for a whole range: the records after a consumer's
//! position up to the latest commit, every sequence number among them present. Anything
//! less — a consumer behind the oldest record kept, a commit whose writer has not come
//! back to add its record yet, a process that has just started — is answered `None`,
//! and the reader goes to the database. So the tail can make reads faster, never
//! different.

use std::collections::VecDeque;

/// How many of the newest records are kept, at most: a few batches of every consumer
/// (the index consumer reads 100 a partition).
const MAX_RECORDS: usize = 1024;
/// How many bytes of records are kept, at most (a record carries its document's old and
/// new image).
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// What the tail needs to know of a record: its place in the log and its size.
pub(crate) trait Logged: Clone {
    fn seq(&self) -> u64;
    fn size(&self) -> usize;
}

/// The newest committed records, in sequence order, within a budget.
#[derive(Debug)]
pub(crate) struct Tail<R> {
    records: VecDeque<R>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

impl<R: Logged> Default for Tail<R> {
    fn default() -> Self {
        Self::with_budget(MAX_RECORDS, MAX_BYTES)
    }
}

impl<R: Logged> Tail<R> {
    pub(crate) fn with_budget(max_records: usize, max_bytes: usize) -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
            max_records: max_records.max(1),
            max_bytes,
        }
    }

    /// Keeps a committed record, then forgets the oldest ones beyond the budget.
    /// Records usually come in order; one whose writer came back late is put in its
    /// place. One older than everything kept is not kept (a reader that needs it reads
    /// the database).
    pub(crate) fn push(&mut self, record: R) {
        let seq = record.seq();
        let at = self.records.partition_point(|r| r.seq() < seq);
        if self.records.get(at).is_some_and(|r| r.seq() == seq) {
            return;
        }
        if at == 0 && self.records.len() >= self.max_records {
            return;
        }
        self.bytes += record.size();
        self.records.insert(at, record);
        while self.records.len() > self.max_records
            || (self.bytes > self.max_bytes && !self.records.is_empty())
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.size();
            }
        }
    }

    /// The records after `after` up to `through` that `keep` wants, at most `limit`, and
    /// the sequence number up to which the log was read for them (the last record's when
    /// `limit` came back, else `through`); `None` unless every record of that range is
    /// here.
    pub(crate) fn read(
        &self,
        after: u64,
        through: u64,
        limit: usize,
        keep: impl Fn(&R) -> bool,
    ) -> Option<(Vec<R>, u64)> {
        if through <= after {
            return Some((Vec::new(), after));
        }
        let start = self.records.partition_point(|r| r.seq() <= after);
        let mut expected = after + 1;
        let mut own = Vec::new();
        for record in self.records.range(start..) {
            if record.seq() > through {
                break;
            }
            if record.seq() != expected {
                return None;
            }
            expected += 1;
            if keep(record) {
                own.push(record.clone());
                if own.len() == limit.max(1) {
                    return Some((own, record.seq()));
                }
            }
        }
        (expected > through).then_some((own, through))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of document `seq % 3`, 16 bytes long.
    #[derive(Debug, Clone)]
    struct Record {
        seq: u64,
        document: u64,
    }

    impl Logged for Record {
        fn seq(&self) -> u64 {
            self.seq
        }
        fn size(&self) -> usize {
            16
        }
    }

    fn record(seq: u64) -> Record {
        Record {
            seq,
            document: seq % 3,
        }
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    fn tail_of(range: std::ops::RangeInclusive<u64>) -> Tail<Record> {
        let mut tail = Tail::default();
        for seq in range {
            tail.push(record(seq));
        }
        tail
    }

    #[test]
    fn a_reader_that_keeps_up_reads_the_whole_range_from_memory() {
        let tail = tail_of(1..=10);
        let (own, read_to) = tail.read(4, 10, 100, |_| true).unwrap();
        assert_eq!(seqs(&own), vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(read_to, 10);
    }

    #[test]
    fn only_up_to_the_latest_commit_the_reader_knows_of() {
        let tail = tail_of(1..=10);
        let (own, read_to) = tail.read(4, 7, 100, |_| true).unwrap();
        assert_eq!(seqs(&own), vec![5, 6, 7]);
        assert_eq!(read_to, 7);
    }

    #[test]
    fn a_partition_takes_its_own_records_and_is_read_through_the_others() {
        let tail = tail_of(1..=9);
        let (own, read_to) = tail.read(0, 9, 100, |r| r.document == 1).unwrap();
        assert_eq!(seqs(&own), vec![1, 4, 7]);
        assert_eq!(read_to, 9, "nothing of the partition is left unread");
    }

    #[test]
    fn a_full_page_says_it_was_read_up_to_its_last_record() {
        let tail = tail_of(1..=10);
        let (own, read_to) = tail.read(0, 10, 3, |_| true).unwrap();
        assert_eq!(seqs(&own), vec![1, 2, 3]);
        assert_eq!(read_to, 3);
    }

    #[test]
    fn nothing_new_is_an_empty_answer_without_the_database() {
        let tail = Tail::<Record>::default();
        let (own, read_to) = tail.read(7, 7, 100, |_| true).unwrap();
        assert!(own.is_empty());
        assert_eq!(read_to, 7);
    }

    #[test]
    fn a_reader_behind_the_oldest_record_kept_goes_to_the_database() {
        let tail = tail_of(5..=10);
        assert!(tail.read(2, 10, 100, |_| true).is_none());
        assert!(tail.read(4, 10, 100, |_| true).is_some());
        assert!(
            Tail::<Record>::default()
                .read(0, 3, 100, |_| true)
                .is_none(),
            "just started"
        );
    }

    #[test]
    fn a_commit_whose_record_has_not_come_back_yet_sends_the_reader_to_the_database() {
        let mut tail = tail_of(1..=3);
        tail.push(record(5));
        assert!(tail.read(0, 5, 100, |_| true).is_none(), "4 is missing");
        assert_eq!(
            seqs(&tail.read(0, 3, 100, |_| true).unwrap().0),
            vec![1, 2, 3]
        );
        tail.push(record(4));
        let (own, _) = tail.read(0, 5, 100, |_| true).unwrap();
        assert_eq!(seqs(&own), vec![1, 2, 3, 4, 5], "put in its place");
        tail.push(record(4));
        assert_eq!(tail.records.len(), 5, "kept once");
    }

    #[test]
    fn the_oldest_records_go_beyond_the_budget() {
        let mut tail = Tail::with_budget(4, usize::MAX);
        for seq in 1..=10 {
            tail.push(record(seq));
        }
        assert_eq!(seqs(tail.records.make_contiguous()), vec![7, 8, 9, 10]);
        tail.push(record(2));
        assert_eq!(tail.records.len(), 4, "older than all kept: not kept");

        let size = record(1).size();
        let mut tail = Tail::with_budget(100, size * 2);
        for seq in 1..=5 {
            tail.push(record(seq));
        }
        assert_eq!(seqs(tail.records.make_contiguous()), vec![4, 5]);
        assert_eq!(tail.bytes, size * 2);
    }
}
