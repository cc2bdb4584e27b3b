//! Legacy LZ4-frame page encoding of ltx <= v0.5.1 (spec §3.2). STUB.
