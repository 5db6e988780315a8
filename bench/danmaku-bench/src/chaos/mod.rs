//! `danmaku-bench chaos`: the chaos soak.

mod journal;
mod verify;
