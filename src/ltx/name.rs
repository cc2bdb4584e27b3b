//! LTX file names: `<min>-<max>.ltx`, 16 lowercase hex digits each. STUB.
use crate::TxId;
pub fn format_file_name(min: TxId, max: TxId) -> String {
    format!("{min:016x}-{max:016x}.ltx")
}
pub fn parse_file_name(_name: &str) -> Option<(TxId, TxId)> {
    todo!()
}
