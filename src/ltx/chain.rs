//! The chain-link rule: does LTX file N+1 continue file N? Used by restore, the follower and the
//! compactor, which each word the refusal in their own error.
//!
//! A file continues the chain ending with `prev` when it has the same page size, its first TXID
//! is at most one past `prev`'s last (no gap; an overlap is allowed because a compacted file
//! may cover TXIDs already applied), and its last TXID is past `prev`'s (it adds something).
//! Checksums are verified per file as it is decoded (the trailer), not across the link.

use super::Header;
use crate::TxId;

/// Why a file does not continue the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The page sizes differ.
    PageSize { prev: u32, next: u32 },
    /// A gap before `next`, or `next` ends at or before `prev` does.
    Txids {
        prev: (TxId, TxId),
        next: (TxId, TxId),
    },
}

/// True when TXIDs `next_min..=next_max` continue a chain that reached `prev_max`.
pub fn txids_continue(prev_max: TxId, next_min: TxId, next_max: TxId) -> bool {
    next_min <= prev_max.saturating_add(1) && next_max > prev_max
}

/// Checks that `next` continues the chain ending with `prev` (see the module documentation).
pub fn check_link(prev: &Header, next: &Header) -> Result<(), LinkError> {
    if next.page_size != prev.page_size {
        return Err(LinkError::PageSize {
            prev: prev.page_size,
            next: next.page_size,
        });
    }
    if !txids_continue(prev.max_txid, next.min_txid, next.max_txid) {
        return Err(LinkError::Txids {
            prev: (prev.min_txid, prev.max_txid),
            next: (next.min_txid, next.max_txid),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(min: TxId, max: TxId, page_size: u32) -> Header {
        Header {
            min_txid: min,
            max_txid: max,
            page_size,
            ..Header::default()
        }
    }

    #[test]
    fn the_next_txid_and_overlaps_that_add_something_continue() {
        assert_eq!(check_link(&h(1, 3, 4096), &h(4, 4, 4096)), Ok(()));
        assert_eq!(check_link(&h(1, 3, 4096), &h(2, 9, 4096)), Ok(()));
        assert_eq!(check_link(&h(1, 3, 4096), &h(1, 4, 4096)), Ok(()));
    }

    #[test]
    fn gaps_and_files_that_add_nothing_do_not() {
        let gap = check_link(&h(1, 3, 4096), &h(5, 6, 4096));
        assert_eq!(
            gap,
            Err(LinkError::Txids {
                prev: (1, 3),
                next: (5, 6)
            })
        );
        assert!(check_link(&h(1, 3, 4096), &h(2, 3, 4096)).is_err());
        assert!(check_link(&h(1, 3, 4096), &h(1, 2, 4096)).is_err());
        assert!(!txids_continue(TxId::MAX, 1, TxId::MAX));
    }

    #[test]
    fn page_sizes_must_match() {
        assert_eq!(
            check_link(&h(1, 1, 4096), &h(2, 2, 8192)),
            Err(LinkError::PageSize {
                prev: 4096,
                next: 8192
            })
        );
    }
}
